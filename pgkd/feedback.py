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
_SCRIPT = """
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
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
        self._script = redis.register_script(_SCRIPT)

    def apply(self, facts: Sequence[Fact]) -> list[Joined]:
        """Record ``facts``; returns the joins they completed, in order."""
        if not facts:
            return []
        pipe = self.redis.pipeline(transaction=False)
        now = self.clock()
        for fact in facts:
            self._script(
                keys=[self.prefix + fact.id],
                args=[self.ttl, now, self.lease, *fact.fields(self.max_text_chars)],
                client=pipe,
            )
        joined = []
        for fact, result in zip(facts, pipe.execute(), strict=True):
            if result:
                joined.append(_joined(fact.id, result))
        return joined

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
