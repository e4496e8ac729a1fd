"""A taxonomy grown at run time: the operator's class, the splits it grows, and how its model is judged."""

from __future__ import annotations

from typing import Any, cast

import pytest

from pgkd.continual import Guidance
from pgkd.data import Example, Splits
from pgkd.evaluation import ScoredExample, evaluate
from pgkd.model_record import ModelRecord
from pgkd.promotion import Candidate, GrowthRule, PromotionRule
from pgkd.retrain_round import RoundJudge, TrainingPool
from pgkd.samples import Sample
from pgkd.student import Student
from pgkd.taxonomy import NewClass, TaxonomyError, grown
from pgkd.training import FitResult

OLD = ("business", "sport")
WEATHER = [
    "Heavy rain is expected across the north on Tuesday",
    "A heatwave will push temperatures past 35C this weekend",
    "Snow closes mountain passes as the cold snap deepens",
    "Forecasters warn of gales along the west coast",
    "Morning fog will lift by noon, leaving a sunny afternoon",
    "Thunderstorms may bring hail and flash floods tonight",
    "A mild, dry week lies ahead after the storm",
    "Frost is likely in rural areas before dawn",
]


def weather(examples: list[str] = WEATHER) -> NewClass:
    return NewClass.of("weather", "forecasts, storms and temperatures", examples)


def test_a_new_class_needs_a_plain_name_a_description_and_four_distinct_examples():
    assert weather().name == "weather"
    assert NewClass.of(" weather ", "d", WEATHER).name == "weather"  # a stray space is no new name
    for name, description, examples, problem in [
        ("weather", "d", WEATHER[:3], "examples"),
        ("weather", "", WEATHER, "description"),
        ("wea  ther", "d", WEATHER, "name"),
        ("wea\nther", "d", WEATHER, "name"),
        ("weather", "d", [*WEATHER[:3], WEATHER[0].upper().lower() + "  "], "same text"),
        ("weather", "d", [*WEATHER[:4], "   "], "empty"),
    ]:
        with pytest.raises(TaxonomyError, match=problem):
            NewClass.of(name, description, examples)


def test_the_held_out_examples_are_a_quarter_chosen_by_the_texts_alone():
    train, held_out = weather().split()
    assert (len(train), len(held_out)) == (6, 2)
    assert sorted(train + held_out) == sorted(WEATHER)
    # The same texts in another order, or at another time, hold out the same examples.
    again = NewClass(name="weather", description="d", examples=list(reversed(WEATHER)), added_at=1.0)
    assert again.split() == (train, held_out)
    assert len(weather(WEATHER[:4]).split()[1]) == 1  # at least one each way


def test_grown_splits_put_the_class_after_the_seed_labels_its_examples_in_train_and_validation():
    seed = Splits(
        name="s",
        labels=OLD,
        train=(Example("shares fell", "business"), Example("a late goal", "sport")),
        validation=(Example("profits rose", "business"),),
        test=(Example("the cup final", "sport"),),
        traffic=(),
        seed=0,
    )
    assert grown(seed, []) is seed
    new = grown(seed, [weather()])
    train, held_out = weather().split()
    assert new.labels == (*OLD, "weather")
    assert [e.text for e in new.train if e.label == "weather"] == train
    assert [e.text for e in new.validation if e.label == "weather"] == held_out
    assert new.test == seed.test and new.descriptions["weather"].startswith("forecasts")
    # A held-out example cannot come back as a training sample.
    pool = TrainingPool.of(new)
    assert pool.check(Sample.of(held_out[0], "weather", "feedback")) == "held_out_text"
    assert pool.check(Sample.of("clear skies all week", "weather", "feedback")) is None
    assert (
        TrainingPool.of(seed).check(Sample.of("clear skies all week", "weather", "feedback"))
        == "unknown_label"
    )


def verdicts(old_wrong: int, new_right: int) -> list[ScoredExample]:
    """Ten verdicts on old-class texts (``old_wrong`` of them mistaken) and four on weather's."""
    rows = [
        ScoredExample(f"old {i}", OLD[i % 2], OLD[(i + 1) % 2] if i < old_wrong else OLD[i % 2], 0.9)
        for i in range(10)
    ]
    rows += [
        ScoredExample(f"w {i}", "weather", "weather" if i < new_right else "sport", 0.8) for i in range(4)
    ]
    return rows


def test_growth_rule_wants_the_old_classes_kept_and_the_new_one_recognised():
    rule = GrowthRule(max_old_drop=0.05, min_new_recall=0.5)
    kept = rule.decide(verdicts(0, 3), OLD, {"macro_f1": 1.0})
    assert kept.promote and "'weather' (held-out recall 0.75)" in kept.reason
    assert kept.candidate == pytest.approx(1.0)
    dropped = rule.decide(verdicts(2, 4), OLD, {"macro_f1": 1.0})  # old macro-F1 0.8 < 1.0 - 0.05
    assert not dropped.promote and dropped.check == "new_class" and "old classes" in dropped.reason
    unknown = rule.decide(verdicts(0, 1), OLD, {"macro_f1": 1.0})
    assert not unknown.promote and "recall of new class 'weather'" in unknown.reason
    assert rule.decide(verdicts(0, 2), OLD, None).promote  # no current model: only the new class counts
    with pytest.raises(ValueError):
        GrowthRule(min_new_recall=1.5)


def test_the_judge_uses_the_growth_rule_when_the_current_model_lacks_an_added_class():
    rows = verdicts(0, 3)
    labels = [*OLD, "weather"]
    report = evaluate(labels, [r.label for r in rows], [r.predicted for r in rows])
    fit = FitResult(epochs=3, best_epoch=2, best_validation_loss=0.4, seconds=1.5, history=[])
    candidate = Candidate(cast(Student, None), report, rows, None, fit)
    old_rows = [r for r in rows if r.label in OLD]
    old_report = evaluate(list(OLD), [r.label for r in old_rows], [r.label for r in old_rows])
    guidance: dict[str, Any] = Guidance(old_report, tuple(old_rows)).to_dict()
    current = ModelRecord(
        "v0001", "memory://x", "0" * 64, 0.0, labels=list(OLD), metrics={"validation": old_report.summary()}
    )
    # The plain rule would refuse: the grown macro-F1 (with weather's misses) is under the old 1.0.
    assert not PromotionRule().decide(report.summary(), old_report.summary()).promote
    judge = RoundJudge(PromotionRule(), labels, seed_size=4, growth=GrowthRule())
    judged = judge.decide(candidate, current, guidance, None, samples=[], teacher=(True, "ok"), now=0.0)
    assert judged.decision.promote and "taxonomy grown" in judged.decision.reason
    assert judged.difference is not None and judged.difference.delta == pytest.approx(0.0)
    # A current model that already knows the class is judged by the plain rule.
    same = ModelRecord(
        "v0002", "memory://x", "0" * 64, 0.0, labels=labels, metrics={"validation": report.summary()}
    )
    judged = judge.decide(candidate, same, None, None, samples=[], teacher=(True, "ok"), now=0.0)
    assert judged.decision.check == "metric"
