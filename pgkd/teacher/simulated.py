"""A stand-in teacher that knows the gold labels of a pool of texts.

It answers what an LLM teacher of a chosen ``accuracy`` would, without an LLM: labels are looked up,
and "generated" samples are unseen gold-labelled texts drawn from the pool. Runs with it measure what
the PGKD loop achieves with a strong teacher; they say nothing about what a real LLM writes, so its
name is ``"simulated"`` in every report.

>>> from pgkd.data import Example
>>> pool = [Example("Arsenal beat Chelsea", "sport"), Example("Shares fell 3%", "business")]
>>> teacher = SimulatedTeacher(["business", "sport"], pool)
>>> teacher.label(["arsenal beat chelsea!", "unknown text"])
[TeacherLabel(label='sport', confidence=1.0), TeacherLabel(label=None, confidence=0.0)]
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from pgkd.data import Example
from pgkd.evaluation import ScoredExample
from pgkd.teacher.base import (
    Embed,
    GenerationResult,
    TeacherLabel,
    TeacherUsage,
    check_labels,
    spread,
    unit_rows,
)
from pgkd.teacher.filters import normalise
from pgkd.teacher.request import GenerationRequest


class SimulatedTeacher:
    """An oracle over ``pool`` (texts with hidden gold labels) that errs with probability
    ``1 - accuracy``.

    * :meth:`label`: the gold label of a pool text (matched normalised), or with probability
      ``1 - accuracy`` another label, the same one every time for a given text and seed;
      ``confidence`` is ``accuracy``. Texts outside the pool get an abstention.
    * :meth:`generate`: for each requested class, pool texts of that class the student has not seen,
      nearest by cosine (``embed``) to the hard negatives of that class (to all hard negatives if the
      class has none), seeded random without ``embed``. With probability ``1 - accuracy`` a slot is
      filled with a text of another class under the requested label, as a teacher's wrong label
      would be. A text is handed out at most once and never one in ``exclude``.

    Usage counts one call per labelled text and per generate step; tokens and cost stay 0.
    """

    name = "simulated"

    def __init__(
        self,
        labels: Sequence[str],
        pool: Sequence[Example],
        *,
        accuracy: float = 1.0,
        seed: int = 0,
        embed: Embed | None = None,
    ) -> None:
        self.labels = check_labels(labels)
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"accuracy must be in [0, 1], got {accuracy}")
        unknown = sorted({e.label for e in pool} - set(self.labels))
        if unknown:
            raise ValueError(f"pool has labels {unknown} that are not in the taxonomy")
        self.accuracy = accuracy
        self.seed = seed
        self.usage = TeacherUsage()
        self._embed = embed
        self._rng = random.Random(seed)
        self._pool: list[Example] = []
        self._gold: dict[str, str] = {}
        for example in pool:
            key = normalise(example.text)
            if key and key not in self._gold:
                self._gold[key] = example.label
                self._pool.append(example)
        self._keys = [normalise(e.text) for e in self._pool]
        self._drawn: set[str] = set()
        self._vectors: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"SimulatedTeacher(accuracy={self.accuracy}, pool={len(self._pool)}, labels={self.labels!r})"

    def add_class(self, name: str, description: str, examples: Sequence[str]) -> None:
        # The oracle knows the gold of its pool only: it abstains on the new class's texts and
        # writes none of them (the operator's examples are training data, not its to hand back).
        if name not in self.labels:
            self.labels = check_labels((*self.labels, name))

    def label(self, texts: Sequence[str]) -> list[TeacherLabel]:
        if isinstance(texts, str):
            raise TypeError("label() takes a sequence of texts, not one string")
        labelled = []
        for text in texts:
            self.usage.calls += 1
            key = normalise(text)
            gold = self._gold.get(key)
            if gold is None:
                self.usage.abstained += 1
                labelled.append(TeacherLabel(None, 0.0))
                continue
            # Seeded per text, so a wrong answer is the same wrong answer whenever it is asked.
            rng = random.Random(f"{self.seed}\x1f{key}")
            if rng.random() >= self.accuracy:
                gold = rng.choice([label for label in self.labels if label != gold])
            labelled.append(TeacherLabel(gold, self.accuracy))
        return labelled

    def generate(self, request: GenerationRequest) -> GenerationResult:
        quotas = spread(request.classes, request.n, self.labels)
        result = GenerationResult()
        if not quotas:
            return result
        self.usage.calls += 1
        excluded = {normalise(t) for t in request.exclude} | self._drawn
        anchors = list(request.hard_negatives) or list(request.misclassified)
        for label, wanted in quotas.items():
            slots = [self._rng.random() < self.accuracy for _ in range(wanted)]
            right = self._draw(label, slots.count(True), anchors, excluded, same_class=True)
            wrong = self._draw(label, slots.count(False), anchors, excluded, same_class=False)
            result.samples.extend(Example(e.text, label) for e in (*right, *wrong))
        result.proposed = len(result.samples)
        return result

    def _draw(
        self, label: str, k: int, anchors: Sequence[ScoredExample], excluded: set[str], *, same_class: bool
    ) -> list[Example]:
        if k <= 0:
            return []
        candidates = [
            i
            for i, e in enumerate(self._pool)
            if (e.label == label) == same_class and self._keys[i] not in excluded
        ]
        if not candidates:
            return []
        targeted = [a.text for a in anchors if a.label == label] or [a.text for a in anchors]
        if self._embed is not None and targeted:
            if self._vectors is None:
                self._vectors = unit_rows(self._embed([e.text for e in self._pool]))
            similarity = self._vectors[candidates] @ unit_rows(self._embed(targeted)).T
            order = np.argsort(-similarity.max(axis=1), kind="stable")
            chosen = [candidates[i] for i in order[:k]]
        else:
            chosen = self._rng.sample(candidates, min(k, len(candidates)))
        for i in chosen:
            excluded.add(self._keys[i])
            self._drawn.add(self._keys[i])
        return [self._pool[i] for i in chosen]
