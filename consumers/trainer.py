"""The trainer service: collects samples, retrains on a schedule, promotes only what validates.

A kafka-python consumer (group ``<namespace>-trainer``) reads ``samples``; each valid one goes into
the Redis :class:`~pgkd.samples.SampleStore` (one per content hash) before its offset is
committed. Samples whose text is in the validation or test set are dropped (they would leak
into the data that decides promotion). After ``retrain_every_samples`` new samples or
``retrain_every_seconds`` (with at least one new), the trainer that holds the Redis lock trains a
candidate on the seed labels plus every stored sample and scores it on validation; the
:class:`~pgkd.promotion.PromotionRule` decides. A promoted candidate is written to the registry,
made current and announced on ``model-updates``; a rejected one is recorded with the reason.

At start, with an empty registry, it trains and promotes the seed-only model; with a current
model but an empty ``model-updates`` topic (a broker that lost its data), it announces it again::

    python -m consumers.trainer      # or: pgkd train
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError
from redis.exceptions import LockError

from consumers import runtime
from consumers.model_updates import announce
from pgkd import samples
from pgkd.bootstrap import Difference, macro_f1_difference
from pgkd.continual import Guidance
from pgkd.data import Splits
from pgkd.distill import fingerprint
from pgkd.feedback import FeedbackJoin
from pgkd.promotion import Candidate, PromotionRule, RetrainSchedule, TeacherGate, retrain
from pgkd.registry import ModelRecord, ModelRegistry
from pgkd.runner import data_lineage, detector_config, load_splits, train_config
from pgkd.samples import Retention, SampleStore, sample_key
from pgkd.student import Student
from pgkd.teacher.shared import shared_usage
from streams import connect, metrics
from streams.events import EventDecodeError, ModelUpdate, Sample, decode
from streams.settings import StreamSettings
from streams.topics import Topics

SERVICE = "trainer"
RECONCILE_SECONDS = 30.0
LOCK_SECONDS = 6 * 3600  # longer than any training; a crashed holder's lock expires after it
log = logging.getLogger("pgkd.trainer")


class Trainer:
    """The trainer's decisions and actions, given its connections (no Kafka consumer inside)."""

    def __init__(
        self,
        settings: StreamSettings,
        splits: Splits,
        registry: ModelRegistry,
        store: SampleStore,
        redis: Any,
        producer: Any,
        base: Student,
    ) -> None:
        self.settings, self.splits, self.registry, self.store = settings, splits, registry, store
        self.redis, self.producer, self.base = redis, producer, base
        self.rule = PromotionRule(
            settings.promotion_metric,
            settings.promotion_min_delta,
            settings.promotion_max_class_drop,
            settings.promotion_confidence,
        )
        self.schedule = RetrainSchedule(settings.retrain_every_samples, settings.retrain_every_seconds)
        self.gate = TeacherGate(settings.teacher_audit_min, settings.teacher_min_accuracy)
        self.retention = Retention(settings.sample_max_per_class, settings.sample_max_age)
        self.join = FeedbackJoin(redis, namespace=settings.namespace)  # its teacher audit only
        self.config = train_config(settings)
        self.labels = frozenset(splits.labels)
        # A sample equal to a validation or test text would let training see the data that judges it.
        self.held_out = {sample_key(e.text) for e in (*splits.validation, *splits.test)}
        self.trained_key = f"{settings.namespace}:trainer:trained"
        self.last_train = time.monotonic()
        self.current_student: Student | None = None

    # -- samples ----------------------------------------------------------------------------------

    def check(self, sample: Sample) -> str | None:
        """Why ``sample`` cannot be trained on, or None."""
        if sample.label not in self.labels:
            return "unknown_label"
        if sample.key != sample_key(sample.text):
            return "bad_key"
        if sample.key in self.held_out:
            return "held_out_text"
        return None

    def ingest(self, records: Sequence[Any]) -> tuple[list[samples.Sample], list[bytes]]:
        """The valid samples of a batch of ``samples`` records, and dead letters for the others."""
        good: list[samples.Sample] = []
        dead: list[bytes] = []
        for record in records:
            reason: str | None
            try:
                sample = decode(Sample, record.value)
            except EventDecodeError as exc:
                reason, error = exc.reason, exc.detail
            else:
                reason = self.check(sample)
                if reason is None:
                    good.append(sample)  # stored with its provenance
                    continue
                error = f"sample {sample.key} ({sample.source}, label {sample.label!r}): {reason}"
            dead.append(runtime.dead_letter_at(record, record.value, reason, error, SERVICE))
        return good, dead

    def pending(self) -> int:
        return max(0, len(self.store) - int(self.redis.get(self.trained_key) or 0))

    # -- models -----------------------------------------------------------------------------------

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
        self.reconcile(current)
        metrics.set_current_version(current.version)
        self._current_gauges(current.metrics.get("validation"), current.metrics.get("calibration"))
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
        announced = self._last_announced()
        if announced is None or (announced.version, announced.sha256) != (current.version, current.sha256):
            log.info(
                "announcing current model %s (model-updates said %s)",
                current.version,
                announced and announced.version,
            )
            announce(self.settings, current, producer=self.producer)

    def train(self, samples: list[samples.Sample]) -> Candidate:
        train = [*self.splits.train, *(s.example for s in samples)]
        started = time.perf_counter()
        warm = self.settings.warm_start and self.current_student is not None and self.config.mode == "full"
        # A warm start continues from a converged model: a few epochs on the union are enough, and
        # are what makes a fine-tuning retrain fit a 2-core schedule (BENCHMARKS.md section 6).
        config = replace(self.config, max_epochs=self.settings.warm_epochs) if warm else self.config
        candidate = retrain(
            self.base,
            self.current_student,
            train,
            self.splits.validation,
            config,
            test=self.splits.test,
            warm_start=warm,
            calibrated=self.settings.calibrate,
            detector=detector_config(self.settings),
        )
        metrics.TRAIN_SECONDS.observe(time.perf_counter() - started)
        candidate.student.metadata.data_fingerprint = fingerprint(train)
        candidate.student.metadata.data = data_lineage(self.settings, self.splits)
        return candidate

    def held(self) -> dict[str, Any] | None:
        """The operator's hold on promotions (see :func:`rollback`), kept in the metric too."""
        hold = self.registry.held()
        metrics.PROMOTION_HELD.set(0 if hold is None else 1)
        return hold

    def maybe_retrain(self) -> dict[str, Any] | None:
        """Retrain if the schedule says so, no other trainer is at it and no operator holds
        promotions; returns the decision. Samples keep arriving during a hold and wait for it."""
        if self.held() is not None:
            return None
        pending = self.pending()
        if not self.schedule.due(pending, time.monotonic() - self.last_train):
            return None
        lock = self.lock(blocking=False)
        if not lock.acquire():
            return None
        try:
            return self.retrain_now()
        finally:
            with contextlib.suppress(LockError):  # it expired during a very long training
                lock.release()

    def difference(self, candidate: Candidate, current: ModelRecord | None) -> Difference | None:
        """Paired bootstrap of the candidate's validation macro-F1 over the current model's, from
        the verdicts on validation stored with the current version (None if it has none)."""
        stored = self.registry.guidance(current.version) if current else None
        if stored is None:
            return None
        old = {s.text: s.predicted for s in Guidance.from_dict(stored).scored}
        pairs = [(s.label, s.predicted, old[s.text]) for s in candidate.scored if s.text in old]
        if len(pairs) < len(candidate.scored) // 2:
            return None  # a different validation set: nothing to pair
        gold, new, before = zip(*pairs, strict=True)
        return macro_f1_difference(self.splits.labels, gold, new, before, seed=self.settings.seed)

    def teacher_trusted(self) -> tuple[bool, str]:
        """The gate on the teacher's samples, from its audit against live ground truth."""
        trusted, reason = self.gate.decide(self.join.teacher_audit())
        metrics.TEACHER_TRUSTED.set(1 if trusted else 0)
        return trusted, reason

    def retrain_now(self) -> dict[str, Any]:
        pruned = self.store.prune(self.retention, time.time())
        if pruned:
            log.info("retention: %d teacher samples pruned", pruned)
            metrics.SAMPLES_PRUNED.inc(pruned)
        samples = [s for s in self.store.all() if s.key not in self.held_out]
        trusted, gate = self.teacher_trusted()
        if not trusted:
            held = sum(1 for s in samples if s.source.startswith("teacher"))
            samples = [s for s in samples if not s.source.startswith("teacher")]
            log.info("not training on %d teacher samples: %s", held, gate)
        trained = len(self.store)
        candidate = self.train(samples)
        self.last_train = time.monotonic()
        current = self.registry.current()
        current_validation = current.metrics.get("validation") if current else None
        difference = self.difference(candidate, current)
        decision = self.rule.decide(candidate.validation.summary(), current_validation, difference)
        hold = self.held()  # an operator may have rolled back while this candidate trained
        if hold is not None and decision.promote:
            decision = replace(decision, promote=False, reason=f"held: {hold['reason']}", check="held")
        self._gauges(candidate, current_validation, samples)
        outcome = {
            "ts": time.time(),
            "promoted": decision.promote,
            "reason": decision.reason,
            "candidate": decision.candidate,
            "current": decision.current,
            "current_version": current.version if current else None,
            "train_size": len(self.splits.train) + len(samples),
            "samples": len(samples),
            "teacher_gate": gate,
            "teacher_trusted": trusted,
            "macro_f1_difference": None
            if difference is None
            else {
                "delta": difference.delta,
                "low": difference.low,
                "high": difference.high,
                "minimum_detectable": difference.minimum_detectable,
            },
        }
        record = None
        if decision.promote:
            record = self.promote(
                candidate,
                reason=decision.reason,
                parent=current,
                samples=samples,
                detail={
                    k: outcome[k]
                    for k in (
                        "samples",
                        "train_size",
                        "teacher_gate",
                        "teacher_trusted",
                        "macro_f1_difference",
                    )
                },
            )
            if record is None:  # an operator's hold came in while the candidate was being stored
                reason = f"held: {(self.registry.held() or {}).get('reason', 'an operator hold')}"
                decision = replace(decision, promote=False, reason=reason, check="held")
                outcome.update(promoted=False, reason=reason)
        if record is not None:
            outcome["version"] = record.version
            metrics.TRAIN_RUNS.labels(outcome="promoted").inc()
        else:
            self.registry.record_decision(outcome)
            metrics.REJECTIONS.labels(reason=decision.check).inc()
            metrics.TRAIN_RUNS.labels(outcome="rejected").inc()
            log.info("candidate not promoted: %s", decision.reason)
        # Only once the decision is recorded (and a promotion announced) are these samples "trained
        # on": a failure before retrains them. During a hold nothing is: after the release, every
        # sample counts as pending again (pruning may have shrunk the pool meanwhile).
        self.redis.set(self.trained_key, 0 if decision.check == "held" else trained)
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
        parent_usage = parent.teacher_usage_total if parent else {}
        candidate.student.metadata.parent_version = parent.version if parent else None
        record = self.registry.publish(
            candidate.student,
            note=reason,
            guidance=candidate.guidance.to_dict(),
            metrics={
                "validation": candidate.validation.summary(),
                "test": candidate.test.summary() if candidate.test else None,
                "epochs": candidate.fit.epochs,
                "train_seconds": candidate.fit.seconds,
                "calibration": candidate.calibration,
                "teacher": self.settings.teacher,
                "teacher_usage": {"calls": usage["calls"], "tokens": usage["tokens"], "cost": usage["cost"]},
            },
            train_size=len(self.splits.train) + len(samples),
            samples_by_source=dict(Counter(s.source for s in samples)),
            teacher_cost_since_parent=usage["cost"] - float(parent_usage.get("cost", 0.0)),
            teacher_calls_since_parent=int(usage["calls"] - float(parent_usage.get("calls", 0.0))),
            teacher_usage_total=usage,
        )
        if parent is None:  # the first model: a hold has nothing to hold
            self.registry.set_current(record.version)
        elif (hold := self.registry.set_current_unless_held(record.version)) is not None:
            log.info("stored %s but did not make it current: %s", record.version, hold["reason"])
            return None
        announce(self.settings, record, producer=self.producer)
        self.registry.record_decision(
            {
                "ts": time.time(),
                "promoted": True,
                "reason": reason,
                "version": record.version,
                "candidate": record.metric(self.rule.metric),
                "current_version": parent.version if parent else None,
                **(detail or {}),
            }
        )
        self.current_student = candidate.student
        self._current_gauges(record.metrics.get("validation"), record.metrics.get("calibration"))
        metrics.PROMOTIONS.inc()
        metrics.set_current_version(record.version)
        log.info("promoted %s (%s)", record.version, reason)
        return record

    def _gauges(
        self, candidate: Candidate, current: dict[str, Any] | None, samples: Sequence[samples.Sample]
    ) -> None:
        metrics.VALIDATION_F1.labels(model="candidate").set(candidate.validation.macro_f1)
        metrics.set_calibration("candidate", candidate.calibration)
        for label, f1 in candidate.validation.summary()["per_class_f1"].items():
            metrics.CLASS_F1.labels(model="candidate", label=label).set(f1)
        self._current_gauges(current)
        metrics.TRAINING_SET.labels(source="seed").set(len(self.splits.train))
        for source, n in Counter(s.source for s in samples).items():
            metrics.TRAINING_SET.labels(source=source).set(n)

    @staticmethod
    def _current_gauges(validation: dict[str, Any] | None, calibration: dict[str, Any] | None = None) -> None:
        metrics.set_calibration("current", calibration)
        if not validation:
            return
        metrics.VALIDATION_F1.labels(model="current").set(validation["macro_f1"])
        for label, f1 in validation.get("per_class_f1", {}).items():
            metrics.CLASS_F1.labels(model="current", label=label).set(f1)

    def _last_announced(self) -> ModelUpdate | None:
        consumer = connect.consumer(self.settings, group=None)
        try:
            tp = TopicPartition(Topics(self.settings.namespace).model_updates, 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
            updates = []
            for record in connect.read_to_end(consumer, tp):
                with contextlib.suppress(EventDecodeError):
                    updates.append(decode(ModelUpdate, record.value))
            return updates[-1] if updates else None
        finally:
            consumer.close()


def run(settings: StreamSettings, stop: threading.Event) -> None:
    """Consume samples and retrain until ``stop`` is set."""
    if settings.torch_threads:  # on a small machine, leave cores to serving and the teacher
        import torch

        torch.set_num_threads(settings.torch_threads)
    topics = Topics(settings.namespace)
    redis = connect.redis_client(settings)
    splits = load_splits(settings)
    base = Student.create(
        splits.labels,
        settings.base_model,
        max_length=settings.max_length,
        seed=settings.seed,
        device=settings.device,
    )
    trainer = Trainer(
        settings,
        splits,
        connect.registry(settings, redis),
        SampleStore(redis, namespace=settings.namespace),
        redis,
        connect.producer(settings),
        base,
    )
    status: dict[str, Any] = {"ok": False}  # what /healthz says, kept by the loop (no Redis call)
    runtime.start_metrics(settings, SERVICE, lambda: (bool(status["ok"]), dict(status)))
    current = trainer.bootstrap()
    log.info("current model %s; consuming %s", current.version, topics.samples)
    consumer = connect.consumer(
        settings, topics.samples, group=f"{settings.namespace}-trainer", max_poll_interval_ms=1_800_000
    )
    lag = runtime.LagGauge(SERVICE)
    failures = 0
    reconciled = time.monotonic()
    try:
        while not stop.is_set():
            try:
                batch = consumer.poll(timeout_ms=1000, max_records=500)
                records = [r for rs in batch.values() for r in rs]
                if records:
                    good, dead = trainer.ingest(records)
                    trainer.store.add(good)
                    for value in dead:
                        connect.send_and_confirm(
                            trainer.producer, topics.dead_letter, topics.samples.encode(), value
                        )
                    consumer.commit()  # only after the samples are in Redis: at-least-once
                lag.update(
                    {
                        (tp.topic, tp.partition): consumer.highwater(tp) - consumer.position(tp)
                        for tp in consumer.assignment()
                        if consumer.highwater(tp) is not None
                    }
                )
                trainer.maybe_retrain()
                if time.monotonic() - reconciled >= RECONCILE_SECONDS:
                    trainer.reconcile()
                    reconciled = time.monotonic()
                status.update(ok=True, pending=trainer.pending(), error=None)
                failures = 0
            except Exception as exc:  # Redis, the broker or a training failure: retry, never die
                failures += 1
                status.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
                log.exception("trainer loop failed (%d in a row); retrying", failures)
                if isinstance(exc, KafkaError):
                    # A producer whose broker lost its state (a restarted tansu, a failed-over
                    # cluster) can stay in a fatal idempotence error for good: start a fresh one.
                    with contextlib.suppress(Exception):
                        trainer.producer.close(timeout=5)
                    trainer.producer = connect.producer(settings)
                _rewind(consumer)
                stop.wait(min(60.0, 2.0 * failures))
    finally:
        consumer.close()
        trainer.producer.close()


def _rewind(consumer: Any) -> None:
    """Back to the committed offsets, so records of a failed batch are read again."""
    for tp in consumer.assignment():
        try:
            committed = consumer.committed(tp)
            if committed is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        except Exception:  # the broker is away too: the next poll's rebalance starts over anyway
            log.warning("could not rewind %s", tp)


def main() -> None:
    runtime.setup_logging(SERVICE)
    settings = runtime.service_settings()
    connect.ensure_topics(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run(settings, stop)


if __name__ == "__main__":
    main()
