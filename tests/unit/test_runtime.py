"""The services' shared runtime: a batch is never acknowledged half-done, lag series stay right."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import redis

from consumers import runtime
from pgkd.retry import Backoff
from streams import metrics
from streams.events import DeadLetter, decode


@dataclass
class Message:
    topic: str = "t.requests"
    partition: int = 1
    offset: int = 42


@dataclass
class Event:
    value: bytes
    message: Message


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def __call__(self, topic: str, key: bytes, value: bytes) -> asyncio.Future:
        self.sent.append((topic, key, value))
        done: asyncio.Future = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


def test_a_transient_failure_is_retried_until_it_passes():
    calls = []

    async def handle(events):
        calls.append(len(events))
        if len(calls) < 6:  # more than `attempts`: transient failures are retried without limit
            raise redis.ConnectionError("Redis is restarting")

    sink = Sink()
    batch = [Event(b"x", Message())]
    run(
        runtime.process_batch(
            batch, handle, service="s", send=sink, dead_letter_topic="t.dl", backoff=Backoff(0, 0)
        )
    )
    assert len(calls) == 6 and sink.sent == []


def test_a_batch_that_keeps_failing_is_dead_lettered_whole():

    async def handle(events):
        raise ValueError("NaN confidence")

    sink = Sink()
    events = [Event(b"first", Message(offset=1)), Event(b"second", Message(offset=2))]
    run(
        runtime.process_batch(
            events,
            handle,
            service="s",
            send=sink,
            dead_letter_topic="t.dl",
            attempts=3,
            backoff=Backoff(0, 0),
        )
    )
    dead = [decode(DeadLetter, value) for topic, _, value in sink.sent if topic == "t.dl"]
    assert [d.original() for d in dead] == [b"first", b"second"]
    assert {d.reason for d in dead} == {"processing_error"} and "NaN confidence" in dead[0].error
    assert [d.offset for d in dead] == [1, 2] and dead[0].partition == 1


def test_lag_series_of_revoked_partitions_disappear():
    gauge = runtime.LagGauge("unit-test")
    gauge.update({("t.requests", 0): 5, ("t.requests", 1): 7})
    gauge.update({("t.requests", 1): 2})
    samples = {
        s.labels["partition"]: s.value
        for m in metrics.CONSUMER_LAG.collect()
        for s in m.samples
        if s.labels["service"] == "unit-test"
    }
    assert samples == {"1": 2.0}


def test_each_service_exports_its_own_metrics_and_the_common_ones_only():
    from prometheus_client import generate_latest

    from streams.metrics import registry_for

    exported = {
        service: generate_latest(registry_for(service)).decode()
        for service in ("serving", "feedback", "mining", "trainer")
    }
    assert "pgkd_serving_requests_total" in exported["serving"]
    assert "pgkd_serving_requests_total" not in exported["mining"]
    assert "pgkd_trainer_promotions_total" in exported["trainer"]
    assert not any("pgkd_trainer_" in text for s, text in exported.items() if s != "trainer")
    assert (
        "pgkd_teacher_calls_total" in exported["mining"] and "pgkd_teacher_calls" not in exported["serving"]
    )
    for text in exported.values():  # every service: its health, lag and dead letters, and its process
        assert "pgkd_dead_letters_total" in text or "# TYPE pgkd_dead_letters counter" in text
        assert "process_resident_memory_bytes" in text


def test_no_metric_is_left_on_the_global_registry():
    from prometheus_client import REGISTRY

    from streams import metrics  # noqa: F401 - importing it must register nothing globally

    names = {m.name for m in REGISTRY.collect()}
    assert not {n for n in names if n.startswith("pgkd_")}, names


def test_lower_priority_makes_the_process_nicer_by_the_increment_and_zero_leaves_it():
    # In a child: niceness cannot be raised back, and the test process must keep its own.
    import multiprocessing

    def measure(increment: int, out: multiprocessing.Queue) -> None:
        before = os.nice(0)
        out.put((before, runtime.lower_priority(increment)))

    ctx = multiprocessing.get_context("fork")
    for increment in (0, 7):
        out = ctx.Queue()
        child = ctx.Process(target=measure, args=(increment, out))
        child.start()
        before, after = out.get(timeout=30)
        child.join(timeout=30)
        assert after == min(19, before + increment)
