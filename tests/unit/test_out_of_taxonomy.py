"""The out-of-taxonomy detector: its score, its threshold, its file, and the student carrying it."""

from __future__ import annotations

import numpy as np
import pytest

from consumers.serving import Routing, respond
from pgkd.errors import ModelError
from pgkd.out_of_taxonomy import BANK_FILE, DetectorConfig, OutOfTaxonomy, fit_detector
from pgkd.promotion import retrain
from pgkd.registry import ModelRegistry
from pgkd.serving import ModelSlot, inference_copy
from pgkd.student import Predictions, Student
from pgkd.training import TrainConfig
from streams.events import HardEvent, Prediction, Request, decode
from streams.topics import Topics
from tests.conftest import TOPICS, topic_examples

LABELS = sorted(TOPICS)


def clusters(rng: np.random.Generator, n: int = 60) -> np.ndarray:
    centres = np.eye(16)[:3] * 4.0
    return np.repeat(centres, n, axis=0) + rng.normal(0, 0.4, (3 * n, 16))


def test_scores_are_small_near_the_training_data_and_large_far_from_it():
    rng = np.random.default_rng(0)
    train, validation = clusters(rng), clusters(rng, 20)
    detector = OutOfTaxonomy.fit(train, validation, k=5, quantile=0.9)
    inside, outside = clusters(rng, 30), np.eye(16)[5:12] * 4.0 + rng.normal(0, 0.4, (7, 16))
    assert detector.score(inside).mean() < detector.score(outside).min()
    assert detector.flag(outside).all()
    # The threshold flags about 1 - quantile of in-taxonomy texts like validation.
    assert 0.0 <= detector.flag(inside).mean() <= 0.25
    assert detector.score(np.zeros((0, 16))).shape == (0,)


def test_fit_checks_its_inputs():
    with pytest.raises(ModelError, match="training and validation features"):
        OutOfTaxonomy.fit(np.zeros((0, 4)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="quantile"):
        OutOfTaxonomy.fit(np.ones((3, 4)), np.ones((3, 4)), quantile=1.0)
    with pytest.raises(ValueError, match="k >= 1"):
        DetectorConfig(k=0)


def test_a_student_carries_its_detector_through_save_load_and_int8(tiny_encoder, tmp_path):
    examples = topic_examples(50)
    student = Student.create(LABELS, tiny_encoder, seed=0).successor("full")
    student.fit(examples[:90], examples[90:120], TrainConfig(max_epochs=5, learning_rate=3e-3))
    texts = [e.text for e in examples[120:]] + ["zzqx 9 1 kkkkk vbnm asdf", "ποιος είσαι"]
    assert student.predict(texts).out_of_taxonomy is None  # no detector yet
    detector = fit_detector(student, examples[:90], examples[90:120])
    ours = student.predict(texts, features=True)
    assert ours.out_of_taxonomy is not None and ours.features is not None
    assert ours.features.shape == (len(texts), student.model.config.hidden_size)
    out = student.save(tmp_path / "m")
    assert (out / BANK_FILE).is_file() and student.metadata.out_of_taxonomy is not None
    loaded = Student.load(out)
    assert loaded.fence is not None and loaded.fence.threshold == detector.threshold
    assert np.allclose(loaded.predict(texts).out_of_taxonomy, ours.out_of_taxonomy, atol=1e-5)
    assert inference_copy(student, "int8").fence is detector
    assert student.clone().fence is None, "a retrained copy needs a detector of its own"
    (out / BANK_FILE).write_bytes((out / BANK_FILE).read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ModelError, match="checksum mismatch"):
        Student.load(out)


def test_retrain_fits_a_detector_unless_told_not_to(tiny_encoder):
    examples = topic_examples(50)
    base = Student.create(LABELS, tiny_encoder, seed=0)
    config = TrainConfig(mode="head", max_epochs=10, learning_rate=5e-2)
    assert retrain(base, None, examples[:90], examples[90:120], config).student.fence is not None
    assert retrain(base, None, examples[:90], examples[90:120], config, detector=None).student.fence is None


def test_serving_routes_a_text_far_from_every_class_as_out_of_taxonomy(tmp_path, tiny_encoder):
    registry = ModelRegistry(tmp_path / "registry")
    record = registry.publish(Student.create(LABELS, tiny_encoder, seed=1))
    slot = ModelSlot(cache_dir=tmp_path / "cache")
    slot.stage(record.version, record.uri, record.sha256)
    model = slot.current
    rng = np.random.default_rng(0)
    model.student.fence = OutOfTaxonomy.fit(clusters(rng), clusters(rng, 10), k=3)
    requests = [Request(id=f"r{i}", text=f"text {i}", ts=100.0) for i in range(3)]
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.98, 0.01, 0.01]], dtype=np.float32)
    scores = np.array([0.01, 0.02, 0.9], dtype=np.float32)  # the third: confident, and far away
    verdicts = Predictions([LABELS[i] for i in probs.argmax(1)], probs.max(1), probs, out_of_taxonomy=scores)
    topics = Topics("t")
    out = respond(requests, model, verdicts, Routing(topics, low_confidence=0.5), inference_ms=1.0, now=100.0)
    predictions = {p.id: p for p in (decode(Prediction, v) for t, _, v in out if t == topics.predictions)}
    hard = {h.id: h.reason for h in (decode(HardEvent, v) for t, _, v in out if t == topics.hard)}
    assert hard == {"r1": "low_confidence", "r2": "out_of_taxonomy"}
    assert predictions["r2"].out_of_taxonomy and predictions["r2"].out_of_taxonomy_score == pytest.approx(0.9)
    assert not predictions["r0"].out_of_taxonomy
    # An operator's threshold wins over the model's.
    lenient = Routing(topics, low_confidence=0.5, out_of_taxonomy_threshold=1.5)
    out = respond(requests, model, verdicts, lenient, inference_ms=1.0, now=100.0)
    assert {decode(HardEvent, v).reason for t, _, v in out if t == topics.hard} == {"low_confidence"}
