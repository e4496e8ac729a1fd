"""Keeps every part of an embedded stack running: what dies is started again.

A part (the broker, an embedded Redis, the local teacher server, each service) that exits is
restarted after an exponential backoff (``backoff``, doubled for each restart still inside
``window``, at most ``max_backoff``); a part that needs more than ``budget`` restarts inside
``window`` keeps dying for a reason a restart will not fix, and the supervisor gives up on it:
:attr:`Supervisor.gave_up` names it, and ``pgkd up`` stops everything and exits non-zero.

Every restart is logged with the exit status and counted (``pgkd_stack_restarts_total{part}``);
``pgkd_stack_part_up{part}`` is 1 while a part runs. Both are served from the supervising process
on their own registry (``/metrics`` on :attr:`Supervisor.metrics_port`).

Children are started from the supervisor's thread, and Linux kills a child whose starting *thread*
exits (``PR_SET_PDEATHSIG``): so the thread lives on, restarting nothing, until :meth:`close`,
which the stack calls after it has stopped every part in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

log = logging.getLogger("pgkd.supervisor")


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a part that died, and when to stop trying.

    >>> [RestartPolicy(backoff=1, max_backoff=5).delay(n) for n in range(5)]
    [1.0, 2.0, 4.0, 5.0, 5.0]
    """

    backoff: float = 1.0
    max_backoff: float = 60.0
    budget: int = 5
    window: float = 600.0

    def __post_init__(self) -> None:
        if not 0 <= self.backoff <= self.max_backoff:
            raise ValueError(f"need 0 <= backoff <= max_backoff, got {self.backoff}, {self.max_backoff}")
        if self.budget < 1 or self.window <= 0:
            raise ValueError(f"budget must be >= 1 and window > 0, got {self.budget}, {self.window}")

    def delay(self, recent: int) -> float:
        """The wait before a restart, after ``recent`` restarts of the part inside the window."""
        return float(min(self.max_backoff, self.backoff * 2**recent))


class Supervised(Protocol):
    """What the supervisor needs of a stack: its parts, their state, and how to restart one."""

    def parts(self) -> dict[str, int | None]:
        """Every supervised part and its exit status (None while it runs)."""
        ...

    def restart(self, part: str) -> None:
        """Start ``part`` again in place (same address); raises if it does not come up."""
        ...


class Supervisor:
    """Watches :meth:`Supervised.parts` every ``interval`` seconds on its own thread."""

    def __init__(
        self,
        stack: Supervised,
        policy: RestartPolicy = RestartPolicy(),
        *,
        interval: float = 0.5,
        on_event: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stack, self.policy, self.interval, self.clock = stack, policy, interval, clock
        self.on_event = on_event or (lambda message: log.warning("%s", message))
        self.gave_up: str | None = None
        self.restarts: dict[str, int] = {}
        self.registry = CollectorRegistry()
        self._up = Gauge(
            "pgkd_stack_part_up", "1 while a part of the stack runs", ["part"], registry=self.registry
        )
        self._restarted = Counter(
            "pgkd_stack_restarts", "Parts restarted after they died", ["part"], registry=self.registry
        )
        self._recent: dict[str, deque[float]] = {}
        self._due: dict[str, float] = {}  # part -> when its restart is due
        self._paused = threading.Event()  # no more restarts: the stack is stopping
        self._restarting = threading.Lock()  # held while a part starts again
        self._closed = threading.Event()  # the thread may end: every child is stopped
        self._thread = threading.Thread(target=self._run, name="pgkd-supervisor", daemon=True)
        self.metrics_port: int | None = None
        self._server: Any = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self, metrics_port: int | None = None) -> Supervisor:
        for part in self.stack.parts():
            self._up.labels(part=part).set(1)
            self._restarted.labels(part=part)
        if metrics_port is not None:
            self._server, _ = start_http_server(metrics_port, addr="127.0.0.1", registry=self.registry)
            self.metrics_port = metrics_port
        self._thread.start()
        return self

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Restart nothing while the block runs (a planned stop of one part)."""
        self._paused.set()
        try:
            yield
        finally:
            self._paused.clear()

    def pause(self) -> None:
        """Restart nothing from now on: the stack is stopping its parts. Returns once a restart
        under way has finished, so the stack stops the part it started too."""
        self._paused.set()
        with self._restarting:
            pass

    def close(self) -> None:
        """End the thread, once every child it started has been stopped."""
        self._paused.set()
        self._closed.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- the watch --------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed.is_set():
            if not self._paused.is_set() and self.gave_up is None:
                try:
                    self.check()
                except Exception:  # a bug here must not leave the stack unwatched
                    log.exception("supervisor check failed")
            self._closed.wait(self.interval)

    def check(self) -> None:
        """One pass: note the parts that died, restart those whose backoff is over."""
        now = self.clock()
        for part, status in self.stack.parts().items():
            if status is None:
                self._up.labels(part=part).set(1)
                continue
            self._up.labels(part=part).set(0)
            if part not in self._due:
                self._schedule(part, status, now)
                if self.gave_up is not None:
                    return
            if now >= self._due[part] and not self._paused.is_set():
                self._restart(part)

    def _schedule(self, part: str, status: int, now: float) -> None:
        recent = self._recent.setdefault(part, deque())
        while recent and now - recent[0] > self.policy.window:
            recent.popleft()
        if len(recent) >= self.policy.budget:
            self.gave_up = part
            self.on_event(
                f"{part} exited with status {status} after {len(recent)} restarts in "
                f"{self.policy.window:.0f} s: giving up on it"
            )
            return
        delay = self.policy.delay(len(recent))
        self._due[part] = now + delay
        self.on_event(
            f"{part} exited with status {status}; restart {len(recent) + 1} of {self.policy.budget} "
            f"in {delay:.0f} s"
        )

    def _restart(self, part: str) -> None:
        del self._due[part]
        self._recent.setdefault(part, deque()).append(self.clock())
        with self._restarting:
            if self._paused.is_set():  # the stack began to stop while this waited
                return
            try:
                self.stack.restart(part)
            except Exception as exc:  # it died again while starting: the next pass schedules it again
                self.on_event(f"{part} did not come back: {type(exc).__name__}: {str(exc)[:300]}")
                return
        self.restarts[part] = self.restarts.get(part, 0) + 1
        self._restarted.labels(part=part).inc()
        self._up.labels(part=part).set(1)
        self.on_event(f"{part} restarted ({self.restarts[part]} restart(s) so far)")
