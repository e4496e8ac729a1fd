"""One retry policy for every loop that waits for something to come back: a broker, Redis, a teacher.

:class:`Backoff` is the policy (exponential, doubling from ``initial`` up to ``cap``); the loops
themselves are tenacity's (``Retrying``/``AsyncRetrying``), given the policy's :meth:`Backoff.wait`,
so a delay means the same thing in the services, the stack and the library. A loop that must not
block while it waits (a service that goes on consuming) keeps a :class:`Cooldown` instead, and
:func:`retry_after` reads how long a teacher's failure asks it to wait.

>>> Backoff(initial=0.5, cap=4).delays(6)
[0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import RetryCallState, wait_exponential

from pgkd.errors import TeacherBudgetExceeded, TeacherRateLimited


@dataclass(frozen=True)
class Backoff:
    """Wait ``initial`` seconds after the first failure, twice as long after each next one, never
    more than ``cap``."""

    initial: float = 0.5
    cap: float = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.initial <= self.cap:
            raise ValueError(f"need 0 <= initial <= cap, got {self.initial}, {self.cap}")

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row (1 or more)."""
        return float(min(self.cap, self.initial * 2 ** max(0, failures - 1)))

    def delays(self, n: int) -> list[float]:
        return [self.delay(k) for k in range(1, n + 1)]

    def wait(self) -> wait_exponential:
        """The same policy as a tenacity wait strategy (attempt k waits ``delay(k)``)."""
        return wait_exponential(multiplier=self.initial, max=self.cap)


@dataclass
class Cooldown:
    """How long to leave something alone after failures: ``policy``'s delay, except that a failure
    which says how long (a 429's ``Retry-After``) wins. A scheduler, not a loop: the caller asks
    :attr:`waiting` and goes on with other work meanwhile.

    >>> c = Cooldown(Backoff(initial=2, cap=300))
    >>> c.failed(), c.failed(), c.failed(retry_after=60.0), c.waiting
    (2.0, 4.0, 60.0, True)
    >>> c.succeeded(); c.failures, c.waiting
    (0, False)
    """

    policy: Backoff
    failures: int = 0
    until: float = 0.0

    def failed(self, retry_after: float | None = None) -> float:
        """Count a failure; returns the delay before the next try."""
        self.failures += 1
        delay = retry_after if retry_after is not None else self.policy.delay(self.failures)
        self.until = time.monotonic() + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.until = 0, 0.0

    @property
    def waiting(self) -> bool:
        return time.monotonic() < self.until


def log_retry(
    log: logging.Logger, what: str, level: int = logging.WARNING
) -> Callable[[RetryCallState], None]:
    """A tenacity ``before_sleep`` hook: one line per retry, with the error and the wait."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        log.log(level, "%s failed (%r); retry %d in %.1f s", what, error, state.attempt_number, wait)

    return before_sleep


def retry_after(error: Exception, now: float | None = None) -> float | None:
    """How long a teacher failure asks to be left alone: a 429's wait, the rest of the hour for a
    spent hourly budget; None where it does not say (the caller's backoff decides).

    >>> retry_after(TeacherBudgetExceeded("spent", "calls"), now=7800.0)
    3000.0
    >>> retry_after(TeacherRateLimited("429", retry_after=12.0)), retry_after(ConnectionError())
    (12.0, None)
    """
    if isinstance(error, TeacherRateLimited):
        return error.retry_after
    if isinstance(error, TeacherBudgetExceeded):
        now = time.time() if now is None else now
        return 3600 - now % 3600  # the hourly budget renews on the hour
    return None
