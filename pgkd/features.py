"""A bounded, thread-safe memo of pooled encoder features per text.

Head-mode training and embedding lookups read the same texts many times while the encoder is
frozen; computing their features once saves most of the cost. A service runs for months, so the
memo keeps only the ``size`` texts used most recently.

>>> cache = FeatureCache(2)
>>> cache.put(["a", "b", "c"], [torch.zeros(1)] * 3)
>>> len(cache), [f is None for f in cache.get(["a", "c"])]
(2, [True, False])
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from cachetools import LRUCache

FEATURE_CACHE_SIZE = 50_000  # texts; 50k x 384 float32 is 77 MB for MiniLM


class FeatureCache:
    def __init__(self, size: int = FEATURE_CACHE_SIZE) -> None:
        self._lru: LRUCache[str, torch.Tensor] = LRUCache(size)
        self._lock = threading.Lock()  # an LRU reorders itself on every read: one user at a time

    def __len__(self) -> int:
        with self._lock:
            return len(self._lru)

    def __contains__(self, text: object) -> bool:
        with self._lock:
            return text in self._lru

    def get(self, texts: Sequence[str]) -> list[torch.Tensor | None]:
        """Each text's features, or None where they are not held."""
        with self._lock:
            return [self._lru.get(t) for t in texts]

    def put(self, texts: Sequence[str], features: Sequence[torch.Tensor]) -> None:
        with self._lock:
            for text, feats in zip(texts, features, strict=True):
                self._lru[text] = feats
