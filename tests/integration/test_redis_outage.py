"""Redis goes away and comes back: serving keeps answering (Redis is not on its hot path), the
join and the trainer say on /healthz that they cannot work, hold their batches, and recover by
themselves when Redis is back; no feedback is lost."""

from __future__ import annotations

import time

import pytest

from pgkd.runner import load_splits
from producers.replay import Replayer
from streams.children import start_redis
from streams.stack import EmbeddedStack
from streams.topics import Topics
from tests.integration.live import answered, live_settings, metric

pytestmark = pytest.mark.slow


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_serving_survives_a_redis_outage_and_the_rest_recovers(broker, namespace, tmp_path, kafka):
    data = tmp_path / "redis-data"
    redis_server, url = start_redis(data, tmp_path / "redis.log")
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    settings = live_settings(broker, url, namespace, tmp_path, retrain_every_samples=1000)
    topics = Topics(namespace)
    try:
        with EmbeddedStack(
            settings, tmp_path / "stack", services=("trainer", "serving", "feedback")
        ) as stack:
            stack.wait_healthy(timeout=300)
            traffic = list(load_splits(settings).traffic)
            replay = Replayer(
                kafka.producer(stack.settings), topics, feedback_fraction=1.0, feedback_delay=0.2
            )
            predictions = kafka.reader(stack.settings, topics.predictions)
            join, trainer = stack.services["feedback"], stack.services["trainer"]

            before = replay.run(traffic[:60])
            predictions.until(
                lambda rs: set(before.ids) <= set(answered(rs)), 120, "answers before the outage"
            )
            wait_until(lambda: metric(join.metrics_port, "pgkd_feedback_joined_total") >= 60, 60, "joins")

            redis_server.stop(grace=2)
            during = replay.run(traffic[60:120])
            predictions.until(
                lambda rs: set(during.ids) <= set(answered(rs)), 120, "answers during the outage"
            )
            wait_until(lambda: (join.health() or {}).get("ok") is False, 60, "the join to report Redis down")
            wait_until(lambda: (trainer.health() or {}).get("ok") is False, 60, "the trainer to report it")
            wait_until(  # the gauge follows /healthz every two seconds
                lambda: metric(join.metrics_port, "pgkd_service_up", service="feedback") == 0,
                10,
                "service_up 0",
            )
            assert stack.services["serving-0"].health()["ok"]
            time.sleep(15)  # a real outage: the services go through several retries with backoff
            assert stack.services["serving-0"].health()["ok"] and join.health()["ok"] is False

            redis_server, _ = start_redis(data, tmp_path / "redis.log", port=port)
            wait_until(lambda: (join.health() or {}).get("ok") is True, 120, "the join to recover")
            wait_until(lambda: (trainer.health() or {}).get("ok") is True, 120, "the trainer to recover")
            # The feedback held during the outage is joined now: nothing was lost.
            wait_until(
                lambda: metric(join.metrics_port, "pgkd_feedback_joined_total") >= 120, 120, "held joins"
            )
            assert all(child.alive for child in stack.services.values())
    finally:
        redis_server.stop(grace=2)
