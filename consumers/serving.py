"""The serving service: requests in, one prediction per request out, hard ones routed to mining.

A faust agent takes micro-batches from ``requests`` (at most ``serve_batch`` records, waiting at most
``serve_wait_ms``), classifies each batch with the current student on a worker thread (the event
loop keeps heartbeating), and publishes a :class:`~streams.events.Prediction` per request, plus a
:class:`~streams.events.HardEvent` for those above the uncertainty threshold. Offsets are committed
only after the batch's records are delivered (at-least-once; downstream deduplicates by ``id``).

A thread (:class:`~consumers.model_updates.UpdateWatcher`) tails ``model-updates``: each new version
is staged (fetched, checksum verified, warmed up) beside the current one and swapped in between two
batches. Run several processes with the same settings to scale out over the partitions of
``requests``::

    python -m consumers.serving      # or: pgkd serve
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from consumers import runtime
from consumers.cascade import Cascade, cascade_for
from consumers.model_updates import UpdateWatcher
from pgkd.evaluation import uncertainty
from pgkd.serving import LoadedModel, ModelSlot
from pgkd.student import Predictions
from pgkd.teacher.base import TeacherLabel
from streams import connect, metrics
from streams.events import EventDecodeError, HardEvent, Prediction, Request, decode
from streams.settings import StreamSettings
from streams.topics import Topics

SERVICE = "serving"
log = logging.getLogger("pgkd.serving")

Outgoing = tuple[str, bytes, bytes]  # topic, key, value


@dataclass(frozen=True)
class Routing:
    """How verdicts become events: which are hard, and what a prediction carries."""

    topics: Topics
    low_confidence: float = 0.5
    rule: str = "confidence"
    include_probs: bool = False
    hard_text_chars: int = 2000
    # A text whose out-of-taxonomy score is above this goes to `hard` as out_of_taxonomy; None: the
    # model's own threshold (fitted on validation), when it has a detector.
    out_of_taxonomy_threshold: float | None = None


MAX_LATENCY = 24 * 3600.0


def latency_seconds(request: Request, now: float) -> float:
    """Request sent to now; the producer's clock is not trusted beyond [0, a day]."""
    return min(MAX_LATENCY, max(0.0, now - request.ts))


def out_of_taxonomy(model: LoadedModel, predictions: Predictions, routing: Routing) -> np.ndarray | None:
    """Which verdicts are about texts far from every class: score above the routing's threshold,
    or the model's own; None when the model has no detector."""
    scores, threshold = predictions.out_of_taxonomy, routing.out_of_taxonomy_threshold
    if threshold is None and model.student.fence is not None:
        threshold = model.student.fence.threshold
    if scores is None or threshold is None:
        return None
    return np.asarray(scores > threshold)


def respond(
    requests: Sequence[Request],
    model: LoadedModel,
    predictions: Predictions,
    routing: Routing,
    *,
    inference_ms: float,
    now: float | None = None,
    teacher: Sequence[TeacherLabel | None] | None = None,
) -> list[Outgoing]:
    """The records to publish for one classified batch: a prediction for every request (same order)
    and a hard event for each uncertain one. Where ``teacher`` holds an answer (the cascade), the
    prediction is the teacher's and says so."""
    now = time.time() if now is None else now
    unsure = uncertainty(predictions.probs, routing.rule) > routing.low_confidence  # type: ignore[arg-type]
    labels = model.student.labels
    scores, outside = predictions.out_of_taxonomy, out_of_taxonomy(model, predictions, routing)
    out: list[Outgoing] = []
    for i, request in enumerate(requests):
        key = request.id.encode()
        confidence = float(predictions.confidence[i])
        probs = None
        if routing.include_probs:
            probs = {c: round(float(p), 5) for c, p in zip(labels, predictions.probs[i], strict=True)}
        answer = teacher[i] if teacher is not None else None
        prediction = Prediction(
            id=request.id,
            label=answer.label if answer and answer.label else predictions.labels[i],
            confidence=min(1.0, max(0.0, answer.confidence)) if answer and answer.label else confidence,
            model_version=model.version,
            latency_ms=latency_seconds(request, now) * 1000,
            inference_ms=inference_ms,
            batch_size=len(requests),
            probs=probs,
            out_of_taxonomy_score=None if scores is None else round(float(scores[i]), 5),
            out_of_taxonomy=bool(outside is not None and outside[i]),
            answered_by="teacher" if answer and answer.label else "student",
            student_label=predictions.labels[i] if answer and answer.label else None,
            student_confidence=confidence if answer and answer.label else None,
        )
        out.append((routing.topics.predictions, key, prediction.to_bytes()))
        if prediction.out_of_taxonomy or unsure[i]:
            hard = HardEvent(
                id=request.id,
                text=request.text[: routing.hard_text_chars],
                reason="out_of_taxonomy" if prediction.out_of_taxonomy else "low_confidence",
                predicted=predictions.labels[i],
                confidence=confidence,
                model_version=model.version,
            )
            out.append((routing.topics.hard, key, hard.to_bytes()))
    return out


class Server:
    """Classifies batches of raw request records and sends what :func:`respond` returns."""

    def __init__(
        self, settings: StreamSettings, slot: ModelSlot, send: runtime.Send, cascade: Cascade | None = None
    ) -> None:
        self.settings, self.slot, self.send, self.cascade = settings, slot, send, cascade
        self.topics = Topics(settings.namespace)
        self.routing = Routing(
            self.topics,
            low_confidence=settings.low_confidence,
            rule=settings.uncertainty_rule,
            include_probs=settings.include_probs,
            hard_text_chars=settings.join_max_text_chars,
            out_of_taxonomy_threshold=settings.out_of_taxonomy_threshold,
        )
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.serving: str | None = None  # the version the metrics say is served

    async def handle(self, events: Sequence[Any]) -> None:
        if self.slot.swap() is not None:
            metrics.SWAPS.labels(result="swapped").inc()
        model = self.slot.current
        assert model is not None, "the agent waits for a first model"
        if model.version != self.serving:
            metrics.set_model(model.version)
            log.info("now serving %s", model.version)
            self.serving = model.version
        requests, pending = [], []
        for event in events:
            try:
                requests.append(decode(Request, event.value))
            except EventDecodeError as exc:
                dead = runtime.dead_letter_event(event, exc.reason, exc.detail, SERVICE)
                pending.append(await self.send(self.topics.dead_letter, *dead))
        metrics.REQUESTS.inc(len(events))
        if requests:
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            verdicts = await loop.run_in_executor(
                self.executor, self.slot.classify, model, [r.text for r in requests]
            )
            inference = time.perf_counter() - started
            outside = out_of_taxonomy(model, verdicts, self.routing)
            teacher = None
            if self.cascade is not None:
                texts = [r.text for r in requests]
                teacher = await self.cascade.answer(texts, verdicts.confidence, outside)
            now = time.time()
            outgoing = respond(
                requests,
                model,
                verdicts,
                self.routing,
                inference_ms=inference * 1000,
                now=now,
                teacher=teacher,
            )
            for topic, key, value in outgoing:
                pending.append(await self.send(topic, key, value))
            metrics.INFERENCE_SECONDS.observe(inference)
            metrics.BATCH_SIZE.observe(len(requests))
            hard = sum(1 for topic, _, _ in outgoing if topic == self.topics.hard)
            unknown = 0 if outside is None else int(outside.sum())
            metrics.OUT_OF_TAXONOMY.inc(unknown)
            metrics.LOW_CONFIDENCE.inc(hard - unknown)
            for request, confidence in zip(requests, verdicts.confidence, strict=True):
                metrics.CONFIDENCE.observe(float(confidence))
                metrics.LATENCY_SECONDS.observe(latency_seconds(request, now))
        # Delivered before the agent takes the next batch, which is when faust acks this one.
        await asyncio.gather(*pending)
        metrics.PREDICTIONS.inc(len(requests))


def build(settings: StreamSettings, stack: ExitStack) -> tuple[Any, ModelSlot, UpdateWatcher]:
    """The faust app of one serving worker, its model slot and its update watcher; ``stack`` holds
    what the cascade's teacher needs open."""
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    app = connect.faust_app(settings, SERVICE)
    topics = Topics(settings.namespace)
    slot = ModelSlot(
        # Only versions stored at a remote URI are copied here before they are loaded.
        cache_dir=Path(tempfile.gettempdir()) / f"pgkd-model-cache-{settings.namespace}",
        max_chars=settings.serve_max_chars,
        batch_size=settings.serve_batch,
        inference=settings.serve_inference,
    )
    watcher = UpdateWatcher(settings, slot)
    send = runtime.faust_sender(app, topics.predictions, topics.hard, topics.dead_letter)

    def served_features() -> int:
        current = slot.current
        return len(current.student.feature_cache) if current is not None else 0

    metrics.CACHE_ENTRIES.labels(cache="features").set_function(served_features)
    metrics.CACHE_ENTRIES.labels(cache="refused_versions").set_function(lambda: len(watcher.refused))
    server = Server(settings, slot, send, cascade_for(settings, stack) if settings.cascade else None)

    @app.agent(app.topic(topics.requests), name=f"{settings.namespace}-serve")
    async def serve(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        while not slot.loaded.is_set():  # requests wait in Kafka until a first model is loaded
            await loop.run_in_executor(None, slot.loaded.wait, 1.0)
        async for events in stream.take_events(settings.serve_batch, within=settings.serve_wait_ms / 1000):
            await runtime.process_batch(
                events, server.handle, service=SERVICE, send=send, dead_letter_topic=topics.dead_letter
            )

    @app.task
    async def watch_models() -> None:
        watcher.start()

    runtime.track_lag(app, SERVICE)
    return app, slot, watcher


def main() -> None:
    runtime.setup_logging(SERVICE)
    settings = runtime.service_settings()
    connect.ensure_topics(settings)
    with ExitStack() as stack:
        app, slot, watcher = build(settings, stack)

        def health() -> tuple[bool, dict[str, object]]:
            current = slot.current
            ok = current is not None and (watcher.is_alive() or not watcher.ident)
            return ok, {
                "model": current.version if current else None,
                "refused": list(watcher.refused.values())[-3:],
            }

        runtime.start_metrics(settings, SERVICE, health)
        runtime.run_faust(app)


if __name__ == "__main__":
    main()
