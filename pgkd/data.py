"""Labelled text and the paper's sparse-regime splits.

A :class:`Corpus` is every labelled text of a dataset (the loaders are in :mod:`pgkd.datasets`);
:func:`make_splits` turns it into the setting of the paper: a few hundred seed labels (train and
validation), a held-out test set, and a large unlabelled traffic pool whose gold labels stay hidden
from the student and are used only to score it, to simulate delayed feedback and to drive the
simulated teacher.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pgkd.errors import DataError
from pgkd.fingerprint import digest_chunks


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled text. ``label`` is a class name from the dataset's taxonomy."""

    text: str
    label: str


@dataclass(frozen=True)
class Corpus:
    """All labelled texts of one dataset. ``labels`` is stored sorted and unique whatever order is given.

    >>> Corpus("toy", ("neg", "pos"), (Example("bad", "neg"), Example("good", "pos"))).labels
    ('neg', 'pos')
    """

    name: str
    labels: tuple[str, ...]
    examples: tuple[Example, ...]
    # One line per label saying what it means; prompts show it, since a label name alone can mislead
    # a small teacher ("entertainment" vs "tech").
    descriptions: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # Sorted labels give every consumer (student heads, prompts, reports) the same class order.
        object.__setattr__(self, "labels", tuple(sorted(set(self.labels))))
        object.__setattr__(self, "examples", tuple(self.examples))
        validate_labels((e.label for e in self.examples), self.labels)


@dataclass(frozen=True)
class Splits:
    """The sparse-regime view of a corpus: seed labels, a test set and the unlabelled traffic pool.

    ``traffic`` labels are hidden gold: only evaluation, delayed feedback and the simulated teacher
    may read them, never the student's training.
    """

    name: str
    labels: tuple[str, ...]
    train: tuple[Example, ...]
    validation: tuple[Example, ...]
    test: tuple[Example, ...]
    traffic: tuple[Example, ...]
    seed: int
    descriptions: Mapping[str, str] = field(default_factory=dict, compare=False)

    def fingerprint(self) -> str:
        """A sha256 hex digest of what a result depends on, to tell whether two runs saw the same data.

        Covers name, labels, seed and the labelled splits; traffic is left out so that changing its
        cap does not invalidate results computed on the same seed and test set.
        """
        header = {"name": self.name, "labels": list(self.labels), "seed": self.seed}

        def chunks() -> Iterator[str]:
            yield json.dumps(header, sort_keys=True)
            for split_name, split in (
                ("train", self.train),
                ("validation", self.validation),
                ("test", self.test),
            ):
                yield f"\n[{split_name}:{len(split)}]"
                for example in split:
                    # JSON quoting keeps ("a\tb", "c") and ("a", "b\tc") apart.
                    yield json.dumps([example.text, example.label]) + "\n"

        return digest_chunks(chunks())

    def summary(self) -> dict[str, Any]:
        """Sizes per split and per-class counts of the seed-train set, for logs and reports."""
        counts = Counter(e.label for e in self.train)
        return {
            "name": self.name,
            "seed": self.seed,
            "n_labels": len(self.labels),
            "sizes": {
                "train": len(self.train),
                "validation": len(self.validation),
                "test": len(self.test),
                "traffic": len(self.traffic),
            },
            "train_per_class": {label: counts.get(label, 0) for label in self.labels},
        }


def validate_labels(labels: Iterable[str], taxonomy: Sequence[str]) -> None:
    """Raise :class:`DataError` naming every label that is not in ``taxonomy``.

    >>> validate_labels(["pos"], ["neg", "pos"])  # returns None
    """
    unknown = sorted(set(labels) - set(taxonomy))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise DataError(f"{len(unknown)} unknown label(s): {shown}; taxonomy is {', '.join(taxonomy)}")


def corpus_of(name: str, examples: list[Example], source: str) -> Corpus:
    """A corpus of ``examples`` read from ``source``: duplicates dropped, at least two classes."""
    examples = _deduplicate(examples, source)
    labels = {e.label for e in examples}
    if len(labels) < 2:
        found = f"only {sorted(labels)}" if labels else "no rows"
        raise DataError(f"{source}: a classifier needs at least 2 classes, found {found}")
    return Corpus(name=name, labels=tuple(labels), examples=tuple(examples))


def _deduplicate(examples: list[Example], source: str) -> list[Example]:
    """One example per text (whitespace and case folded). A text in two splits would leak training
    data into validation or test (BBC News holds about a hundred duplicate articles); copies that
    disagree on the label are dropped altogether, since neither label can be trusted."""
    labels_of: dict[str, set[str]] = {}
    for e in examples:
        labels_of.setdefault(" ".join(e.text.split()).casefold(), set()).add(e.label)
    conflicting = {k for k, v in labels_of.items() if len(v) > 1}
    kept, seen = [], set()
    for e in examples:
        key = " ".join(e.text.split()).casefold()
        if key in seen or key in conflicting:
            continue
        seen.add(key)
        kept.append(e)
    if len(kept) < len(examples):
        warnings.warn(
            f"{source}: dropped {len(examples) - len(kept)} duplicate text(s)"
            + (f", {len(conflicting)} of them with conflicting labels" if conflicting else ""),
            stacklevel=3,
        )
    return kept


def _take_stratified(
    pool: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``pool`` (indices) into exactly ``n`` taken and the rest, class shares kept within one.

    Largest-remainder allocation instead of sklearn's ``train_test_split(stratify=...)``: sklearn
    refuses a class with a single member in the pool, which WordNet's rare lexicographer files hit
    in an 800 + 200 draw, and it cannot take fewer items than there are classes.
    """
    classes, counts = np.unique(y[pool], return_counts=True)
    # Integer arithmetic: float quotas could round a class above its own size.
    alloc, remainders = np.divmod(counts * n, len(pool))
    # Leftover slots go to the largest remainders; seeded jitter breaks ties reproducibly.
    order = np.lexsort((rng.random(len(classes)), -remainders))
    alloc[order[: n - int(alloc.sum())]] += 1
    taken: list[np.ndarray] = []
    rest: list[np.ndarray] = []
    for cls, k in zip(classes, alloc, strict=True):
        members = rng.permutation(pool[y[pool] == cls])
        taken.append(members[:k])
        rest.append(members[k:])
    return rng.permutation(np.concatenate(taken)), rng.permutation(np.concatenate(rest))


def make_splits(
    corpus: Corpus,
    *,
    seed: int = 0,
    n_train: int = 800,
    n_validation: int = 200,
    test_fraction: float = 0.2,
    max_test: int | None = 2000,
    max_traffic: int | None = 20000,
) -> Splits:
    """Seeded, stratified sparse-regime splits: test first, then train + validation, the rest is traffic.

    Classes with fewer than 2 examples cannot appear in both a training and an evaluation split, so
    they are dropped from the examples and the labels with a warning. The same seed gives the same
    splits in any process.

    >>> from pgkd.datasets import load_bbc
    >>> make_splits(load_bbc(), seed=1).summary()["sizes"]
    {'train': 800, 'validation': 200, 'test': 425, 'traffic': 699}
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n_train < 1 or n_validation < 1:
        raise DataError(f"n_train and n_validation must be positive, got {n_train} and {n_validation}")
    if min(max_test if max_test is not None else 0, max_traffic if max_traffic is not None else 0) < 0:
        raise DataError(f"max_test and max_traffic must be >= 0 or None, got {max_test} and {max_traffic}")
    counts = Counter(e.label for e in corpus.examples)
    rare = [label for label in corpus.labels if counts.get(label, 0) < 2]
    if rare:
        warnings.warn(f"{corpus.name}: dropping classes with fewer than 2 examples: {rare}", stacklevel=2)
    labels = tuple(label for label in corpus.labels if label not in rare)
    if len(labels) < 2:
        raise DataError(
            f"{corpus.name}: needs at least 2 classes with 2+ examples each, found {list(labels)}"
        )
    examples = [e for e in corpus.examples if e.label not in rare]
    code = {label: i for i, label in enumerate(labels)}
    y = np.array([code[e.label] for e in examples], dtype=np.int64)

    n_test = round(test_fraction * len(examples))
    n_test = n_test if max_test is None else min(n_test, max_test)
    available = len(examples) - n_test
    if n_train + n_validation > available:
        raise DataError(
            f"{corpus.name}: {len(examples)} examples, {n_test} go to test, leaving {available}; "
            f"n_train + n_validation = {n_train + n_validation} is too many"
        )
    rng = np.random.default_rng(seed)
    test, rest = _take_stratified(np.arange(len(examples)), y, n_test, rng)
    labelled, traffic = _take_stratified(rest, y, n_train + n_validation, rng)
    train, validation = _take_stratified(labelled, y, n_train, rng)
    if max_traffic is not None and len(traffic) > max_traffic:
        traffic = _take_stratified(traffic, y, max_traffic, rng)[0]

    def pick(indices: np.ndarray) -> tuple[Example, ...]:
        return tuple(examples[i] for i in indices)

    descriptions = {c: d for c, d in corpus.descriptions.items() if c in labels}
    return Splits(
        corpus.name, labels, pick(train), pick(validation), pick(test), pick(traffic), seed, descriptions
    )
