"""The cascade inside a serving worker: the teacher answers the requests the student is likely wrong
about, on threads of its own, within a deadline and the shared budget; the policy (who is routed)
is :class:`pgkd.cascade.CascadePolicy`."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import numpy as np

from consumers import runtime
from pgkd.cascade import CascadePolicy
from pgkd.errors import TeacherBudgetExceeded, TeacherRateLimited
from pgkd.feedback import FeedbackJoin, TeacherAudit
from pgkd.runner import load_splits
from pgkd.student import Student
from pgkd.taxonomy import TaxonomyStore, teach
from pgkd.teacher.base import Teacher, TeacherLabel
from streams import connect, metrics
from streams.settings import StreamSettings

log = logging.getLogger("pgkd.serving")


class Cascade:
    """The teacher answers the requests :class:`~pgkd.cascade.CascadePolicy` routes to it, on threads
    of its own, within the deadline; the teacher's audited accuracy is read from Redis every
    ``AUDIT_SECONDS``. At most ``max_in_flight`` teacher calls run at once (a late one keeps
    running, and its answer lands in the shared cache for mining); beyond that the student answers."""

    AUDIT_SECONDS = 30.0

    def __init__(
        self,
        policy: CascadePolicy,
        teacher: Teacher,
        join: Any,
        max_in_flight: int,
        taxonomy: TaxonomyStore | None = None,
    ) -> None:
        self.policy, self.teacher, self.join, self.taxonomy = policy, teacher, join, taxonomy
        self.max_in_flight = max_in_flight
        self.pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="cascade")
        self.in_flight = 0
        self.audit = TeacherAudit()
        self.audited_at = -math.inf

    async def answer(
        self, texts: Sequence[str], confidence: np.ndarray, outside: np.ndarray | None
    ) -> list[TeacherLabel | None]:
        """Per request, the teacher's answer, or None where the student's answer stands."""
        loop = asyncio.get_running_loop()
        if time.monotonic() - self.audited_at > self.AUDIT_SECONDS:
            self.audited_at = time.monotonic()
            try:  # on a thread of its own, never behind the teacher's calls, and never long
                self.audit = await asyncio.wait_for(asyncio.to_thread(self.join.teacher_audit), 2.0)
                if self.taxonomy is not None:  # a class an operator added is one the teacher may answer
                    await asyncio.wait_for(asyncio.to_thread(self._follow_taxonomy), 2.0)
            except Exception as exc:  # Redis away or slow: keep the last audit, serving goes on
                log.warning("cascade: no teacher audit from Redis (%s); keeping the last one", exc)
        bar = self.policy.bar(self.audit.teacher_accuracy, self.audit.judged)
        metrics.CASCADE_BAR.set(math.nan if bar is None else bar)
        routed = [
            int(i)
            for i in np.flatnonzero(
                self.policy.route(confidence, outside, self.audit.teacher_accuracy, self.audit.judged)
            )
        ]
        answers: list[TeacherLabel | None] = [None] * len(texts)
        if not routed:
            return answers
        if self.in_flight >= self.max_in_flight:
            metrics.CASCADE.labels(outcome="busy").inc(len(routed))
            return answers
        self.in_flight += 1
        future = loop.run_in_executor(self.pool, self.teacher.label, [texts[i] for i in routed])
        future.add_done_callback(self._finished)
        try:
            labels = await asyncio.wait_for(asyncio.shield(future), timeout=self.policy.deadline)
        except TimeoutError:
            metrics.CASCADE.labels(outcome="late").inc(len(routed))
            return answers
        except (TeacherBudgetExceeded, TeacherRateLimited):
            metrics.CASCADE.labels(outcome="over_budget").inc(len(routed))
            return answers
        except Exception as exc:  # a failing teacher (the breaker counts it): the student answers
            log.warning("cascade: teacher failed (%s: %s)", type(exc).__name__, exc)
            metrics.CASCADE.labels(outcome="failed").inc(len(routed))
            return answers
        for i, label in zip(routed, labels, strict=True):
            answers[i] = label if label.label is not None else None
            metrics.CASCADE.labels(outcome="teacher" if label.label is not None else "abstained").inc()
        return answers

    def _follow_taxonomy(self) -> None:
        assert self.taxonomy is not None
        for name in teach(self.teacher, self.taxonomy.added()):
            log.info("cascade: the teacher learns the added class %r", name)

    def _finished(self, _future: Any) -> None:
        self.in_flight -= 1


def cascade_for(settings: StreamSettings, stack: ExitStack) -> Cascade:
    """The cascade of a worker: the shared teacher (one cache and budget with mining) and the join's
    audit of it."""
    redis = connect.redis_client(settings)
    splits = load_splits(settings)
    embedder = Student.create(splits.labels, settings.base_model, max_length=settings.max_length)
    teacher, _ = runtime.live_teacher(settings, redis, splits, embedder, stack)
    policy = CascadePolicy(
        settings.cascade_threshold,
        settings.cascade_out_of_taxonomy,
        settings.cascade_deadline,
        settings.teacher_audit_min,
    )
    return Cascade(
        policy,
        teacher,
        FeedbackJoin(redis, namespace=settings.namespace),
        settings.cascade_max_in_flight,
        TaxonomyStore(redis, namespace=settings.namespace),
    )
