"""What a serving worker holds: the model it runs now, and the one it will swap to.

A new version is *staged* off the hot path (downloaded, checksum verified, loaded, warmed up by a
first forward pass) and *swapped* in between two batches: a batch is always classified by one model
from start to end, and every verdict names that model's version. A version that fails to load or
verify is refused and the current model stays.

>>> slot = ModelSlot(cache_dir="/tmp/cache")                                 # doctest: +SKIP
>>> slot.stage("v0002", "runs/registry/v0002", sha256)   # in a background thread  # doctest: +SKIP
>>> slot.swap().version                                  # between batches         # doctest: +SKIP
'v0002'
"""

from __future__ import annotations

import copy
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pgkd.errors import ModelError
from pgkd.model_fetch import fetch_model
from pgkd.student import Inference, Predictions, Student

WARMUP_TEXTS = ("Warm-up text for a new model.", "A second, somewhat longer warm-up text for padding.")


def inference_copy(student: Student, inference: Inference) -> Student:
    """``student`` as served: ``"eager"`` is itself; ``"int8"`` is a copy whose encoder linear layers
    hold int8 weights and quantise their activations per batch (PyTorch dynamic quantisation, CPU
    only; the classifier head stays float32). The copy predicts and embeds; it cannot be trained or
    saved."""
    if inference == "eager":
        return student
    if inference != "int8":
        raise ModelError(f"unknown inference mode {inference!r}; choose eager or int8")
    from torch.ao.quantization import quantize_dynamic  # deprecated module: imported only when used

    model = copy.deepcopy(student.model).cpu().eval()
    with warnings.catch_warnings():  # torch.ao's deprecation notice: the kernels are current
        warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
        quantize_dynamic(model.base_model, {nn.Linear}, dtype=torch.qint8, inplace=True)
    twin = Student(model, student.tokenizer, copy.deepcopy(student.metadata), "cpu")
    twin.inference = "int8"
    twin.fence = student.fence
    return twin


@dataclass(frozen=True)
class LoadedModel:
    version: str
    student: Student
    sha256: str
    load_seconds: float  # fetch + verify + load + warm-up


class ModelSlot:
    """The current model of a worker and at most one staged successor; thread-safe.

    ``max_chars`` cuts every text before tokenisation (a 1 MB request costs no more than a long one);
    ``inference`` is how each loaded model runs (see :func:`inference_copy`).
    """

    def __init__(
        self,
        *,
        cache_dir: str | Path,
        max_chars: int = 2000,
        batch_size: int = 64,
        inference: Inference = "eager",
    ) -> None:
        if max_chars < 1 or batch_size < 1:
            raise ValueError(f"max_chars and batch_size must be >= 1, got {max_chars}, {batch_size}")
        self.cache_dir = Path(cache_dir)
        self.max_chars, self.batch_size, self.inference = max_chars, batch_size, inference
        self._lock = threading.Lock()
        self._current: LoadedModel | None = None
        self._staged: LoadedModel | None = None
        self.loaded = threading.Event()  # set once a first model is current

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def staged(self) -> LoadedModel | None:
        return self._staged

    def stage(self, version: str, uri: str, sha256: str) -> LoadedModel | None:
        """Load ``version`` and make it the next model; blocks for the load, so call it off the hot
        path. Returns None if that version is already staged, or current (then a newer staged one is
        dropped: a rollback to the current model must not be undone by the next swap). Raises
        ModelError if it cannot be fetched, fails its checksum or cannot be loaded; the current model
        is kept."""
        with self._lock:
            if self._current is not None and self._current.version == version:
                self._staged = None
                return None
            if self._staged is not None and self._staged.version == version:
                return None
        started = time.perf_counter()
        student = inference_copy(fetch_model(uri, sha256, self.cache_dir), self.inference)
        student.predict(list(WARMUP_TEXTS), batch_size=self.batch_size)
        loaded = LoadedModel(version, student, sha256, time.perf_counter() - started)
        with self._lock:
            self._staged = loaded
        if self._current is None:
            self.swap()
        return loaded

    def swap(self) -> LoadedModel | None:
        """Make the staged model current (between batches); returns it, or None if none was staged."""
        with self._lock:
            staged, self._staged = self._staged, None
            if staged is None:
                return None
            self._current = staged
        self.loaded.set()
        return staged

    def classify(self, model: LoadedModel, texts: Sequence[str]) -> Predictions:
        """``model``'s verdicts on ``texts`` (each cut to ``max_chars``)."""
        if model is None:
            raise ModelError("no model loaded yet")
        clipped = [t[: self.max_chars] for t in texts]
        return model.student.predict(clipped, batch_size=self.batch_size)
