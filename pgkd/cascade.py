"""The cascade: the teacher answers the requests the student is likely wrong about, within a budget.

A calibrated confidence (:mod:`pgkd.calibration`) is the student's chance of being right; a
teacher's audited live accuracy (:class:`~pgkd.feedback.TeacherAudit`) is the teacher's. So a request
goes to the teacher only when its confidence is under both the configured ``threshold`` and the
teacher's audited accuracy: a teacher that is weaker than the student (the 1.5B local model on
WordNet) is never asked, and one that has not been audited yet is not trusted with answers. Texts
out of the taxonomy can go too (``out_of_taxonomy``): the teacher may name a class, or abstain.

The teacher has ``deadline`` seconds per batch; past it, or when it fails, is over its budget or
abstains, the student's answer stands, and every prediction says who answered.

:func:`replay` plays a policy over recorded verdicts offline (benchmarks/cascade.py): accuracy,
teacher calls and latency as the threshold moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Answerer = Literal["student", "teacher"]


@dataclass(frozen=True)
class CascadePolicy:
    """Which requests the teacher answers, and how long it may take."""

    threshold: float = 0.5
    out_of_taxonomy: bool = False
    deadline: float = 2.0
    min_audited: int = 20

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 1 or self.deadline <= 0 or self.min_audited < 0:
            raise ValueError(
                "need 0 <= threshold <= 1, deadline > 0 and min_audited >= 0, got "
                f"{self.threshold}, {self.deadline}, {self.min_audited}"
            )

    def bar(self, teacher_accuracy: float | None, audited: int) -> float | None:
        """The confidence under which a request goes to the teacher; None: the teacher is not trusted
        with answers (not audited enough yet)."""
        if teacher_accuracy is None or audited < self.min_audited:
            return None
        return min(self.threshold, teacher_accuracy)

    def route(
        self,
        confidence: np.ndarray,
        outside: np.ndarray | None,
        teacher_accuracy: float | None,
        audited: int,
    ) -> np.ndarray:
        """A mask of the requests to send to the teacher.

        >>> policy = CascadePolicy(threshold=0.6, min_audited=10)
        >>> policy.route(np.array([0.3, 0.55, 0.9]), None, teacher_accuracy=0.5, audited=40).tolist()
        [True, False, False]
        >>> policy.route(np.array([0.3, 0.55, 0.9]), None, teacher_accuracy=0.9, audited=3).tolist()
        [False, False, False]
        """
        bar = self.bar(teacher_accuracy, audited)
        if bar is None:
            return np.zeros(len(confidence), dtype=bool)
        mask = np.asarray(confidence) < bar
        if self.out_of_taxonomy and outside is not None:
            mask |= np.asarray(outside, dtype=bool)
        return mask


@dataclass(frozen=True)
class CascadeResult:
    """What a policy did over recorded traffic."""

    threshold: float
    accuracy: float
    routed: float  # share of requests sent to the teacher
    answered_by_teacher: float  # share the teacher answered in time
    teacher_calls_per_1000: float
    p50_ms: float
    p99_ms: float


def replay(
    gold: Sequence[str],
    student_labels: Sequence[str],
    confidence: np.ndarray,
    teacher_labels: Sequence[str | None],
    teacher_seconds: np.ndarray,
    student_ms: float,
    policy: CascadePolicy,
    *,
    teacher_accuracy: float,
) -> CascadeResult:
    """``policy`` over recorded verdicts: the teacher's answer (None: it abstained) counts when the
    request is routed and the teacher took at most ``deadline``; a routed request waits for the
    teacher (at most the deadline) on top of ``student_ms``.

    >>> r = replay(["a", "b"], ["a", "a"], np.array([0.9, 0.3]), ["a", "b"], np.array([0.5, 0.5]), 10.0,
    ...            CascadePolicy(threshold=0.5, min_audited=0), teacher_accuracy=0.8)
    >>> r.accuracy, r.routed, r.p99_ms > 500
    (1.0, 0.5, True)
    """
    n = len(gold)
    routed = policy.route(confidence, None, teacher_accuracy, audited=policy.min_audited)
    in_time = routed & (np.asarray(teacher_seconds) <= policy.deadline)
    answered = in_time & np.array([t is not None for t in teacher_labels])
    final = [teacher_labels[i] if answered[i] else student_labels[i] for i in range(n)]
    waited = np.where(routed, np.minimum(teacher_seconds, policy.deadline), 0.0)
    latency = student_ms + 1000.0 * waited
    return CascadeResult(
        threshold=policy.threshold,
        accuracy=float(np.mean([f == g for f, g in zip(final, gold, strict=True)])),
        routed=float(routed.mean()),
        answered_by_teacher=float(answered.mean()),
        teacher_calls_per_1000=1000.0 * float(routed.mean()),
        p50_ms=float(np.percentile(latency, 50)),
        p99_ms=float(np.percentile(latency, 99)),
    )
