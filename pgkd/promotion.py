"""Retraining and promotion in a live system, without any broker in sight: when the trainer
retrains, what it trains, and whether the candidate replaces the current model.

* :class:`RetrainSchedule` says when to retrain (new samples or time);
* :func:`retrain` trains a fresh candidate and scores it (calibrated, with its out-of-taxonomy
  detector) on validation and, where given, test;
* :class:`PromotionRule` decides whether it replaces the current model, from the validation
  difference and its bootstrap interval; :class:`GrowthRule` decides instead when the candidate
  answers in a taxonomy an operator grew (:mod:`pgkd.taxonomy`);
* :class:`TeacherGate` decides whether the teacher's samples are trained on at all, from its audited
  accuracy on live traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sklearn.metrics import f1_score

from pgkd.bootstrap import Difference
from pgkd.calibration import calibrate, calibration_error
from pgkd.continual import Guidance
from pgkd.data import Example
from pgkd.distill import assess, successor
from pgkd.distill_records import Metric
from pgkd.evaluation import ScoredExample, ValidationReport
from pgkd.feedback import TeacherAudit
from pgkd.out_of_taxonomy import DEFAULT_DETECTOR, DetectorConfig, fit_detector
from pgkd.student import Student
from pgkd.training import FitResult, TrainConfig


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
    (nothing to compare with), ``metric``, ``class_drop``, ``uncertain`` (the lift's interval),
    ``held`` (an operator's hold after a rollback) or ``new_class`` (a grown taxonomy's check)."""

    promote: bool
    reason: str
    candidate: float
    current: float | None
    check: Literal["first", "metric", "class_drop", "uncertain", "held", "new_class"] = "metric"


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
        """Compare two validation summaries (:meth:`~pgkd.evaluation.ValidationReport.summary`), and
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


@dataclass(frozen=True)
class GrowthRule:
    """When a candidate that answers in a grown taxonomy replaces a model that knows only the old
    labels (:meth:`decide`). The two macro-F1s are not comparable (the candidate's counts classes
    the current model cannot answer), so the candidate is checked on each part: on the old classes'
    validation texts its macro-F1 over the old labels may fall by at most ``max_old_drop`` (a new
    class takes some texts from its neighbours), and on the held-out examples of each new class its
    recall must reach ``min_new_recall``.

    >>> rule, old = GrowthRule(), ("sport", "tech")
    >>> scored = [ScoredExample("a goal", "sport", "sport", 0.9),
    ...           ScoredExample("a chip", "tech", "tech", 0.8),
    ...           ScoredExample("rain", "weather", "weather", 0.7),
    ...           ScoredExample("snow", "weather", "tech", 0.6)]
    >>> rule.decide(scored, old, {"macro_f1": 1.0}).promote
    True
    >>> GrowthRule(min_new_recall=0.6).decide(scored, old, {"macro_f1": 1.0}).reason
    "recall of new class 'weather' on its held-out examples 0.500 < 0.6"
    """

    max_old_drop: float = 0.05
    min_new_recall: float = 0.5

    def __post_init__(self) -> None:
        if self.max_old_drop < 0 or not 0 <= self.min_new_recall <= 1:
            raise ValueError(
                f"max_old_drop must be >= 0 and min_new_recall in [0, 1], got {self.max_old_drop}, "
                f"{self.min_new_recall}"
            )

    def decide(
        self, scored: Sequence[ScoredExample], old_labels: Sequence[str], current: dict[str, Any] | None
    ) -> Decision:
        """Judge the candidate's validation verdicts ``scored`` against the current model, which
        answers in ``old_labels``, and its validation summary (``current``; None: nothing to keep)."""
        old = [s for s in scored if s.label in old_labels]
        value = float(
            f1_score(
                [s.label for s in old],
                [s.predicted for s in old],
                labels=list(old_labels),
                average="macro",
                zero_division=0,
            )
        )
        base = None if current is None else float(current["macro_f1"])
        if base is not None and value < base - self.max_old_drop:
            reason = f"old classes' macro_f1 {value:.4f} < {base:.4f} - {self.max_old_drop:g} (current)"
            return Decision(False, reason, value, base, "new_class")
        recalls = {}
        for label in sorted({s.label for s in scored} - set(old_labels)):
            verdicts = [s.correct for s in scored if s.label == label]
            recalls[label] = sum(verdicts) / len(verdicts)
            if recalls[label] < self.min_new_recall:
                reason = (
                    f"recall of new class {label!r} on its held-out examples {recalls[label]:.3f} "
                    f"< {self.min_new_recall:g}"
                )
                return Decision(False, reason, value, base, "new_class")
        grown = ", ".join(f"{label!r} (held-out recall {r:.2f})" for label, r in recalls.items())
        against = "" if base is None else f" against {base:.4f} (current)"
        return Decision(
            True, f"taxonomy grown by {grown}; old classes' macro_f1 {value:.4f}{against}", value, base
        )


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
