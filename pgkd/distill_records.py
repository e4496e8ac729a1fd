"""The records of a PGKD run: the knobs it is given, what each step did, and what it returns.

:class:`DistillConfig` configures Algorithm 1 (:func:`pgkd.distill.distill`); the loop appends a
:class:`StepRecord` per step and returns a :class:`DistillResult`, which the run report
(:mod:`pgkd.report`) renders.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pgkd.data import Example
from pgkd.evaluation import ValidationReport
from pgkd.out_of_taxonomy import DetectorConfig
from pgkd.student import Student
from pgkd.training import TrainConfig

Metric = Literal["macro_f1", "accuracy"]  # the validation score that decides "better" (here and in promotion)


@dataclass
class StepSelection:
    """Algorithm 1's choice of step: a step counts only when it added samples and beats the best
    validation score so far by more than ``margin``; ``patience`` steps in a row that do not count
    end the run. Step 0 (the seed model) is the first best."""

    best_score: float
    margin: float
    patience: int
    best_step: int = 0
    stale: int = 0

    def observe(self, step: int, score: float, accepted: bool) -> bool:
        """Record ``step``'s validation score; True when it becomes the best."""
        improved = accepted and score > self.best_score + self.margin
        if improved:
            self.best_step, self.best_score, self.stale = step, score, 0
        else:
            self.stale += 1
        return improved

    @property
    def exhausted(self) -> bool:
        return self.stale >= self.patience


@dataclass(frozen=True)
class DistillConfig:
    """Knobs of Algorithm 1; the defaults are the paper's (10 steps, 32 samples, patience 5, 16 examples).

    >>> DistillConfig(steps=3).samples_per_step
    32
    """

    steps: int = 10
    samples_per_step: int = 32
    patience: int = 5
    prompt_examples: int = 16  # of each kind: correct, misclassified, hard negatives
    # How many weak classes the teacher writes for each step. 10 rather than 4: with a fine-tuned
    # student, samples spread over more weak classes lifted WordNet macro-F1 more (BENCHMARKS.md s.4).
    target_classes: int = 10
    metric: Metric = "macro_f1"  # validation metric that decides "better"
    # A step must beat the best validation score by more than this to count. 0.02, not the paper's 0:
    # 200 validation labels have a bootstrap sd of ~0.03 macro-F1, and on the recorded runs 0.02 kept
    # every simulated-teacher gain while the local LLM's noise gains were refused (BENCHMARKS.md s.4).
    min_improvement: float = 0.02
    train: TrainConfig = field(default_factory=TrainConfig)
    # Fine-tuned students restart from the base encoder every step: continuing to fine-tune the
    # previous step's model, early-stopped on the same validation set each time, climbs on validation
    # while test accuracy falls (BENCHMARKS.md section 4).
    warm_start: bool = False
    # Share of validation that only guides the teacher (report, examples, hard negatives); the rest
    # only selects the step. 0 is the paper: one set does both, so validation overstates the lift.
    guidance_split: float = 0.0
    # Guidance from the training set instead: k students, each fitted without one fold of the seed
    # labels, score that fold; the report and the hard negatives come from these out-of-fold
    # verdicts and all of validation selects. 0: off. Costs k extra fine-tunes a step.
    guidance_folds: int = 0
    # Ablations of the paper's prompt: without the report the teacher sees no per-class scores and
    # is aimed at the classes of the mistakes it is shown; without hard negatives it gets none.
    use_report: bool = True
    use_hard_negatives: bool = True
    evaluate_test: bool = True
    # The best model's confidence is calibrated on validation (temperature scaling) before it is
    # returned, and it gets an out-of-taxonomy detector fitted on its training set (None: none).
    calibrate: bool = True
    detector: DetectorConfig | None = field(default_factory=DetectorConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "patience", "prompt_examples", "target_classes", "samples_per_step"):
            if getattr(self, name) < (0 if name == "steps" else 1):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.metric not in ("macro_f1", "accuracy"):
            raise ValueError(f"metric must be 'macro_f1' or 'accuracy', got {self.metric!r}")
        if self.min_improvement < 0:
            raise ValueError(f"min_improvement must be >= 0, got {self.min_improvement}")
        if not 0 <= self.guidance_split < 1:
            raise ValueError(f"guidance_split must be in [0, 1), got {self.guidance_split}")
        if self.guidance_folds == 1 or self.guidance_folds < 0:
            raise ValueError(f"guidance_folds must be 0 (off) or at least 2, got {self.guidance_folds}")
        if self.guidance_folds and self.guidance_split:
            raise ValueError("guidance_folds and guidance_split are two sources of guidance: choose one")


@dataclass
class StepRecord:
    """What one step did and achieved; the run report is a list of these."""

    step: int
    train_size: int
    validation: dict[str, Any]
    test: dict[str, Any] | None
    improved: bool
    target_classes: list[str] = field(default_factory=list)
    proposed: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    teacher: dict[str, Any] = field(default_factory=dict)  # cumulative usage after this step
    teacher_seconds: float = 0.0
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    note: str = ""


@dataclass
class DistillResult:
    best: Student
    best_step: int
    history: list[StepRecord]
    samples: list[Example]  # every accepted teacher sample, in order
    stop_reason: str
    final_validation: ValidationReport
    final_test: ValidationReport | None
    seed_test: ValidationReport | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "best_step": self.best_step,
            "stop_reason": self.stop_reason,
            "seed_test": self.seed_test.summary() if self.seed_test else None,
            "best_test": self.final_test.summary() if self.final_test else None,
            "best_validation": self.final_validation.summary(),
            "steps": [asdict(r) for r in self.history],
        }
