"""How a student is trained: the configuration, the device, the batch order and the schedule.

Two modes, because a live system retrains on whatever hardware it has:

* ``full`` (the default): every weight is fine-tuned, as in the paper, through the encoder's own
  sequence-classification head, so the saved model is an ordinary Hugging Face classifier. With
  the defaults below (AdamW at 1e-4, 10% linear warm-up then linear decay, up to 20 epochs with
  patience 3, batches of 16 bucketed by length, square-root class weights) a 22M-parameter MiniLM
  fine-tunes on 800 labels in about two minutes on two CPU cores;
* ``head`` (the fast option): the encoder is frozen, its mean-pooled features are computed once per
  text and cached, and only a linear classifier is trained: seconds, but a frozen encoder caps what
  any amount of data can teach it (BENCHMARKS.md section 4).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

TrainMode = Literal["head", "full"]
ClassWeight = Literal["none", "sqrt", "balanced"]
DeviceChoice = Literal["auto", "cpu", "cuda"]

_DEFAULTS: dict[TrainMode, dict[str, float | int]] = {
    # head: a linear classifier on cached features converges slowly but cheaply.
    "head": {"epochs": 200, "patience": 10, "batch_size": 32, "lr": 1e-2, "warmup": 0.0},
    # full: tuned on WordNet (41 classes, 800 labels); lr 5e-5 for 4 epochs with patience 1 stopped
    # long before the encoder had adapted, which is where "fine-tuning is worse" came from.
    "full": {"epochs": 20, "patience": 3, "batch_size": 16, "lr": 1e-4, "warmup": 0.1},
}


@dataclass(frozen=True)
class TrainConfig:
    """How to fit a student. ``None`` means the mode's default; the config checks itself and names
    the bad value in its error.

    >>> TrainConfig().mode, TrainConfig().lr, TrainConfig(mode="head").lr
    ('full', 0.0001, 0.01)
    """

    mode: TrainMode = "full"
    max_epochs: int | None = None  # None: 20 full, 200 head
    patience: int | None = None  # epochs without a better validation loss; None: 3 full, 10 head
    batch_size: int | None = None  # None: 16 full, 32 head
    learning_rate: float | None = None  # None: 1e-4 full, 1e-2 head
    warmup_ratio: float | None = None  # share of the steps spent warming up; None: 0.1 full, 0 head
    weight_decay: float = 0.01
    # Rare classes get a larger loss weight: n_max / n_c ("balanced") or its square root ("sqrt").
    class_weight: ClassWeight = "sqrt"
    # Batches are drawn from windows of this many batches sorted by length: little padding, and so
    # little wasted compute, while the order stays random from one window to the next.
    bucket_batches: int = 50
    device: DeviceChoice = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in _DEFAULTS:
            raise ValueError(f"mode must be 'full' or 'head', got {self.mode!r}")
        for name in ("max_epochs", "patience", "batch_size", "bucket_batches"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.warmup_ratio is not None and not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.class_weight not in ("none", "sqrt", "balanced"):
            raise ValueError(f"class_weight must be none, sqrt or balanced, got {self.class_weight!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")

    def _default(self, key: str) -> float | int:
        return _DEFAULTS[self.mode][key]

    @property
    def epochs(self) -> int:
        return self.max_epochs or int(self._default("epochs"))

    @property
    def lr(self) -> float:
        return self.learning_rate or float(self._default("lr"))

    @property
    def stop_after(self) -> int:
        return self.patience or int(self._default("patience"))

    @property
    def batch(self) -> int:
        return self.batch_size or int(self._default("batch_size"))

    @property
    def warmup(self) -> float:
        return self.warmup_ratio if self.warmup_ratio is not None else float(self._default("warmup"))


@dataclass(frozen=True)
class FitResult:
    epochs: int
    best_epoch: int
    best_validation_loss: float
    seconds: float
    history: list[dict[str, float]]


def resolve_device(choice: DeviceChoice = "auto") -> torch.device:
    """``cuda`` when asked for or present, else the CPU with one thread per core this process may use
    (torch counts the machine's cores, which oversubscribes a container limited to fewer)."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
        return torch.device("cuda")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.get_num_threads() > usable:
        torch.set_num_threads(usable)
    return torch.device("cpu")


def class_weights(labels: Sequence[int], n_classes: int, rule: ClassWeight) -> torch.Tensor | None:
    """Per-class loss weights from the training labels, mean 1 over the classes present.

    >>> class_weights([0, 0, 0, 1], 2, "balanced").tolist()
    [0.5, 1.5]
    """
    if rule == "none":
        return None
    counts = Counter(labels)
    most = max(counts.values())
    raw = [(most / counts[c]) if counts.get(c) else 0.0 for c in range(n_classes)]
    if rule == "sqrt":
        raw = [math.sqrt(w) for w in raw]
    present = [w for w in raw if w > 0]
    scale = len(present) / sum(present)
    return torch.tensor([w * scale for w in raw], dtype=torch.float32)


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, window: int, generator: torch.Generator
) -> list[list[int]]:
    """One epoch's batches: a random order, cut into windows of ``window`` batches, each window
    sorted by length before it is cut into batches, and the batches shuffled again.

    >>> g = torch.Generator().manual_seed(0)
    >>> sorted(i for b in bucketed_batches([5, 1, 3, 2], 2, 10, g) for i in b)
    [0, 1, 2, 3]
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    span = batch_size * window
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def warmup_then_decay(total_steps: int, warmup: float) -> WarmupDecay:
    """Learning-rate factor per optimiser step: linear warm-up over ``warmup`` of the steps, then
    linear decay to zero at ``total_steps``."""
    return WarmupDecay(total_steps, max(0, round(total_steps * warmup)))


@dataclass(frozen=True)
class WarmupDecay:
    total: int
    warm: int

    def __call__(self, step: int) -> float:
        if step < self.warm:
            return (step + 1) / self.warm
        return max(0.0, (self.total - step) / max(1, self.total - self.warm))
