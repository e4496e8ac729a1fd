"""The join of predictions with their delayed ground truth, in Redis.

Three facts about a request arrive separately and in any order: its text (from ``requests``), the
student's verdict (from ``predictions``) and, for some, the ground truth (from ``feedback``). Each is
written into one Redis hash per request id by a Lua script that also says, atomically, whether this
write completed the join. The writer that completes it *claims* it; once it has delivered what the
join leads to, it confirms it (:meth:`~FeedbackJoin.confirm`), and the join is never emitted
again. A claim not confirmed within ``lease`` seconds (its writer crashed) is handed to the next
writer of that request, e.g. the replay after a restart: each join is emitted once, and at least once.

Every hash expires ``ttl`` seconds after its last write and texts are cut to ``max_text_chars``,
which bounds memory to about ``request rate x ttl x (max_text_chars + 200)`` bytes.

The same hash audits the teacher: the mining service writes the label the teacher gave a request
(:meth:`~FeedbackJoin.record_teacher`), and whichever write brings the teacher's label and the ground
truth together counts, once and atomically, whether the teacher (and the student) got it right
(:meth:`~FeedbackJoin.teacher_audit`). That is the teacher's measured accuracy on live traffic, which
the trainer uses to decide whether to train on the teacher's samples at all.

>>> join = FeedbackJoin(redis.Redis(), namespace="pgkd", ttl=900)                   # doctest: +SKIP
>>> join.apply([Fact("r1", text="Spurs sign a striker"), Fact("r1", predicted="business",
...             confidence=0.91, version="v0003"), Fact("r1", gold="sports")])     # doctest: +SKIP
[Joined(id='r1', text='Spurs sign a striker', predicted='business', gold='sports', ...)]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# KEYS[1]: the request's hash. ARGV: ttl, now, lease; then field/value pairs. Returns the whole hash
# when this write completes the join (text, verdict and truth all present) and no other writer has
# claimed it within ``lease`` seconds; the claim is confirmed (``done``) once its result is delivered.
# KEYS[2]: the teacher audit's counters. Counted once per request, by the write that completes it.
_AUDIT = """
local a = redis.call('HMGET', KEYS[1], 'teach', 'gold', 'pred', 'audited')
if a[1] and a[2] and not a[4] then
  redis.call('HSET', KEYS[1], 'audited', '1')
  redis.call('HINCRBY', KEYS[2], 'judged', 1)
  if a[1] == a[2] then redis.call('HINCRBY', KEYS[2], 'teacher_correct', 1) end
  if a[3] == a[2] then redis.call('HINCRBY', KEYS[2], 'student_correct', 1) end
end
"""
_SCRIPT = (
    """
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
"""
    + _AUDIT
    + """
if redis.call('HEXISTS', KEYS[1], 'done') == 1 then return false end
local claimed = tonumber(redis.call('HGET', KEYS[1], 'claimed') or '0')
if claimed > 0 and tonumber(ARGV[2]) - claimed < tonumber(ARGV[3]) then return false end
local h = redis.call('HMGET', KEYS[1], 'text', 'pred', 'gold')
if h[1] and h[2] and h[3] then
  redis.call('HSET', KEYS[1], 'claimed', ARGV[2])
  return redis.call('HGETALL', KEYS[1])
end
return false
"""
)
# The teacher's label for a request: written beside the join's facts, never completing the join
# (which would claim it for a writer that does not deliver joins).
_TEACHER_SCRIPT = (
    """
redis.call('HSET', KEYS[1], 'teach', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
"""
    + _AUDIT
)


@dataclass(frozen=True)
class TeacherAudit:
    """The teacher's record on live requests it labelled and whose ground truth arrived, beside the
    student's on the same requests (the hard ones: the teacher labels what the student was unsure of).

    >>> TeacherAudit(judged=20, teacher_correct=15, student_correct=8).teacher_accuracy
    0.75
    """

    judged: int = 0
    teacher_correct: int = 0
    student_correct: int = 0

    @property
    def teacher_accuracy(self) -> float | None:
        return self.teacher_correct / self.judged if self.judged else None

    @property
    def student_accuracy(self) -> float | None:
        return self.student_correct / self.judged if self.judged else None


@dataclass(frozen=True)
class Fact:
    """One thing learnt about request ``id``: its text, the verdict, or the ground truth."""

    id: str
    text: str | None = None
    predicted: str | None = None
    confidence: float | None = None
    version: str | None = None
    gold: str | None = None

    def fields(self, max_text_chars: int) -> list[str]:
        out: list[str] = []
        if self.text is not None:
            out += ["text", self.text[:max_text_chars]]
        if self.predicted is not None:
            out += [
                "pred",
                self.predicted,
                "conf",
                repr(float(self.confidence or 0.0)),
                "ver",
                self.version or "",
            ]
        if self.gold is not None:
            out += ["gold", self.gold]
        if not out:
            raise ValueError(f"a fact about {self.id!r} must carry a text, a verdict or a ground truth")
        return out


@dataclass(frozen=True)
class Joined:
    """A request whose verdict and ground truth are both known."""

    id: str
    text: str
    predicted: str
    confidence: float
    version: str
    gold: str

    @property
    def correct(self) -> bool:
        return self.predicted == self.gold


class FeedbackJoin:
    """Joins facts in Redis; :meth:`apply` writes a batch in one round trip, :meth:`confirm`
    marks what it returned as delivered."""

    def __init__(
        self,
        redis: Any,
        *,
        namespace: str = "pgkd",
        ttl: int = 900,
        max_text_chars: int = 2000,
        lease: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl < 1 or max_text_chars < 1 or lease <= 0:
            raise ValueError(
                f"ttl, max_text_chars and lease must be positive: {ttl}, {max_text_chars}, {lease}"
            )
        self.redis, self.ttl, self.max_text_chars = redis, ttl, max_text_chars
        self.lease, self.clock = lease, clock
        self.prefix = f"{namespace}:join:"
        self.audit_key = f"{namespace}:teacher:audit"
        self._script = redis.register_script(_SCRIPT)
        self._teacher_script = redis.register_script(_TEACHER_SCRIPT)

    def apply(self, facts: Sequence[Fact]) -> list[Joined]:
        """Record ``facts``; returns the joins they completed, in order."""
        if not facts:
            return []
        pipe = self.redis.pipeline(transaction=False)
        now = self.clock()
        for fact in facts:
            self._script(
                keys=[self.prefix + fact.id, self.audit_key],
                args=[self.ttl, now, self.lease, *fact.fields(self.max_text_chars)],
                client=pipe,
            )
        joined = []
        for fact, result in zip(facts, pipe.execute(), strict=True):
            if result:
                joined.append(_joined(fact.id, result))
        return joined

    def record_teacher(self, labels: Sequence[tuple[str, str]]) -> None:
        """Record the teacher's label of each ``(request id, label)``, for the audit."""
        if not labels:
            return
        pipe = self.redis.pipeline(transaction=False)
        for request_id, label in labels:
            self._teacher_script(
                keys=[self.prefix + request_id, self.audit_key], args=[self.ttl, label], client=pipe
            )
        pipe.execute()

    def teacher_audit(self) -> TeacherAudit:
        raw = self.redis.hgetall(self.audit_key)
        counts = {_text(k): int(v) for k, v in raw.items()}
        return TeacherAudit(**{k: counts.get(k, 0) for k in ("judged", "teacher_correct", "student_correct")})

    def confirm(self, ids: Sequence[str]) -> None:
        """Mark the joins of ``ids`` delivered: never emitted again."""
        if not ids:
            return
        pipe = self.redis.pipeline(transaction=False)
        for request_id in ids:
            pipe.hset(self.prefix + request_id, "done", "1")
            pipe.expire(self.prefix + request_id, self.ttl)
        pipe.execute()


def _joined(request_id: str, flat: list[Any]) -> Joined:
    values = {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}
    return Joined(
        id=request_id,
        text=values["text"],
        predicted=values["pred"],
        confidence=float(values.get("conf", 0.0)),
        version=values.get("ver", ""),
        gold=values["gold"],
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
