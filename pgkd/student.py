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
:func:`pgkd.serving.inference_copy` gives an int8 copy for serving (dynamically quantised encoder)
that predicts only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel
from transformers import logging as hf_logging

from pgkd.data import Example
from pgkd.errors import ModelError
from pgkd.features import FeatureCache
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
    resolve_device,
)
from pgkd.training import fit as training_loop

Inference = Literal["eager", "int8"]

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
        self.feature_cache = FeatureCache()  # head mode and embeddings: see encode()
        self.inference: Inference = "eager"
        self.fence: OutOfTaxonomy | None = None  # scores how far a text is from every class

    @property
    def pooling(self) -> Pooling:
        return self.metadata.pooling

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
        self.check_trainable("save")
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
        twin.feature_cache = self.feature_cache
        return twin

    def successor(self, mode: TrainMode, *, seed: int = 0) -> Student:
        """A fresh candidate to train in ``mode`` from this (untrained) student: its weights, a
        re-initialised classifier, and the pooling the mode needs. Head-mode successors share the
        frozen encoder's feature cache."""
        nxt = self.clone()
        nxt.metadata.pooling = pooling_for(mode)
        if mode == "full":
            nxt.forget_features()
        nxt.reset_head(seed)
        return nxt

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
            return self.head_logits(feats), feats
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
        out = self.feature_cache.get(texts) if cache else [None] * len(texts)
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
                    self.feature_cache.put([texts[i] for i in idx], list(feats))
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
        """Train in place, early-stopping on validation loss; the best epoch's weights are kept
        (the loop: :func:`pgkd.training.fit`)."""
        return training_loop(self, train, validation, config, on_epoch=on_epoch)

    def check_trainable(self, action: str) -> None:
        """Refuse to train or save an inference copy (int8 weights cannot be written back)."""
        if self.inference != "eager":
            raise ModelError(f"cannot {action} an {self.inference} inference copy; use the original student")

    def move_to(self, device: torch.device) -> None:
        self.device = device
        self.model.to(device)  # type: ignore[arg-type]

    def forget_features(self) -> None:
        """Drop the memoised features: the encoder is about to change, so they would be stale."""
        self.feature_cache = FeatureCache()

    def label_ids(self, examples: Sequence[Example]) -> torch.Tensor:
        return torch.tensor([self._label_index[e.label] for e in examples], device=self.device)

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        tokens = self.tokenizer(list(texts), truncation=True, max_length=self.metadata.max_length)
        return [len(t) for t in tokens["input_ids"]]

    def train_logits(self, texts: Sequence[str]) -> torch.Tensor:
        """Class scores with gradients (a training step), by this student's pooling."""
        if self.pooling == "native":
            return self.model(**self._tokenize(texts)).logits  # type: ignore[no-any-return]
        return self.head_logits(self._pool(self._tokenize(texts), self.pooling))

    @property
    def classifier(self) -> nn.Linear:
        """The linear classifier head mode trains."""
        head = getattr(self.model, "classifier", None)
        if not isinstance(head, nn.Linear):
            raise ModelError(
                f"{type(self.model).__name__} has no linear `classifier`; head mode drives BERT-style "
                "encoders (BERT, MiniLM, ELECTRA-like heads); fine-tune (mode 'full') any other"
            )
        return head

    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Class scores from pooled features (dropout applies only in training mode)."""
        dropout = getattr(self.model, "dropout", None)
        if isinstance(dropout, nn.Module):
            features = dropout(features)
        return self.classifier(features)  # type: ignore[no-any-return]

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
