"""The paired bootstrap of a macro-F1 difference, and the promotion rule that uses it."""

import random

import pytest
from sklearn.metrics import f1_score

from pgkd.bootstrap import macro_f1_difference
from pgkd.promotion import PromotionRule

LABELS = [f"c{i}" for i in range(10)]


def noisy(gold, accuracy, seed):
    rng = random.Random(seed)
    return [g if rng.random() < accuracy else rng.choice(LABELS) for g in gold]


def test_difference_matches_scikit_learn_and_brackets_it():
    gold = [LABELS[i % 10] for i in range(200)]
    new, old = noisy(gold, 0.8, 1), noisy(gold, 0.6, 2)
    d = macro_f1_difference(LABELS, gold, new, old)
    expected = f1_score(gold, new, labels=LABELS, average="macro", zero_division=0) - f1_score(
        gold, old, labels=LABELS, average="macro", zero_division=0
    )
    assert d.delta == pytest.approx(expected)
    assert d.low < d.delta < d.high and d.low > 0  # 20 points on 200 texts is no luck


def test_a_small_lift_on_200_texts_is_not_sure_and_the_interval_is_seeded():
    gold = [LABELS[i % 10] for i in range(200)]
    new, old = noisy(gold, 0.62, 3), noisy(gold, 0.60, 4)
    d = macro_f1_difference(LABELS, gold, new, old)
    assert d.low < 0 < d.high
    # Two points of lift on 200 texts is under what this set can tell from zero.
    assert d.minimum_detectable == pytest.approx((d.high - d.low) / 2) and d.minimum_detectable > abs(d.delta)
    assert macro_f1_difference(LABELS, gold, new, old) == d
    assert macro_f1_difference(LABELS, gold, new, new).delta == 0
    with pytest.raises(ValueError, match="aligned"):
        macro_f1_difference(LABELS, gold, new[:10], old)


def test_promotion_with_confidence_refuses_a_lift_luck_could_explain():
    gold = [LABELS[i % 10] for i in range(200)]
    new, old = noisy(gold, 0.62, 3), noisy(gold, 0.60, 4)
    d = macro_f1_difference(LABELS, gold, new, old)
    candidate, current = {"macro_f1": 0.61 + max(d.delta, 0.01)}, {"macro_f1": 0.61}
    assert PromotionRule().decide(candidate, current, d).promote  # the plain rule: no drop is enough
    decision = PromotionRule(confidence=0.9).decide(candidate, current, d)
    assert not decision.promote and decision.check == "uncertain" and "CI" in decision.reason
    sure = macro_f1_difference(LABELS, gold, noisy(gold, 0.9, 5), old)
    assert PromotionRule(confidence=0.9).decide({"macro_f1": 0.9}, current, sure).promote
    with pytest.raises(ValueError, match="confidence"):
        PromotionRule(confidence=1.0)
