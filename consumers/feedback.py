"""The feedback service: joins predictions with delayed ground truth; wrong ones go to mining.

A faust agent reads ``requests`` (for the text), ``predictions`` and ``feedback`` in batches and
writes them into the Redis join (:mod:`pgkd.feedback`). Each completed join updates live accuracy
and per-class recall; a misclassified one is published to ``hard`` with its ground truth and the
confidence the student had. While Redis is down the batch is retried (nothing is acked, nothing is
lost) and ``/healthz`` says so::

    python -m consumers.feedback      # or: pgkd feedback
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from consumers import runtime
from pgkd.continual import LiveQuality
from pgkd.drift import DriftConfig, DriftMonitor
from pgkd.errors import PGKDError
from pgkd.feedback import Fact, FeedbackJoin, Joined
from pgkd.retry import Backoff
from pgkd.taxonomy import TaxonomyStore
from streams import connect, metrics
from streams.events import DriftEvent, EventDecodeError, Feedback, HardEvent, Prediction, Request, decode
from streams.settings import StreamSettings
from streams.topics import Topics

SERVICE = "feedback"
T = TypeVar("T")
log = logging.getLogger("pgkd.feedback")
REDIS_BACKOFF = Backoff(initial=0.5, cap=10.0)


def to_fact(
    topics: Topics, topic: str, raw: bytes | None, labels: frozenset[str], drift: DriftMonitor | None = None
) -> Fact:
    """The join fact a record carries (a prediction is also shown to ``drift``); raises
    EventDecodeError for a bad one."""
    if topic == topics.requests:
        request = decode(Request, raw)
        return Fact(request.id, text=request.text)
    if topic == topics.predictions:
        p = decode(Prediction, raw)
        # The student's own verdict, also where the cascade's teacher answered: the join audits the
        # teacher against the student, and live accuracy and drift are the student's.
        label = p.student_label or p.label
        confidence = p.student_confidence if p.student_confidence is not None else p.confidence
        if drift is not None:
            drift.observe(p.model_version, label, confidence, p.out_of_taxonomy)
        return Fact(p.id, predicted=label, confidence=confidence, version=p.model_version)
    feedback = decode(Feedback, raw)
    if feedback.label not in labels:
        raise EventDecodeError("schema", f"label {feedback.label!r} is not in the taxonomy")
    return Fact(feedback.id, gold=feedback.label)


class TaxonomyUnknown(PGKDError, ConnectionError):
    """No model is current yet, so feedback has no taxonomy to be judged by: the batch waits in
    Kafka (a transient failure to :func:`consumers.runtime.process_batch`) until one is."""


class Taxonomy:
    """The labels feedback is judged by: the current model's, from its registry record, and the
    classes an operator added (in ``store``, a :class:`~pgkd.taxonomy.TaxonomyStore`: their ground truth
    teaches the model that will know them), read again every ``refresh_seconds`` so that a promoted
    model with another taxonomy is followed."""

    def __init__(
        self, registry: Any, refresh_seconds: float = 30.0, store: TaxonomyStore | None = None
    ) -> None:
        self.registry, self.refresh_seconds, self.store = registry, refresh_seconds, store
        self.labels: frozenset[str] | None = None
        self.read_at = -math.inf

    @property
    def stale(self) -> bool:
        return self.labels is None or time.monotonic() - self.read_at >= self.refresh_seconds

    def refresh(self) -> frozenset[str] | None:
        """The current labels (None: no model yet); Redis and storage, so call it off the loop."""
        if self.stale:
            try:
                record = self.registry.current()
                added = {c.name for c in self.store.added()} if self.store else set()
            except Exception as exc:  # Redis or storage away: keep judging by the labels read last
                log.warning("cannot read the current model's taxonomy (%s); keeping the last one", exc)
                return self.labels
            if record is not None:
                labels = frozenset(self.registry.labels(record)) | added
                for label in labels - (self.labels or frozenset()):
                    metrics.MISCLASSIFIED.labels(label=label)  # at 0: "none yet", not "no data"
                self.labels, self.read_at = labels, time.monotonic()
        return self.labels


def misclassified_event(joined: Joined) -> HardEvent:
    return HardEvent(
        id=joined.id,
        text=joined.text,
        reason="misclassified",
        predicted=joined.predicted,
        confidence=joined.confidence,
        model_version=joined.version,
        label=joined.gold,
    )


class Joiner:
    def __init__(
        self, settings: StreamSettings, join: FeedbackJoin, taxonomy: Taxonomy, send: runtime.Send
    ) -> None:
        self.topics = Topics(settings.namespace)
        self.join, self.send = join, send
        self.taxonomy = taxonomy
        self.quality = LiveQuality(settings.quality_window)
        self.drift = (
            DriftMonitor(
                DriftConfig(
                    settings.drift_window,
                    settings.drift_alpha,
                    min_feedback=settings.drift_min_feedback,
                    cooldown=settings.drift_cooldown,
                )
            )
            if settings.detect_drift
            else None
        )
        self.redis_ok = True
        self.accuracy: float | None = None  # a snapshot for /healthz, which runs on another thread
        # Joins this process claimed but has not delivered yet: a retried batch gets no claim back
        # from Redis (the lease holds), so it re-sends these.
        self._claimed: list[Joined] = []

    async def handle(self, events: Sequence[Any]) -> None:
        # Before any side effect (drift sees predictions): a batch held for the taxonomy is retried.
        # A thread hop only when the labels are due a re-read (every 30 s), not once a batch; refresh
        # never raises (it keeps the last labels when Redis or storage is away).
        labels = (
            await asyncio.to_thread(self.taxonomy.refresh) if self.taxonomy.stale else self.taxonomy.labels
        )
        if labels is None:
            if any(e.message.topic == self.topics.feedback for e in events):
                raise TaxonomyUnknown("no current model yet: feedback waits for a taxonomy")
            labels = frozenset()
        facts, pending = [], []
        for event in events:
            try:
                facts.append(to_fact(self.topics, event.message.topic, event.value, labels, self.drift))
            except EventDecodeError as exc:
                topic = event.message.topic
                if not self.topics.owns(SERVICE, topic):  # its owner dead-letters it: one letter a record
                    metrics.SKIPPED.labels(service=SERVICE, topic=topic, reason=exc.reason).inc()
                    continue
                dead = runtime.dead_letter_event(event, exc.reason, exc.detail, SERVICE)
                pending.append(await self.send(self.topics.dead_letter, *dead))
        joined = self._claimed + await self._redis(self.join.apply, facts)
        self._claimed = joined
        for j in joined:
            if not j.correct:
                pending.append(
                    await self.send(self.topics.hard, j.id.encode(), misclassified_event(j).to_bytes())
                )
            if self.drift is not None:
                self.drift.judge(j.version, j.gold, j.correct)
        drift = self.drift.check() if self.drift is not None else None
        if drift is not None:
            event = DriftEvent(
                model_version=drift.model_version,
                signals=drift.signals,  # type: ignore[arg-type]
                classes=drift.classes,
                predictions=drift.predictions,
            )
            log.warning(
                "drift on %s: %s",
                drift.model_version,
                "; ".join(f"{k}: {v}" for k, v in drift.signals.items()),
            )
            pending.append(await self.send(self.topics.drift, drift.model_version.encode(), event.to_bytes()))
            for signal in drift.signals:
                metrics.DRIFT_EVENTS.labels(signal=signal).inc()
        await asyncio.gather(*pending)
        # Only now that the hard events are delivered are the joins done for good; if this process
        # dies before, the replayed facts emit them again once the claim's lease is over.
        await self._redis(self.join.confirm, [j.id for j in joined])
        self._claimed = []
        metrics.FEEDBACK.inc(sum(1 for f in facts if f.gold is not None))
        for j in joined:
            self.quality.record(j.gold, j.predicted)
            if not j.correct:
                metrics.MISCLASSIFIED.labels(label=j.gold).inc()
        if joined:
            metrics.JOINED.inc(len(joined))
            self.accuracy = self.quality.accuracy()
            if self.accuracy is not None:
                metrics.LIVE_ACCURACY.set(self.accuracy)
            for label, recall in self.quality.recall().items():
                metrics.LIVE_RECALL.labels(label=label).set(recall)

    def export_audit(self) -> None:
        """The teacher's audit as gauges. On a timer: the write that completes an audit may be the
        teacher's (in mining), long after the last feedback this service saw."""
        audit = self.join.teacher_audit()
        metrics.TEACHER_AUDITED.set(audit.judged)
        if audit.judged:
            metrics.TEACHER_LIVE_ACCURACY.labels(who="teacher").set(audit.teacher_accuracy or 0.0)
            metrics.TEACHER_LIVE_ACCURACY.labels(who="student").set(audit.student_accuracy or 0.0)

    async def _redis(self, call: Callable[[Sequence[Any]], T], items: Sequence[Any]) -> T:
        """``call(items)`` on a worker thread, retried until Redis answers: without Redis there is
        no join, so the batch is held (unacknowledged) until it is back."""

        def unavailable(state: RetryCallState) -> None:
            if self.redis_ok and state.outcome is not None:
                log.error("Redis unavailable, holding the batch: %s", state.outcome.exception())
            self.redis_ok = False

        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(redis.RedisError),
            wait=REDIS_BACKOFF.wait(),
            before_sleep=unavailable,
        ):
            with attempt:
                result = await asyncio.to_thread(call, items)
        if not self.redis_ok:
            log.info("Redis is back")
        self.redis_ok = True
        return result


def build(settings: StreamSettings) -> tuple[Any, Joiner]:
    app = connect.faust_app(settings, SERVICE)
    topics = Topics(settings.namespace)
    redis_client = connect.redis_client(settings)
    join = FeedbackJoin(
        redis_client,
        namespace=settings.namespace,
        ttl=settings.join_ttl_seconds,
        max_text_chars=settings.join_max_text_chars,
    )
    send = runtime.faust_sender(app, topics.hard, topics.drift, topics.dead_letter)
    taxonomy = Taxonomy(
        connect.registry(settings, redis_client),
        store=TaxonomyStore(redis_client, namespace=settings.namespace),
    )
    joiner = Joiner(settings, join, taxonomy, send)
    source = app.topic(topics.requests, topics.predictions, topics.feedback)

    @app.agent(source, name=f"{settings.namespace}-join")
    async def join_feedback(stream: Any) -> None:
        async for events in stream.take_events(256, within=0.2):
            await runtime.process_batch(
                events, joiner.handle, service=SERVICE, send=send, dead_letter_topic=topics.dead_letter
            )

    @app.timer(5.0)
    async def teacher_audit() -> None:
        # Without Redis the join's own retries report it; the gauges catch up on a later tick.
        with contextlib.suppress(redis.RedisError):
            await asyncio.to_thread(joiner.export_audit)

    runtime.track_lag(app, SERVICE)
    return app, joiner


def main() -> None:
    runtime.setup_logging(SERVICE)
    settings = runtime.service_settings()
    connect.ensure_topics(settings)
    app, joiner = build(settings)

    def health() -> tuple[bool, dict[str, object]]:
        return joiner.redis_ok, {"redis": joiner.redis_ok, "live_accuracy": joiner.accuracy}

    runtime.start_metrics(settings, SERVICE, health)
    runtime.run_faust(app)


if __name__ == "__main__":
    main()
