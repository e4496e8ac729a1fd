"""The student: a small Hugging Face encoder with a classification head.

How it scores depends on its ``pooling``:

* ``native`` (fine-tuned students, the default): the encoder's own sequence-classification forward
  pass. A saved version folder is then an ordinary Hugging Face classifier, and
  ``transformers.pipeline("text-classification", model=folder)`` gives pgkd's labels and
  probabilities;
* ``mean`` / ``cls`` (the frozen-encoder ``head`` mode): a linear classifier on pooled features that
  are cached per text. No transformers class scores that way, so the saved ``config.json`` carries a
  model type transformers refuses by name instead of answering wrongly.

A trained student is saved as a directory holding safetensors weights, the tokenizer, the label
map, ``pgkd.json`` metadata (version, parent, data fingerprint, metrics, checksum) and a model card
(``README.md``); nothing else is ever loaded (the format: :mod:`pgkd.model_files`).
:meth:`Student.for_inference` gives an int8 copy for serving (dynamically quantised encoder) that
predicts only.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from cachetools import LRUCache
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel
from transformers import logging as hf_logging

from pgkd.data import Example
from pgkd.errors import ModelError
from pgkd.model_files import (
    Pooling,
    StudentMetadata,
    base_model_name,
    default_base_model,
    read_config,
    read_metadata,
    write_config,
    write_metadata,
)
from pgkd.out_of_taxonomy import OutOfTaxonomy
from pgkd.training import (
    DeviceChoice,
    FitResult,
    TrainConfig,
    TrainMode,
    bucketed_batches,
    class_weights,
    resolve_device,
    warmup_then_decay,
)

Inference = Literal["eager", "int8"]
FEATURE_CACHE_SIZE = 50_000  # texts; 50k x 384 float32 is 77 MB for MiniLM

__all__ = ["FitResult", "Predictions", "Student", "StudentMetadata", "TrainConfig", "TrainMode"]

hf_logging.set_verbosity_error()  # "some weights were newly initialised" is expected for a new head


def pooling_for(mode: TrainMode) -> Pooling:
    """Fine-tuning trains through the encoder's own head; head mode needs cacheable mean features."""
    return "native" if mode == "full" else "mean"


@dataclass(frozen=True)
class Predictions:
    """A batch of verdicts: ``labels[i]`` has probability ``confidence[i]``; ``probs`` is (n, classes)."""

    labels: list[str]
    confidence: np.ndarray
    probs: np.ndarray
    features: np.ndarray | None = None  # (n, hidden), when asked for
    out_of_taxonomy: np.ndarray | None = None  # (n,) scores, when the student has a detector


class Student:
    """A fine-tunable text classifier with the uniform verbs ``fit``, ``predict``, ``save``, ``load``.

    >>> student = Student.create(["business", "sport"])          # doctest: +SKIP
    >>> student.predict(["Shares rose 5% on Monday"]).labels     # doctest: +SKIP
    ['business']
    """

    def __init__(
        self, model: PreTrainedModel, tokenizer: Any, metadata: StudentMetadata, device: DeviceChoice = "cpu"
    ) -> None:
        self.device = resolve_device(device)
        self.model: PreTrainedModel = model.to(self.device).eval()  # type: ignore[arg-type]
        self.tokenizer = tokenizer
        self.metadata = metadata
        self.labels: tuple[str, ...] = tuple(metadata.labels)
        self._label_index = {c: i for i, c in enumerate(self.labels)}
        # text -> pooled encoder features (head mode, embeddings), the least recently used dropped
        # past FEATURE_CACHE_SIZE: a service that runs for months must not grow with its traffic.
        self._features: LRUCache[str, torch.Tensor] = LRUCache(FEATURE_CACHE_SIZE)
        self._cache_lock = threading.Lock()  # an LRU reorders itself on every read: one user at a time
        self.inference: Inference = "eager"
        self.fence: OutOfTaxonomy | None = None  # scores how far a text is from every class

    @property
    def pooling(self) -> Pooling:
        return self.metadata.pooling

    @property
    def feature_cache_size(self) -> int:
        """Texts whose features are memoised now (at most ``FEATURE_CACHE_SIZE``)."""
        with self._cache_lock:
            return len(self._features)

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        labels: Sequence[str],
        base_model: str | Path | None = None,
        *,
        pooling: Pooling = "mean",
        max_length: int = 64,
        seed: int = 0,
        device: DeviceChoice = "auto",
    ) -> Student:
        """A new student for ``labels`` on top of a pretrained encoder (default all-MiniLM-L6-v2).

        Trainers start from this untrained student and derive each candidate from it with
        :meth:`successor`, which sets the pooling the training mode needs."""
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
        model.config.problem_type = "single_label_classification"
        meta = StudentMetadata(
            labels=list(labels), pooling=pooling, max_length=max_length, base_model=base_model_name(path)
        )
        return cls(model, tokenizer, meta, device)

    @classmethod
    def load(cls, directory: str | Path, *, verify: bool = True, device: DeviceChoice = "cpu") -> Student:
        """Load a saved student. Only safetensors weights are read; the checksum is verified."""
        directory = Path(directory)
        meta = read_metadata(directory, verify=verify)
        try:
            config = read_config(directory)
            model = AutoModelForSequenceClassification.from_pretrained(
                directory, config=config, use_safetensors=True
            )
            tokenizer = AutoTokenizer.from_pretrained(directory)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load model from {directory}: {exc}") from exc
        student = cls(model, tokenizer, meta, device)
        if meta.out_of_taxonomy:
            student.fence = OutOfTaxonomy.load(directory, meta.out_of_taxonomy)
        return student

    def save(self, directory: str | Path) -> Path:
        """Write weights (safetensors), tokenizer, metadata and model card; returns the directory."""
        self._trainable("save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        write_config(directory, self.pooling)
        self.metadata.out_of_taxonomy = self.fence.save(directory) if self.fence is not None else None
        write_metadata(directory, self.metadata)
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
        twin = Student(copy.deepcopy(self.model), self.tokenizer, meta, self._device_choice)
        twin._features, twin._cache_lock = self._features, self._cache_lock
        return twin

    def successor(self, mode: TrainMode, *, seed: int = 0) -> Student:
        """A fresh candidate to train in ``mode`` from this (untrained) student: its weights, a
        re-initialised classifier, and the pooling the mode needs. Head-mode successors share the
        frozen encoder's feature cache."""
        nxt = self.clone()
        nxt.metadata.pooling = pooling_for(mode)
        if mode == "full":
            nxt._features = LRUCache(FEATURE_CACHE_SIZE)
        nxt.reset_head(seed)
        return nxt

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

        model = copy.deepcopy(self.model).cpu().eval()
        with warnings.catch_warnings():  # torch.ao's deprecation notice: the kernels are current
            warnings.simplefilter("ignore", (DeprecationWarning, UserWarning))
            quantize_dynamic(model.base_model, {nn.Linear}, dtype=torch.qint8, inplace=True)
        twin = Student(model, self.tokenizer, copy.deepcopy(self.metadata), "cpu")
        twin.inference = "int8"
        twin.fence = self.fence
        return twin

    def _trainable(self, action: str) -> None:
        if self.inference != "eager":
            raise ModelError(f"cannot {action} an {self.inference} inference copy; use the original student")

    @property
    def _device_choice(self) -> DeviceChoice:
        return "cuda" if self.device.type == "cuda" else "cpu"

    def reset_head(self, seed: int = 0) -> None:
        """Re-initialise the classifier, so a retrain does not depend on the previous fit."""
        torch.manual_seed(seed)
        head = getattr(self.model, "classifier", None)
        if not isinstance(head, nn.Module):
            raise ModelError(f"{type(self.model).__name__} has no `classifier` to reset")
        for module in head.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()

    def scale_logits(self, factor: float) -> None:
        """Multiply every logit by ``factor`` for good, by scaling the last linear layer of the head
        (temperature scaling, :mod:`pgkd.calibration`): the weights carry it, so transformers
        loading the saved folder gives the same probabilities."""
        if not factor > 0:
            raise ModelError(f"a logit scale must be positive, got {factor}")
        head = getattr(self.model, "classifier", None)
        linears = (
            [m for m in head.modules() if isinstance(m, nn.Linear)] if isinstance(head, nn.Module) else []
        )
        if not linears:
            raise ModelError(f"{type(self.model).__name__} has no linear classifier to scale")
        with torch.no_grad():
            linears[-1].weight.mul_(factor)
            if linears[-1].bias is not None:
                linears[-1].bias.mul_(factor)

    # -- inference --------------------------------------------------------------------------------

    @torch.inference_mode()
    def predict(
        self, texts: Sequence[str], *, batch_size: int = 64, cache: bool = False, features: bool = False
    ) -> Predictions:
        """Label, confidence and full probability vector for each text, batched; with an
        out-of-taxonomy detector attached (:attr:`fence`), each text's score too, and with
        ``features`` the features the classifier read. ``cache`` reuses memoised encoder features
        (head mode only, see :meth:`encode`)."""
        if not texts:
            empty = np.zeros(0, dtype=np.float32)
            return Predictions([], empty, np.zeros((0, len(self.labels)), np.float32))
        self.model.eval()
        logits, feats = self.scores(texts, batch_size=batch_size, cache=cache)
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        top = probs.argmax(axis=1)
        raw = feats.cpu().numpy()
        return Predictions(
            [self.labels[i] for i in top],
            probs[np.arange(len(top)), top],
            probs,
            features=raw if features else None,
            out_of_taxonomy=self.fence.score(raw) if self.fence is not None else None,
        )

    @torch.inference_mode()
    def logits(self, texts: Sequence[str], *, batch_size: int = 64, cache: bool = False) -> torch.Tensor:
        """Raw class scores (n, classes), in the order of ``texts``."""
        return self.scores(texts, batch_size=batch_size, cache=cache)[0]

    @torch.inference_mode()
    def scores(
        self, texts: Sequence[str], *, batch_size: int = 64, cache: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Class scores (n, classes) and the features the classifier computed them from (n, hidden)."""
        if self.pooling != "native":
            feats = self.encode(texts, batch_size=batch_size, cache=cache)
            return self._head(feats), feats
        logits = torch.zeros(len(texts), len(self.labels), device=self.device)
        feats = torch.zeros(len(texts), self.model.config.hidden_size, device=self.device)
        seen: list[torch.Tensor] = []

        def keep(_module: nn.Module, args: tuple[Any, ...]) -> None:  # what the classifier reads
            x = args[0]
            seen.append(x[:, 0] if x.dim() == 3 else x)  # a sequence head reads the first token

        hook = self.model.classifier.register_forward_pre_hook(keep)  # type: ignore[union-attr]
        try:
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # little padding per batch
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                logits[idx] = self.model(**self._tokenize([texts[i] for i in idx])).logits.float()
                feats[idx] = seen.pop().float()
        finally:
            hook.remove()
        return logits, feats

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], *, batch_size: int = 64, cache: bool = False) -> np.ndarray:
        """L2-normalised mean-pooled sentence embeddings from the encoder (for similarity search)."""
        feats = self.encode(texts, batch_size=batch_size, cache=cache, pooling="mean")
        return torch.nn.functional.normalize(feats, dim=-1).cpu().numpy()

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        cache: bool = False,
        pooling: Literal["mean", "cls"] | None = None,
    ) -> torch.Tensor:
        """Pooled encoder features (n, hidden), by this student's pooling unless ``pooling`` says.
        With ``cache`` they are memoised per text, which is only sound while the encoder is frozen
        (head-mode training) and the pooling does not change."""
        how = pooling or ("mean" if self.pooling == "native" else self.pooling)
        cache = cache and how == ("mean" if self.pooling == "native" else self.pooling)
        with self._cache_lock:
            out: list[torch.Tensor | None] = [self._features.get(t) if cache else None for t in texts]
        todo = [i for i, f in enumerate(out) if f is None]
        # Sorting by length keeps padding, and so wasted compute, small within each batch.
        todo.sort(key=lambda i: len(texts[i]))
        self.model.eval()  # features must never carry dropout noise, least of all cached ones
        with torch.inference_mode():
            for start in range(0, len(todo), batch_size):
                idx = todo[start : start + batch_size]
                feats = self._pool(self._tokenize([texts[i] for i in idx]), how)
                for i, f in zip(idx, feats, strict=True):
                    out[i] = f
                if cache:
                    with self._cache_lock:
                        for i in idx:
                            self._features[texts[i]] = out[i]  # type: ignore[assignment]
        return torch.stack([f for f in out if f is not None]) if out else torch.zeros(0)

    # -- training ---------------------------------------------------------------------------------

    def fit(
        self,
        train: Sequence[Example],
        validation: Sequence[Example],
        config: TrainConfig | None = None,
        *,
        on_epoch: Callable[[dict[str, float]], None] | None = None,
    ) -> FitResult:
        """Train in place, early-stopping on validation loss; the best epoch's weights are kept."""
        config = config or TrainConfig()
        self._trainable("train")
        if not train or not validation:
            raise ModelError("fit needs non-empty train and validation sets")
        unknown = {e.label for e in [*train, *validation]} - set(self.labels)
        if unknown:
            raise ModelError(f"labels not in this student's taxonomy: {sorted(unknown)}")
        head = config.mode == "head"
        if head and self.pooling == "native":
            raise ModelError(
                "head mode trains a linear head on cached pooled features, and this student scores "
                "through its native head; derive the candidate with Student.successor('head')"
            )
        if config.device != "auto" and resolve_device(config.device) != self.device:
            self.device = resolve_device(config.device)
            self.model.to(self.device)  # type: ignore[arg-type]
        torch.manual_seed(config.seed)
        started = time.perf_counter()
        y_train = torch.tensor([self._label_index[e.label] for e in train], device=self.device)
        y_val = torch.tensor([self._label_index[e.label] for e in validation], device=self.device)
        if head:
            x_train = self.encode([e.text for e in train], cache=True)
            x_val = self.encode([e.text for e in validation], cache=True)
            params = list(self._classifier().parameters())
            lengths = [1] * len(train)  # cached features: no padding to save
        else:
            x_train = x_val = torch.zeros(0)
            self._features = LRUCache(FEATURE_CACHE_SIZE)  # the encoder is about to change: stale
            params = list(self.model.parameters())
            tokens = self.tokenizer(
                [e.text for e in train], truncation=True, max_length=self.metadata.max_length
            )["input_ids"]
            lengths = [len(t) for t in tokens]
        optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        steps_per_epoch = math.ceil(len(train) / config.batch)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, warmup_then_decay(steps_per_epoch * config.epochs, config.warmup)
        )
        weights = class_weights(y_train.tolist(), len(self.labels), config.class_weight)
        loss_fn = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(self.device))
        best_loss, best_epoch, best_state = math.inf, 0, self._state(config.mode)
        history: list[dict[str, float]] = []
        generator = torch.Generator().manual_seed(config.seed)
        for epoch in range(1, config.epochs + 1):
            self.model.train()
            total = 0.0
            for batch in bucketed_batches(lengths, config.batch, config.bucket_batches, generator):
                if head:
                    logits = self._head(x_train[batch])
                elif self.pooling == "native":
                    logits = self.model(**self._tokenize([train[i].text for i in batch])).logits
                else:
                    logits = self._head(
                        self._pool(self._tokenize([train[i].text for i in batch]), self.pooling)
                    )
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
        self.metadata.train = {
            **asdict(config),
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            "train_size": len(train),
            "seconds": round(time.perf_counter() - started, 1),
            "device": self.device.type,
        }
        return FitResult(len(history), best_epoch, best_loss, time.perf_counter() - started, history)

    # -- internals --------------------------------------------------------------------------------

    def _tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.metadata.max_length,
            padding=True,  # to the longest text of the batch, not to max_length
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    def _pool(self, batch: dict[str, torch.Tensor], how: Literal["mean", "cls"]) -> torch.Tensor:
        hidden = self.model.base_model(**batch).last_hidden_state
        if how == "cls":
            return hidden[:, 0]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def _classifier(self) -> nn.Linear:
        head = getattr(self.model, "classifier", None)
        if not isinstance(head, nn.Linear):
            raise ModelError(
                f"{type(self.model).__name__} has no linear `classifier`; head mode drives BERT-style "
                "encoders (BERT, MiniLM, ELECTRA-like heads); fine-tune (mode 'full') any other"
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
        logits = self._head(x_val) if mode == "head" else self.logits([e.text for e in validation])
        loss = float(nn.functional.cross_entropy(logits, y_val))
        return loss, float((logits.argmax(1) == y_val).float().mean())

    def _state(self, mode: TrainMode) -> dict[str, torch.Tensor]:
        module = self._classifier() if mode == "head" else self.model
        return {k: v.detach().clone() for k, v in module.state_dict().items()}

    def _restore(self, state: dict[str, torch.Tensor], mode: TrainMode) -> None:
        (self._classifier() if mode == "head" else self.model).load_state_dict(state)
