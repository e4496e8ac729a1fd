"""The registry on a local folder and on an fsspec URI (no Redis: the storage-only mode)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from pgkd.errors import ModelError
from pgkd.model_fetch import fetch_model
from pgkd.model_files import WEIGHTS_FILE
from pgkd.registry import ModelRegistry
from pgkd.student import Student
from tests.conftest import TOPICS

LABELS = sorted(TOPICS)


@pytest.fixture(params=["folder", "memory"])
def registry(request, tmp_path):
    root = tmp_path / "registry" if request.param == "folder" else f"memory://reg-{uuid.uuid4().hex}"
    return ModelRegistry(root, cache_dir=tmp_path / "cache")


def test_publish_versions_current_and_load(registry, tiny_encoder):
    student = Student.create(LABELS, tiny_encoder)
    first = registry.publish(
        student, metrics={"validation": {"macro_f1": 0.5}}, note="seed", guidance={"x": 1}
    )
    assert first.version == "v0001" and registry.current() is None
    registry.set_current(first.version)
    second = registry.publish(student.clone(), metrics={"validation": {"macro_f1": 0.6}}, train_size=10)
    assert second.version == "v0002" and second.parent_version == "v0001"
    assert [r.version for r in registry.versions()] == ["v0001", "v0002"]
    assert registry.current().version == "v0001"
    assert registry.get("v0002").metric("macro_f1") == 0.6
    assert registry.guidance("v0001") == {"x": 1} and registry.guidance("v0002") is None
    loaded = registry.load("v0002")
    assert loaded.labels == student.labels
    texts = ["the match and the goal", "shares and profit"]
    assert loaded.predict(texts).labels == student.predict(texts).labels


def test_unknown_version_is_an_error(registry):
    with pytest.raises(ModelError, match="no model version"):
        registry.set_current("v0042")


def test_fetch_refuses_a_checksum_mismatch(tmp_path, tiny_encoder):
    registry = ModelRegistry(tmp_path / "registry")
    record = registry.publish(Student.create(LABELS, tiny_encoder))
    with pytest.raises(ModelError, match="checksum mismatch"):
        fetch_model(record.uri, "0" * 64, tmp_path / "cache")
    weights = tmp_path / "registry" / record.version / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch"):
        fetch_model(record.uri, record.sha256, tmp_path / "cache")


def test_a_hold_lasts_until_released_and_survives_a_new_registry_object(registry):
    assert registry.held() is None
    registry.hold("rollback to v0001")
    assert registry.held()["reason"] == "rollback to v0001"
    # Another process (the trainer) opening the same storage sees the hold.
    again = ModelRegistry(registry.root, cache_dir=registry.cache_dir)
    assert again.held()["reason"] == "rollback to v0001"
    again.release()
    assert registry.held() is None and again.held() is None
    again.release()  # releasing nothing is no error


def test_a_promotion_lands_only_while_no_hold_is_in_force(registry, tiny_encoder):
    first = registry.publish(Student.create(LABELS, tiny_encoder))
    second = registry.publish(Student.create(LABELS, tiny_encoder, seed=1))
    assert registry.set_current_unless_held(second.version) is None
    assert registry.current().version == second.version
    # A rollback: hold and pointer move together, and the next promotion is refused.
    assert registry.hold("rollback to v0001", first.version).version == first.version
    assert registry.current().version == first.version
    assert registry.set_current_unless_held(second.version)["reason"] == "rollback to v0001"
    assert registry.current().version == first.version
    registry.release()
    assert registry.set_current_unless_held(second.version) is None
    with pytest.raises(ModelError, match="no model version"):
        registry.set_current_unless_held("v0042")


def test_a_record_names_its_models_taxonomy_and_an_old_record_is_answered_from_the_model(
    registry, tiny_encoder
):
    student = Student.create(["business", "sport", "tech"], tiny_encoder)
    record = registry.publish(student, metrics={"validation": {"macro_f1": 0.5}})
    assert record.labels == ["business", "sport", "tech"]
    assert registry.labels(record) == ("business", "sport", "tech")
    old = dataclasses.replace(record, labels=[])  # written before records carried the taxonomy
    assert registry.labels(old) == ("business", "sport", "tech")
