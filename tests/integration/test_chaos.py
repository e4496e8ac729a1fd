"""Every consumer SIGKILLed at a random point of a replay of several thousand requests and
restarted: every request is answered (few of them twice), the trainer holds exactly the distinct
samples that were published, and every service is healthy again without anyone touching it.

The kill points come from a seed (``PGKD_CHAOS_SEED``, random by default) that a failure reports,
so a failing schedule can be replayed.
"""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
from kafka import TopicPartition

from pgkd.runner import load_splits
from pgkd.samples import SampleStore, sample_key
from producers.replay import Replayer, ReplayReport
from streams import connect
from streams.events import EventDecodeError, Sample, decode
from streams.stack import EmbeddedStack
from streams.topics import Topics
from tests.integration.live import BUSY, answered, live_settings

pytestmark = pytest.mark.slow

REQUESTS = 3000


def published_sample_keys(settings, topic: str, labels: frozenset[str], held_out: set[str]) -> set[str]:
    """Distinct keys of the samples on ``topic`` that a trainer accepts (known label, honest key,
    not a validation or test text)."""
    consumer = connect.consumer(settings, group=None)
    try:
        keys: set[str] = set()
        for p in sorted(consumer.partitions_for_topic(topic) or {0}):
            tp = TopicPartition(topic, p)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            for record in connect.read_to_end(consumer, tp):
                try:
                    s = decode(Sample, record.value)
                except EventDecodeError:
                    continue
                if s.label in labels and s.key == sample_key(s.text) and s.key not in held_out:
                    keys.add(s.key)
        return keys
    finally:
        consumer.close()


def test_each_consumer_killed_at_a_random_point_loses_nothing(broker, redis_url, namespace, tmp_path, kafka):
    seed = int(os.environ.get("PGKD_CHAOS_SEED", random.SystemRandom().randrange(10**6)))
    rng = random.Random(seed)
    settings = live_settings(
        broker,
        redis_url,
        namespace,
        tmp_path,
        **BUSY,
        generate_every_seconds=5.0,
        retrain_every_samples=10,
        retrain_every_seconds=15.0,
    )
    topics = Topics(namespace)
    splits = load_splits(settings)
    traffic = list(splits.traffic)
    examples = (traffic * (REQUESTS // len(traffic) + 1))[:REQUESTS]
    # Each consumer dies once, at a random share of the replay, and comes back after a random pause.
    schedule = sorted(
        (rng.uniform(0.1, 0.8) * REQUESTS, service, rng.uniform(0.0, 3.0))
        for service in ("serving", "mining", "trainer")
    )
    kills = [(int(a), s, round(p, 1)) for a, s, p in schedule]
    context = f"chaos seed {seed}, kills (answered, service, pause s): {kills}"
    with EmbeddedStack(settings, tmp_path / "stack") as stack:
        stack.wait_healthy(timeout=300)
        report = ReplayReport()
        replayer = Replayer(
            kafka.producer(stack.settings),
            topics,
            feedback_fraction=0.3,
            feedback_delay=1.0,
            id_prefix="chaos",
        )
        thread = threading.Thread(
            target=replayer.run, args=(examples,), kwargs={"report": report}, daemon=True
        )
        thread.start()
        predictions = kafka.reader(stack.settings, topics.predictions)
        for at, service, pause in schedule:
            predictions.until(lambda rs, at=at: len(rs) >= at, 600, f"{int(at)} predictions ({context})")
            stack.kill("serving-0" if service == "serving" else service)
            time.sleep(pause)
            stack.start_service(service, 0)
        thread.join(600)
        assert not thread.is_alive(), f"the replay did not finish ({context})"
        records = predictions.until(
            lambda rs: set(report.ids) <= set(answered(rs)), 900, f"every request answered ({context})"
        )
        stack.wait_healthy(timeout=300)
        assert len(set(report.ids)) == REQUESTS
        # At-least-once: what serving answered after its last commit (every second) before the kill
        # is answered again, far fewer than all it had answered by then, since commits kept up.
        duplicates = sum(len(ps) - 1 for ps in answered(records).values())
        killed_serving_at = next(at for at, service, _ in schedule if service == "serving")
        assert duplicates < killed_serving_at, f"{duplicates} answered twice ({context})"

        # Samples: stop mining so the topic stops growing, then the trainer must hold exactly the
        # distinct acceptable samples on it: none lost by a kill, none counted twice by a replay.
        stack.services["mining"].stop()
        held_out = {sample_key(e.text) for e in (*splits.validation, *splits.test)}
        expected = published_sample_keys(stack.settings, topics.samples, frozenset(splits.labels), held_out)
        assert expected, f"the replay produced no samples, so nothing was tested ({context})"
        store = SampleStore(connect.redis_client(stack.settings), namespace=namespace)
        deadline = time.monotonic() + 300
        while set(s.key for s in store.all()) != expected and time.monotonic() < deadline:
            time.sleep(1.0)
        assert {s.key for s in store.all()} == expected, context
        assert all(stack.services[k].alive for k in ("serving-0", "feedback", "trainer")), context
