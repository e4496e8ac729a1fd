"""The trainer service: collects samples, retrains on a schedule, promotes only what validates;
this module runs its consumer loop around the :class:`~consumers.retrainer.Retrainer`.

A kafka-python consumer (group ``<namespace>-trainer``) reads ``samples``; each valid one goes into
the Redis :class:`~pgkd.samples.SampleStore` (one per content hash) before its offset is
committed. Samples whose text is in the validation or test set are dropped (they would leak
into the data that decides promotion). After ``retrain_every_samples`` new samples or
``retrain_every_seconds`` (with at least one new), the trainer that holds the Redis lock trains a
candidate on the seed labels plus every stored sample and scores it on validation; the round's
decision (:mod:`pgkd.retrain_round`: the :class:`~pgkd.promotion.PromotionRule` under an operator's
hold) says whether it replaces the current model. A promoted candidate is written to the registry,
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
from collections.abc import Sequence
from typing import Any

from kafka.errors import KafkaError

from consumers import runtime
from consumers.retrainer import Retrainer
from pgkd import samples
from pgkd.retrain_round import TrainingPool
from pgkd.runner import load_splits
from pgkd.samples import SampleStore
from pgkd.student import Student
from streams import connect
from streams.events import EventDecodeError, Sample, decode
from streams.settings import StreamSettings
from streams.topics import Topics

SERVICE = "trainer"
RECONCILE_SECONDS = 30.0
log = logging.getLogger("pgkd.trainer")


def run(settings: StreamSettings, stop: threading.Event) -> None:
    """Consume samples and retrain until ``stop`` is set."""
    if settings.torch_threads:  # on a small machine, leave cores to serving and the teacher
        import torch

        torch.set_num_threads(settings.torch_threads)
    topics = Topics(settings.namespace)
    redis = connect.redis_client(settings)
    splits = load_splits(settings)

    def new_student(labels: Sequence[str]) -> Student:
        return Student.create(
            labels,
            settings.base_model,
            max_length=settings.max_length,
            seed=settings.seed,
            device=settings.device,
        )

    trainer = Retrainer(
        settings,
        splits,
        connect.registry(settings, redis),
        SampleStore(redis, namespace=settings.namespace),
        redis,
        connect.producer(settings),
        new_student,
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
                if time.monotonic() - reconciled >= RECONCILE_SECONDS:
                    # Before the poll: a broker that came back empty fails polls until the topics
                    # are back, and only this step recreates them.
                    trainer.reconcile()
                    reconciled = time.monotonic()
                batch = consumer.poll(timeout_ms=1000, max_records=500)
                records = [r for rs in batch.values() for r in rs]
                if records:
                    trainer.follow_taxonomy()  # a sample of a class added a moment ago is no stranger
                    good, dead = ingest(trainer.pool, records)
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


def ingest(pool: TrainingPool, records: Sequence[Any]) -> tuple[list[samples.Sample], list[bytes]]:
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
            reason = pool.check(sample)
            if reason is None:
                good.append(sample)  # stored with its provenance
                continue
            error = f"sample {sample.key} ({sample.source}, label {sample.label!r}): {reason}"
        dead.append(runtime.dead_letter_at(record, record.value, reason, error, SERVICE))
    return good, dead


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
    runtime.lower_priority(settings.trainer_nice)
    connect.ensure_topics(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run(settings, stop)


if __name__ == "__main__":
    main()
