"""Drift on the live system: a replay whose class mix and vocabulary shift halfway, through the real
broker and Redis; the feedback join raises a drift event naming what moved, and mining answers it
with a generation aimed at those classes. Nothing is lost on the way."""

from __future__ import annotations

import json
import random
import time

import pytest

from pgkd.data import Example
from pgkd.datasets import load_corpus
from pgkd.runner import load_splits
from producers.replay import Replayer, ReplayReport
from streams.events import DriftEvent, decode
from streams.stack import EmbeddedStack
from streams.topics import Topics
from tests.integration.live import answered, live_settings, metric

pytestmark = pytest.mark.slow


def test_a_shift_halfway_raises_drift_and_a_targeted_generation_with_nothing_lost(
    broker, redis_url, namespace, tmp_path, kafka
):
    settings = live_settings(
        broker,
        redis_url,
        namespace,
        tmp_path,
        drift_window=150,
        drift_cooldown=150,
        drift_min_feedback=10,
        min_hard=1000,  # no generation from the hard-negative window: only drift asks for one
        generate_every_seconds=3600.0,
        retrain_every_samples=1000,
        retrain_every_seconds=3600.0,
    )
    topics = Topics(namespace)
    splits = load_splits(settings)
    rng = random.Random(0)
    pool = list(splits.traffic)
    # Before: business, politics and sport. After: tech and entertainment, and computing-dictionary
    # paragraphs (a vocabulary the news taxonomy never saw, sent without ground truth).
    before = [e for e in pool if e.label in ("business", "politics", "sport")][:300]
    after = [e for e in pool if e.label in ("tech", "entertainment")][:200]
    foreign = [Example(e.text[:300], "tech") for e in rng.sample(load_corpus("foldoc").examples, 100)]
    shifted = after + foreign
    rng.shuffle(shifted)
    with EmbeddedStack(
        settings, tmp_path / "stack", services=("trainer", "serving", "feedback", "mining")
    ) as stack:
        stack.wait_healthy(timeout=600)
        producer = kafka.producer(stack.settings)
        report = ReplayReport()
        Replayer(
            producer, topics, rate=40, feedback_fraction=0.6, feedback_delay=0.5, id_prefix="before"
        ).run(before, report=report)
        shift_at = len(report.ids)
        outside = {e.text for e in foreign}
        replayer = Replayer(
            producer, topics, rate=40, feedback_fraction=0.6, feedback_delay=0.5, id_prefix="after"
        )
        sent_after = ReplayReport()
        replayer.run([e for e in shifted if e.text not in outside], report=sent_after)
        # The dictionary paragraphs have no ground truth to give.
        Replayer(producer, topics, rate=40, feedback_fraction=0.0, id_prefix="foreign").run(
            [e for e in shifted if e.text in outside], report=sent_after
        )
        ids = report.ids + sent_after.ids
        predictions = kafka.reader(stack.settings, topics.predictions).until(
            lambda rs: set(ids) <= set(answered(rs)), timeout=300, what="every request answered"
        )
        assert set(answered(predictions)) >= set(ids), "a request was lost"

        drifts = [
            decode(DriftEvent, r.value)
            for r in kafka.reader(stack.settings, topics.drift).until(
                lambda rs: len(rs) >= 1, timeout=120, what="a drift event"
            )
        ]
        first = drifts[0]
        assert first.predictions > shift_at, f"drift raised before the shift: {first}"
        assert set(first.signals) & {"class_mix", "out_of_taxonomy", "confidence", "accuracy"}
        moved = {c for d in drifts for c in d.classes}
        assert moved & {"tech", "entertainment", "business", "politics", "sport"}, drifts
        print(
            json.dumps(
                {
                    "shift_at": shift_at,
                    "raised_at": first.predictions,
                    "delay": first.predictions - shift_at,
                    "signals": first.signals,
                    "classes": first.classes,
                }
            )
        )

        mining = stack.services["mining"].metrics_port
        deadline = time.monotonic() + 300
        while metric(mining, "pgkd_teacher_calls_total", operation="generate") < 1:
            assert time.monotonic() < deadline, "mining never answered the drift with a generation"
            time.sleep(2)
        assert metric(mining, "pgkd_mining_drift_events_total") >= 1
        feedback = stack.services["feedback"].metrics_port
        assert sum(metric(feedback, "pgkd_drift_events_total", signal=s) for s in first.signals) >= 1
