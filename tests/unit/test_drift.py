"""The drift monitor on synthetic traffic: quiet when nothing changes, and what it names when it does."""

from __future__ import annotations

import random

import pytest

from pgkd.drift import DriftConfig, DriftMonitor

LABELS = ["business", "politics", "sport", "tech", "entertainment"]


def traffic(rng, n, mix, confidence=(8, 2), accuracy=None, out_of_taxonomy=0.03):
    """n requests of classes drawn from ``mix``: (gold, predicted, confidence, out of taxonomy)."""
    accuracy = accuracy or {}
    for _ in range(n):
        gold = rng.choices(LABELS, weights=mix)[0]
        right = rng.random() < accuracy.get(gold, 0.85)
        predicted = gold if right else rng.choice([c for c in LABELS if c != gold])
        yield gold, predicted, rng.betavariate(*confidence), rng.random() < out_of_taxonomy


def feed(monitor, rng, stream, version="v1", feedback=0.4, every=50):
    """Feeds the stream, checking every ``every`` predictions; returns (index, drift) of each raised."""
    raised = []
    for i, (gold, predicted, confidence, outside) in enumerate(stream, start=1):
        monitor.observe(version, predicted, confidence, outside)
        if rng.random() < feedback:
            monitor.judge(version, gold, gold == predicted)
        if i % every == 0 and (drift := monitor.check()) is not None:
            raised.append((i, drift))
    return raised


def test_stationary_traffic_raises_nothing():
    rng = random.Random(0)
    monitor = DriftMonitor(DriftConfig(window=400, cooldown=400))
    assert feed(monitor, rng, traffic(rng, 8000, [3, 2, 3, 1, 1])) == []


def test_a_shift_in_mix_confidence_and_accuracy_is_raised_soon_with_the_classes_that_moved():
    rng = random.Random(1)
    monitor = DriftMonitor(DriftConfig(window=400, cooldown=400))
    before = feed(monitor, rng, traffic(rng, 2000, [3, 2, 3, 1, 1]))
    # Halfway: tech takes over, the student is less sure of everything and often wrong on tech.
    after = traffic(rng, 2000, [1, 1, 1, 6, 1], confidence=(4, 3), accuracy={"tech": 0.4})
    raised = feed(monitor, rng, after)
    assert before == [] and raised
    delay, drift = raised[0]
    assert delay <= 600, f"raised {delay} predictions after the shift"
    assert "confidence" in drift.signals and drift.model_version == "v1"
    # Once the new traffic fills a window, what moved is named: the mix, and tech.
    named = [(i, d) for i, d in raised if "class_mix" in d.signals]
    assert named and named[0][0] <= 1200 and "tech" in named[0][1].signals["class_mix"]
    assert "tech" in named[0][1].classes


def test_a_class_whose_accuracy_falls_is_named():
    rng = random.Random(2)
    monitor = DriftMonitor(DriftConfig(window=400, cooldown=400, min_feedback=15))
    feed(monitor, rng, traffic(rng, 1200, [1, 1, 1, 1, 1]), feedback=0.8)
    raised = feed(monitor, rng, traffic(rng, 1200, [1, 1, 1, 1, 1], accuracy={"sport": 0.3}), feedback=0.8)
    assert raised and "accuracy" in raised[0][1].signals and raised[0][1].classes == ["sport"]


def test_a_new_model_version_starts_its_own_reference_and_the_cooldown_holds():
    rng = random.Random(3)
    monitor = DriftMonitor(DriftConfig(window=200, cooldown=1000))
    feed(monitor, rng, traffic(rng, 600, [5, 1, 1, 1, 1]))
    first = feed(monitor, rng, traffic(rng, 600, [1, 1, 1, 1, 5]))
    assert len(first) == 1, "one event per drift, then the cooldown"
    # A new version: its first window is its reference, whatever came before.
    assert feed(monitor, rng, traffic(rng, 800, [1, 1, 1, 1, 5]), version="v2") == []


def test_config_is_checked():
    with pytest.raises(ValueError, match="window >= 20"):
        DriftConfig(window=5)
