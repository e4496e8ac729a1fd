"""The mining service: turns hard traffic into targeted teacher samples.

A faust agent reads ``hard`` in batches. A misclassified event (its ground truth came from
feedback) joins the :class:`~pgkd.continual.HardWindow` of live hard negatives and, with
``train_on_feedback``, becomes a sample at once. A low-confidence event without ground truth waits in
a bounded queue for the teacher to label it. A background task does the teacher's work, one job at
a time, on a thread: when the window is ready (``min_hard`` hard negatives, or
``generate_every_seconds``) a PGKD generation for the current model (its validation report and
examples from the registry, plus the live hard negatives), otherwise a batch of labels. Accepted
answers go to ``samples`` with their provenance.

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
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import redis

from consumers import runtime
from pgkd.continual import Guidance, HardWindow
from pgkd.data import Splits
from pgkd.errors import TeacherBudgetExceeded, TeacherError, TeacherRateLimited
from pgkd.feedback import FeedbackJoin
from pgkd.mining import ScoredExample
from pgkd.registry import ModelRegistry
from pgkd.retry import Backoff
from pgkd.runner import load_splits
from pgkd.student import Student
from pgkd.teacher.base import prompt_hash
from pgkd.teacher.breaker import CircuitBreaker
from pgkd.teacher.request import GenerationRequest, generation_request
from pgkd.teacher.shared import SharedTeacher
from streams import connect, metrics
from streams.events import DriftEvent, EventDecodeError, HardEvent, Sample, decode
from streams.settings import StreamSettings
from streams.topics import Topics

SERVICE = "mining"
log = logging.getLogger("pgkd.mining")


@dataclass
class TeacherCooldown:
    """How long the mining service leaves the teacher alone after failures: the shared
    :class:`~pgkd.retry.Backoff`, except that a teacher's own ``retry_after`` wins when it gives one.
    A scheduler, not a loop: the service goes on consuming while it waits."""

    policy: Backoff = Backoff(initial=2.0, cap=300.0)
    failures: int = 0
    until: float = 0.0

    def failed(self, retry_after: float | None = None) -> float:
        self.failures += 1
        delay = retry_after if retry_after is not None else self.policy.delay(self.failures)
        self.until = time.monotonic() + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.until = 0, 0.0

    @property
    def waiting(self) -> bool:
        return time.monotonic() < self.until


@dataclass
class Job:
    kind: str  # "generate" or "label"
    run: Callable[[], list[Sample]]
    undo: Callable[[], None] = field(default=lambda: None)


class Miner:
    """Decides what to ask the teacher, asks it, and turns answers into samples."""

    def __init__(
        self,
        settings: StreamSettings,
        teacher: SharedTeacher,
        registry: ModelRegistry,
        splits: Splits,
        breaker: CircuitBreaker | None = None,
        join: FeedbackJoin | None = None,
    ) -> None:
        self.settings, self.teacher, self.registry, self.splits = settings, teacher, registry, splits
        self.join = join  # where the teacher's labels go for the audit against ground truth
        self.window = HardWindow(min_hard=settings.min_hard, every_seconds=settings.generate_every_seconds)
        self.to_label: deque[HardEvent] = deque(maxlen=settings.label_queue)
        self.exclude = [e.text for e in (*splits.train, *splits.validation, *splits.test)]
        self.backoff = TeacherCooldown()
        self._guidance: dict[str, Guidance] = {}
        self._counted: dict[str, float] = {}
        self.generations = 0
        self.breaker = breaker
        self.busy = False  # a teacher job is running
        self.drift: DriftEvent | None = None  # a drift to answer with a targeted generation
        self.snapshot: dict[str, object] = {}  # for /healthz, which runs on another thread

    # -- events in --------------------------------------------------------------------------------

    def accept(self, event: HardEvent) -> list[Sample]:
        """Take one hard event; returns the samples it yields right away (ground truth)."""
        label = event.label or event.predicted
        metrics.HARD_EVENTS.labels(
            reason=event.reason, label=label if label in self.teacher.labels else "other"
        ).inc()
        if event.label is not None and event.label in self.teacher.labels:
            self.window.add(
                ScoredExample(event.text, event.label, event.predicted, event.confidence), event.id
            )
            if self.settings.train_on_feedback:
                return [
                    Sample.of(
                        event.text,
                        event.label,
                        "feedback",
                        source_ids=[event.id],
                        model_version=event.model_version,
                    )
                ]
            return []
        # An out-of-taxonomy text is counted, never labelled: a label of the taxonomy forced onto it
        # would teach the student that the grocery list is politics.
        if event.reason == "low_confidence":
            if len(self.to_label) == self.to_label.maxlen:
                metrics.HARD_DROPPED.labels(reason="label_queue_full").inc()  # the oldest one goes
            self.to_label.append(event)
        return []

    def on_drift(self, event: DriftEvent) -> None:
        """Live traffic moved: the next teacher job is a generation aimed at the classes it names."""
        metrics.DRIFT_RECEIVED.inc()
        log.warning(
            "drift on %s (%s): a generation for %s",
            event.model_version,
            ", ".join(event.signals),
            event.classes or "the weakest classes",
        )
        self.drift = event

    # -- teacher work -----------------------------------------------------------------------------

    def current_model(self) -> tuple[str, Guidance] | None:
        """The current version and its guidance (Redis and storage: call it off the event loop)."""
        record = self.registry.current()
        guidance = self.guidance(record.version) if record else None
        return (record.version, guidance) if record and guidance else None

    def next_job(self, model: tuple[str, Guidance] | None) -> Job | None:
        """The next thing to ask the teacher (generation first, when the window is ready and a
        current ``model`` is known), or None."""
        if self.backoff.waiting:
            return None
        if (self.window.ready() or self.drift is not None) and model is not None:
            version, guidance = model
            hard, ids = self.window.take()
            drift, self.drift = self.drift, None
            request = generation_request(
                guidance.report,
                guidance.scored,
                live_hard=hard,
                n=self.settings.samples_per_step,
                examples=self.settings.prompt_examples,
                classes=self.settings.target_classes,
                seed=self.settings.seed + self.generations,
                source_ids=ids,
                focus=drift.classes if drift is not None else (),
                exclude=self.exclude,
            )
            self.generations += 1

            def undo() -> None:
                for example, event_id in zip(hard, ids, strict=True):
                    self.window.add(example, event_id)
                if drift is not None and self.drift is None:
                    self.drift = drift

            return Job("generate", lambda: self.generate(request, version), undo)
        if self.to_label:
            batch = [
                self.to_label.popleft() for _ in range(min(self.settings.label_batch, len(self.to_label)))
            ]
            return Job("label", lambda: self.label(batch), lambda: self.to_label.extendleft(reversed(batch)))
        return None

    def generate(self, request: GenerationRequest, version: str) -> list[Sample]:
        result = self.teacher.generate(request)
        for reason, n in result.rejected.items():
            metrics.SAMPLES_REJECTED.labels(reason=reason).inc(n)
        digest = prompt_hash(self.teacher.name, generate=request.fingerprint)
        log.info(
            "generation for %s (%s): %d of %d accepted",
            version,
            ", ".join(request.classes),
            result.accepted,
            result.proposed,
        )
        return [
            Sample.of(
                s.text,
                s.label,
                "teacher_generated",
                teacher=self.teacher.name,
                prompt_hash=digest,
                source_ids=list(request.source_ids[:256]),
                model_version=version,
            )
            for s in result.samples
        ]

    def label(self, events: Sequence[HardEvent]) -> list[Sample]:
        answers = self.teacher.label([e.text for e in events])
        samples = []
        for event, answer in zip(events, answers, strict=True):
            if answer.label is None:
                metrics.SAMPLES_REJECTED.labels(reason="abstained").inc()
                continue
            samples.append(
                Sample.of(
                    event.text,
                    answer.label,
                    "teacher_labelled",
                    teacher=self.teacher.name,
                    prompt_hash=prompt_hash(self.teacher.name, text=event.text),
                    source_ids=[event.id],
                    model_version=event.model_version,
                )
            )
        self.audit([(s.source_ids[0], s.label) for s in samples])
        return samples

    def audit(self, labels: Sequence[tuple[str, str]]) -> None:
        """Hand the teacher's labels to the feedback join, which scores them when the truth comes.
        Best effort: a sample is worth more than its audit, so a Redis failure here drops the audit."""
        if self.join is None or not labels:
            return
        try:
            self.join.record_teacher(labels)
        except redis.RedisError as exc:
            log.warning("could not record %d teacher labels for the audit: %s", len(labels), exc)

    def guidance(self, version: str) -> Guidance | None:
        if version not in self._guidance:
            stored = self.registry.guidance(version)
            if stored is None:
                return None
            self._guidance = {version: Guidance.from_dict(stored)}  # only the current one is needed
        return self._guidance[version]

    def status(self) -> dict[str, object]:
        circuit = self.breaker.state if self.breaker else "closed"
        metrics.CIRCUIT_OPEN.set(1 if circuit == "open" else 0)
        return {
            "circuit": circuit,
            "teacher_failures": self.backoff.failures,
            "to_label": len(self.to_label),
            "hard_window": len(self.window),
            "busy": self.busy,
        }

    def run_job(self, job: Job) -> list[Sample] | None:
        """Run ``job`` (blocking, on a worker thread); None if the teacher failed, after which the
        miner backs off and the caller puts the job's work back (:attr:`Job.undo`)."""
        started = time.perf_counter()
        try:
            samples = job.run()
        except (TeacherError, redis.RedisError) as exc:
            retry_after = exc.retry_after if isinstance(exc, TeacherRateLimited) else None
            if isinstance(exc, TeacherBudgetExceeded):
                retry_after = 3600 - time.time() % 3600  # the hourly budget renews on the hour
            delay = self.backoff.failed(retry_after)
            metrics.TEACHER_CALLS.labels(operation=job.kind, outcome="error").inc()
            log.warning("teacher %s failed (%s); backing off %.0f s", job.kind, exc, delay)
            return None
        finally:
            metrics.TEACHER_SECONDS.labels(operation=job.kind).observe(time.perf_counter() - started)
            self.count_usage()
        self.backoff.succeeded()
        metrics.TEACHER_CALLS.labels(operation=job.kind, outcome="ok").inc()
        return samples

    def count_usage(self) -> None:
        usage, hits = self.teacher.usage, self.teacher.cache_hits
        now = {
            "prompt": usage.prompt_tokens,
            "completion": usage.completion_tokens,
            "cost": usage.cost,
            **{f"hits:{op}": n for op, n in hits.items()},
        }
        delta = {k: v - self._counted.get(k, 0) for k, v in now.items()}
        self._counted = now
        metrics.TEACHER_TOKENS.labels(kind="prompt").inc(delta["prompt"])
        metrics.TEACHER_TOKENS.labels(kind="completion").inc(delta["completion"])
        metrics.TEACHER_COST.inc(delta["cost"])
        for key, n in delta.items():
            if key.startswith("hits:") and n:
                metrics.TEACHER_CACHE_HITS.labels(operation=key[5:]).inc(n)
        try:
            for resource, left in self.teacher.remaining().items():
                metrics.BUDGET_REMAINING.labels(resource=resource).set(math.inf if left is None else left)
        except redis.RedisError:
            pass  # the gauges catch up on the next job


def build(settings: StreamSettings, stack: ExitStack) -> tuple[Any, Miner]:
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
    miner = Miner(settings, shared, connect.registry(settings, redis), splits, breaker, join)
    metrics.CACHE_ENTRIES.labels(cache="features").set_function(lambda: embedder.feature_cache_size)
    metrics.CACHE_ENTRIES.labels(cache="hard_window").set_function(lambda: miner.window.held)
    metrics.CACHE_ENTRIES.labels(cache="label_queue").set_function(lambda: len(miner.to_label))
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
        while True:
            miner.snapshot = miner.status()
            job = None
            try:
                wanted = miner.window.ready() or miner.drift is not None
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
