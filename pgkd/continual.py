"""The continuous version of PGKD: the decisions a live system makes, without any broker in sight.

The offline loop (:mod:`pgkd.distill`) runs step by step; a live system runs the same steps as
services that react to traffic. Their logic lives here so that it is tested without Kafka:

* :class:`HardWindow` keeps the hard negatives of live traffic per class and says when there are
  enough to prompt the teacher;
* :class:`Guidance` is what a model tells the teacher (its validation report and scored validation
  examples): :func:`pgkd.teacher.request.generation_request` builds a PGKD request from it and the
  live hard negatives;
* :class:`RetrainSchedule` says when the trainer should retrain, :func:`retrain` trains and scores a
  candidate, and :class:`PromotionRule` decides whether it replaces the current model;
* :class:`LiveQuality` is accuracy and per-class recall over the latest ground-truth feedback.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pgkd.bootstrap import Difference
from pgkd.calibration import calibrate, calibration_error
from pgkd.data import Example
from pgkd.distill import Metric, assess, successor
from pgkd.feedback import TeacherAudit
from pgkd.mining import (
    ClassScores,
    ScoredExample,
    ValidationReport,
)
from pgkd.out_of_taxonomy import DEFAULT_DETECTOR, DetectorConfig, fit_detector
from pgkd.student import Student
from pgkd.training import FitResult, TrainConfig

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

    @property
    def held(self) -> int:
        """Events held now, not yet expired ones included: safe to read from a metrics thread."""
        return sum(len(q) for q in list(self._items.values()))

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
    (nothing to compare with), ``metric``, ``class_drop``, ``uncertain`` (the lift's interval), or
    ``held`` (an operator's hold after a rollback)."""

    promote: bool
    reason: str
    candidate: float
    current: float | None
    check: Literal["first", "metric", "class_drop", "uncertain", "held"] = "metric"


@dataclass(frozen=True)
class PromotionRule:
    """When a candidate replaces the current model: its validation ``metric`` is at least the
    current one's plus ``min_delta`` (default 0: it must not drop), and, if ``max_class_drop`` is
    set, no class's F1 falls by more than that. With ``confidence`` set (e.g. 0.9), the lift must
    also hold at the lower end of the paired bootstrap interval of the macro-F1 difference
    (:func:`~pgkd.bootstrap.macro_f1_difference`): on 200 noisy validation labels, a lift that
    luck could explain is not promoted.

    >>> PromotionRule().decide({"macro_f1": 0.80}, {"macro_f1": 0.85}).promote
    False
    """

    metric: Metric = "macro_f1"
    min_delta: float = 0.0
    max_class_drop: float | None = None
    confidence: float | None = None

    def __post_init__(self) -> None:
        if self.metric not in ("macro_f1", "accuracy"):
            raise ValueError(f"metric must be 'macro_f1' or 'accuracy', got {self.metric!r}")
        if self.confidence is not None and not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.max_class_drop is not None and self.max_class_drop < 0:
            raise ValueError(f"max_class_drop must be >= 0, got {self.max_class_drop}")

    def decide(
        self,
        candidate: dict[str, Any],
        current: dict[str, Any] | None,
        difference: Difference | None = None,
    ) -> Decision:
        """Compare two validation summaries (:meth:`~pgkd.mining.ValidationReport.summary`), and
        with ``confidence`` set, the paired bootstrap ``difference`` of their macro-F1."""
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
        lift = f"; macro-F1 difference {difference}" if difference else ""
        if self.confidence is not None and difference is not None and difference.low < self.min_delta:
            reason = f"lift not sure: macro-F1 difference {difference}, lower bound < {self.min_delta:g}"
            return Decision(False, reason, value, base, "uncertain")
        return Decision(True, f"{self.metric} {value:.4f} >= {base:.4f} (current){lift}", value, base)


@dataclass
class Candidate:
    student: Student
    validation: ValidationReport
    scored: list[ScoredExample]
    test: ValidationReport | None
    fit: FitResult
    calibration: dict[str, Any] | None = None  # temperature and ECE before/after (validation, test)

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
    warm_start: bool = False,
    calibrated: bool = True,
    detector: DetectorConfig | None = DEFAULT_DETECTOR,
) -> Candidate:
    """Train a candidate on ``train``, calibrate its confidence on ``validation`` (temperature
    scaling, :mod:`pgkd.calibration`), fit its out-of-taxonomy ``detector``
    (:mod:`pgkd.out_of_taxonomy`) and score it. Head mode fits a fresh classifier on ``base``'s
    frozen, cached features; full mode fine-tunes ``base``'s pretrained encoder afresh, or with
    ``warm_start`` keeps fine-tuning a copy of ``current``."""
    config = config or TrainConfig()
    head = config.mode == "head"
    student = successor(base, current or base, config.mode, seed=config.seed, warm=warm_start)
    fit = student.fit(train, validation, config)
    calibration: dict[str, Any] | None = None
    if calibrated:
        fitted = calibrate(student, validation)
        calibration = fitted.to_dict()
        if test:
            tested = calibration_error(student, test, fitted.temperature)
            calibration.update(test_ece_before=tested["ece_before"], test_ece_after=tested["ece_after"])
        student.metadata.metrics["calibration"] = calibration
    if detector is not None:
        fit_detector(student, train, validation, detector, cache=head)
    report, scored = assess(student, validation, head)
    test_report = assess(student, test, head)[0] if test else None
    return Candidate(student, report, scored, test_report, fit, calibration)


# -- the teacher's measured quality ----------------------------------------------------------------


@dataclass(frozen=True)
class TeacherGate:
    """Whether to train on the teacher's samples, from its audit on live traffic
    (:class:`~pgkd.feedback.TeacherAudit`): once ``min_judged`` of its labels met their ground truth,
    it must be right at least ``min_accuracy`` of the time *and* more often than the student was on
    the same requests; a teacher that is not is worse than no teacher.

    >>> TeacherGate(min_judged=10).decide(TeacherAudit(judged=40, teacher_correct=12, student_correct=20))
    (False, 'teacher accuracy 0.300 on 40 audited requests < 0.500')
    """

    min_judged: int = 20
    min_accuracy: float = 0.5

    def __post_init__(self) -> None:
        if self.min_judged < 1 or not 0 <= self.min_accuracy <= 1:
            raise ValueError(
                "min_judged must be >= 1 and min_accuracy in [0, 1], "
                f"got {self.min_judged}, {self.min_accuracy}"
            )

    def decide(self, audit: TeacherAudit) -> tuple[bool, str]:
        if audit.judged < self.min_judged:
            return True, f"{audit.judged} audited requests, fewer than {self.min_judged}: not judged yet"
        teacher, student = audit.teacher_accuracy or 0.0, audit.student_accuracy or 0.0
        need = max(self.min_accuracy, student)
        verdict = f"teacher accuracy {teacher:.3f} on {audit.judged} audited requests"
        if teacher < need:
            return False, f"{verdict} < {need:.3f}"
        return True, f"{verdict} >= {need:.3f}"


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
