"""One PGKD step asked of a teacher: the :class:`GenerationRequest`, and the one function that builds it.

Algorithm 1 of the paper shows the teacher the taxonomy, the student's validation report verbatim,
correct and misclassified validation examples and the hard negatives (misclassified examples the
student was most confident about), and asks for new samples of the classes it is weakest at. The
offline loop (:func:`pgkd.distill.distill`) and the live mining service build that request with
:func:`generation_request`, every :class:`~pgkd.teacher.base.Teacher` answers it with
``generate(request)``, and its :attr:`~GenerationRequest.fingerprint` (computed once) keys the shared
answer cache and records which prompt produced a sample.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pgkd.evaluation import (
    ScoredExample,
    ValidationReport,
    classes_of,
    hard_negatives,
    sample_examples,
    target_classes,
)
from pgkd.fingerprint import json_digest


@dataclass(frozen=True)
class GenerationRequest:
    """What the teacher is shown for one PGKD step, and how many samples it may write.

    ``exclude`` (texts already in training) filters the answer and is not shown to the teacher, so it
    is not part of the fingerprint; neither is ``source_ids``, the live events behind the request
    (provenance only).

    >>> a = GenerationRequest("report", ("sport",), (), (), (), 4)
    >>> a.fingerprint == GenerationRequest("report", ("sport",), (), (), (), 4, exclude={"x"}).fingerprint
    True
    >>> a.fingerprint == GenerationRequest("report", ("sport",), (), (), (), 5).fingerprint
    False
    """

    report: str
    classes: tuple[str, ...]
    correct: tuple[ScoredExample, ...]
    misclassified: tuple[ScoredExample, ...]
    hard_negatives: tuple[ScoredExample, ...]
    n: int
    exclude: Collection[str] = field(default=(), compare=False, repr=False)
    source_ids: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"n must not be negative, got {self.n}")
        for name in ("classes", "correct", "misclassified", "hard_negatives", "source_ids"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def examples(self) -> tuple[ScoredExample, ...]:
        """Every example the prompt shows, in prompt order."""
        return (*self.correct, *self.misclassified, *self.hard_negatives)

    @cached_property
    def fingerprint(self) -> str:
        """A stable hash of what the teacher is shown (equal fingerprints, equal prompts). Examples
        count by text, label, verdict and confidence (to 4 places)."""
        return json_digest(
            {
                "report": self.report,
                "classes": list(self.classes),
                "correct": _plain(self.correct),
                "misclassified": _plain(self.misclassified),
                "hard_negatives": _plain(self.hard_negatives),
                "n": self.n,
            },
            length=32,
        )


def _plain(examples: Sequence[ScoredExample]) -> list[list[Any]]:
    return [[e.text, e.label, e.predicted, round(e.confidence, 4)] for e in examples]


def generation_request(
    report: ValidationReport,
    scored: Sequence[ScoredExample],
    *,
    n: int = 32,
    examples: int = 16,
    classes: int = 10,
    seed: int = 0,
    live_hard: Sequence[ScoredExample] = (),
    focus: Sequence[str] = (),
    use_report: bool = True,
    use_hard_negatives: bool = True,
    exclude: Collection[str] = (),
    source_ids: Sequence[str] = (),
) -> GenerationRequest:
    """One PGKD request from a student's validation ``report`` and its verdict on every validation
    example (``scored``).

    Hard negatives are the live ones first (``live_hard``: misclassified traffic), the most confident
    first, topped up from validation; ``examples`` of each kind are shown. The teacher writes for the
    ``focus`` classes first (those drift moved), then the weakest ``classes`` by the report. The
    ablations of the paper's prompt: without the report (``use_report=False``) the teacher sees no
    per-class scores and is aimed at the classes of the mistakes it is shown; without hard negatives
    it is shown none.
    """
    labels = report.labels
    hard: list[ScoredExample] = []
    if use_hard_negatives:
        hard = hard_negatives(live_hard, examples)
        known = {s.text for s in hard}
        hard += [s for s in hard_negatives(scored, examples) if s.text not in known]
        hard = hard[:examples]
    misclassified = sample_examples(scored, examples, correct=False, seed=seed)
    k = min(classes, len(labels))
    chosen = [c for c in dict.fromkeys(focus) if c in labels][:k]
    if use_report:
        weakest = target_classes(report, hard, k)
    else:
        weakest = classes_of(hard or misclassified, labels, k, seed=seed)
    chosen += [c for c in weakest if c not in chosen][: k - len(chosen)]
    return GenerationRequest(
        report=report.text if use_report else "",
        classes=tuple(chosen),
        correct=tuple(sample_examples(scored, examples, correct=True, seed=seed)),
        misclassified=tuple(misclassified),
        hard_negatives=tuple(hard),
        n=n,
        exclude=exclude,
        source_ids=tuple(source_ids),
    )
