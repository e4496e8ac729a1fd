"""Which model every serving worker runs: ``model-updates`` announcements, the watcher that follows
them, and the operator's rollback and release.

The trainer announces each promotion here, and each serving worker's :class:`UpdateWatcher` stages
it; an operator's :func:`rollback` makes an earlier version current again everywhere and holds
automatic promotion until :func:`release`::

    pgkd rollback v0003      # then, when the cause is fixed: pgkd release
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache
from kafka import TopicPartition

from pgkd.model_record import ModelRecord
from pgkd.retry import Backoff
from streams import connect, metrics
from streams.events import EventDecodeError, ModelUpdate, decode
from streams.settings import StreamSettings
from streams.topics import Topics

if TYPE_CHECKING:  # the worker's model slot, only as a type: no torch import for an announcement
    from pgkd.serving import ModelSlot

# The watcher runs inside serving workers: its lines are the serving service's.
log = logging.getLogger("pgkd.serving")
WATCHER_BACKOFF = Backoff(initial=1.0, cap=30.0)
REFUSED_KEPT = 256


def update_for(record: ModelRecord, kind: str = "promote") -> ModelUpdate:
    return ModelUpdate(
        version=record.version,
        uri=record.uri,
        sha256=record.sha256,
        kind=kind,  # type: ignore[arg-type]
        metrics={k: v for k, v in record.metrics.items() if k in ("validation", "test")},
        parent_version=record.parent_version,
    )


def announce(
    settings: StreamSettings, record: ModelRecord, kind: str = "promote", producer: Any = None
) -> None:
    """Publish ``record`` on ``model-updates``; returns once the broker has acknowledged it and
    raises KafkaError if it did not."""
    own = producer is None
    producer = producer or connect.producer(settings)
    try:
        update = update_for(record, kind)
        topic = Topics(settings.namespace).model_updates
        connect.send_and_confirm(producer, topic, record.version.encode(), update.to_bytes())
    finally:
        if own:
            producer.close()


@contextlib.contextmanager
def _from_the_start(settings: StreamSettings) -> Iterator[tuple[Any, TopicPartition]]:
    """A consumer of ``model-updates`` (every record, no consumer group) at its first offset."""
    consumer = connect.consumer(settings, group=None)
    try:
        tp = TopicPartition(Topics(settings.namespace).model_updates, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        yield consumer, tp
    finally:
        consumer.close()


def newest_update(records: Sequence[Any]) -> ModelUpdate | None:
    """The newest readable update among ``records``; an unreadable one is logged and skipped."""
    updates = []
    for record in records:
        try:
            updates.append(decode(ModelUpdate, record.value))
        except EventDecodeError as exc:
            log.error("ignoring bad model update at offset %s: %s", record.offset, exc)
    return updates[-1] if updates else None


def last_announced(settings: StreamSettings) -> ModelUpdate | None:
    """The newest readable record of ``model-updates``, or None (an empty topic)."""
    with _from_the_start(settings) as (consumer, tp):
        return newest_update(connect.read_to_end(consumer, tp))


def rollback(settings: StreamSettings, version: str, *, hold: bool = True) -> ModelRecord:
    """Make an earlier ``version`` current again, in the registry and in every serving worker.

    With ``hold`` (the default) the trainer promotes nothing until :func:`release`: a rollback
    that the next retrain undoes a minute later is no rollback."""
    registry = connect.registry(settings)
    # Hold and pointer under one lock: a retrain finishing meanwhile cannot promote over the rollback.
    record = registry.hold(f"rollback to {version}", version) if hold else registry.set_current(version)
    assert record is not None
    announce(settings, record, kind="rollback")
    registry.record_decision(
        {
            "ts": time.time(),
            "version": version,
            "promoted": True,
            "reason": "rollback" + (" (automatic promotion held)" if hold else ""),
            "kind": "rollback",
        }
    )
    return record


def release(settings: StreamSettings) -> dict[str, Any] | None:
    """Let the trainer promote again after a held rollback; returns the hold that was lifted."""
    registry = connect.registry(settings)
    hold = registry.held()
    registry.release()
    if hold is not None:
        registry.record_decision(
            {
                "ts": time.time(),
                "promoted": False,
                "reason": f"hold lifted ({hold['reason']})",
                "kind": "release",
            }
        )
    return hold


class UpdateWatcher(threading.Thread):
    """Tails ``model-updates`` (every record, no consumer group) and stages each newest version.

    At start it reads the whole topic to its end offset and stages only the last update, so a new
    worker serves the current model and never an older one first. A version that fails to load is
    refused once (and remembered), not retried on every poll.
    """

    def __init__(self, settings: StreamSettings, slot: ModelSlot) -> None:
        super().__init__(name="model-updates", daemon=True)
        self.settings, self.slot = settings, slot
        self.stopping = threading.Event()
        # (version, sha256) -> why, the newest REFUSED_KEPT: a worker that runs for months stays bounded.
        self.refused: LRUCache[tuple[str, str], str] = LRUCache(REFUSED_KEPT)

    def run(self) -> None:
        failures, failed_at = 0, -math.inf
        while not self.stopping.is_set():
            try:
                self._tail()  # returns only when stopping
            except Exception:  # the broker went away: keep the current model, retry
                # A failure long after the last one starts a new outage: the backoff starts over.
                failures = 1 if time.monotonic() - failed_at > WATCHER_BACKOFF.cap * 2 else failures + 1
                failed_at = time.monotonic()
                delay = WATCHER_BACKOFF.delay(failures)
                log.exception("model-updates watcher failed; retrying in %.1f s", delay)
                self.stopping.wait(delay)

    def _tail(self) -> None:
        with _from_the_start(self.settings) as (consumer, tp):
            self._stage_newest(connect.read_to_end(consumer, tp))
            while not self.stopping.is_set():
                self._stage_newest([r for rs in consumer.poll(timeout_ms=1000).values() for r in rs])

    def _stage_newest(self, records: Sequence[Any]) -> None:
        update = newest_update(records)  # only the newest of a burst matters
        if update is not None:
            self._stage(update)

    def _stage(self, update: ModelUpdate) -> None:
        if (update.version, update.sha256) in self.refused:
            return
        try:
            loaded = self.slot.stage(update.version, update.uri, update.sha256)
        except Exception as exc:  # corrupt, missing or unloadable: keep serving the current model
            self.refused[(update.version, update.sha256)] = f"{type(exc).__name__}: {exc}"
            metrics.SWAPS.labels(result="refused").inc()
            log.error("refusing model %s: %s", update.version, exc)
            return
        if loaded is not None:
            metrics.SWAP_SECONDS.observe(loaded.load_seconds)
            log.info("staged model %s (%s) in %.2f s", loaded.version, update.kind, loaded.load_seconds)
