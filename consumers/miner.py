"""The mining service's worker: takes hard events, runs the teacher job its
:class:`~pgkd.teacher_jobs.JobPlanner` picks, and turns the teacher's answers into samples.

A misclassified event (its ground truth came from feedback) joins the hard window and, with
``train_on_feedback``, becomes a sample at once; a low-confidence one waits for the teacher's label.
Each teacher call is counted (time, tokens, cost, cache hits, budget left); a failing teacher puts
the job back and starts a :class:`~pgkd.retry.Cooldown`. The faust wiring is :mod:`consumers.mining`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Sequence

import redis

from pgkd.continual import Guidance, HardWindow
from pgkd.data import Splits
from pgkd.errors import TeacherError
from pgkd.evaluation import ScoredExample
from pgkd.feedback import FeedbackJoin
from pgkd.registry import ModelRegistry
from pgkd.retry import Backoff, Cooldown, retry_after
from pgkd.taxonomy import TaxonomyStore, teach
from pgkd.teacher.base import prompt_hash
from pgkd.teacher.breaker import CircuitBreaker
from pgkd.teacher.request import GenerationRequest
from pgkd.teacher.shared import SharedTeacher
from pgkd.teacher_jobs import Generation, JobPlanner, Labelling
from streams import metrics
from streams.events import DriftEvent, HardEvent, Sample
from streams.settings import StreamSettings

log = logging.getLogger("pgkd.mining")
TEACHER_BACKOFF = Backoff(initial=2.0, cap=300.0)
UNKNOWN_BUFFER = 1000  # out-of-taxonomy texts held between two writes to Redis

Job = Generation | Labelling[HardEvent]


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
        taxonomy: TaxonomyStore | None = None,
    ) -> None:
        self.settings, self.teacher, self.registry, self.splits = settings, teacher, registry, splits
        self.join = join  # where the teacher's labels go for the audit against ground truth
        self.taxonomy = taxonomy  # the classes an operator adds
        self.awaiting: set[str] = set()  # added classes a generation is aimed at once a model knows them
        self.unknown: deque[str] = deque(maxlen=UNKNOWN_BUFFER)  # out-of-taxonomy texts not yet kept
        self.jobs: JobPlanner[HardEvent] = JobPlanner(
            HardWindow(min_hard=settings.min_hard, every_seconds=settings.generate_every_seconds),
            label_queue=settings.label_queue,
            label_batch=settings.label_batch,
            samples_per_step=settings.samples_per_step,
            prompt_examples=settings.prompt_examples,
            target_classes=settings.target_classes,
            seed=settings.seed,
            exclude=[e.text for e in (*splits.train, *splits.validation, *splits.test)],
        )
        self.backoff = Cooldown(TEACHER_BACKOFF)
        self._guidance: dict[str, Guidance] = {}
        self._counted: dict[str, float] = {}
        self.breaker = breaker
        self.busy = False  # a teacher job is running
        self.snapshot: dict[str, object] = {}  # for /healthz, which runs on another thread

    # -- events in --------------------------------------------------------------------------------

    def accept(self, event: HardEvent) -> list[Sample]:
        """Take one hard event; returns the samples it yields right away (ground truth)."""
        label = event.label or event.predicted
        metrics.HARD_EVENTS.labels(
            reason=event.reason, label=label if label in self.teacher.labels else "other"
        ).inc()
        if event.label is not None:
            # Ground truth of a class an operator added is not the teacher's to guide with (it
            # cannot write for it), but it is the trainer's to learn from.
            if event.label in self.teacher.labels:
                self.jobs.window.add(
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
        # would teach the student that the grocery list is politics. It is kept for an operator
        # looking for a class that is missing (pgkd suggest-classes).
        if event.reason == "out_of_taxonomy":
            self.unknown.append(event.text)
        if event.reason == "low_confidence" and self.jobs.queue(event):
            metrics.HARD_DROPPED.labels(reason="label_queue_full").inc()  # the oldest one went
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
        self.jobs.drifted(event.classes)

    def follow_taxonomy(self) -> list[str]:
        """Keep the out-of-taxonomy texts seen since the last call, teach the teacher the classes an
        operator added since then (their training examples only: the held-out ones judge the model),
        and once the current model knows such a class, aim the next generation at it. Returns the
        names it taught (Redis: off the loop)."""
        if self.taxonomy is None:
            return []
        kept = [self.unknown.popleft() for _ in range(len(self.unknown))]
        try:
            self.taxonomy.remember_unknown(kept)
        except redis.RedisError:
            self.unknown.extendleft(reversed(kept))  # kept for the next try, within the buffer's bound
            raise
        added = self.taxonomy.added()
        taught = teach(self.teacher, added)
        for new in (c for c in added if c.name in taught):
            self.jobs.exclude = [*self.jobs.exclude, *new.examples]  # a copy teaches nothing
            self.awaiting.add(new.name)
            log.info("the teacher learns the added class %r", new.name)
        if self.awaiting and (record := self.registry.current()) is not None:
            known = self.awaiting & set(self.registry.labels(record))
            if known:
                log.info("%s knows %s: the next generation writes for it", record.version, sorted(known))
                self.jobs.drifted(sorted(known))
                self.awaiting -= known
        return taught

    # -- teacher work -----------------------------------------------------------------------------

    def current_model(self) -> tuple[str, Guidance] | None:
        """The current version and its guidance (Redis and storage: call it off the event loop)."""
        record = self.registry.current()
        guidance = self.guidance(record.version) if record else None
        return (record.version, guidance) if record and guidance else None

    def next_job(self, model: tuple[str, Guidance] | None) -> Job | None:
        """The next thing to ask the teacher (see :meth:`JobPlanner.next`), or None, also while
        the teacher is being left alone after a failure."""
        return None if self.backoff.waiting else self.jobs.next(model)

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
            "to_label": len(self.jobs.to_label),
            "hard_window": len(self.jobs.window),
            "busy": self.busy,
        }

    def run_job(self, job: Job) -> list[Sample] | None:
        """Run ``job`` (blocking, on a worker thread); None if the teacher failed, after which the
        miner backs off and the caller puts the job's work back (``job.undo``)."""
        started = time.perf_counter()
        try:
            if isinstance(job, Generation):
                samples = self.generate(job.request, job.version)
            else:
                samples = self.label(job.batch)
        except (TeacherError, redis.RedisError) as exc:
            delay = self.backoff.failed(retry_after(exc))
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
        """Turn the teacher's running totals into counter increments since the last call."""
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
