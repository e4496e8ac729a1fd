"""One retrain round of the trainer, decided without any broker: which stored samples the candidate
trains on, whether it replaces the current model, and what the registry keeps of the round.

* :class:`TrainingPool` says which samples may be stored and trained on (never a held-out text, and
  none of the teacher's while its :class:`~pgkd.promotion.TeacherGate` distrusts it);
* :func:`train_candidate` trains and scores a candidate on the seed labels plus those samples;
* :class:`RoundJudge` compares the candidate with the current model (the
  :class:`~pgkd.promotion.PromotionRule` on the paired macro-F1 difference) under an operator's
  hold, into a :class:`RetrainRound` whose :meth:`~RetrainRound.outcome` is the decision record;
* :func:`store_candidate` stores a candidate as the registry's next version, :func:`make_current` makes it
  current unless a hold stops it, and :func:`promotion_record` is the decision record it leaves.

The trainer service (:mod:`consumers.trainer`, its worker :mod:`consumers.retrainer`) adds the
Redis pool, the lock, the metrics and the ``model-updates`` announcement around them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pgkd.bootstrap import Difference, macro_f1_difference
from pgkd.continual import Guidance
from pgkd.data import Splits
from pgkd.distill import fingerprint
from pgkd.model_record import ModelRecord
from pgkd.out_of_taxonomy import DEFAULT_DETECTOR, DetectorConfig
from pgkd.promotion import Candidate, Decision, GrowthRule, PromotionRule, retrain
from pgkd.registry import ModelRegistry
from pgkd.samples import Sample, sample_key
from pgkd.student import Student
from pgkd.training import TrainConfig

# What a promotion's decision record repeats of its round's outcome.
_PROMOTION_DETAIL = ("samples", "train_size", "teacher_gate", "teacher_trusted", "macro_f1_difference")


@dataclass(frozen=True)
class TrainingPool:
    """Which samples a candidate may train on: one in the taxonomy ``labels``, keyed by the hash of
    its text, and never a ``held_out`` text (a validation or test one would let training see the
    data that judges it).

    >>> pool = TrainingPool(frozenset({"sport", "tech"}), frozenset())
    >>> found = [Sample.of("a goal", "sport", "feedback"), Sample.of("a chip", "tech", "teacher_generated")]
    >>> [s.text for s in pool.select(found, teacher_trusted=False)[0]]
    ['a goal']
    """

    labels: frozenset[str]
    held_out: frozenset[str]

    @classmethod
    def of(cls, splits: Splits) -> TrainingPool:
        held_out = frozenset(sample_key(e.text) for e in (*splits.validation, *splits.test))
        return cls(frozenset(splits.labels), held_out)

    def check(self, sample: Sample) -> str | None:
        """Why ``sample`` cannot be trained on, or None."""
        if sample.label not in self.labels:
            return "unknown_label"
        if sample.key != sample_key(sample.text):
            return "bad_key"
        if sample.key in self.held_out:
            return "held_out_text"
        return None

    def select(self, stored: Iterable[Sample], *, teacher_trusted: bool) -> tuple[list[Sample], int]:
        """The ``stored`` samples a candidate trains on, and how many of the teacher's were left out
        because its gate distrusts it (its labels would teach its errors)."""
        samples = [s for s in stored if s.key not in self.held_out]
        if teacher_trusted:
            return samples, 0
        kept = [s for s in samples if not s.source.startswith("teacher")]
        return kept, len(samples) - len(kept)


def train_candidate(
    base: Student,
    current: Student | None,
    splits: Splits,
    samples: Sequence[Sample],
    config: TrainConfig,
    *,
    warm_start: bool = False,
    warm_epochs: int = 3,
    calibrated: bool = True,
    detector: DetectorConfig | None = DEFAULT_DETECTOR,
    lineage: dict[str, Any] | None = None,
) -> Candidate:
    """A candidate (:func:`~pgkd.promotion.retrain`) trained on the seed labels plus ``samples``,
    scored on validation and test, carrying the fingerprint of its training set and the ``lineage``
    of its data. With ``warm_start`` a full-mode candidate keeps fine-tuning ``current`` for
    ``warm_epochs``."""
    train = [*splits.train, *(s.example for s in samples)]
    # A model of a smaller taxonomy has no output for an added class: such a candidate starts fresh.
    warm = warm_start and current is not None and config.mode == "full" and current.labels == base.labels
    # A warm start continues from a converged model: a few epochs on the union are enough, and
    # are what makes a fine-tuning retrain fit a 2-core schedule (BENCHMARKS.md section 6).
    config = replace(config, max_epochs=warm_epochs) if warm else config
    candidate = retrain(
        base,
        current,
        train,
        validation=splits.validation,
        test=splits.test,
        config=config,
        warm_start=warm,
        calibrated=calibrated,
        detector=detector,
    )
    candidate.student.metadata.data_fingerprint = fingerprint(train)
    if lineage is not None:
        candidate.student.metadata.data = lineage
    return candidate


def turned_down(decision: Decision, hold: dict[str, Any] | None) -> Decision:
    """``decision`` turned down by an operator's ``hold`` (:meth:`~pgkd.registry.ModelRegistry.held`)."""
    reason = f"held: {(hold or {}).get('reason', 'an operator hold')}"
    return replace(decision, promote=False, reason=reason, check="held")


@dataclass(frozen=True)
class RetrainRound:
    """What one round decided about its candidate, and from what: the current model it was compared
    with (None: there was none), the paired ``difference``, the ``samples`` it trained on beside the
    ``seed_size`` seed examples, the teacher gate's verdict, and when (``ts``, epoch seconds)."""

    decision: Decision
    current: ModelRecord | None
    difference: Difference | None
    samples: Sequence[Sample]
    seed_size: int
    teacher_trusted: bool
    teacher_gate: str
    ts: float

    @property
    def train_size(self) -> int:
        return self.seed_size + len(self.samples)

    @property
    def current_validation(self) -> dict[str, Any] | None:
        return self.current.metrics.get("validation") if self.current else None

    def turned_down(self, hold: dict[str, Any] | None) -> RetrainRound:
        """The round with its decision turned down by an operator's ``hold``."""
        return replace(self, decision=turned_down(self.decision, hold))

    def outcome(self, version: str | None = None) -> dict[str, Any]:
        """The decision record (:meth:`~pgkd.registry.ModelRegistry.record_decision`); ``version``
        is the one a promotion stored."""
        d = self.difference
        outcome = {
            "ts": self.ts,
            "promoted": self.decision.promote,
            "reason": self.decision.reason,
            "candidate": self.decision.candidate,
            "current": self.decision.current,
            "current_version": self.current.version if self.current else None,
            "train_size": self.train_size,
            "samples": len(self.samples),
            "teacher_gate": self.teacher_gate,
            "teacher_trusted": self.teacher_trusted,
            "macro_f1_difference": None
            if d is None
            else {"delta": d.delta, "low": d.low, "high": d.high, "minimum_detectable": d.minimum_detectable},
        }
        if version is not None:
            outcome["version"] = version
        return outcome

    def detail(self) -> dict[str, Any]:
        """What a promotion's record repeats of this round (:func:`promotion_record`)."""
        outcome = self.outcome()
        return {k: outcome[k] for k in _PROMOTION_DETAIL}


@dataclass(frozen=True)
class RoundJudge:
    """Judges each round's candidate against the current model: the promotion ``rule``, with the
    paired bootstrap (``seed``) of the macro-F1 difference over the taxonomy ``labels``, or the
    ``growth`` rule when the taxonomy has classes the current model lacks; every candidate trains
    on ``seed_size`` seed examples beside its samples."""

    rule: PromotionRule
    labels: Sequence[str]
    seed_size: int
    seed: int = 0
    growth: GrowthRule = GrowthRule()

    def difference(
        self, candidate: Candidate, guidance: dict[str, Any] | None, labels: Sequence[str] = ()
    ) -> Difference | None:
        """Paired bootstrap of the candidate's validation macro-F1 over the current model's (over
        ``labels``, default the taxonomy's), from the current version's stored verdicts on
        validation (``guidance``, None if it has none)."""
        if guidance is None:
            return None
        old = {s.text: s.predicted for s in Guidance.from_dict(guidance).scored}
        pairs = [(s.label, s.predicted, old[s.text]) for s in candidate.scored if s.text in old]
        if len(pairs) < len(candidate.scored) // 2:
            return None  # a different validation set: nothing to pair
        gold, new, before = zip(*pairs, strict=True)
        return macro_f1_difference(labels or self.labels, gold, new, before, seed=self.seed)

    def decide(
        self,
        candidate: Candidate,
        current: ModelRecord | None,
        guidance: dict[str, Any] | None,
        hold: dict[str, Any] | None,
        *,
        samples: Sequence[Sample],
        teacher: tuple[bool, str],
        now: float,
    ) -> RetrainRound:
        """The round of ``candidate``, trained on ``samples`` with the teacher gate's ``teacher``
        verdict, against ``current`` and its ``guidance``; an operator's ``hold`` (which may have
        come while the candidate trained) turns a promotion down."""
        validation = current.metrics.get("validation") if current else None
        old = tuple(current.labels) if current else ()
        grown = bool(old) and set(old) < set(self.labels)  # an operator added classes since ``current``
        # Paired on the texts both models saw: with a grown taxonomy, the old classes' texts.
        difference = self.difference(candidate, guidance, old if grown else ())
        if grown:
            decision = self.growth.decide(candidate.scored, old, validation)
        else:
            decision = self.rule.decide(candidate.validation.summary(), validation, difference)
        if hold is not None and decision.promote:
            decision = turned_down(decision, hold)
        trusted, gate = teacher
        return RetrainRound(decision, current, difference, samples, self.seed_size, trusted, gate, now)


def store_candidate(
    registry: ModelRegistry,
    candidate: Candidate,
    *,
    reason: str,
    parent: ModelRecord | None,
    samples: Sequence[Sample],
    seed_size: int,
    teacher: str,
    usage: dict[str, float],
) -> ModelRecord:
    """Store ``candidate`` as the registry's next version (not yet current), with its scores and
    lineage: its ``parent``, what it trained on, and the teacher's spending since the parent (from
    ``usage``, :func:`~pgkd.teacher.shared.shared_usage`)."""
    parent_usage = parent.teacher_usage_total if parent else {}
    candidate.student.metadata.parent_version = parent.version if parent else None
    return registry.publish(
        candidate.student,
        note=reason,
        guidance=candidate.guidance.to_dict(),
        metrics={
            "validation": candidate.validation.summary(),
            "test": candidate.test.summary() if candidate.test else None,
            "epochs": candidate.fit.epochs,
            "train_seconds": candidate.fit.seconds,
            "calibration": candidate.calibration,
            "teacher": teacher,
            "teacher_usage": {"calls": usage["calls"], "tokens": usage["tokens"], "cost": usage["cost"]},
        },
        train_size=seed_size + len(samples),
        samples_by_source=dict(Counter(s.source for s in samples)),
        teacher_cost_since_parent=usage["cost"] - float(parent_usage.get("cost", 0.0)),
        teacher_calls_since_parent=int(usage["calls"] - float(parent_usage.get("calls", 0.0))),
        teacher_usage_total=usage,
    )


def make_current(
    registry: ModelRegistry, record: ModelRecord, parent: ModelRecord | None
) -> dict[str, Any] | None:
    """Make the stored ``record`` current; returns the operator's hold that stopped it, or None.
    The first model (no ``parent``) is made current regardless: a hold has nothing to hold."""
    if parent is None:
        registry.set_current(record.version)
        return None
    return registry.set_current_unless_held(record.version)


def promotion_record(
    record: ModelRecord,
    *,
    reason: str,
    parent: ModelRecord | None,
    metric: str,
    now: float,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The decision record of a promotion to ``record``: its validation ``metric``, the version it
    replaced, and the round's ``detail`` (:meth:`RetrainRound.detail`)."""
    return {
        "ts": now,
        "promoted": True,
        "reason": reason,
        "version": record.version,
        "candidate": record.metric(metric),
        "current_version": parent.version if parent else None,
        **(detail or {}),
    }
