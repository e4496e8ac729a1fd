"""Soak: several minutes of traffic near the measured peak with retrains and hot-swaps in the
middle. The serving worker's memory stays bounded across swaps, its lag drains once the traffic
stops, and every request is answered."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pgkd.runner import load_splits
from producers.replay import Replayer, ReplayReport
from streams.stack import EmbeddedStack
from streams.topics import Topics
from tests.integration.live import BUSY, answered, live_settings, metric
from tests.integration.test_redis_outage import wait_until

pytestmark = pytest.mark.slow

SOAK_SECONDS = 120  # at least this long under load (benchmarks/soak.py runs 30 minutes)
SOAK_MAX_SECONDS = 420  # and on until the second hot-swap: a retrain's time under load varies run to run
BURST = 600
RATE_SHARE = 0.7  # of the peak measured with the whole stack running: sustainable, not idle


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_soak_with_swaps_keeps_memory_bounded_drains_lag_and_loses_nothing(
    broker, redis_url, namespace, tmp_path, kafka
):
    settings = live_settings(
        broker,
        redis_url,
        namespace,
        tmp_path,
        **BUSY,
        generate_every_seconds=10.0,
        retrain_every_samples=10_000,
        retrain_every_seconds=45.0,
        promotion_min_delta=-1.0,  # every retrain is promoted: the soak is about swaps, not quality
        promotion_max_class_drop=1.0,
        # At its default priority the trainer yields the cores to serving, and at 70% of the peak a
        # retrain took minutes (one swap in 180 s): the soak wants swaps under load, so no yielding.
        trainer_nice=0,
    )
    topics = Topics(namespace)
    with EmbeddedStack(settings, tmp_path / "stack") as stack:
        stack.wait_healthy(timeout=300)
        traffic = list(load_splits(settings).traffic)
        serving = stack.services["serving-0"]
        predictions = kafka.reader(stack.settings, topics.predictions)
        producer = kafka.producer(stack.settings)

        # Peak: a burst as fast as the producer goes, timed from first to last answer.
        burst = Replayer(producer, topics, feedback_fraction=0.0, id_prefix="burst").run(traffic[:BURST])
        predictions.until(lambda rs: len(rs) >= 1, 120, "a first answer")
        started = time.monotonic()
        predictions.until(lambda rs: set(burst.ids) <= set(answered(rs)), 300, "the burst answered")
        peak = BURST / (time.monotonic() - started)
        rate = RATE_SHARE * peak

        report = ReplayReport()
        stop = threading.Event()
        replayer = Replayer(
            producer, topics, rate=rate, feedback_fraction=0.3, feedback_delay=1.0, id_prefix="soak"
        )
        thread = threading.Thread(
            target=replayer.run, args=(traffic * 50,), kwargs={"stop": stop, "report": report}, daemon=True
        )
        thread.start()
        assert serving.proc is not None
        swaps_before = metric(serving.metrics_port, "pgkd_serving_swaps_total", result="swapped")
        samples: list[tuple[float, float, float]] = []  # (t, rss MB, swaps so far)
        began = time.monotonic()
        # CI once saw the second swap land after 180 s (first at ~105 s): the soak is about swaps under
        # load, so it waits for them rather than betting a fixed window holds two retrains.
        while time.monotonic() - began < SOAK_SECONDS or (
            samples[-1][2] < 2 and time.monotonic() - began < SOAK_MAX_SECONDS
        ):
            time.sleep(5)
            predictions.poll()
            samples.append(
                (
                    time.monotonic() - began,
                    rss_mb(serving.proc.pid),
                    metric(serving.metrics_port, "pgkd_serving_swaps_total", result="swapped") - swaps_before,
                )
            )
        stop.set()
        thread.join(120)

        swaps = samples[-1][2]
        trace = [(round(m), int(s)) for _, m, s in samples]
        summary = f"peak {peak:.0f}/s, soak at {rate:.0f}/s, rss MB/swaps: {trace}"
        assert swaps >= 2, f"fewer than two hot-swaps during the soak: {summary}"
        predictions.until(
            lambda rs: set(report.ids) <= set(answered(rs)), 300, f"every soak request answered ({summary})"
        )
        assert len(report.ids) > rate * samples[-1][0] * 0.8, summary
        wait_until(
            lambda: (
                metric(serving.metrics_port, "pgkd_consumer_lag", service="serving", topic=topics.requests)
                == 0
            ),
            120,
            f"serving lag to drain ({summary})",
        )
        # Memory: after the first swap (two models briefly coexist), later swaps add nothing lasting.
        after_first = [m for _, m, s in samples if s >= 1]
        assert max(after_first[len(after_first) // 2 :]) <= max(after_first[: len(after_first) // 2]) + 100, (
            summary
        )
        assert serving.alive and serving.health()["ok"]
