"""Checks a teacher's output must pass before it becomes training data.

An LLM asked for "new" samples likes to hand back the prompt's own examples with a word changed, or
the same sentence twice. :func:`near_duplicate` is the one definition of "too similar" (difflib's
ratio on normalised text) and :class:`NearDuplicateIndex` answers the same question against many
texts at once without comparing against all of them.

>>> near_duplicate("Stocks fell sharply on Monday.", "stocks fell sharply on monday")
True
>>> index = NearDuplicateIndex(["Arsenal beat Chelsea 2-0 at home."])
>>> index.find("Arsenal beat Chelsea 2-0 at home!")
'Arsenal beat Chelsea 2-0 at home.'
"""

from __future__ import annotations

import bisect
import math
import re
import string
from collections import Counter
from collections.abc import Iterable
from difflib import SequenceMatcher
from typing import Literal

_WHITESPACE = re.compile(r"\s+")
_EDGE_PUNCTUATION = string.punctuation + "\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00ab\u00bb"
_SHINGLE = 3

TextProblem = Literal["empty", "too_long"]


def normalise(text: str) -> str:
    """Casefold, collapse whitespace and strip punctuation at both ends.

    >>> normalise("  Hello,\\n  World!! ")
    'hello, world'
    """
    return _WHITESPACE.sub(" ", text.casefold()).strip().strip(_EDGE_PUNCTUATION).strip()


def check_text(text: str, *, max_chars: int) -> TextProblem | None:
    """Why ``text`` cannot be a training sample (``"empty"``, ``"too_long"``), or None if it can."""
    if not normalise(text):
        return "empty"
    if len(text.strip()) > max_chars:
        return "too_long"
    return None


def _ratio(a: str, b: str, threshold: float) -> bool:
    """difflib's ratio of two normalised texts is at least ``threshold``, upper bounds checked first."""
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    return (
        matcher.real_quick_ratio() >= threshold
        and matcher.quick_ratio() >= threshold
        and matcher.ratio() >= threshold
    )


def near_duplicate(a: str, b: str, threshold: float = 0.85) -> bool:
    """Whether two texts are the same up to case, spacing, edge punctuation and small edits.

    Similarity is :class:`difflib.SequenceMatcher`'s ratio (2 * matched characters / total
    characters) on :func:`normalise`\\ d text; changing one word of a ten-word sentence stays above
    0.85, a different sentence on the same topic falls far below.

    >>> near_duplicate("Apple shares rose 5% on Tuesday", "Apple shares rose 6% on Tuesday")
    True
    >>> near_duplicate("Apple shares rose 5% on Tuesday", "Nokia cut 300 jobs in Finland")
    False
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    na, nb = normalise(a), normalise(b)
    return na == nb or _ratio(na, nb, threshold)


def _shingles(text: str) -> set[str]:
    if len(text) < _SHINGLE:
        return {text}
    return {text[i : i + _SHINGLE] for i in range(len(text) - _SHINGLE + 1)}


class NearDuplicateIndex:
    """Texts to test candidates against: :meth:`find` gives the same answer as calling
    :func:`near_duplicate` against every text added, but only compares with a few of them.

    Exact matches come from a set of normalised texts. Otherwise a text can only be a near duplicate
    if its length is close (difflib's ``real_quick_ratio`` bound) and it shares enough character
    trigrams: if ``ratio(a, b) >= t``, at most ``3 * (1 - t) * (len(a) + len(b))`` of ``a``'s
    trigram positions fall outside the matching blocks, so every other distinct trigram of ``a``
    occurs in ``b``. Only texts that pass both bounds are compared with difflib.

    ``longest`` (optional) is the longest candidate that will be tested: texts too long to be a
    near duplicate of any such candidate are kept for exact matching only, which keeps an index of
    full news articles cheap when only short samples are tested against it (a longer candidate is
    then only compared exactly with those texts).
    """

    def __init__(
        self, texts: Iterable[str] = (), *, threshold: float = 0.85, longest: int | None = None
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._fuzzy_limit = None if longest is None else math.ceil(longest * (2.0 - threshold) / threshold)
        self._exact: dict[str, str] = {}
        self._texts: list[str] = []
        self._normalised: list[str] = []
        self._by_length: list[tuple[int, int]] = []
        self._postings: dict[str, list[int]] = {}
        for text in texts:
            self.add(text)

    def __len__(self) -> int:
        return len(self._exact)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and self.find(text) is not None

    def add(self, text: str) -> None:
        """Remember ``text`` (as given; comparisons use its normalised form)."""
        norm = normalise(text)
        if norm in self._exact:
            return
        self._exact[norm] = text
        if self._fuzzy_limit is not None and len(norm) > self._fuzzy_limit:
            return
        doc = len(self._texts)
        self._texts.append(text)
        self._normalised.append(norm)
        bisect.insort(self._by_length, (len(norm), doc))
        for shingle in _shingles(norm):
            self._postings.setdefault(shingle, []).append(doc)

    def find(self, text: str) -> str | None:
        """An added text that ``text`` nearly duplicates (an exact match first), or None."""
        norm = normalise(text)
        if norm in self._exact:
            return self._exact[norm]
        t = self.threshold
        # real_quick_ratio: 2 * min(la, lb) / (la + lb) >= t bounds the other text's length.
        low = math.floor(len(norm) * t / (2.0 - t))
        high = math.ceil(len(norm) * (2.0 - t) / t)
        start = bisect.bisect_left(self._by_length, (low, -1))
        stop = bisect.bisect_right(self._by_length, (high, len(self._texts)))
        window = {doc for _, doc in self._by_length[start:stop]}
        if not window:
            return None
        shingles = _shingles(norm)
        shared: Counter[int] = Counter()
        for shingle in shingles:
            for doc in self._postings.get(shingle, ()):
                if doc in window:
                    shared[doc] += 1
        for doc in sorted(window):
            other = self._normalised[doc]
            needed = len(shingles) - _SHINGLE * (1.0 - t) * (len(norm) + len(other))
            if min(len(norm), len(other)) < _SHINGLE:
                needed = 0  # a text shorter than a trigram has no trigram positions to count
            if shared[doc] >= needed and _ratio(norm, other, t):
                return self._texts[doc]
        return None
