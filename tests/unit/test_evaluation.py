import numpy as np
import pytest

from pgkd.data import Example
from pgkd.evaluation import (
    ScoredExample,
    evaluate,
    hard_negatives,
    is_uncertain,
    sample_examples,
    score,
    target_classes,
    uncertainty,
)

LABELS = ["a", "b", "c"]


def test_evaluate_matches_hand_counts():
    r = evaluate(LABELS, ["a", "a", "b", "c"], ["a", "b", "b", "b"])
    assert r.accuracy == pytest.approx(0.5)
    assert r.per_class["a"].recall == pytest.approx(0.5)
    assert r.per_class["c"].f1 == 0.0
    assert r.per_class["b"].precision == pytest.approx(1 / 3)
    assert r.confusion == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert "precision" in r.text and "c" in r.text
    assert r.macro_f1 == pytest.approx(np.mean([r.per_class[c].f1 for c in LABELS]))


def test_evaluate_rejects_mismatched_lengths_and_empty():
    with pytest.raises(ValueError, match=r"gold has 1 labels but predicted has 2"):
        evaluate(LABELS, ["a"], ["a", "b"])
    with pytest.raises(ValueError, match=r"cannot evaluate on an empty set"):
        evaluate(LABELS, [], [])


def test_weakest_orders_by_f1():
    r = evaluate(LABELS, ["a", "a", "b", "c"], ["a", "a", "c", "c"])
    assert r.weakest(1) == ["b"]


def test_hard_negatives_are_the_most_confident_mistakes():
    scored = [
        ScoredExample("x1", "a", "b", 0.9),
        ScoredExample("x2", "a", "a", 0.99),
        ScoredExample("x3", "b", "c", 0.6),
        ScoredExample("x4", "c", "a", 0.95),
    ]
    hard = hard_negatives(scored, 2)
    assert [h.text for h in hard] == ["x4", "x1"]
    assert all(not h.correct for h in hard)


def test_sample_examples_is_seeded_and_filters():
    scored = score([Example(f"t{i}", "a") for i in range(50)], ["a"] * 25 + ["b"] * 25, [0.5] * 50)
    first = sample_examples(scored, 5, correct=False, seed=3)
    assert first == sample_examples(scored, 5, correct=False, seed=3)
    assert len(first) == 5 and all(not s.correct for s in first)
    assert len(sample_examples(scored, 100, correct=True)) == 25


def test_uncertainty_rules():
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    assert uncertainty(probs, "confidence") == pytest.approx([0.1, 0.6, 2 / 3])
    assert uncertainty(probs, "margin") == pytest.approx([0.15, 0.95, 1.0])
    ent = uncertainty(probs, "entropy")
    assert ent[2] == pytest.approx(1.0) and ent[0] < ent[1] < ent[2]
    assert is_uncertain(probs, 0.5).tolist() == [False, True, True]
    with pytest.raises(ValueError, match=r"unknown uncertainty rule 'nope'"):
        uncertainty(probs, "nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\], got 1\.5"):
        is_uncertain(probs, 1.5)


def test_target_classes_mixes_weakest_and_hard_negative_classes():
    r = evaluate(LABELS, ["a", "b", "b", "c", "c"], ["a", "a", "b", "c", "c"])
    hard = [ScoredExample("x", "c", "a", 0.99)]
    chosen = target_classes(r, hard, 2)
    assert chosen == ["b", "c"]
    assert target_classes(r, hard, 0) == []
    assert len(target_classes(r, [], 3)) == 3


def test_classes_absent_from_validation_are_not_targeted_first():
    r = evaluate(LABELS, ["a", "a", "b", "b"], ["a", "b", "b", "b"])  # "c" has no support
    assert r.per_class["c"].support == 0 and r.per_class["c"].f1 == 0.0
    assert r.weakest(3) == ["a", "b", "c"]
    assert target_classes(r, [], 1) == ["a"]
