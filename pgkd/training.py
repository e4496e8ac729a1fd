"""How a student is trained: the configuration, the device, the batch order, the schedule and the loop.

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
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from pgkd.data import Example
from pgkd.errors import ModelError

if TYPE_CHECKING:  # the student calls fit() on itself; only its type is needed here
    from pgkd.student import Student

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


def fit(
    student: Student,
    train: Sequence[Example],
    validation: Sequence[Example],
    config: TrainConfig | None = None,
    *,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Train ``student`` in place, early-stopping on validation loss; the best epoch's weights are
    kept and the run is written into its metadata."""
    config = config or TrainConfig()
    student.check_trainable("train")
    if not train or not validation:
        raise ModelError("fit needs non-empty train and validation sets")
    unknown = {e.label for e in [*train, *validation]} - set(student.labels)
    if unknown:
        raise ModelError(f"labels not in this student's taxonomy: {sorted(unknown)}")
    head = config.mode == "head"
    if head and student.pooling == "native":
        raise ModelError(
            "head mode trains a linear head on cached pooled features, and this student scores "
            "through its native head; derive the candidate with Student.successor('head')"
        )
    if config.device != "auto" and resolve_device(config.device) != student.device:
        student.move_to(resolve_device(config.device))
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    y_train, y_val = student.label_ids(train), student.label_ids(validation)
    if head:  # the encoder stays frozen: its features are computed once and reused every epoch
        x_train = student.encode([e.text for e in train], cache=True)
        x_val = student.encode([e.text for e in validation], cache=True)
        trained: nn.Module = student.classifier
        lengths = [1] * len(train)  # cached features: no padding to save
    else:
        x_train = x_val = torch.zeros(0)
        student.forget_features()
        trained = student.model
        lengths = student.token_lengths([e.text for e in train])
    optimiser = torch.optim.AdamW(trained.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, warmup_then_decay(steps_per_epoch * config.epochs, config.warmup)
    )
    weights = class_weights(y_train.tolist(), len(student.labels), config.class_weight)
    loss_fn = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(student.device))

    def validation_loss() -> tuple[float, float]:
        student.model.eval()
        with torch.no_grad():
            logits = student.head_logits(x_val) if head else student.logits([e.text for e in validation])
            loss = float(nn.functional.cross_entropy(logits, y_val))
        return loss, float((logits.argmax(1) == y_val).float().mean())

    best_loss, best_epoch, best_state = math.inf, 0, _snapshot(trained)
    history: list[dict[str, float]] = []
    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(1, config.epochs + 1):
        student.model.train()
        total = 0.0
        for batch in bucketed_batches(lengths, config.batch, config.bucket_batches, generator):
            if head:
                logits = student.head_logits(x_train[batch])
            else:
                logits = student.train_logits([train[i].text for i in batch])
            loss = loss_fn(logits, y_train[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(batch)
        val_loss, val_acc = validation_loss()
        if not math.isfinite(val_loss):
            trained.load_state_dict(best_state)
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
            best_loss, best_epoch, best_state = val_loss, epoch, _snapshot(trained)
        elif epoch - best_epoch >= config.stop_after:
            break
    trained.load_state_dict(best_state)
    student.model.eval()
    seconds = time.perf_counter() - started
    student.metadata.train = {
        **asdict(config),
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "train_size": len(train),
        "seconds": round(seconds, 1),
        "device": student.device.type,
    }
    return FitResult(len(history), best_epoch, best_loss, seconds, history)


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
