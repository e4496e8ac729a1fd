"""The continuous version of PGKD: the decisions a live system makes, without any broker in sight.

The offline loop (:mod:`pgkd.distill`) runs step by step; a live system runs the same steps as
services that react to traffic. Their logic lives here so that it is tested without Kafka:

* :class:`HardWindow` keeps the hard negatives of live traffic per class and says when there are
  enough to prompt the teacher;
* :class:`Guidance` is what a model tells the teacher (its validation report and scored validation
  examples): :func:`pgkd.teacher.request.generation_request` builds a PGKD request from it and the
  live hard negatives;
* :class:`LiveQuality` is accuracy and per-class recall over the latest ground-truth feedback.

When to retrain and what to promote are in :mod:`pgkd.promotion`.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from pgkd.evaluation import (
    ClassScores,
    ScoredExample,
    ValidationReport,
)

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
