"""How sure a validation lift is: a paired bootstrap of the macro-F1 difference of two models.

Two hundred validation labels over dozens of classes make macro-F1 noisy: a candidate can beat
the current model by a few points by luck. Resampling the validation set (the same resample for both
models, since they answered the same texts) gives a confidence interval of the difference; a
promotion that asks for its lower bound to be above zero is not a coin flip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Difference:
    """``new - old`` macro-F1 on the full set, and its bootstrap interval at ``level``."""

    delta: float
    low: float
    high: float
    level: float

    def __str__(self) -> str:
        return f"{self.delta:+.4f} ({self.level:.0%} CI {self.low:+.4f} .. {self.high:+.4f})"

    @property
    def minimum_detectable(self) -> float:
        """The smallest lift this validation set tells from zero at ``level``: the interval's
        half-width. A lift under it is as likely noise as progress."""
        return (self.high - self.low) / 2


def _macro_f1(gold: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 of each row of (resamples, n) label-index arrays, as scikit-learn computes it over
    the full taxonomy (a class never predicted nor present scores 0)."""
    f1 = np.zeros(gold.shape[0])
    for c in range(n_classes):
        g, p = gold == c, pred == c
        tp = (g & p).sum(axis=1)
        denominator = g.sum(axis=1) + p.sum(axis=1)
        f1 += np.divide(2 * tp, denominator, out=np.zeros(len(tp)), where=denominator > 0)
    return f1 / n_classes


def macro_f1_difference(
    labels: Sequence[str],
    gold: Sequence[str],
    new: Sequence[str],
    old: Sequence[str],
    *,
    resamples: int = 1000,
    level: float = 0.9,
    seed: int = 0,
) -> Difference:
    """Paired bootstrap of macro-F1(``new``) - macro-F1(``old``) on the same labelled texts.

    >>> d = macro_f1_difference(["a", "b"], ["a", "b"] * 50, ["a", "b"] * 50, ["a", "a"] * 50)
    >>> round(d.delta, 3), d.low > 0
    (0.667, True)
    """
    if not (len(gold) == len(new) == len(old)) or not gold:
        raise ValueError(
            f"gold, new and old must be non-empty and aligned: {len(gold)}, {len(new)}, {len(old)}"
        )
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    index = {c: i for i, c in enumerate(labels)}
    g, a, b = (np.array([index[x] for x in column]) for column in (gold, new, old))
    full = _macro_f1(g[None], a[None], len(labels))[0] - _macro_f1(g[None], b[None], len(labels))[0]
    rows = np.random.default_rng(seed).integers(0, len(g), size=(resamples, len(g)))
    deltas = _macro_f1(g[rows], a[rows], len(labels)) - _macro_f1(g[rows], b[rows], len(labels))
    tail = (1 - level) / 2
    low, high = np.quantile(deltas, [tail, 1 - tail])
    return Difference(float(full), float(low), float(high), level)
