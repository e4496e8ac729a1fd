"""One retrain round without a broker: the pool, the candidate, the judge, and the registry's records."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from pgkd.continual import Guidance
from pgkd.data import Example, Splits
from pgkd.distill import fingerprint
from pgkd.evaluation import ScoredExample, evaluate
from pgkd.model_record import ModelRecord
from pgkd.promotion import Candidate, PromotionRule
from pgkd.registry import ModelRegistry
from pgkd.retrain_round import (
    RoundJudge,
    TrainingPool,
    make_current,
    promotion_record,
    store_candidate,
    train_candidate,
    turned_down,
)
from pgkd.samples import Sample
from pgkd.student import Student
from pgkd.training import FitResult, TrainConfig
from tests.conftest import TOPICS, topic_examples

LABELS = sorted(TOPICS)
# Thirty validation texts, ten per class.
VALIDATION = [(f"text {i}", LABELS[i % 3]) for i in range(30)]


def splits(examples: list[Example] | None = None) -> Splits:
    examples = examples or topic_examples(10)
    return Splits(
        name="topics",
        labels=tuple(LABELS),
        train=tuple(examples[:15]),
        validation=tuple(examples[15:24]),
        test=tuple(examples[24:]),
        traffic=(),
        seed=0,
    )


def scored(wrong: int, first: int = 0) -> tuple[ScoredExample, ...]:
    """Verdicts on VALIDATION with ``wrong`` of them mistaken, from the ``first``."""
    rows = []
    for i, (text, label) in enumerate(VALIDATION):
        predicted = LABELS[(LABELS.index(label) + 1) % 3] if first <= i < first + wrong else label
        rows.append(ScoredExample(text, label, predicted, 0.9))
    return tuple(rows)


def candidate(wrong: int, student: Any = None, first: int = 0) -> Candidate:
    """A candidate with ``wrong`` validation mistakes (its student only matters when published)."""
    rows = scored(wrong, first)
    report = evaluate(LABELS, [r.label for r in rows], [r.predicted for r in rows])
    fit = FitResult(epochs=3, best_epoch=2, best_validation_loss=0.4, seconds=1.5, history=[])
    return Candidate(cast(Student, student), report, list(rows), None, fit)


def current(wrong: int, version: str = "v0001") -> tuple[ModelRecord, dict[str, Any]]:
    """The current model's record and its stored guidance, with ``wrong`` validation mistakes."""
    rows = scored(wrong)
    report = evaluate(LABELS, [r.label for r in rows], [r.predicted for r in rows])
    record = ModelRecord(version, "memory://x", "0" * 64, 0.0, metrics={"validation": report.summary()})
    return record, Guidance(report, rows).to_dict()


def sample(text: str, label: str = "sport", source: Any = "feedback") -> Sample:
    return Sample.of(text, label, source)


# -- the pool -------------------------------------------------------------------------------------


def test_pool_checks_label_key_and_held_out_texts():
    s = splits()
    pool = TrainingPool.of(s)
    assert pool.check(sample("a brand new text")) is None
    assert pool.check(sample("a brand new text", label="weather")) == "unknown_label"
    assert pool.check(sample("a brand new text").model_copy(update={"key": "x"})) == "bad_key"
    for held_out in (s.validation[0], s.test[0]):
        assert pool.check(sample(held_out.text, held_out.label)) == "held_out_text"


def test_pool_selects_no_held_out_text_and_no_distrusted_teacher_sample():
    s = splits()
    pool = TrainingPool.of(s)
    truth, generated, labelled = (
        sample("truth"),
        sample("generated", source="teacher_generated"),
        sample("labelled", source="teacher_labelled"),
    )
    stored = [truth, generated, labelled, sample(s.validation[0].text, s.validation[0].label)]
    assert pool.select(stored, teacher_trusted=True) == ([truth, generated, labelled], 0)
    assert pool.select(stored, teacher_trusted=False) == ([truth], 2)


# -- the candidate --------------------------------------------------------------------------------


def test_train_candidate_trains_on_seed_plus_samples_and_records_its_data(tiny_encoder):
    s = splits(topic_examples(12))
    base = Student.create(LABELS, tiny_encoder)
    extra = [sample("the goal and the match news about the cup"), sample("the chip online", "tech")]
    lineage = {"dataset": "topics"}
    made = train_candidate(
        base, None, s, extra, TrainConfig(mode="head", max_epochs=5), calibrated=False, lineage=lineage
    )
    assert made.student.metadata.data_fingerprint == fingerprint([*s.train, *(e.example for e in extra)])
    assert made.student.metadata.data == lineage
    assert len(made.scored) == len(s.validation) and made.test is not None


def test_train_candidate_warm_starts_only_a_full_fine_tune_with_a_model_to_continue(monkeypatch):
    calls: list[dict[str, Any]] = []

    def fake_retrain(base, current, train, validation, config, **options):
        calls.append({"epochs": config.max_epochs, "train": len(train), **options})
        return SimpleNamespace(student=SimpleNamespace(metadata=SimpleNamespace()))

    monkeypatch.setattr("pgkd.retrain_round.retrain", fake_retrain)
    s = splits()
    base, previous = (cast(Student, SimpleNamespace(labels=s.labels)) for _ in range(2))
    smaller = cast(Student, SimpleNamespace(labels=s.labels[:-1]))  # before an operator added a class
    full, head = TrainConfig(mode="full", max_epochs=20), TrainConfig(mode="head", max_epochs=20)
    train_candidate(base, previous, s, [sample("x")], full, warm_start=True, warm_epochs=2)
    train_candidate(base, None, s, [], full, warm_start=True, warm_epochs=2)
    train_candidate(base, previous, s, [], head, warm_start=True, warm_epochs=2)
    train_candidate(base, smaller, s, [], full, warm_start=True, warm_epochs=2)
    assert [(c["warm_start"], c["epochs"]) for c in calls] == [
        (True, 2),
        (False, 20),
        (False, 20),
        (False, 20),
    ]
    assert calls[0]["train"] == len(s.train) + 1


# -- the judge ------------------------------------------------------------------------------------


def judge(**rule: Any) -> RoundJudge:
    return RoundJudge(PromotionRule(**rule), LABELS, seed_size=100, seed=0)


def test_difference_pairs_the_candidate_with_the_current_models_verdicts():
    new, (_, guidance) = candidate(wrong=0), current(wrong=6)
    difference = judge().difference(new, guidance)
    assert difference is not None and difference.delta == pytest.approx(
        1.0 - current(6)[0].metric("macro_f1")
    )
    assert judge().difference(new, None) is None
    other = Guidance.from_dict(guidance)
    moved = [ScoredExample(f"other {s.text}", s.label, s.predicted, s.confidence) for s in other.scored]
    assert judge().difference(new, Guidance(other.report, tuple(moved)).to_dict()) is None


def test_first_model_is_promoted_and_its_outcome_recorded():
    trained = [sample("a"), sample("b", source="teacher_generated")]
    judged = judge().decide(
        candidate(3), None, None, None, samples=trained, teacher=(True, "not judged yet"), now=12.0
    )
    assert judged.decision.promote and judged.decision.check == "first"
    assert judged.train_size == 102 and judged.current_validation is None
    assert judged.outcome() == {
        "ts": 12.0,
        "promoted": True,
        "reason": "no current model",
        "candidate": judged.decision.candidate,
        "current": None,
        "current_version": None,
        "train_size": 102,
        "samples": 2,
        "teacher_gate": "not judged yet",
        "teacher_trusted": True,
        "macro_f1_difference": None,
    }
    assert judged.outcome("v0001")["version"] == "v0001"
    detail = ("samples", "train_size", "teacher_gate", "teacher_trusted", "macro_f1_difference")
    assert judged.detail() == {k: judged.outcome()[k] for k in detail}


def test_a_worse_candidate_is_rejected_with_the_paired_difference_in_its_outcome():
    record, guidance = current(wrong=0, version="v0004")
    judged = judge().decide(
        candidate(6), record, guidance, None, samples=[], teacher=(False, "gate"), now=1.0
    )
    assert not judged.decision.promote and judged.decision.check == "metric"
    outcome = judged.outcome()
    assert outcome["current_version"] == "v0004" and outcome["current"] == pytest.approx(1.0)
    difference = outcome["macro_f1_difference"]
    assert difference["delta"] < 0 and difference["low"] <= difference["delta"] <= difference["high"]
    assert difference["minimum_detectable"] == pytest.approx((difference["high"] - difference["low"]) / 2)
    assert judged.current_validation == record.metrics["validation"]


def test_an_operators_hold_turns_a_promotion_down_but_leaves_a_rejection_as_it_was():
    record, guidance = current(wrong=6)
    hold = {"reason": "rollback to v0001", "ts": 0.0}
    better = judge().decide(candidate(0), record, guidance, hold, samples=[], teacher=(True, ""), now=0.0)
    assert not better.decision.promote and better.decision.check == "held"
    assert better.decision.reason == "held: rollback to v0001"
    worse = judge().decide(candidate(9), record, guidance, hold, samples=[], teacher=(True, ""), now=0.0)
    assert worse.decision.check == "metric"
    # A hold that came in while the candidate was stored, then vanished: a reason all the same.
    promoted = judge().decide(candidate(0), record, guidance, None, samples=[], teacher=(True, ""), now=5.0)
    late = promoted.turned_down(None)
    assert late.outcome() == {**promoted.outcome(), "promoted": False, "reason": "held: an operator hold"}
    assert late.decision == turned_down(promoted.decision, None) and late.decision.check == "held"


def test_an_uncertain_lift_is_not_promoted():
    record, guidance = current(wrong=4)
    # Three mistakes where the current model made none: a lift of one text that luck could explain.
    lucky = candidate(3, first=10)
    judged = judge(confidence=0.9).decide(
        lucky, record, guidance, None, samples=[], teacher=(True, ""), now=0.0
    )
    assert not judged.decision.promote and judged.decision.check == "uncertain"
    assert (
        judge()
        .decide(lucky, record, guidance, None, samples=[], teacher=(True, ""), now=0.0)
        .decision.promote
    )


# -- the registry ---------------------------------------------------------------------------------


def test_publish_make_current_and_the_promotion_record(tmp_path, tiny_encoder):
    registry = ModelRegistry(tmp_path / "registry")
    usage = {"calls": 10.0, "tokens": 900.0, "cost": 0.5}
    first = candidate(3, Student.create(LABELS, tiny_encoder))
    seed = store_candidate(
        registry, first, reason="seed", parent=None, samples=[], seed_size=15, teacher="sim", usage=usage
    )
    assert make_current(registry, seed, None) is None and registry.current().version == seed.version
    assert seed.metrics["teacher"] == "sim" and seed.metrics["epochs"] == 3 and seed.train_size == 15

    trained = [sample("a"), sample("b", source="teacher_generated"), sample("c", source="teacher_generated")]
    more = {"calls": 25.0, "tokens": 2000.0, "cost": 1.25}
    second = candidate(0, first.student.clone())
    record = store_candidate(
        registry,
        second,
        reason="better",
        parent=seed,
        samples=trained,
        seed_size=15,
        teacher="sim",
        usage=more,
    )
    assert record.parent_version == seed.version and record.train_size == 18
    assert record.samples_by_source == {"feedback": 1, "teacher_generated": 2}
    assert record.teacher_cost_since_parent == pytest.approx(0.75) and record.teacher_calls_since_parent == 15
    assert Guidance.from_dict(registry.guidance(record.version)) == second.guidance

    registry.hold("a rollback")
    assert make_current(registry, record, seed)["reason"] == "a rollback"
    assert registry.current().version == seed.version
    registry.release()
    assert make_current(registry, record, seed) is None and registry.current().version == record.version

    made = promotion_record(
        record, reason="better", parent=seed, metric="macro_f1", now=3.0, detail={"samples": 3}
    )
    assert made == {
        "ts": 3.0,
        "promoted": True,
        "reason": "better",
        "version": record.version,
        "candidate": 1.0,
        "current_version": seed.version,
        "samples": 3,
    }
