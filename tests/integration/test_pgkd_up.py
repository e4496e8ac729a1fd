"""`pgkd up` as a user runs it, driven from outside the project by librdkafka (confluent-kafka).

The CLI runs as a subprocess with its embedded broker; the test's client speaks to that broker
like any production client would. Parts of the running stack are SIGKILLed (what an OOM kill or
a crash in a native library does); the stack's supervisor must bring each back on its own, and
no request the broker still holds may go unanswered.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from pgkd.runner import load_splits
from streams.events import Prediction, Request, decode
from streams.topics import Topics
from tests.conftest import settings_env
from tests.integration.live import live_settings

pytestmark = pytest.mark.slow
SERVICES = ("trainer", "serving-0", "feedback", "mining")


class Up:
    """A running ``pgkd up`` subprocess: its output, the addresses it printed, its children."""

    def __init__(self, env: dict[str, str], run_dir: Path) -> None:
        pgkd = Path(sys.executable).with_name("pgkd")
        self.proc = subprocess.Popen(
            [str(pgkd), "up", "--run-dir", str(run_dir)],
            env={**os.environ, **env, "COLUMNS": "300", "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(f"`pgkd up` never printed {pattern!r}; it printed:\n{self.output[-4000:]}")

    def child(self, marker: str) -> int:
        """The pid of the child process whose command line holds ``marker``."""
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                continue  # it exited while we looked
            if ppid == self.proc.pid and marker in cmdline:
                return int(stat.parent.name)
        raise AssertionError(f"no child of `pgkd up` runs {marker!r}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def healthy(stack: Up, timeout: float = 180) -> None:
    """Every service's /healthz says ok (the ports `pgkd up` printed; a restart keeps its port)."""
    ports = {
        s: int(stack.wait_for(rf"{s}\s*│\s*pid \d+, http://127\.0\.0\.1:(\d+)", 5).group(1)) for s in SERVICES
    }
    deadline = time.monotonic() + timeout
    waiting = set(SERVICES)
    while waiting:
        for service in sorted(waiting):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ports[service]}/healthz", timeout=5) as r:
                    if json.load(r).get("ok"):
                        waiting.discard(service)
            except OSError:
                pass  # restarting, or answering 503 while it reconnects
        assert time.monotonic() < deadline, f"not healthy again: {sorted(waiting)}\n{stack.output[-3000:]}"
        time.sleep(1)


def supervisor_sample(port: int, name: str, part: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(f'{name}{{part="{part}"}}'):
                return float(line.rsplit(" ", 1)[1])
    return float("nan")


@pytest.fixture()
def up(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[tuple[Up, dict[str, str]]]:
    settings = live_settings("unused", redis_url, namespace, tmp_path, serve_max_chars=200, serve_batch=32)
    env = settings_env(settings)
    del env["PGKD_BOOTSTRAP_SERVERS"]  # `pgkd up` starts (and supervises) its own broker
    env.update(PGKD_RESTART_BACKOFF="0.5", PGKD_RESTART_MAX_BACKOFF="5")
    stack = Up(env, tmp_path / "up")
    try:
        yield stack, env
    finally:
        code = stack.stop()
        assert code == 0, f"`pgkd up` exited {code} on SIGTERM:\n{stack.output[-4000:]}"
        assert "stopped" in stack.output


def started(stack: Up) -> tuple[str, int]:
    """The broker address and the supervisor's metrics port, once every service is healthy."""
    stack.wait_for(r"all services healthy", timeout=600)
    broker = stack.wait_for(r"broker\s*│\s*(127\.0\.0\.1:\d+)", 5).group(1)
    port = int(stack.wait_for(r"supervisor\s*│\s*http://127\.0\.0\.1:(\d+)/metrics", 5).group(1))
    return broker, port


class Answers:
    """Every prediction on ``predictions``, read from the start by a librdkafka consumer."""

    def __init__(self, broker: str, topic: str, partitions: int) -> None:
        self.consumer = Consumer(
            {"bootstrap.servers": broker, "group.id": f"test-{time.time_ns()}", "enable.auto.commit": False}
        )
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.seen: Counter[str] = Counter()

    def until(
        self, done: Callable[[Counter[str]], bool], timeout: float, what: str, *, give_up: bool = True
    ) -> Counter[str]:
        """Read until ``done``; after ``timeout``, fail (or with ``give_up`` False, just return)."""
        deadline = time.monotonic() + timeout
        while not done(self.seen):
            if time.monotonic() > deadline:
                assert not give_up, f"timed out waiting for {what}"
                break
            message = self.consumer.poll(0.5)
            if message is not None and message.error() is None:
                self.seen[decode(Prediction, message.value()).id] += 1
        return self.seen

    def close(self) -> None:
        self.consumer.close()


def send(producer: Producer, topic: str, ids: list[str], texts: list[str], rate: float) -> None:
    for i, request_id in enumerate(ids):
        value = Request(id=request_id, text=texts[i % len(texts)]).to_bytes()
        producer.produce(topic, key=request_id.encode(), value=value)
        producer.poll(0)
        time.sleep(1 / rate)
    assert producer.flush(60) == 0, "the client could not deliver every request"


def test_sigkill_of_each_service_under_traffic_loses_no_request(up, namespace):
    stack, env = up
    broker, port = started(stack)
    topics = Topics(namespace)
    texts = [
        e.text for e in load_splits(live_settings("unused", env["PGKD_REDIS_URL"], namespace, Path())).traffic
    ]
    ids = [f"outside-{i}" for i in range(3000)]
    producer = Producer({"bootstrap.servers": broker, "enable.idempotence": True})
    answers = Answers(broker, topics.predictions, int(env["PGKD_PARTITIONS"]))
    sender = threading.Thread(target=send, args=(producer, topics.requests, ids, texts, 40.0))
    sender.start()
    try:
        killed = {}
        for n, service in enumerate(SERVICES, start=1):  # one every ~15 s of the ~75 s of traffic
            answers.until(lambda seen, n=n: len(seen) >= 450 * n, timeout=300, what=f"{450 * n} answers")
            pid = stack.child(f"consumers.{service.split('-')[0]}")
            os.kill(pid, signal.SIGKILL)
            killed[service] = pid
        sender.join()
        seen = answers.until(lambda s: set(ids) <= set(s), timeout=600, what="every request answered")
    finally:
        sender.join(timeout=120)
        answers.close()
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    print(json.dumps({"requests": len(ids), "answered": len(set(ids) & set(seen)), "duplicates": duplicates}))
    for service in SERVICES:
        assert supervisor_sample(port, "pgkd_stack_restarts_total", service) >= 1, service
        assert supervisor_sample(port, "pgkd_stack_part_up", service) == 1, service
        assert re.search(rf"{service} exited with status -9; restart 1 of 5", stack.output), stack.output
        assert stack.child(f"consumers.{service.split('-')[0]}") != killed[service]
    healthy(stack)


def test_a_killed_broker_comes_back_and_the_stack_answers_new_requests(up, namespace):
    stack, env = up
    broker, port = started(stack)
    topics = Topics(namespace)
    texts = ["Shares fell after the results", "The striker scored twice", "The minister resigned"]
    before = [f"before-{i}" for i in range(30)]
    send(Producer({"bootstrap.servers": broker}), topics.requests, before, texts, 100.0)
    answers = Answers(broker, topics.predictions, int(env["PGKD_PARTITIONS"]))
    answers.until(lambda s: set(before) <= set(s), timeout=120, what="answers before the kill")
    answers.close()

    os.kill(stack.child("tansu"), signal.SIGKILL)
    stack.wait_for(r"broker exited with status -9; restart 1 of 5", timeout=30)
    stack.wait_for(r"broker restarted", timeout=60)
    assert supervisor_sample(port, "pgkd_stack_part_up", "broker") == 1

    # The memory-storage broker came back empty: the services reconnect and answer new requests.
    after = [f"after-{i}" for i in range(30)]
    deadline = time.monotonic() + 300
    answers = Answers(broker, topics.predictions, int(env["PGKD_PARTITIONS"]))
    try:
        while missing := [i for i in after if i not in answers.seen]:
            assert time.monotonic() < deadline, (
                f"no answers after the broker restart:\n{stack.output[-3000:]}"
            )
            # Sent again until answered: what the broker took before serving rejoined its group
            # may be lost with it (the embedded broker's documented limit).
            send(Producer({"bootstrap.servers": broker}), topics.requests, missing, texts, 100.0)
            answers.until(lambda s: set(after) <= set(s), timeout=15, what="", give_up=False)
    finally:
        answers.close()
    healthy(stack)
    for service in SERVICES:
        assert supervisor_sample(port, "pgkd_stack_part_up", service) == 1
