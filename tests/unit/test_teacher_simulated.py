"""SimulatedTeacher: an oracle over a gold-labelled pool, with seeded errors."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from pgkd.data import Example
from pgkd.evaluation import ScoredExample
from pgkd.teacher.request import GenerationRequest
from pgkd.teacher.simulated import SimulatedTeacher

LABELS = ("business", "sport", "tech")
POOL = [Example(f"{label} story number {i} {'x' * i}", label) for label in LABELS for i in range(20)]


def generate(teacher: SimulatedTeacher, **kwargs: Any) -> Any:
    args: dict[str, Any] = {
        "report": "report",
        "classes": ["tech"],
        "correct": [],
        "misclassified": [],
        "hard_negatives": [],
        "n": 4,
    }
    args.update(kwargs)
    return teacher.generate(GenerationRequest(**args))


def test_name_is_simulated() -> None:
    assert SimulatedTeacher(LABELS, POOL).name == "simulated"


def test_perfect_teacher_returns_gold_labels_of_normalised_pool_texts() -> None:
    teacher = SimulatedTeacher(LABELS, POOL)
    answers = teacher.label(["  SPORT story number 3 xxx!", "tech story number 0 "])
    assert [(a.label, a.confidence) for a in answers] == [("sport", 1.0), ("tech", 1.0)]
    assert teacher.usage.calls == 2


def test_unknown_text_abstains() -> None:
    teacher = SimulatedTeacher(LABELS, POOL)
    [answer] = teacher.label(["never seen"])
    assert answer.label is None and answer.confidence == 0.0
    assert teacher.usage.abstained == 1


def test_accuracy_is_seeded_consistent_per_text_and_about_right() -> None:
    texts = [e.text for e in POOL]
    gold = [e.label for e in POOL]
    teacher = SimulatedTeacher(LABELS, POOL, accuracy=0.7, seed=1)
    first = teacher.label(texts)
    assert [a.label for a in teacher.label(texts)] == [a.label for a in first]
    assert [
        a.label for a in SimulatedTeacher(LABELS, POOL, accuracy=0.7, seed=1).label(list(reversed(texts)))
    ] == [a.label for a in reversed(first)]
    right = sum(a.label == g for a, g in zip(first, gold, strict=True)) / len(gold)
    assert 0.5 < right < 0.9
    assert all(a.confidence == 0.7 and a.label in LABELS for a in first)
    assert any(a.label != g for a, g in zip(first, gold, strict=True))


def test_accuracy_zero_is_always_wrong() -> None:
    teacher = SimulatedTeacher(LABELS, POOL, accuracy=0.0)
    assert all(a.label != e.label for a, e in zip(teacher.label([e.text for e in POOL]), POOL, strict=True))


def test_generate_spreads_n_over_classes_and_never_repeats_a_text() -> None:
    teacher = SimulatedTeacher(LABELS, POOL, seed=3)
    seen: set[str] = set()
    for _ in range(4):
        result = generate(teacher, classes=["tech", "sport"], n=5)
        assert Counter(s.label for s in result.samples) == Counter(tech=3, sport=2)
        assert all(s in POOL for s in result.samples)
        texts = {s.text for s in result.samples}
        assert not texts & seen
        seen |= texts
    assert result.proposed == 5 and not result.rejected
    assert teacher.usage.calls == 4


def test_generate_respects_exclude_and_runs_dry_gracefully() -> None:
    teacher = SimulatedTeacher(LABELS, POOL)
    tech = [e.text for e in POOL if e.label == "tech"]
    exclude = [t.upper() for t in tech[:15]]
    result = generate(teacher, classes=["tech"], n=10, exclude=exclude)
    assert {s.text for s in result.samples} == set(tech[15:])
    assert generate(teacher, classes=["tech"], n=3, exclude=exclude).samples == []


def test_generate_picks_texts_nearest_to_the_hard_negatives_with_embed() -> None:
    def embed(texts: Any) -> np.ndarray:
        # one dimension per "number i": nearest texts share the number.
        return np.array([[float(f"number {i} " in t + " ") for i in range(20)] for t in texts])

    teacher = SimulatedTeacher(LABELS, POOL, embed=embed)
    hard = [
        ScoredExample("a tech text about number 12", "tech", "sport", 0.99),
        ScoredExample("a sport text about number 5", "sport", "tech", 0.99),
    ]
    result = generate(teacher, classes=["tech"], n=1, hard_negatives=hard)
    assert result.samples == [Example("tech story number 12 " + "x" * 12, "tech")]
    # a class without hard negatives of its own is aimed at all of them
    result = generate(teacher, classes=["business"], n=2, hard_negatives=hard[1:])
    assert result.samples[0] == Example("business story number 5 " + "x" * 5, "business")


def test_noisy_generation_mislabels_some_samples_but_keeps_requested_classes() -> None:
    teacher = SimulatedTeacher(LABELS, POOL, accuracy=0.5, seed=0)
    result = generate(teacher, classes=["tech"], n=16)
    assert {s.label for s in result.samples} == {"tech"}
    gold = {e.text: e.label for e in POOL}
    wrong = sum(gold[s.text] != "tech" for s in result.samples)
    assert 0 < wrong < 16


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="accuracy"):
        SimulatedTeacher(LABELS, POOL, accuracy=1.5)
    with pytest.raises(ValueError, match="weather"):
        SimulatedTeacher(LABELS, [Example("rain", "weather")])
    with pytest.raises(ValueError, match="weather"):
        generate(SimulatedTeacher(LABELS, POOL), classes=["weather"])
