"""A teacher shared by several replicas through Redis: one cache, one hourly budget, one rate limit.

:class:`SharedTeacher` wraps any :class:`~pgkd.teacher.base.Teacher` and is one itself. Before a
call it checks this hour's spending of *all* replicas against :class:`HourlyLimits` and takes a
slot of the per-minute rate limit; after it, it adds what the call spent (the wrapped teacher's
usage delta) to the shared counters. Answers are cached by prompt hash: a label by teacher and
text, a generation by everything its prompt shows, so a replayed topic or a second replica does not
pay twice. The granularity is one operation: a ``generate`` that makes several requests is checked
once, before it starts.

>>> shared = SharedTeacher(teacher, redis.Redis(), namespace="pgkd",
...                        limits=HourlyLimits(calls=500, cost=2.0, calls_per_minute=30))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pgkd.data import Example
from pgkd.errors import TeacherBudgetExceeded, TeacherRateLimited
from pgkd.teacher.base import GenerationResult, Teacher, TeacherLabel, WrappedTeacher, prompt_hash
from pgkd.teacher.request import GenerationRequest

T = TypeVar("T")
log = logging.getLogger(__name__)
Scope = Literal["hour", "total"]
_COUNTERS = ("calls", "failed_calls", "prompt_tokens", "completion_tokens")


@dataclass(frozen=True)
class HourlyLimits:
    """What all replicas together may spend per clock hour (None: unlimited), and per minute."""

    calls: int | None = None
    tokens: int | None = None
    cost: float | None = None
    calls_per_minute: int | None = None

    def __post_init__(self) -> None:
        for name in ("calls", "tokens", "cost", "calls_per_minute"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"HourlyLimits.{name} must not be negative, got {value}")


class SharedTeacher(WrappedTeacher):
    """``teacher`` with a Redis-backed cache, budget and rate limit (see the module docstring)."""

    def __init__(
        self,
        teacher: Teacher,
        redis: Any,
        *,
        namespace: str = "pgkd",
        limits: HourlyLimits = HourlyLimits(),
        cache_ttl: int = 7 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(teacher)
        self.redis, self.limits = redis, limits
        self.cache_ttl, self.clock = cache_ttl, clock
        self.prefix = f"{namespace}:teacher"
        self.cache_hits: Counter[str] = Counter()

    # -- the Teacher verbs -------------------------------------------------------------------------

    def label(self, texts: Sequence[str]) -> list[TeacherLabel]:
        if isinstance(texts, str):
            raise TypeError("label() takes a sequence of texts, not one string")
        texts = list(texts)
        # The taxonomy is part of the prompt: once an operator adds a class, answers given without
        # it are not this prompt's answers.
        taxonomy = list(self.labels)
        keys = [f"{self.prefix}:label:{prompt_hash(self.name, text=t, labels=taxonomy)}" for t in texts]
        cached = self.redis.mget(keys) if keys else []
        answers: list[TeacherLabel | None] = [
            None if c is None else TeacherLabel(**json.loads(c)) for c in cached
        ]
        missing = [i for i, a in enumerate(answers) if a is None]
        self.cache_hits["label"] += len(texts) - len(missing)
        if missing:
            fresh = self._spend(lambda: self.inner.label([texts[i] for i in missing]))
            pipe = self.redis.pipeline(transaction=False)
            for i, answer in zip(missing, fresh, strict=True):
                answers[i] = answer
                payload = {"label": answer.label, "confidence": answer.confidence}
                pipe.set(keys[i], json.dumps(payload), ex=self.cache_ttl)
            self._store(pipe.execute)
        return [a for a in answers if a is not None]

    def generate(self, request: GenerationRequest) -> GenerationResult:
        digest = prompt_hash(self.name, generate=request.fingerprint, labels=list(self.labels))
        key = f"{self.prefix}:generate:{digest}"
        cached = self.redis.get(key)
        if cached is not None:
            self.cache_hits["generate"] += 1
            data = json.loads(cached)
            return GenerationResult(
                [Example(**s) for s in data["samples"]], data["proposed"], Counter(data["rejected"])
            )
        result = self._spend(lambda: self.inner.generate(request))
        payload = {
            "samples": [{"text": s.text, "label": s.label} for s in result.samples],
            "proposed": result.proposed,
            "rejected": dict(result.rejected),
        }
        self._store(lambda: self.redis.set(key, json.dumps(payload), ex=self.cache_ttl))
        return result

    @staticmethod
    def _store(write: Callable[[], Any]) -> None:
        try:
            write()
        except Exception:  # the answer is returned anyway; only a later cache hit is lost
            log.exception("could not cache the teacher's answer in Redis")

    # -- the shared budget -------------------------------------------------------------------------

    def spent(self, scope: Scope = "hour") -> dict[str, float]:
        """What all replicas spent this hour (``scope="hour"``) or since the counters began
        (``"total"``): calls, failed_calls, prompt_tokens, completion_tokens, tokens, cost."""
        return shared_usage(self.redis, self.prefix, scope, self.clock())

    def remaining(self) -> dict[str, float | None]:
        """This hour's budget left per resource (None: unlimited)."""
        spent = self.spent()
        return {
            name: None if limit is None else max(0.0, limit - spent[name])
            for name, limit in (
                ("calls", self.limits.calls),
                ("tokens", self.limits.tokens),
                ("cost", self.limits.cost),
            )
        }

    def _spend(self, call: Callable[[], T]) -> T:
        self._check_budget()
        self._take_rate_slot()
        before = self.inner.usage.as_dict()
        try:
            return call()
        finally:
            try:
                self._record(before, self.inner.usage.as_dict())
            except Exception:  # an answer already paid for is never lost to a bookkeeping failure
                log.exception("could not record the teacher's usage in Redis; the shared budget under-counts")

    def _check_budget(self) -> None:
        for resource, left in self.remaining().items():
            if left is not None and left <= 0:
                limit = getattr(self.limits, resource)
                raise TeacherBudgetExceeded(
                    f"the shared hourly teacher budget for {resource} is spent ({limit} per hour)", resource
                )

    def _take_rate_slot(self) -> None:
        per_minute = self.limits.calls_per_minute
        if per_minute is None:
            return
        now = self.clock()
        key = f"{self.prefix}:rate:{int(now // 60)}"
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        taken = int(pipe.execute()[0])
        if taken > per_minute:
            wait = 60 - now % 60
            raise TeacherRateLimited(f"shared teacher rate limit of {per_minute} calls/minute reached", wait)

    def _record(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        delta = {name: int(after[name]) - int(before[name]) for name in _COUNTERS}
        cost = float(after["cost"]) - float(before["cost"])
        if not any(delta.values()) and not cost:
            return
        pipe = self.redis.pipeline()
        for scope in ("hour", "total"):
            key = self._usage_key(scope)
            for name, value in delta.items():
                if value:
                    pipe.hincrby(key, name, value)
            if cost:
                pipe.hincrbyfloat(key, "cost", cost)
            if scope == "hour":
                pipe.expire(key, 2 * 3600)
        pipe.execute()

    def _usage_key(self, scope: Scope) -> str:
        return _usage_key(self.prefix, scope, self.clock())


def _usage_key(prefix: str, scope: Scope, now: float) -> str:
    return f"{prefix}:usage:total" if scope == "total" else f"{prefix}:usage:{int(now // 3600)}"


def shared_usage(
    redis: Any, namespace_or_prefix: str, scope: Scope = "total", now: float | None = None
) -> dict[str, float]:
    """What every replica of a deployment's teacher has spent (see :meth:`SharedTeacher.spent`);
    readable by any service, e.g. the trainer recording the cost of each model."""
    prefix = (
        namespace_or_prefix if namespace_or_prefix.endswith(":teacher") else f"{namespace_or_prefix}:teacher"
    )
    raw = redis.hgetall(_usage_key(prefix, scope, time.time() if now is None else now))
    values = {_text(k): float(v) for k, v in raw.items()}
    out = {name: values.get(name, 0.0) for name in (*_COUNTERS, "cost")}
    out["tokens"] = out["prompt_tokens"] + out["completion_tokens"]
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
