"""Drift: live traffic that no longer looks like what the current model was judged on.

:class:`DriftMonitor` keeps two windows of live signals per model version: the *reference* (the
first ``window`` predictions, and the first ``window`` ground truths, after the version started
answering) and the *current* one (the latest ``window`` of each). :meth:`DriftMonitor.check`
compares them with one test per signal, each at significance ``alpha``, once every quarter window:

* ``confidence``: the distribution of calibrated confidence (two-sample Kolmogorov-Smirnov), when
  its mean fell by at least ``min_shift``;
* ``out_of_taxonomy``: the share of texts far from every class (two-proportion z-test), when it rose;
* ``class_mix``: the predicted classes (chi-square on the two windows' counts); the classes whose
  share moved most are named;
* ``accuracy``: per class with ``min_feedback`` ground truths in both windows, the share the
  student got right (two-proportion z-test, Bonferroni over the classes tested), when it fell.

What moved comes back as a :class:`Drift` naming the signals and the classes; the monitor then
waits ``cooldown`` predictions before it raises another, and the current window becomes the
reference: the new normal is what the next drift is measured against.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class DriftConfig:
    window: int = 400
    alpha: float = 0.001  # several tests run at each check: keep false alarms rare
    min_shift: float = 0.05  # the smallest fall of mean confidence worth raising
    min_feedback: int = 15
    cooldown: int = 400

    def __post_init__(self) -> None:
        if self.window < 20 or not 0 < self.alpha < 1 or self.min_feedback < 1 or self.cooldown < 0:
            raise ValueError(
                "need window >= 20, 0 < alpha < 1, min_feedback >= 1 and cooldown >= 0, got "
                f"{self.window}, {self.alpha}, {self.min_feedback}, {self.cooldown}"
            )


@dataclass(frozen=True)
class Drift:
    """What moved: a sentence per signal, and the classes it concerns (targets for the teacher)."""

    model_version: str
    signals: dict[str, str]
    classes: list[str] = field(default_factory=list)
    predictions: int = 0  # predictions the monitor had seen of this version when it raised it


@dataclass
class _Window:
    """One window of predictions (label, confidence, out of taxonomy) and ground truths."""

    size: int
    predicted: deque[tuple[str, float, bool]] = field(init=False)
    judged: deque[tuple[str, bool]] = field(init=False)

    def __post_init__(self) -> None:
        self.predicted, self.judged = deque(maxlen=self.size), deque(maxlen=self.size)

    @property
    def full(self) -> bool:
        return len(self.predicted) == self.size


@dataclass
class _Version:
    """The windows and counters of one model version."""

    reference: _Window
    current: _Window
    seen: int = 0
    quiet_until: int = 0
    checked_at: int = 0


class DriftMonitor:
    """Feed it predictions and ground truths; :meth:`check` after each batch.

    Each model version has its own windows (its own normal), the :data:`VERSIONS` most recent
    kept: during a rollout two versions answer side by side. A version is tested once every
    quarter window of new predictions, not on every batch, which keeps repeated tests of
    overlapping windows from inflating the false alarms.

    >>> monitor = DriftMonitor(DriftConfig(window=50, cooldown=0))
    >>> for i in range(100):
    ...     monitor.observe("v1", "sport", 0.95, False)
    >>> for i in range(50):
    ...     monitor.observe("v1", "tech", 0.5, i % 2 == 0)
    >>> sorted(monitor.check().signals)
    ['class_mix', 'confidence', 'out_of_taxonomy']
    """

    VERSIONS = 3

    def __init__(self, config: DriftConfig = DriftConfig()) -> None:
        self.config = config
        self.versions: OrderedDict[str, _Version] = OrderedDict()

    def _state(self, version: str) -> _Version:
        state = self.versions.get(version)
        if state is None:
            state = _Version(_Window(self.config.window), _Window(self.config.window))
            self.versions[version] = state
            while len(self.versions) > self.VERSIONS:
                self.versions.popitem(last=False)
        self.versions.move_to_end(version)
        return state

    def observe(self, version: str, label: str, confidence: float, out_of_taxonomy: bool) -> None:
        """One prediction by ``version``."""
        state = self._state(version)
        state.seen += 1
        item = (label, float(confidence), bool(out_of_taxonomy))
        (state.reference if not state.reference.full else state.current).predicted.append(item)

    def judge(self, version: str, gold: str, correct: bool) -> None:
        """One ground truth of a prediction by ``version`` (an unknown version is ignored)."""
        state = self.versions.get(version)
        if state is None:
            return
        reference = state.reference.judged
        target = reference if len(reference) < self.config.window else state.current.judged
        target.append((gold, correct))

    def check(self) -> Drift | None:
        """What moved between a version's reference and current window, or None."""
        for version, state in reversed(self.versions.items()):
            drift = self._check(version, state)
            if drift is not None:
                return drift
        return None

    def _check(self, version: str, state: _Version) -> Drift | None:
        every = max(1, self.config.window // 4)
        if not state.current.full or state.seen < state.quiet_until or state.seen - state.checked_at < every:
            return None
        state.checked_at = state.seen
        signals: dict[str, str] = {}
        classes: list[str] = []
        ref, cur = state.reference, state.current
        for test in (self._confidence, self._out_of_taxonomy, self._class_mix, self._accuracy):
            found = test(ref, cur)
            if found is not None:
                name, text, moved = found
                signals[name] = text
                classes += [c for c in moved if c not in classes]
        if not signals:
            return None
        drift = Drift(version, signals, classes, state.seen)
        # The new normal: later drift is measured against what traffic looks like now.
        state.reference, state.current = cur, _Window(self.config.window)
        state.reference.judged = ref.judged if len(cur.judged) < self.config.min_feedback else cur.judged
        state.quiet_until = state.seen + self.config.cooldown
        return drift

    # -- the tests --------------------------------------------------------------------------------

    def _confidence(self, ref: _Window, cur: _Window) -> tuple[str, str, list[str]] | None:
        a = np.array([c for _, c, _ in ref.predicted])
        b = np.array([c for _, c, _ in cur.predicted])
        if a.mean() - b.mean() < self.config.min_shift:
            return None
        p = float(stats.ks_2samp(a, b).pvalue)
        if p >= self.config.alpha:
            return None
        return "confidence", f"mean {a.mean():.3f} -> {b.mean():.3f} (KS p={p:.1e})", []

    def _out_of_taxonomy(self, ref: _Window, cur: _Window) -> tuple[str, str, list[str]] | None:
        x1, x2 = sum(o for *_, o in ref.predicted), sum(o for *_, o in cur.predicted)
        n1, n2 = len(ref.predicted), len(cur.predicted)
        p = _rise_p(x1, n1, x2, n2)
        if p >= self.config.alpha:
            return None
        return "out_of_taxonomy", f"{x1 / n1:.1%} -> {x2 / n2:.1%} of texts (p={p:.1e})", []

    def _class_mix(self, ref: _Window, cur: _Window) -> tuple[str, str, list[str]] | None:
        a, b = Counter(label for label, *_ in ref.predicted), Counter(label for label, *_ in cur.predicted)
        # Chi-square needs expected counts of 5 or more: the rarer classes are pooled.
        n1, n2 = len(ref.predicted), len(cur.predicted)
        common = sorted(c for c in set(a) | set(b) if (a[c] + b[c]) * min(n1, n2) / (n1 + n2) >= 5)
        rare = [c for c in set(a) | set(b) if c not in common]
        labels = common + (["(rarer classes)"] if rare else [])
        a["(rarer classes)"], b["(rarer classes)"] = sum(a[c] for c in rare), sum(b[c] for c in rare)
        if len(labels) < 2:
            return None
        table = np.array([[a[c] for c in labels], [b[c] for c in labels]])
        p = float(stats.chi2_contingency(table).pvalue)
        if p >= self.config.alpha:
            return None
        shift = {c: b[c] / n2 - a[c] / n1 for c in common}
        moved = sorted(common, key=lambda c: -abs(shift[c]))[:3]
        text = ", ".join(f"{c} {a[c] / n1:.0%} -> {b[c] / n2:.0%}" for c in moved)
        return "class_mix", f"{text} (chi-square p={p:.1e})", moved

    def _accuracy(self, ref: _Window, cur: _Window) -> tuple[str, str, list[str]] | None:
        moved, texts = [], []
        judged = {}
        for label in sorted({g for g, _ in ref.judged} & {g for g, _ in cur.judged}):
            r = [ok for g, ok in ref.judged if g == label]
            c = [ok for g, ok in cur.judged if g == label]
            if min(len(r), len(c)) >= self.config.min_feedback:
                judged[label] = (r, c)
        for label, (r, c) in judged.items():
            p = _rise_p(len(r) - sum(r), len(r), len(c) - sum(c), len(c))  # its errors rose
            if p < self.config.alpha / len(judged):  # one test per class: Bonferroni
                moved.append(label)
                texts.append(f"{label} {sum(r) / len(r):.2f} -> {sum(c) / len(c):.2f}")
        if not moved:
            return None
        return "accuracy", ", ".join(texts), moved


def _rise_p(x1: int, n1: int, x2: int, n2: int) -> float:
    """One-sided p-value that the rate x2/n2 is above x1/n1 (pooled two-proportion z-test)."""
    pooled = (x1 + x2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        return 1.0
    z = (x2 / n2 - x1 / n1) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return float(stats.norm.sf(z))
