"""What the student gets wrong: the per-class report, hard negatives and uncertain traffic.

These are the signals that guide the teacher in PGKD (Algorithm 1 of the paper): the validation
report goes into the prompt verbatim, the hard negatives are the misclassified validation samples on
which the student was *most* confident, and the weakest classes are the ones the teacher writes for.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

from pgkd.data import Example


@dataclass(frozen=True, slots=True)
class ScoredExample:
    """A labelled text with the student's verdict on it."""

    text: str
    label: str
    predicted: str
    confidence: float

    @property
    def correct(self) -> bool:
        return self.label == self.predicted


@dataclass(frozen=True)
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ValidationReport:
    """Per-class quality of a student on a labelled set, plus the text the teacher reads verbatim."""

    labels: tuple[str, ...]
    accuracy: float
    macro_f1: float
    weighted_f1: float
    per_class: dict[str, ClassScores]
    confusion: list[list[int]]
    text: str

    def weakest(self, k: int) -> list[str]:
        """The ``k`` classes with the lowest F1 (ties: the larger support first, it costs more).

        Classes absent from the evaluated set come last: their F1 of 0 says nothing about the
        student, and samples written for them could not show up in the score."""
        ranked = sorted(
            self.labels,
            key=lambda c: (
                self.per_class[c].support == 0,
                self.per_class[c].f1,
                -self.per_class[c].support,
                c,
            ),
        )
        return ranked[:k]

    def summary(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
            "per_class_f1": {c: s.f1 for c, s in self.per_class.items()},
        }


def evaluate(labels: Sequence[str], gold: Sequence[str], predicted: Sequence[str]) -> ValidationReport:
    """Score predictions against gold labels with scikit-learn.

    >>> r = evaluate(["a", "b"], ["a", "b", "b"], ["a", "a", "b"])
    >>> round(r.accuracy, 2), r.per_class["a"].recall
    (0.67, 1.0)
    """
    if len(gold) != len(predicted):
        raise ValueError(f"gold has {len(gold)} labels but predicted has {len(predicted)}")
    if not gold:
        raise ValueError("cannot evaluate on an empty set")
    names = list(labels)
    table = classification_report(gold, predicted, labels=names, output_dict=True, zero_division=0)
    per_class = {
        c: ClassScores(
            precision=float(table[c]["precision"]),
            recall=float(table[c]["recall"]),
            f1=float(table[c]["f1-score"]),
            support=int(table[c]["support"]),
        )
        for c in names
    }
    return ValidationReport(
        labels=tuple(names),
        accuracy=float(accuracy_score(gold, predicted)),
        macro_f1=float(f1_score(gold, predicted, labels=names, average="macro", zero_division=0)),
        weighted_f1=float(f1_score(gold, predicted, labels=names, average="weighted", zero_division=0)),
        per_class=per_class,
        confusion=confusion_matrix(gold, predicted, labels=names).tolist(),
        text=classification_report(gold, predicted, labels=names, digits=3, zero_division=0),
    )


def score(
    examples: Sequence[Example], predicted: Sequence[str], confidence: Sequence[float]
) -> list[ScoredExample]:
    """Pair each labelled example with the student's prediction and confidence."""
    if not (len(examples) == len(predicted) == len(confidence)):
        raise ValueError("examples, predicted and confidence must have the same length")
    return [
        ScoredExample(e.text, e.label, p, float(c))
        for e, p, c in zip(examples, predicted, confidence, strict=True)
    ]


def hard_negatives(scored: Sequence[ScoredExample], k: int) -> list[ScoredExample]:
    """The ``k`` misclassified samples on which the student was most confident (the paper's definition)."""
    wrong = [s for s in scored if not s.correct]
    return sorted(wrong, key=lambda s: -s.confidence)[:k]


def sample_examples(
    scored: Sequence[ScoredExample], k: int, *, correct: bool, seed: int = 0
) -> list[ScoredExample]:
    """A seeded random sample of ``k`` correctly (or wrongly) classified samples for the prompt."""
    pool = [s for s in scored if s.correct == correct]
    if len(pool) <= k:
        return list(pool)
    return random.Random(seed).sample(pool, k)


UncertaintyRule = Literal["confidence", "margin", "entropy"]


def uncertainty(probs: np.ndarray, rule: UncertaintyRule = "confidence") -> np.ndarray:
    """Per row, how unsure the student is, higher = less sure, in [0, 1].

    ``confidence``: 1 - max probability; ``margin``: 1 - (top1 - top2); ``entropy``: normalised
    Shannon entropy of the distribution.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probs must be (n, classes>=2), got shape {p.shape}")
    if rule == "confidence":
        return 1.0 - p.max(axis=1)
    if rule == "margin":
        top2 = np.sort(p, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])
    if rule == "entropy":
        h = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1)
        return h / np.log(p.shape[1])
    raise ValueError(f"unknown uncertainty rule {rule!r}; use confidence, margin or entropy")


def is_uncertain(probs: np.ndarray, threshold: float, rule: UncertaintyRule = "confidence") -> np.ndarray:
    """Boolean mask of rows whose uncertainty exceeds ``threshold`` (e.g. 0.5 = top class below 50%)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return uncertainty(probs, rule) > threshold


def target_classes(report: ValidationReport, hard: Sequence[ScoredExample], k: int) -> list[str]:
    """Which classes the teacher should write for: the weakest by F1, then those the hard negatives
    belong to, so a class the student confidently confuses gets samples even if its F1 looks fine."""
    if k <= 0:
        return []
    ranked = report.weakest(len(report.labels))
    chosen = ranked[: max(1, k // 2)]
    for s in hard:
        if len(chosen) >= k:
            break
        if s.label not in chosen:
            chosen.append(s.label)
    for c in ranked:
        if len(chosen) >= k:
            break
        if c not in chosen:
            chosen.append(c)
    return chosen


def classes_of(
    examples: Sequence[ScoredExample], labels: Sequence[str], k: int, *, seed: int = 0
) -> list[str]:
    """The true classes of ``examples`` in their order, topped up with seeded random classes to
    ``k``: how to aim the teacher without a per-class report.

    >>> classes_of([ScoredExample("t", "b", "a", 0.9)], ["a", "b", "c"], 2, seed=1)[0]
    'b'
    """
    chosen: list[str] = []
    for s in examples:
        if len(chosen) >= k:
            break
        if s.label not in chosen:
            chosen.append(s.label)
    rest = [c for c in labels if c not in chosen]
    random.Random(seed).shuffle(rest)
    return chosen + rest[: max(0, k - len(chosen))]
