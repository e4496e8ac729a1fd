"""Temperature scaling and the expected calibration error."""

from __future__ import annotations

import numpy as np
import pytest

from pgkd.calibration import (
    calibrate,
    calibration_error,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    scale_logits,
    softmax,
)
from pgkd.errors import ModelError
from pgkd.promotion import retrain
from pgkd.student import Student
from pgkd.training import TrainConfig
from tests.conftest import TOPICS, topic_examples

LABELS = sorted(TOPICS)


def test_ece_is_the_size_weighted_gap_between_confidence_and_accuracy():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    gold = np.array([0, 0, 1, 1])
    # bin 0.9: confidence 0.9, accuracy 1 (gap 0.1, half the data); bin 0.6: 0.6 vs 0.5 (gap 0.1)
    assert expected_calibration_error(probs, gold) == pytest.approx(0.1)
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0
    with pytest.raises(ValueError, match="no predictions"):
        expected_calibration_error(np.zeros((0, 2)), np.zeros(0, dtype=int))


@pytest.mark.parametrize(("noise", "scale", "expect"), [(6.0, 10.0, "above"), (0.5, 0.3, "below")])
def test_the_fitted_temperature_cools_overconfidence_and_warms_underconfidence(noise, scale, expect):
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 4, 2000)
    logits = scale * np.eye(4)[gold] + rng.normal(0, noise * scale / 10, (2000, 4))
    t = fit_temperature(logits, gold)
    assert (t > 1) if expect == "above" else (t < 1)
    assert negative_log_likelihood(logits, gold, t) < negative_log_likelihood(logits, gold)
    assert expected_calibration_error(softmax(logits, t), gold) < expected_calibration_error(
        softmax(logits), gold
    )


def test_calibrating_a_student_keeps_its_labels_and_records_what_it_did(tiny_encoder):
    examples = topic_examples(50)
    train, validation = examples[:90], examples[90:]
    student = Student.create(LABELS, tiny_encoder, seed=0).successor("full")
    student.fit(train, validation, TrainConfig(max_epochs=8, learning_rate=3e-3))
    texts = [e.text for e in validation]
    before = student.predict(texts)
    fitted = calibrate(student, validation)
    after = student.predict(texts)
    assert after.labels == before.labels
    assert not np.allclose(after.probs, before.probs)
    assert fitted.nll_after <= fitted.nll_before  # ECE usually falls too, but NLL is what is fitted
    assert student.metadata.metrics["calibration"]["temperature"] == fitted.temperature
    # The same measure on the calibrated model: "before" undoes the temperature.
    again = calibration_error(student, validation, fitted.temperature)
    # Folding the temperature into the weights and undoing it costs float32 rounding, no more.
    assert again == pytest.approx({"ece_before": fitted.ece_before, "ece_after": fitted.ece_after}, abs=1e-4)
    with pytest.raises(ModelError, match="labelled examples"):
        calibrate(student, [])
    with pytest.raises(ModelError, match="positive"):
        scale_logits(student, 0.0)


def test_every_retrained_candidate_is_calibrated_and_says_so(tiny_encoder):
    examples = topic_examples(50)
    base = Student.create(LABELS, tiny_encoder, seed=0)
    config = TrainConfig(mode="head", max_epochs=20, learning_rate=5e-2)
    candidate = retrain(base, None, examples[:90], examples[90:120], config, test=examples[120:])
    assert set(candidate.calibration) >= {
        "temperature",
        "ece_before",
        "ece_after",
        "test_ece_before",
        "test_ece_after",
    }
    assert candidate.student.metadata.metrics["calibration"] == candidate.calibration
    raw = retrain(base, None, examples[:90], examples[90:120], config, calibrated=False)
    assert raw.calibration is None and "calibration" not in raw.student.metadata.metrics
