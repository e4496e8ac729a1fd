"""The trainer service's worker: the retrain rounds of :mod:`pgkd.retrain_round` over the Redis
sample pool, with their lock, metrics and ``model-updates`` announcements.

:meth:`Retrainer.maybe_retrain` runs a round when the :class:`~pgkd.promotion.RetrainSchedule` says
so, no operator holds promotions and no other trainer holds the lock; :meth:`Retrainer.bootstrap`
makes sure there is a current model and that serving workers were told which one. The kafka-python
loop that fills the pool and drives it is :mod:`consumers.trainer`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import LockError

from consumers.model_updates import announce, last_announced
from pgkd import samples
from pgkd.data import Splits
from pgkd.feedback import FeedbackJoin
from pgkd.model_record import ModelRecord
from pgkd.promotion import Candidate, GrowthRule, PromotionRule, RetrainSchedule, TeacherGate
from pgkd.registry import ModelRegistry
from pgkd.retrain_round import (
    RoundJudge,
    TrainingPool,
    make_current,
    promotion_record,
    store_candidate,
    train_candidate,
)
from pgkd.runner import data_lineage, detector_config, train_config
from pgkd.samples import Retention, SampleStore
from pgkd.student import Student
from pgkd.taxonomy import TaxonomyStore, grown
from pgkd.teacher.shared import shared_usage
from streams import connect, metrics
from streams.settings import StreamSettings

LOCK_SECONDS = 6 * 3600  # longer than any training; a crashed holder's lock expires after it
log = logging.getLogger("pgkd.trainer")


class Retrainer:
    """The trainer's rounds and promotions, given its connections (no Kafka consumer inside).
    ``new_student(labels)`` makes the untrained student every candidate of a taxonomy starts from:
    the seed labels, and those plus the classes an operator added (:mod:`pgkd.taxonomy`)."""

    def __init__(
        self,
        settings: StreamSettings,
        splits: Splits,
        registry: ModelRegistry,
        store: SampleStore,
        redis: Any,
        producer: Any,
        new_student: Callable[[Sequence[str]], Student],
    ) -> None:
        self.settings, self.registry, self.store = settings, registry, store
        self.redis, self.producer, self.new_student = redis, producer, new_student
        self.rule = PromotionRule(
            settings.promotion_metric,
            settings.promotion_min_delta,
            settings.promotion_max_class_drop,
            settings.promotion_confidence,
        )
        self.growth = GrowthRule(settings.new_class_max_old_drop, settings.new_class_min_recall)
        self.seed_splits = splits
        self.taxonomy = TaxonomyStore(redis, namespace=settings.namespace)
        self.use(splits)
        self.taxonomy_grew = False
        self.schedule = RetrainSchedule(settings.retrain_every_samples, settings.retrain_every_seconds)
        self.gate = TeacherGate(settings.teacher_audit_min, settings.teacher_min_accuracy)
        self.retention = Retention(settings.sample_max_per_class, settings.sample_max_age)
        self.join = FeedbackJoin(redis, namespace=settings.namespace)  # its teacher audit only
        self.config = train_config(settings)
        self.trained_key = f"{settings.namespace}:trainer:trained"
        self.last_train = time.monotonic()
        self.current_student: Student | None = None

    def use(self, splits: Splits) -> None:
        """Train candidates on ``splits`` (the seed splits, grown or not) from now on."""
        self.splits = splits
        self.base = self.new_student(splits.labels)
        self.judge = RoundJudge(self.rule, splits.labels, len(splits.train), self.settings.seed, self.growth)
        self.pool = TrainingPool.of(splits)
        metrics.TAXONOMY_CLASSES.labels(origin="seed").set(len(self.seed_splits.labels))
        metrics.TAXONOMY_CLASSES.labels(origin="added").set(len(self.added))

    @property
    def added(self) -> tuple[str, ...]:
        """The classes an operator added that candidates train on: the labels after the seed ones."""
        return self.splits.labels[len(self.seed_splits.labels) :]

    def follow_taxonomy(self) -> bool:
        """Take up the classes an operator added since the last look (the next round trains on
        them); True when there were any."""
        added = self.taxonomy.added()
        names = tuple(c.name for c in added)
        if names == self.added:
            return False
        log.info("taxonomy grown by %s: the next candidate learns it", ", ".join(names[len(self.added) :]))
        self.use(grown(self.seed_splits, added))
        self.taxonomy_grew = True
        return True

    def pending(self) -> int:
        """Samples stored since the last round that counted them as trained on."""
        return max(0, len(self.store) - int(self.redis.get(self.trained_key) or 0))

    def lock(self, *, blocking: bool) -> Any:
        """The Redis lock that makes one trainer at a time train (held at most LOCK_SECONDS)."""
        return self.redis.lock(
            f"{self.settings.namespace}:trainer:lock",
            timeout=LOCK_SECONDS,
            blocking=blocking,
            blocking_timeout=LOCK_SECONDS,
        )

    def bootstrap(self) -> ModelRecord:
        """Make sure there is a current model, and that serving workers are told which one: after
        a crash between promotion and announcement, or a broker that lost its data, the last
        ``model-updates`` record is not the registry's current version, so it is announced again."""
        self.follow_taxonomy()
        current = self.registry.current()
        if current is None:
            with self.lock(blocking=True):
                current = self.registry.current()  # another trainer may have done it meanwhile
                if current is None:
                    log.info("no model yet: training the seed-only student")
                    current = self.promote(self.train([]), reason="seed labels only", parent=None)
                    assert current is not None  # the first model is never held
                    # The schedule's clock starts now: a fine-tune takes minutes, and the first sample
                    # must not look a retrain-period old.
                    self.last_train = time.monotonic()
        # After a restart: retrain at once only if the current model lacks a class added meanwhile.
        self.taxonomy_grew = not set(self.splits.labels) <= set(self.registry.labels(current))
        self.reconcile(current)
        metrics.set_current_version(current.version)
        _scores("current", current.metrics.get("validation"), current.metrics.get("calibration"))
        metrics.TRAINING_SET.labels(source="seed").set(len(self.splits.train))
        return current

    def reconcile(self, current: ModelRecord | None = None) -> None:
        """Repair what a broker that lost its data (or a crash between promotion and announcement)
        leaves behind: missing topics are created, and the current model is announced again if the
        last ``model-updates`` record is not it. Cheap; the trainer runs it every half minute."""
        connect.ensure_topics(self.settings)
        current = current or self.registry.current()
        if current is None:
            return
        announced = last_announced(self.settings)
        if announced is None or (announced.version, announced.sha256) != (current.version, current.sha256):
            log.info(
                "announcing current model %s (model-updates said %s)",
                current.version,
                announced and announced.version,
            )
            announce(self.settings, current, producer=self.producer)

    def train(self, samples: Sequence[samples.Sample]) -> Candidate:
        """A candidate on the seed labels plus ``samples``, configured by the settings, timed."""
        started = time.perf_counter()
        candidate = train_candidate(
            self.base,
            self.current_student,
            self.splits,
            samples,
            self.config,
            warm_start=self.settings.warm_start,
            warm_epochs=self.settings.warm_epochs,
            calibrated=self.settings.calibrate,
            detector=detector_config(self.settings),
            lineage=data_lineage(self.settings, self.splits),
        )
        metrics.TRAIN_SECONDS.observe(time.perf_counter() - started)
        return candidate

    def held(self) -> dict[str, Any] | None:
        """The operator's hold on promotions (see :func:`~consumers.model_updates.rollback`), kept
        in the metric too."""
        hold = self.registry.held()
        metrics.PROMOTION_HELD.set(0 if hold is None else 1)
        return hold

    def maybe_retrain(self) -> dict[str, Any] | None:
        """Retrain if the schedule says so, no other trainer is at it and no operator holds
        promotions; returns the decision. Samples keep arriving during a hold and wait for it."""
        if self.held() is not None:
            return None
        self.follow_taxonomy()
        pending = self.pending()
        if not self.taxonomy_grew and not self.schedule.due(pending, time.monotonic() - self.last_train):
            return None
        lock = self.lock(blocking=False)
        if not lock.acquire():
            return None
        try:
            return self.retrain_now()
        finally:
            with contextlib.suppress(LockError):  # it expired during a very long training
                lock.release()

    def teacher_trusted(self) -> tuple[bool, str]:
        """The gate on the teacher's samples, from its audit against live ground truth."""
        trusted, reason = self.gate.decide(self.join.teacher_audit())
        metrics.TEACHER_TRUSTED.set(1 if trusted else 0)
        return trusted, reason

    def retrain_now(self) -> dict[str, Any]:
        """One round: train a candidate on the pool, let the
        :class:`~pgkd.retrain_round.RoundJudge` decide, then promote or record the rejection;
        returns the outcome record."""
        pruned = self.store.prune(self.retention, time.time())
        if pruned:
            log.info("retention: %d teacher samples pruned", pruned)
            metrics.SAMPLES_PRUNED.inc(pruned)
        stored = self.store.all()
        trusted, gate = self.teacher_trusted()
        samples, withheld = self.pool.select(stored, teacher_trusted=trusted)
        if not trusted:
            log.info("not training on %d teacher samples: %s", withheld, gate)
        trained = len(self.store)
        candidate = self.train(samples)
        self.last_train, self.taxonomy_grew = time.monotonic(), False
        current = self.registry.current()
        guidance = self.registry.guidance(current.version) if current else None
        # The hold is read after training: an operator may have rolled back meanwhile.
        judged = self.judge.decide(
            candidate,
            current,
            guidance,
            self.held(),
            samples=samples,
            teacher=(trusted, gate),
            now=time.time(),
        )
        _scores("candidate", candidate.validation.summary(), candidate.calibration)
        _scores("current", judged.current_validation)
        metrics.TRAINING_SET.labels(source="seed").set(len(self.splits.train))
        for source, n in Counter(s.source for s in samples).items():
            metrics.TRAINING_SET.labels(source=source).set(n)
        record = None
        if judged.decision.promote:
            reason, detail = judged.decision.reason, judged.detail()
            record = self.promote(candidate, reason=reason, parent=current, samples=samples, detail=detail)
            if record is None:  # an operator's hold came in while the candidate was being stored
                judged = judged.turned_down(self.registry.held())
        outcome = judged.outcome(record.version if record else None)
        if record is not None:
            metrics.TRAIN_RUNS.labels(outcome="promoted").inc()
        else:
            self.registry.record_decision(outcome)
            metrics.REJECTIONS.labels(reason=judged.decision.check).inc()
            metrics.TRAIN_RUNS.labels(outcome="rejected").inc()
            log.info("candidate not promoted: %s", judged.decision.reason)
        # Only once the decision is recorded (and a promotion announced) are these samples "trained
        # on": a failure before retrains them. During a hold nothing is: after the release, every
        # sample counts as pending again (pruning may have shrunk the pool meanwhile).
        self.redis.set(self.trained_key, 0 if judged.decision.check == "held" else trained)
        return outcome

    def promote(
        self,
        candidate: Candidate,
        *,
        reason: str,
        parent: ModelRecord | None,
        samples: Sequence[samples.Sample] = (),
        detail: dict[str, Any] | None = None,
    ) -> ModelRecord | None:
        """Store ``candidate`` as the next version and make it current and announced; None when an
        operator's hold stopped it after it was stored."""
        usage = shared_usage(self.redis, self.settings.namespace)
        seed_size, teacher = len(self.splits.train), self.settings.teacher
        record = store_candidate(
            self.registry,
            candidate,
            reason=reason,
            parent=parent,
            samples=samples,
            seed_size=seed_size,
            teacher=teacher,
            usage=usage,
        )
        if (hold := make_current(self.registry, record, parent)) is not None:
            log.info("stored %s but did not make it current: %s", record.version, hold["reason"])
            return None
        announce(self.settings, record, producer=self.producer)
        metric, now = self.judge.rule.metric, time.time()
        self.registry.record_decision(
            promotion_record(record, reason=reason, parent=parent, metric=metric, now=now, detail=detail)
        )
        self.current_student = candidate.student
        _scores("current", record.metrics.get("validation"), record.metrics.get("calibration"))
        metrics.PROMOTIONS.inc()
        metrics.set_current_version(record.version)
        log.info("promoted %s (%s)", record.version, reason)
        return record


def _scores(model: str, validation: dict[str, Any] | None, calibration: dict[str, Any] | None = None) -> None:
    """The gauges of the ``current`` or ``candidate`` model's validation scores and calibration."""
    metrics.set_calibration(model, calibration)
    if not validation:
        return
    metrics.VALIDATION_F1.labels(model=model).set(validation["macro_f1"])
    for label, f1 in validation.get("per_class_f1", {}).items():
        metrics.CLASS_F1.labels(model=model, label=label).set(f1)
