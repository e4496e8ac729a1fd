"""The live loop's decisions: hard window, schedule, promotion, retraining."""

from __future__ import annotations

import time

import pytest

from pgkd.continual import Guidance, HardWindow, LiveQuality
from pgkd.evaluation import ScoredExample, evaluate
from pgkd.promotion import PromotionRule, RetrainSchedule, retrain
from pgkd.student import Student
from pgkd.training import TrainConfig
from tests.conftest import TOPICS, topic_examples

LABELS = sorted(TOPICS)


def scored(text, label, predicted, confidence):
    return ScoredExample(text, label, predicted, confidence)


def guidance() -> Guidance:
    rows = [
        scored("match goal", "sport", "sport", 0.9),
        scored("shares profit", "business", "business", 0.8),
        scored("chip phone", "tech", "business", 0.95),
        scored("app online", "tech", "tech", 0.7),
        scored("bank deal", "business", "tech", 0.6),
    ]
    report = evaluate(LABELS, [r.label for r in rows], [r.predicted for r in rows])
    return Guidance(report, tuple(rows))


def test_guidance_round_trips_through_a_dict():
    g = guidance()
    back = Guidance.from_dict(g.to_dict())
    assert back == g
    assert back.report.per_class["tech"].support == 2


def test_hard_window_triggers_on_count_and_empties_most_confident_first():
    w = HardWindow(min_hard=3, every_seconds=3600)
    w.add(scored("a", "sport", "tech", 0.6), "r1")
    w.add(scored("b", "tech", "sport", 0.9), "r2")
    assert not w.ready()
    w.add(scored("c", "sport", "business", 0.7), "r3")
    assert w.ready() and w.counts() == {"sport": 2, "tech": 1}
    hard, ids = w.take()
    assert [h.text for h in hard] == ["b", "c", "a"] and ids == ["r2", "r3", "r1"]
    assert len(w) == 0 and not w.ready()


def test_hard_window_timer_needs_at_least_one_event_and_caps_each_class():
    w = HardWindow(min_hard=100, every_seconds=0.01, per_class=2)
    time.sleep(0.02)
    assert not w.ready()
    for i in range(5):
        w.add(scored(f"t{i}", "sport", "tech", 0.5), f"r{i}")
    assert len(w) == 2 and w.ready()


def test_hard_window_forgets_old_events():
    w = HardWindow(min_hard=1, max_age=0.01)
    w.add(scored("a", "sport", "tech", 0.6), "r1")
    time.sleep(0.02)
    assert len(w) == 0


def test_schedule_whichever_first_and_never_without_samples():
    s = RetrainSchedule(every_samples=10, every_seconds=60)
    assert not s.due(0, 1000)
    assert s.due(10, 0) and s.due(1, 60) and not s.due(9, 59)
    with pytest.raises(ValueError, match=r"every_samples must be >= 1 and every_seconds > 0, got 0,"):
        RetrainSchedule(every_samples=0)


def test_promotion_rule():
    rule = PromotionRule()
    assert rule.decide({"macro_f1": 0.5}, None).check == "first"
    same = rule.decide({"macro_f1": 0.80}, {"macro_f1": 0.80})
    assert same.promote and "0.8000 >= 0.8000" in same.reason
    drop = rule.decide({"macro_f1": 0.79}, {"macro_f1": 0.80})
    assert not drop.promote and drop.check == "metric"
    assert not PromotionRule(min_delta=0.01).decide({"macro_f1": 0.805}, {"macro_f1": 0.80}).promote
    strict = PromotionRule(max_class_drop=0.05)
    verdict = strict.decide(
        {"macro_f1": 0.9, "per_class_f1": {"a": 1.0, "b": 0.7}},
        {"macro_f1": 0.8, "per_class_f1": {"a": 0.6, "b": 0.8}},
    )
    assert not verdict.promote and verdict.check == "class_drop" and "'b'" in verdict.reason
    with pytest.raises(ValueError, match=r"metric must be 'macro_f1' or 'accuracy', got 'loss'"):
        PromotionRule(metric="loss")  # type: ignore[arg-type]


def test_live_quality_window():
    q = LiveQuality(window=3)
    assert q.accuracy() is None
    for gold, pred in [("a", "b"), ("a", "a"), ("b", "b"), ("b", "a")]:
        q.record(gold, pred)
    assert len(q) == 3 and q.accuracy() == pytest.approx(2 / 3)
    assert q.recall() == {"a": 1.0, "b": 0.5}


def test_retrain_scores_a_fresh_head_on_the_frozen_encoder(tiny_encoder):
    examples = topic_examples(30)
    train, validation, test = examples[:45], examples[45:70], examples[70:]
    base = Student.create(LABELS, tiny_encoder)
    config = TrainConfig(mode="head", max_epochs=30)
    first = retrain(base, None, train, validation, config, test=test)
    again = retrain(base, first.student, train, validation, config)
    assert first.test is not None and again.test is None
    assert len(first.scored) == len(validation)
    # Head mode does not depend on the previous model: the same data gives the same candidate.
    assert first.validation.macro_f1 == pytest.approx(again.validation.macro_f1)
    assert first.student is not base and base.metadata.version is None


def test_teacher_gate_trusts_until_judged_then_needs_to_beat_the_floor_and_the_student():
    from pgkd.feedback import TeacherAudit
    from pgkd.promotion import TeacherGate

    gate = TeacherGate(min_judged=20, min_accuracy=0.5)
    assert gate.decide(TeacherAudit(judged=19, teacher_correct=0))[0]  # too few to judge
    ok, reason = gate.decide(TeacherAudit(judged=40, teacher_correct=30, student_correct=12))
    assert ok and "0.750 on 40" in reason
    # above the floor but below the student on the same requests: its labels would teach errors
    ok, reason = gate.decide(TeacherAudit(judged=40, teacher_correct=24, student_correct=28))
    assert not ok and "< 0.700" in reason
    assert not gate.decide(TeacherAudit(judged=40, teacher_correct=16, student_correct=4))[0]
    with pytest.raises(ValueError, match="min_accuracy"):
        TeacherGate(min_accuracy=1.5)
