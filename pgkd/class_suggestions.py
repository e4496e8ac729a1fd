"""Candidate classes from out-of-taxonomy traffic: clusters of texts no class fits, offered to an
operator with their examples and keywords, never added without one (``pgkd suggest-classes``, then
``pgkd add-class``).

Texts are clustered by the cosine distance of their sentence embeddings (average linkage, cut at
``max_distance``; 0.8 measured best of 0.7-0.9 on three held-out classes plus spam of BBC, WordNet and
FOLDOC: candidates 93-99% pure, covering 58-91% of the texts, BENCHMARKS.md); a cluster of at least
``min_size`` texts is a candidate. Its examples are ordered
nearest its centre first, and its keywords are the terms that weigh most in it by tf-idf against all
the texts, a hint for a name, not a name.

>>> texts = ["rain", "snow", "hail", "stocks", "bonds"]
>>> vectors = np.array([[1, 0], [0.99, 0.1], [0.98, 0.2], [0, 1], [0.1, 0.99]])
>>> [s.size for s in suggest_classes(texts, lambda ts: vectors, min_size=2)]
[3, 2]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.cluster import AgglomerativeClustering
from sklearn.feature_extraction.text import TfidfVectorizer

from pgkd.samples import sample_key

Embed = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class SuggestedClass:
    """A cluster of out-of-taxonomy texts: how many, its ``keywords`` and ``examples`` (nearest its
    centre first, at most the ``max_examples`` asked for)."""

    size: int
    keywords: tuple[str, ...]
    examples: tuple[str, ...]


def suggest_classes(
    texts: Sequence[str],
    embed: Embed,
    *,
    min_size: int = 5,
    max_distance: float = 0.8,
    max_examples: int = 20,
    keywords: int = 5,
) -> list[SuggestedClass]:
    """The clusters of ``texts`` (duplicates counted once) with ``min_size`` texts or more, largest
    first."""
    if min_size < 2 or not 0 < max_distance <= 2:
        raise ValueError(f"min_size must be >= 2 and max_distance in (0, 2], got {min_size}, {max_distance}")
    unique = list({sample_key(t): t for t in texts if t.strip()}.values())
    if len(unique) < min_size:
        return []
    vectors = np.asarray(embed(unique), dtype=np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    clusters = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=max_distance
    ).fit_predict(vectors)
    weights, terms = _tfidf(unique)
    found = []
    for cluster in np.unique(clusters):
        members = np.flatnonzero(clusters == cluster)
        if len(members) < min_size:
            continue
        centre = vectors[members].mean(axis=0)
        nearest = members[np.argsort(-(vectors[members] @ centre), kind="stable")]
        top = np.asarray(weights[members].mean(axis=0)).ravel().argsort()[::-1][:keywords]
        found.append(
            SuggestedClass(
                size=len(members),
                keywords=tuple(terms[i] for i in top if weights[members][:, i].sum() > 0),
                examples=tuple(unique[i] for i in nearest[:max_examples]),
            )
        )
    return sorted(found, key=lambda s: -s.size)


def _tfidf(texts: Sequence[str]) -> tuple[Any, list[str]]:
    """The tf-idf matrix of ``texts`` (English stop words out) and its vocabulary."""
    vectorizer = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_]{3,}\b")
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError:  # no word of three letters or more in any text
        return np.zeros((len(texts), 1)), [""]
    return matrix, list(vectorizer.get_feature_names_out())
