"""The continuous version of PGKD: the decisions a live system makes, without any broker in sight.

The offline loop (:mod:`pgkd.distill`) runs step by step; a live system runs the same steps as
services that react to traffic. Their logic lives here so that it is tested without Kafka:

* :class:`HardWindow` keeps the hard negatives of live traffic per class and says when there are
  enough to prompt the teacher;
* :func:`plan_generation` builds one PGKD teacher request from a model's :class:`Guidance` (its
  validation report and scored validation examples) and the live hard negatives;
* :class:`RetrainSchedule` says when the trainer should retrain, :func:`retrain` trains and scores a
  candidate, and :class:`PromotionRule` decides whether it replaces the current model;
* :class:`LiveQuality` is accuracy and per-class recall over the latest ground-truth feedback.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pgkd.data import Example
from pgkd.distill import Metric, assess, successor
from pgkd.mining import (
    ClassScores,
    ScoredExample,
    ValidationReport,
    hard_negatives,
    sample_examples,
    target_classes,
)
from pgkd.student import FitResult, Student, TrainConfig
from pgkd.teacher.base import prompt_hash

# -- what a model tells the teacher ----------------------------------------------------------------


@dataclass(frozen=True)
class Guidance:
    """A model's validation report and its verdict on every validation example: what the mining
    service needs to write a PGKD prompt for that model, stored with it in the registry."""

    report: ValidationReport
    scored: tuple[ScoredExample, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"report": asdict(self.report), "scored": [asdict(s) for s in self.scored]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Guidance:
        report = dict(data["report"])
        report["labels"] = tuple(report["labels"])
        report["per_class"] = {c: ClassScores(**s) for c, s in report["per_class"].items()}
        return cls(ValidationReport(**report), tuple(ScoredExample(**s) for s in data["scored"]))


@dataclass(frozen=True)
class GenerationPlan:
    """The arguments of one :meth:`~pgkd.teacher.base.Teacher.generate` call, and what led to it."""

    report: str
    classes: list[str]
    correct: list[ScoredExample]
    misclassified: list[ScoredExample]
    hard_negatives: list[ScoredExample]
    n: int
    source_ids: list[str] = field(default_factory=list)

    def prompt_hash(self, teacher: str) -> str:
        """The hash :class:`~pgkd.teacher.shared.SharedTeacher` caches this request's answer under."""
        return prompt_hash(
            teacher,
            report=self.report,
            classes=list(self.classes),
            correct=self.correct,
            misclassified=self.misclassified,
            hard_negatives=self.hard_negatives,
            n=self.n,
        )


def plan_generation(
    guidance: Guidance,
    live_hard: Sequence[ScoredExample] = (),
    *,
    n: int = 32,
    examples: int = 16,
    classes: int = 4,
    seed: int = 0,
    source_ids: Sequence[str] = (),
) -> GenerationPlan:
    """One PGKD request: the report verbatim, correct and misclassified validation examples, and the
    hard negatives (live ones first, the most confident first, topped up from validation)."""
    live = hard_negatives(live_hard, examples)
    known = {s.text for s in live}
    hard = live + [s for s in hard_negatives(guidance.scored, examples) if s.text not in known]
    hard = hard[:examples]
    return GenerationPlan(
        report=guidance.report.text,
        classes=target_classes(guidance.report, hard, min(classes, len(guidance.report.labels))),
        correct=sample_examples(guidance.scored, examples, correct=True, seed=seed),
        misclassified=sample_examples(guidance.scored, examples, correct=False, seed=seed),
        hard_negatives=hard,
        n=n,
        source_ids=list(source_ids),
    )


# -- live hard negatives ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HardItem:
    example: ScoredExample
    event_id: str
    seen_at: float


class HardWindow:
    """Misclassified live events per true class, the newest ``per_class`` of each, none older than
    ``max_age`` seconds. :meth:`ready` says when to prompt the teacher: ``min_hard`` events waiting,
    or ``every_seconds`` since the last prompt with at least one.

    >>> w = HardWindow(min_hard=1)
    >>> w.add(ScoredExample("Spurs sign a striker", "sport", "business", 0.9), "r1")
    >>> w.ready(), [s.label for s in w.take()[0]]
    (True, ['sport'])
    """

    def __init__(
        self,
        *,
        per_class: int = 64,
        max_age: float = 3600.0,
        min_hard: int = 16,
        every_seconds: float = 600.0,
    ) -> None:
        if per_class < 1 or min_hard < 1:
            raise ValueError(f"per_class and min_hard must be >= 1, got {per_class} and {min_hard}")
        self.per_class, self.max_age = per_class, max_age
        self.min_hard, self.every_seconds = min_hard, every_seconds
        self._items: dict[str, deque[HardItem]] = {}
        self._last_prompt = time.monotonic()

    def add(self, example: ScoredExample, event_id: str) -> None:
        queue = self._items.setdefault(example.label, deque(maxlen=self.per_class))
        queue.append(HardItem(example, event_id, time.monotonic()))

    def __len__(self) -> int:
        self._expire()
        return sum(len(q) for q in self._items.values())

    def ready(self) -> bool:
        waiting = len(self)
        timer = time.monotonic() - self._last_prompt >= self.every_seconds
        return waiting >= self.min_hard or (timer and waiting > 0)

    def take(self) -> tuple[list[ScoredExample], list[str]]:
        """Empty the window: its hard negatives (most confident first) and their event ids."""
        self._expire()
        items = sorted((i for q in self._items.values() for i in q), key=lambda i: -i.example.confidence)
        self._items.clear()
        self._last_prompt = time.monotonic()
        return [i.example for i in items], [i.event_id for i in items]

    def counts(self) -> dict[str, int]:
        return {label: len(q) for label, q in self._items.items() if q}

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.max_age
        for queue in self._items.values():
            while queue and queue[0].seen_at < cutoff:
                queue.popleft()


# -- retraining and promotion ----------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainSchedule:
    """Retrain after ``every_samples`` new samples or ``every_seconds``, whichever comes first (and
    never without a new sample)."""

    every_samples: int = 32
    every_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.every_samples < 1 or self.every_seconds <= 0:
            raise ValueError(
                f"every_samples must be >= 1 and every_seconds > 0, got {self.every_samples}, "
                f"{self.every_seconds}"
            )

    def due(self, pending: int, seconds_since_last: float) -> bool:
        return pending > 0 and (pending >= self.every_samples or seconds_since_last >= self.every_seconds)


@dataclass(frozen=True)
class Decision:
    """Whether to promote, why (for people), and which check decided (for metrics): ``first``
    (nothing to compare with), ``metric``, or ``class_drop``."""

    promote: bool
    reason: str
    candidate: float
    current: float | None
    check: Literal["first", "metric", "class_drop"] = "metric"


@dataclass(frozen=True)
class PromotionRule:
    """When a candidate replaces the current model: its validation ``metric`` is at least the
    current one's plus ``min_delta`` (default 0: it must not drop), and, if ``max_class_drop`` is
    set, no class's F1 falls by more than that.

    >>> PromotionRule().decide({"macro_f1": 0.80}, {"macro_f1": 0.85}).promote
    False
    """

    metric: Metric = "macro_f1"
    min_delta: float = 0.0
    max_class_drop: float | None = None

    def __post_init__(self) -> None:
        if self.metric not in ("macro_f1", "accuracy"):
            raise ValueError(f"metric must be 'macro_f1' or 'accuracy', got {self.metric!r}")
        if self.max_class_drop is not None and self.max_class_drop < 0:
            raise ValueError(f"max_class_drop must be >= 0, got {self.max_class_drop}")

    def decide(self, candidate: dict[str, Any], current: dict[str, Any] | None) -> Decision:
        """Compare two validation summaries (:meth:`~pgkd.mining.ValidationReport.summary`)."""
        value = float(candidate[self.metric])
        if current is None:
            return Decision(True, "no current model", value, None, "first")
        base = float(current[self.metric])
        if value < base + self.min_delta:
            need = f" + {self.min_delta:g}" if self.min_delta else ""
            return Decision(False, f"{self.metric} {value:.4f} < {base:.4f}{need} (current)", value, base)
        if self.max_class_drop is not None:
            old, new = current.get("per_class_f1", {}), candidate.get("per_class_f1", {})
            drops = {
                c: old[c] - new.get(c, 0.0) for c in old if old[c] - new.get(c, 0.0) > self.max_class_drop
            }
            if drops:
                worst = max(drops, key=lambda c: drops[c])
                reason = f"F1 of {worst!r} fell by {drops[worst]:.3f} > {self.max_class_drop:g}"
                return Decision(False, reason, value, base, "class_drop")
        return Decision(True, f"{self.metric} {value:.4f} >= {base:.4f} (current)", value, base)


@dataclass
class Candidate:
    student: Student
    validation: ValidationReport
    scored: list[ScoredExample]
    test: ValidationReport | None
    fit: FitResult

    @property
    def guidance(self) -> Guidance:
        return Guidance(self.validation, tuple(self.scored))


def retrain(
    base: Student,
    current: Student | None,
    train: Sequence[Example],
    validation: Sequence[Example],
    config: TrainConfig | None = None,
    *,
    test: Sequence[Example] = (),
) -> Candidate:
    """Train a candidate on ``train`` and score it. Head mode fits a fresh classifier on ``base``'s
    frozen, cached features; full mode fine-tunes a copy of ``current`` (or ``base``)."""
    config = config or TrainConfig()
    head = config.mode == "head"
    student = successor(base, current or base, head, seed=config.seed)
    fit = student.fit(train, validation, config)
    report, scored = assess(student, validation, head)
    test_report = assess(student, test, head)[0] if test else None
    return Candidate(student, report, scored, test_report, fit)


# -- live quality ----------------------------------------------------------------------------------


class LiveQuality:
    """Accuracy and per-class recall over the last ``window`` ground-truth feedbacks.

    >>> q = LiveQuality(window=2)
    >>> q.record("a", "a"); q.record("b", "a"); q.record("b", "b")
    >>> q.accuracy(), q.recall()
    (0.5, {'b': 0.5})
    """

    def __init__(self, window: int = 1000) -> None:
        self._pairs: deque[tuple[str, str]] = deque(maxlen=window)

    def record(self, gold: str, predicted: str) -> None:
        self._pairs.append((gold, predicted))

    def extend(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._pairs.extend(pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def accuracy(self) -> float | None:
        if not self._pairs:
            return None
        return sum(g == p for g, p in self._pairs) / len(self._pairs)

    def recall(self) -> dict[str, float]:
        support = Counter(g for g, _ in self._pairs)
        hits = Counter(g for g, p in self._pairs if g == p)
        return {label: hits[label] / n for label, n in sorted(support.items())}
