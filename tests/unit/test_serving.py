"""Hot-swap slot and the serving response, without a broker."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from consumers.serving import Routing, respond
from pgkd.errors import ModelError
from pgkd.registry import ModelRegistry
from pgkd.serving import ModelSlot
from pgkd.student import Predictions, Student
from streams.events import HardEvent, Prediction, Request, decode
from streams.topics import Topics
from tests.conftest import TOPICS

LABELS = sorted(TOPICS)


@pytest.fixture()
def two_versions(tmp_path, tiny_encoder):
    registry = ModelRegistry(tmp_path / "registry")
    a = registry.publish(Student.create(LABELS, tiny_encoder, seed=1))
    b = registry.publish(Student.create(LABELS, tiny_encoder, seed=2))
    return a, b


def test_first_stage_becomes_current_later_ones_wait_for_swap(tmp_path, two_versions):
    a, b = two_versions
    slot = ModelSlot(cache_dir=tmp_path / "cache")
    assert slot.current is None and not slot.loaded.is_set()
    slot.stage(a.version, a.uri, a.sha256)
    assert slot.current.version == "v0001" and slot.loaded.is_set()
    assert slot.stage(a.version, a.uri, a.sha256) is None  # already current
    slot.stage(b.version, b.uri, b.sha256)
    assert slot.current.version == "v0001" and slot.staged.version == "v0002"
    swapped = slot.swap()
    assert swapped.version == "v0002" and slot.current is swapped and slot.swap() is None


def test_a_corrupt_version_is_refused_and_the_current_one_kept(tmp_path, two_versions):
    a, b = two_versions
    slot = ModelSlot(cache_dir=tmp_path / "cache")
    slot.stage(a.version, a.uri, a.sha256)
    with pytest.raises(ModelError, match="checksum"):
        slot.stage(b.version, b.uri, "f" * 64)
    assert slot.staged is None and slot.current.version == "v0001"


def test_batches_in_flight_keep_their_model_across_a_swap(tmp_path, two_versions):
    a, b = two_versions
    slot = ModelSlot(cache_dir=tmp_path / "cache", max_chars=5)
    slot.stage(a.version, a.uri, a.sha256)
    model = slot.current
    loader = threading.Thread(target=slot.stage, args=(b.version, b.uri, b.sha256))
    loader.start()
    verdicts = slot.classify(model, ["x" * 10_000, "the match"])
    loader.join()
    assert len(verdicts.labels) == 2 and model.version == "v0001"
    assert slot.swap().version == "v0002"


def test_respond_answers_every_request_and_routes_the_unsure(tmp_path, two_versions):
    a, _ = two_versions
    slot = ModelSlot(cache_dir=tmp_path / "cache")
    slot.stage(a.version, a.uri, a.sha256)
    requests = [Request(id=f"r{i}", text=f"text {i}", ts=100.0) for i in range(3)]
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]], dtype=np.float32)
    verdicts = Predictions([LABELS[i] for i in probs.argmax(1)], probs.max(1), probs)
    topics = Topics("t")
    out = respond(
        requests,
        slot.current,
        verdicts,
        Routing(topics, low_confidence=0.5, include_probs=True),
        inference_ms=12.0,
        now=100.5,
    )
    predictions = [decode(Prediction, v) for t, _, v in out if t == topics.predictions]
    hard = [decode(HardEvent, v) for t, _, v in out if t == topics.hard]
    assert [p.id for p in predictions] == ["r0", "r1", "r2"]
    assert all(p.model_version == "v0001" and p.latency_ms == pytest.approx(500.0) for p in predictions)
    assert predictions[0].probs == {"business": 0.9, "sport": 0.05, "tech": 0.05}
    assert [h.id for h in hard] == ["r1"] and hard[0].reason == "low_confidence" and hard[0].label is None
    assert {k for _, k, _ in out} == {b"r0", b"r1", b"r2"}


def test_a_rollback_to_the_current_model_drops_a_newer_staged_one(tmp_path, two_versions):
    a, b = two_versions
    slot = ModelSlot(cache_dir=tmp_path / "cache")
    slot.stage(a.version, a.uri, a.sha256)
    slot.stage(b.version, b.uri, b.sha256)  # v0002 waits for the next batch ...
    assert slot.stage(a.version, a.uri, a.sha256) is None  # ... when v0001 is announced again
    assert slot.swap() is None and slot.current.version == "v0001"


def test_an_int8_slot_serves_quantised_copies_of_verified_versions(tmp_path, two_versions):
    a, b = two_versions
    slot = ModelSlot(cache_dir=tmp_path / "cache", inference="int8")
    slot.stage(a.version, a.uri, a.sha256)
    assert slot.current.student.inference == "int8"
    verdicts = slot.classify(slot.current, ["markets fell", "the striker scored"])
    assert len(verdicts.labels) == 2 and set(verdicts.labels) <= set(LABELS)
    with pytest.raises(ModelError, match="checksum"):
        slot.stage(b.version, b.uri, "0" * 64)  # quantising comes after the checksum, never instead


def test_texts_are_cut_to_max_chars_before_the_model_sees_them(tmp_path, two_versions, monkeypatch):
    a, _ = two_versions
    slot = ModelSlot(cache_dir=tmp_path / "cache", max_chars=5)
    slot.stage(a.version, a.uri, a.sha256)
    seen: list[str] = []
    real = slot.current.student.predict
    monkeypatch.setattr(
        slot.current.student, "predict", lambda texts, **kw: seen.extend(texts) or real(texts, **kw)
    )
    slot.classify(slot.current, ["x" * 1_000_000, "the match"])
    assert seen == ["xxxxx", "the m"]
