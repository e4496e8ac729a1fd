"""The mining service: turns hard traffic into targeted teacher samples; this module wires the
:class:`~consumers.miner.Miner` into faust.

A faust agent reads ``hard`` in batches. A misclassified event (its ground truth came from
feedback) joins the :class:`~pgkd.continual.HardWindow` of live hard negatives and, with
``train_on_feedback``, becomes a sample at once. A low-confidence event without ground truth waits in
a bounded queue for the teacher to label it. A second agent reads ``drift``. A background task does
the teacher's work, one job at a time, on a thread: when the window is ready (``min_hard`` hard
negatives, or ``generate_every_seconds``) or a drift waits, a PGKD generation for the current model
(its validation report and examples from the registry, plus the live hard negatives), otherwise a
batch of labels (:class:`~pgkd.teacher_jobs.JobPlanner` picks). Accepted answers go to ``samples``
with their provenance.

The teacher is a :class:`~pgkd.teacher.shared.SharedTeacher`: cached by prompt hash, one hourly
budget and rate limit across replicas. When it fails, the job is put back and the miner backs off
(exponentially, or as long as a 429 asks); serving never waits for it::

    python -m consumers.mining      # or: pgkd mine
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from consumers import runtime
from consumers.miner import Miner
from pgkd.feedback import FeedbackJoin
from pgkd.runner import load_splits
from pgkd.student import Student
from pgkd.taxonomy import TaxonomyStore
from streams import connect, metrics
from streams.events import DriftEvent, EventDecodeError, HardEvent, Sample, decode
from streams.settings import StreamSettings
from streams.topics import Topics

SERVICE = "mining"
TAXONOMY_SECONDS = 15.0  # how often the classes an operator added are looked for
log = logging.getLogger("pgkd.mining")


def build(settings: StreamSettings, stack: ExitStack) -> tuple[Any, Miner]:
    """The faust app of the mining service and its miner; ``stack`` holds what the teacher needs open."""
    app = connect.faust_app(settings, SERVICE)
    topics = Topics(settings.namespace)
    redis = connect.redis_client(settings)
    splits = load_splits(settings)
    embedder = Student.create(splits.labels, settings.base_model, max_length=settings.max_length)
    shared, breaker = runtime.live_teacher(settings, redis, splits, embedder, stack)
    join = FeedbackJoin(
        redis,
        namespace=settings.namespace,
        ttl=settings.join_ttl_seconds,
        max_text_chars=settings.join_max_text_chars,
    )
    taxonomy = TaxonomyStore(redis, namespace=settings.namespace)
    miner = Miner(settings, shared, connect.registry(settings, redis), splits, breaker, join, taxonomy)
    metrics.CACHE_ENTRIES.labels(cache="features").set_function(lambda: len(embedder.feature_cache))
    metrics.CACHE_ENTRIES.labels(cache="hard_window").set_function(lambda: miner.jobs.window.held)
    metrics.CACHE_ENTRIES.labels(cache="label_queue").set_function(lambda: len(miner.jobs.to_label))
    send = runtime.faust_sender(app, topics.samples, topics.dead_letter)

    async def publish(samples: Sequence[Sample]) -> None:
        futures = [await send(topics.samples, s.key.encode(), s.to_bytes()) for s in samples]
        await asyncio.gather(*futures)
        for s in samples:
            metrics.SAMPLES.labels(source=s.source).inc()

    async def accept(events: Sequence[Any]) -> None:
        samples, pending = [], []
        for event in events:
            try:
                samples += miner.accept(decode(HardEvent, event.value))
            except EventDecodeError as exc:
                dead = runtime.dead_letter_event(event, exc.reason, exc.detail, SERVICE)
                pending.append(await send(topics.dead_letter, *dead))
        await publish(samples)
        await asyncio.gather(*pending)

    @app.agent(app.topic(topics.hard), name=f"{settings.namespace}-mine")
    async def mine(stream: Any) -> None:
        async for events in stream.take_events(64, within=0.5):
            await runtime.process_batch(
                events, accept, service=SERVICE, send=send, dead_letter_topic=topics.dead_letter
            )

    async def drifted(events: Sequence[Any]) -> None:
        pending = []
        for event in events:
            try:
                miner.on_drift(decode(DriftEvent, event.value))
            except EventDecodeError as exc:
                dead = runtime.dead_letter_event(event, exc.reason, exc.detail, SERVICE)
                pending.append(await send(topics.dead_letter, *dead))
        await asyncio.gather(*pending)

    @app.agent(app.topic(topics.drift), name=f"{settings.namespace}-drift")
    async def answer_drift(stream: Any) -> None:
        async for events in stream.take_events(16, within=0.5):
            await runtime.process_batch(
                events, drifted, service=SERVICE, send=send, dead_letter_topic=topics.dead_letter
            )

    @app.task
    async def teach() -> None:
        # One job at a time: a CPU teacher is the scarce resource, and order keeps backoff simple.
        # Nothing may escape this loop: an exception in an app task stops the whole service.
        followed = -math.inf
        while True:
            miner.snapshot = miner.status()
            job = None
            try:
                if time.monotonic() - followed >= TAXONOMY_SECONDS:
                    followed = time.monotonic()
                    try:
                        await asyncio.to_thread(miner.follow_taxonomy)
                    except Exception as exc:  # Redis away or a broken record: the teacher waits
                        log.warning("cannot read the added classes (%s); trying again", exc)
                wanted = miner.jobs.due()
                model = await asyncio.to_thread(miner.current_model) if wanted else None
                job = miner.next_job(model)
                if job is None:
                    await asyncio.sleep(0.5)
                    continue
                miner.busy = True
                samples = await asyncio.to_thread(miner.run_job, job)
                miner.busy = False
                if samples is None:
                    job.undo()
                else:
                    await publish(samples)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                miner.busy = False
                if job is not None:
                    job.undo()
                delay = miner.backoff.failed()
                log.exception("teacher job failed (%r); backing off %.0f s", exc, delay)

    runtime.track_lag(app, SERVICE)
    return app, miner


def main() -> None:
    runtime.setup_logging(SERVICE)
    settings = runtime.service_settings()
    connect.ensure_topics(settings)
    with ExitStack() as stack:
        app, miner = build(settings, stack)

        def health() -> tuple[bool, dict[str, object]]:
            # Not healthy while the teacher is out of reach: the circuit is open, or failing on.
            snapshot = dict(miner.snapshot)
            return snapshot.get("circuit") != "open" and miner.backoff.failures < 5, snapshot

        runtime.start_metrics(settings, SERVICE, health, labels=miner.teacher.labels)
        miner.count_usage()
        runtime.run_faust(app)


if __name__ == "__main__":
    main()
