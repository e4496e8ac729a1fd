"""Traffic that fits no class: a distance to the training set in the student's own feature space.

A softmax always sums to one, so a classifier answers "politics 1.000" for a grocery list. What
does know it has never seen such a text is the space the classifier reads: the features that feed
its last layer. The score of a text is one minus the cosine similarity of its features to its
``k``-th nearest training example (Sun et al., 2022, "Out-of-distribution detection with deep
nearest neighbors"): near the training data it is small, far from every class it is large. The
threshold is the ``quantile`` of the scores of held-out in-taxonomy texts (validation), so that
about ``1 - quantile`` of normal traffic is flagged; benchmarks/out_of_taxonomy.py measures how
well it separates held-out classes, other corpora and random tokens (BENCHMARKS.md).

The bank and its threshold are saved beside the weights (``ood.safetensors``, checksummed in
``pgkd.json``) and loaded with them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from safetensors.numpy import load_file, save_file

from pgkd.data import Example
from pgkd.errors import ModelError
from pgkd.fingerprint import file_digest

if TYPE_CHECKING:
    from pgkd.student import Student

BANK_FILE = "ood.safetensors"
MAX_BANK = 20_000  # training examples kept: 20k x 384 float32 is 30 MB, and a batch scores in ms


def unit(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class OutOfTaxonomy:
    """A fitted detector: ``score`` texts' features, flag those above ``threshold``.

    >>> rng = np.random.default_rng(0)
    >>> centres = np.eye(8)[:3] * 5
    >>> train = np.repeat(centres, 50, axis=0) + rng.normal(0, 0.3, (150, 8))
    >>> detector = OutOfTaxonomy.fit(train, train[::7], k=5)
    >>> bool(detector.flag(np.eye(8)[7:] * 5)[0]), bool(detector.flag(centres[:1])[0])
    (True, False)
    """

    bank: np.ndarray  # (n, d) L2-normalised training features
    k: int
    threshold: float
    quantile: float

    @classmethod
    def fit(
        cls,
        train_features: np.ndarray,
        validation_features: np.ndarray,
        *,
        k: int = 10,
        quantile: float = 0.95,
        seed: int = 0,
    ) -> OutOfTaxonomy:
        """Keep (up to :data:`MAX_BANK` of) the training features; the threshold flags the top
        ``1 - quantile`` of the validation scores."""
        if len(train_features) == 0 or len(validation_features) == 0:
            raise ModelError("an out-of-taxonomy detector needs training and validation features")
        if not 0 < quantile < 1 or k < 1:
            raise ValueError(f"need 0 < quantile < 1 and k >= 1, got {quantile}, {k}")
        bank = unit(np.asarray(train_features, dtype=np.float32))
        if len(bank) > MAX_BANK:
            bank = bank[np.random.default_rng(seed).choice(len(bank), MAX_BANK, replace=False)]
        k = min(k, len(bank))
        scores = _scores(bank, k, validation_features)
        return cls(bank, k, float(np.quantile(scores, quantile)), quantile)

    def score(self, features: np.ndarray) -> np.ndarray:
        """1 - cosine similarity to the k-th nearest training example, per row (0 = in the data)."""
        return _scores(self.bank, self.k, features)

    def flag(self, features: np.ndarray) -> np.ndarray:
        return self.score(features) > self.threshold

    # -- storage beside the weights ---------------------------------------------------------------

    def save(self, directory: str | Path) -> str:
        """Write the bank; returns what ``pgkd.json`` records of it (k, threshold, sha256)."""
        path = Path(directory) / BANK_FILE
        save_file({"bank": self.bank}, str(path))
        return json.dumps(
            {
                "k": self.k,
                "threshold": self.threshold,
                "quantile": self.quantile,
                "sha256": file_digest(path),
            },
            sort_keys=True,
        )

    @classmethod
    def load(cls, directory: str | Path, record: str) -> OutOfTaxonomy:
        """The detector saved in ``directory``, checked against ``record`` (what :meth:`save` said)."""
        path = Path(directory) / BANK_FILE
        meta = json.loads(record)
        if not path.is_file():
            raise ModelError(f"{directory} names an out-of-taxonomy bank but has no {BANK_FILE}")
        if file_digest(path) != meta["sha256"]:
            raise ModelError(f"checksum mismatch for {path}: the file is corrupt or was altered")
        return cls(
            load_file(str(path))["bank"], int(meta["k"]), float(meta["threshold"]), float(meta["quantile"])
        )


@dataclass(frozen=True)
class DetectorConfig:
    """How to fit a detector: the ``k``-th neighbour, and the share of in-taxonomy validation texts
    that must score under the threshold."""

    k: int = 10
    quantile: float = 0.95

    def __post_init__(self) -> None:
        if self.k < 1 or not 0 < self.quantile < 1:
            raise ValueError(f"need k >= 1 and 0 < quantile < 1, got {self.k}, {self.quantile}")


DEFAULT_DETECTOR = DetectorConfig()


def fit_detector(
    student: Student,
    train: Sequence[Example],
    validation: Sequence[Example],
    config: DetectorConfig = DEFAULT_DETECTOR,
    *,
    cache: bool = False,
) -> OutOfTaxonomy:
    """Fit a detector on ``student``'s features of its training set and of validation, and attach
    it (``student.fence``); ``cache`` reuses memoised encoder features (head mode)."""

    def features(examples: Sequence[Example]) -> np.ndarray:
        found = student.predict([e.text for e in examples], features=True, cache=cache).features
        assert found is not None
        return found

    detector = OutOfTaxonomy.fit(features(train), features(validation), k=config.k, quantile=config.quantile)
    student.fence = detector
    return detector


def _scores(bank: np.ndarray, k: int, features: np.ndarray) -> np.ndarray:
    if len(features) == 0:
        return np.zeros(0, dtype=np.float32)
    similarity = unit(np.asarray(features, dtype=np.float32)) @ bank.T
    kth = np.partition(similarity, -k, axis=1)[:, -k]
    return (1.0 - kth).astype(np.float32)
