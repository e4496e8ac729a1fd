"""Filters on teacher output: normalisation, near duplicates, the index that must agree with them."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgkd.teacher.filters import NearDuplicateIndex, check_text, near_duplicate, normalise

SENTENCES = [
    "Stocks fell sharply on Monday after the central bank raised interest rates again.",
    "Arsenal beat Chelsea two-nil at the Emirates to go top of the Premier League.",
    "The prime minister promised new funding for schools in a speech in Manchester.",
    "A new smartphone chip doubles battery life, the manufacturer said on Tuesday.",
    "The film won three awards at the festival, including best director.",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Hello,\n  World!! ", "hello, world"),
        ("\u201cQuoted.\u201d", "quoted"),
        ("...", ""),
        ("STRASSE", "strasse"),
        ("a\t\tb", "a b"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_near_duplicate_ignores_case_spacing_and_edge_punctuation() -> None:
    assert near_duplicate("Stocks fell on Monday.", "  stocks   FELL on monday ")


def test_near_duplicate_catches_a_small_edit_but_not_a_new_sentence() -> None:
    original = SENTENCES[0]
    assert near_duplicate(original, original.replace("Monday", "Friday"))
    assert not near_duplicate(original, SENTENCES[1])
    assert not near_duplicate(
        "Shares in Nokia rose", "Shares in Nokia rose after a strong quarter and new orders"
    )


def test_near_duplicate_threshold_is_checked() -> None:
    with pytest.raises(ValueError, match="threshold"):
        near_duplicate("a", "b", threshold=0.0)
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicateIndex(threshold=1.5)


def test_check_text() -> None:
    assert check_text("  ", max_chars=10) == "empty"
    assert check_text("?!", max_chars=10) == "empty"
    assert check_text("x" * 11, max_chars=10) == "too_long"
    assert check_text("  fine text  ", max_chars=10) is None


def test_index_finds_exact_and_near_duplicates() -> None:
    index = NearDuplicateIndex(SENTENCES)
    assert len(index) == len(SENTENCES)
    assert index.find(SENTENCES[2].upper() + "!") == SENTENCES[2]
    assert index.find(SENTENCES[3].replace("Tuesday", "Friday")) == SENTENCES[3]
    assert index.find("A completely different sentence about gardening and weather.") is None
    assert SENTENCES[4] in index
    assert "something else" not in index


def test_index_adds_each_normalised_text_once() -> None:
    index = NearDuplicateIndex(["Same text.", "same text", "SAME TEXT!"])
    assert len(index) == 1


def test_index_with_longest_keeps_long_texts_for_exact_matches_only() -> None:
    article = " ".join(SENTENCES * 10)
    index = NearDuplicateIndex([article, SENTENCES[0]], longest=100)
    assert index.find(article) == article
    assert index.find(SENTENCES[0].replace("Monday", "Sunday")) == SENTENCES[0]


def _mutate(text: str, rng: random.Random, edits: int) -> str:
    chars = list(text)
    for _ in range(edits):
        i = rng.randrange(len(chars) + 1)
        op = rng.choice("ids")
        if op == "i":
            chars.insert(i, rng.choice("abcde "))
        elif chars and i < len(chars):
            if op == "d":
                del chars[i]
            else:
                chars[i] = rng.choice("abcde ")
    return "".join(chars)


def test_index_agrees_with_brute_force_on_edited_sentences() -> None:
    rng = random.Random(0)
    stored = [_mutate(s, rng, rng.randrange(0, 12)) for s in SENTENCES for _ in range(6)]
    index = NearDuplicateIndex(stored)
    for _ in range(300):
        query = _mutate(rng.choice(SENTENCES), rng, rng.randrange(0, 25))
        brute = any(near_duplicate(query, s) for s in stored)
        assert (index.find(query) is not None) == brute, query


@settings(max_examples=200, deadline=None)
@given(
    stored=st.lists(st.text(alphabet="ab c", min_size=0, max_size=14), max_size=8),
    query=st.text(alphabet="ab c", min_size=0, max_size=14),
    threshold=st.sampled_from([0.5, 0.7, 0.85, 1.0]),
)
def test_index_agrees_with_brute_force_property(stored: list[str], query: str, threshold: float) -> None:
    index = NearDuplicateIndex(stored, threshold=threshold)
    brute = any(near_duplicate(query, s, threshold) for s in stored)
    assert (index.find(query) is not None) == brute
