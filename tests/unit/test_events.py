"""Event schemas and the decoder every service relies on to dead-letter bad records."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgkd.samples import sample_key
from streams.events import (
    MAX_RECORD_BYTES,
    MAX_TEXT_CHARS,
    DeadLetter,
    EventDecodeError,
    Feedback,
    HardEvent,
    ModelUpdate,
    Prediction,
    Request,
    Sample,
    decode,
)
from streams.topics import SPECS, Topics


def test_request_round_trip():
    r = Request(id="r1", text="Shares rose", meta={"source": "test", "n": 3})
    back = decode(Request, r.to_bytes())
    assert back == r and back.v == 1


@pytest.mark.parametrize(
    ("raw", "reason", "message"),
    [
        (b"{not json", "bad_json", r"Invalid JSON"),
        (b"", "bad_json", r"Invalid JSON"),
        (None, "bad_json", r"empty record \(no value\)"),
        (b"\xff\xfe\x00garbage", "not_utf8", r"'utf-8' codec can't decode byte 0xff"),
        (b'{"id": "r1"}', "schema", r"text: Field required"),
        (b'{"id": "r1", "text": 5}', "schema", r"text: Input should be a valid string"),
        (b'{"id": "r1", "text": "   "}', "schema", r"text: .*text is blank"),
        (b'{"id": "", "text": "x"}', "schema", r"id: String should have at least 1 character"),
        (b"[1, 2, 3]", "schema", r"Request: Input should be an object"),
        (b'"just a string"', "schema", r"Request: Input should be an object"),
        (
            json.dumps({"id": "r1", "text": "x" * (MAX_TEXT_CHARS + 1)}).encode(),
            "schema",
            r"text: String should have at most",
        ),
        (b'{"id": "r1", "text": "x", "v": 99}', "unsupported_version", r"schema v99 > v1"),
        (b'{"id": "r1", "body": "a renamed field", "v": 2}', "unsupported_version", r"schema v2 > v1"),
        (
            b"{" + b'"a":' * 0 + b'"id": "r1", "text": "' + b"x" * MAX_RECORD_BYTES + b'"}',
            "oversized",
            r"\d+ bytes > \d+",
        ),
    ],
)
def test_bad_records_name_their_reason(raw, reason, message):
    with pytest.raises(EventDecodeError, match=rf"^{reason}: {message}") as info:
        decode(Request, raw)
    assert info.value.reason == reason


def test_deeply_nested_json_is_a_clean_error():
    deep = b'{"id": "r1", "text": "x", "meta": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(EventDecodeError, match=r"^bad_json: (Invalid JSON|nesting too deep)"):
        decode(Request, deep)


def test_unknown_fields_are_ignored_for_forward_compatibility():
    r = decode(Request, b'{"id": "r1", "text": "x", "future_field": {"a": 1}}')
    assert r.text == "x"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_decode_or_raise_the_decode_error(raw):
    for kind in (Request, Prediction, Feedback, HardEvent, Sample, ModelUpdate):
        try:
            decode(kind, raw)
        except EventDecodeError as exc:
            assert exc.reason in ("oversized", "not_utf8", "bad_json", "schema", "unsupported_version")


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["id", "text", "ts", "meta", "v", "x"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.text(max_size=50),
            st.lists(st.integers()),
        ),
    )
)
def test_any_json_object_decodes_or_raises_the_decode_error(obj):
    raw = json.dumps(obj).encode()
    try:
        request = decode(Request, raw)
    except EventDecodeError:
        return
    assert request.id and request.text.strip()


def test_dead_letter_keeps_the_original_bytes():
    raw = b"\x00\x01 not an event \xff"
    dead = DeadLetter.of(
        raw, service="serving", topic="t", reason="not_utf8", error="bad", partition=2, offset=7
    )
    back = decode(DeadLetter, dead.to_bytes())
    assert back.original() == raw and back.partition == 2 and back.offset == 7


def test_sample_key_is_the_content_hash_of_normalised_text():
    assert sample_key("Spurs sign a striker.") == sample_key("  spurs SIGN a striker ")
    assert sample_key("Spurs sign a striker") != sample_key("Spurs sell a striker")
    s = Sample.of("Spurs sign a striker", "sports", "feedback", source_ids=["r1"])
    assert s.key == sample_key(s.text)


def test_model_update_requires_a_sha256():
    with pytest.raises(ValueError, match=r"sha256\s+String should match pattern"):
        ModelUpdate(version="v0001", uri="/x", sha256="not-a-hash")


def test_topics_are_namespaced_and_cover_every_spec():
    topics = Topics("t1")
    assert topics.requests == "t1.requests" and topics.model_updates == "t1.model-updates"
    layout = topics.layout(4)
    assert len(layout) == len(SPECS)
    assert layout["t1.model-updates"] == 1 and layout["t1.requests"] == 4
    with pytest.raises(KeyError, match=r"unknown topic 'nope'"):
        topics.name("nope")
