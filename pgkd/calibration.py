"""Confidence that means what it says: temperature scaling fitted on validation.

A fine-tuned classifier is over-confident: early-stopped on a few hundred labels, it says 0.99
about texts it gets wrong. Temperature scaling (Guo et al., 2017) divides the logits by one number
``T`` that minimises the negative log-likelihood of held-out labels: the predicted class never
changes, the probabilities do. The student applies ``T`` by scaling its last linear layer by
``1 / T``, so a calibrated version folder gives the same probabilities in ``transformers`` as in
pgkd, and every rule that reads confidence (low-confidence routing, margin, entropy, hard
negatives) reads calibrated probabilities.

The expected calibration error (ECE: the gap between confidence and accuracy, averaged over
equal-width confidence bins and weighted by their size) is recorded before and after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from torch import nn

from pgkd.data import Example
from pgkd.errors import ModelError

if TYPE_CHECKING:
    from pgkd.student import Student

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


def expected_calibration_error(probs: np.ndarray, gold: np.ndarray, bins: int = 15) -> float:
    """ECE of ``probs`` (n, classes) against gold class indices, over ``bins`` equal-width bins.

    >>> expected_calibration_error(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1]))
    0.4
    """
    if len(probs) == 0:
        raise ValueError("no predictions to measure")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == gold
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return round(float(gap), 6)


def negative_log_likelihood(logits: np.ndarray, gold: np.ndarray, temperature: float = 1.0) -> float:
    scaled = log_softmax(logits / temperature, axis=1)
    return float(-scaled[np.arange(len(gold)), gold].mean())


def fit_temperature(logits: np.ndarray, gold: np.ndarray) -> float:
    """The ``T`` in [0.05, 20] that minimises the NLL of ``softmax(logits / T)`` on ``gold``.

    >>> rng = np.random.default_rng(0)
    >>> gold = rng.integers(0, 3, 500)
    >>> logits = 10.0 * np.eye(3)[gold] + rng.normal(0, 6, (500, 3))  # confident, often wrong
    >>> fit_temperature(logits, gold) > 1
    True
    """
    if len(logits) == 0:
        raise ValueError("no logits to fit a temperature on")
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, gold, float(np.exp(log_t))),
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
    )
    return float(np.exp(result.x))


@dataclass(frozen=True)
class Calibration:
    """What calibrating a student did, measured on the set it was fitted on."""

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return np.exp(log_softmax(logits / temperature, axis=1))


def calibrate(student: Student, examples: Sequence[Example]) -> Calibration:
    """Fit a temperature on labelled ``examples`` (validation) and apply it to ``student`` in place
    (:func:`scale_logits`); the calibration is recorded in its metadata."""
    if not examples:
        raise ModelError("calibration needs labelled examples")
    index = {c: i for i, c in enumerate(student.labels)}
    gold = np.array([index[e.label] for e in examples])
    logits = student.logits([e.text for e in examples]).float().cpu().numpy()
    temperature = fit_temperature(logits, gold)
    calibration = Calibration(
        temperature=round(temperature, 6),
        ece_before=expected_calibration_error(softmax(logits), gold),
        ece_after=expected_calibration_error(softmax(logits, temperature), gold),
        nll_before=round(negative_log_likelihood(logits, gold), 6),
        nll_after=round(negative_log_likelihood(logits, gold, temperature), 6),
        n=len(examples),
    )
    scale_logits(student, 1.0 / temperature)
    student.metadata.metrics["calibration"] = calibration.to_dict()
    return calibration


def scale_logits(student: Student, factor: float) -> None:
    """Multiply every logit of ``student`` by ``factor`` for good, by scaling the last linear layer
    of its head: the weights carry the temperature, so transformers loading the saved folder gives
    the same probabilities."""
    if not factor > 0:
        raise ModelError(f"a logit scale must be positive, got {factor}")
    head = getattr(student.model, "classifier", None)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)] if isinstance(head, nn.Module) else []
    if not linears:
        raise ModelError(f"{type(student.model).__name__} has no linear classifier to scale")
    with torch.no_grad():
        linears[-1].weight.mul_(factor)
        if linears[-1].bias is not None:
            linears[-1].bias.mul_(factor)


def calibration_error(
    student: Student, examples: Sequence[Example], temperature: float = 1.0
) -> dict[str, float]:
    """ECE of a calibrated ``student`` on other labelled ``examples`` (test), and what it was
    before its ``temperature`` was applied."""
    index = {c: i for i, c in enumerate(student.labels)}
    gold = np.array([index[e.label] for e in examples])
    logits = student.logits([e.text for e in examples]).float().cpu().numpy()
    return {
        "ece_before": expected_calibration_error(softmax(logits * temperature), gold),
        "ece_after": expected_calibration_error(softmax(logits), gold),
    }
