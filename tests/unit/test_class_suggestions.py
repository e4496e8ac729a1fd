"""Candidate classes from out-of-taxonomy texts: clusters big enough, nearest examples first, keywords."""

from __future__ import annotations

import numpy as np
import pytest

from pgkd.class_suggestions import suggest_classes

RAIN = ["heavy rain tonight", "rain and more rain", "rain at noon", "rain clouds gather", "rain warning"]
SPAM = ["cheap pills online", "win cheap pills", "pills pills pills", "cheap watches and pills"]


def embed(texts):
    """Rain texts near one direction, spam near another, the lone text elsewhere."""
    rows = []
    for t in texts:
        base = [1.0, 0.0, 0.0] if "rain" in t else [0.0, 1.0, 0.0] if "pills" in t else [0.0, 0.0, 1.0]
        rows.append(np.array(base) + 0.01 * len(t) * np.array([0.0, 0.0, 0.1]))
    return np.array(rows)


def test_clusters_of_min_size_come_largest_first_with_their_keywords():
    texts = [*RAIN, *SPAM, "a lone odd sentence", RAIN[0]]  # a duplicate counts once
    found = suggest_classes(texts, embed, min_size=4)
    assert [c.size for c in found] == [5, 4]
    assert set(found[0].examples) == set(RAIN) and found[0].keywords[0] == "rain"
    assert set(found[1].examples) == set(SPAM) and found[1].keywords[0] == "pills"
    assert [c.size for c in suggest_classes(texts, embed, min_size=5)] == [5]
    assert len(suggest_classes(texts, embed, min_size=4, max_examples=2)[0].examples) == 2


def test_too_few_texts_or_bad_parameters():
    assert suggest_classes(RAIN[:2], embed, min_size=4) == []
    assert (
        suggest_classes(["1 2 3", "4 5 6", "7 8 9"], lambda ts: np.ones((len(ts), 2)), min_size=2)[0].keywords
        == ()
    )
    with pytest.raises(ValueError):
        suggest_classes(RAIN, embed, min_size=1)
    with pytest.raises(ValueError):
        suggest_classes(RAIN, embed, max_distance=0)
