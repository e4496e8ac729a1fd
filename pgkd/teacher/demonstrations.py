"""Choosing the few-shot demonstrations a chat teacher is shown before each text it labels.

Labelled seed data become ``shots`` demonstrations per text: the most similar ones by cosine on an
``embed`` function if one is given (the demonstrations are embedded once), otherwise one seeded
class-balanced sample that every text shares.

>>> from pgkd.data import Example
>>> seed = [Example("Arsenal won", "sport"), Example("Shares fell", "business"), Example("Cup tie", "sport")]
>>> demos = Demonstrations(seed, ["business", "sport"], shots=2)
>>> sorted(d.label for d in demos.for_query(None))
['business', 'sport']
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from pgkd.data import Example
from pgkd.teacher.base import Embed, unit_rows


class Demonstrations:
    """``shots`` of ``examples`` for each text to label, nearest by ``embed`` when there is one, else
    the fixed class-balanced sample drawn with ``seed``. Raises ValueError when an example's label is
    not one of ``labels``."""

    def __init__(
        self,
        examples: Sequence[Example],
        labels: Sequence[str],
        *,
        shots: int,
        embed: Embed | None = None,
        seed: int = 0,
    ) -> None:
        self.examples = list(examples)
        unknown = sorted({d.label for d in self.examples} - set(labels))
        if unknown:
            raise ValueError(f"demonstrations have labels {unknown} that are not in the taxonomy")
        self.shots, self.seed = shots, seed
        self._embed = embed
        self._vectors: np.ndarray | None = None
        self.balanced = self._balanced_sample(labels, random.Random(seed))

    def _balanced_sample(self, labels: Sequence[str], rng: random.Random) -> list[Example]:
        by_class = {label: [d for d in self.examples if d.label == label] for label in labels}
        for group in by_class.values():
            rng.shuffle(group)
        chosen: list[Example] = []
        while len(chosen) < min(self.shots, len(self.examples)):
            for group in by_class.values():
                if group and len(chosen) < self.shots:
                    chosen.append(group.pop())
        rng.shuffle(chosen)
        return chosen

    def grown(self, examples: Sequence[Example], labels: Sequence[str]) -> Demonstrations:
        """These demonstrations and ``examples`` (of a class added to the taxonomy ``labels``)."""
        return Demonstrations(
            [*self.examples, *examples], labels, shots=self.shots, embed=self._embed, seed=self.seed
        )

    def query_vectors(self, texts: Sequence[str]) -> np.ndarray | None:
        """Unit embeddings of ``texts`` to pass to :meth:`for_query`, or None when the balanced
        sample serves (no ``embed``, no demonstrations or no shots)."""
        if self._embed is None or not self.examples or self.shots == 0 or not texts:
            return None
        # Embedded on first use, so a teacher that never labels never pays for it.
        if self._vectors is None:
            self._vectors = unit_rows(self._embed([d.text for d in self.examples]))
        return unit_rows(self._embed(list(texts)))

    def for_query(self, query: np.ndarray | None) -> list[Example]:
        """The demonstrations for a text with unit embedding ``query`` (None: the balanced sample)."""
        if query is None or self._vectors is None:
            return self.balanced
        similarity = self._vectors @ query
        nearest = np.argsort(-similarity, kind="stable")[: self.shots]
        return [self.examples[i] for i in reversed(nearest)]  # the most similar next to the query
