"""The trainer's pool of new training samples, one per content hash, kept in Redis.

Samples arrive at-least-once (a replayed topic, a restarted miner) and from several sources; the
pool keeps one per key (the content hash of the normalised text), so duplicates never skew
training. Ground truth outranks a teacher: a ``feedback`` sample replaces a teacher's sample of the
same text, a teacher's never replaces anything. :meth:`SampleStore.prune` applies a
:class:`Retention` policy: teacher samples older than ``max_age`` seconds, or beyond the newest
``max_per_class`` of their class, go; ground truth always stays.

>>> store = SampleStore(redis.Redis(), namespace="pgkd")                        # doctest: +SKIP
>>> store.add([StoredSample("k1", "Spurs sign a striker", "sports", "teacher_labelled")])  # doctest: +SKIP
1
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pgkd.data import Example

AUTHORITATIVE = frozenset({"feedback"})

# Sets the sample unless one is there already, or replaces it when the new one is authoritative.
# Returns 1 for a new key, 0 otherwise.
_ADD = """
local existed = redis.call('HEXISTS', KEYS[1], ARGV[1])
if existed == 0 or ARGV[3] == '1' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1 - existed
"""


@dataclass(frozen=True)
class StoredSample:
    key: str
    text: str
    label: str
    source: str
    ts: float = 0.0

    @property
    def example(self) -> Example:
        return Example(self.text, self.label)


@dataclass(frozen=True)
class Retention:
    """How many teacher samples the pool keeps (None: no limit); ground truth is never pruned."""

    max_per_class: int | None = None
    max_age: float | None = None

    def __post_init__(self) -> None:
        if (self.max_per_class is not None and self.max_per_class < 0) or (
            self.max_age is not None and self.max_age <= 0
        ):
            raise ValueError(
                f"need max_per_class >= 0 and max_age > 0, got {self.max_per_class}, {self.max_age}"
            )

    def expired(self, samples: Sequence[StoredSample], now: float) -> list[str]:
        """The keys of the teacher samples this policy removes.

        >>> old = StoredSample("a", "x", "sport", "teacher_generated", ts=0.0)
        >>> new = StoredSample("b", "y", "sport", "teacher_generated", ts=9.0)
        >>> truth = StoredSample("c", "z", "sport", "feedback", ts=0.0)
        >>> Retention(max_per_class=1).expired([old, new, truth], now=10.0)
        ['a']
        """
        teacher = [s for s in samples if s.source not in AUTHORITATIVE]
        drop = {s.key for s in teacher if self.max_age is not None and now - s.ts > self.max_age}
        if self.max_per_class is not None:
            by_class: dict[str, list[StoredSample]] = {}
            for s in teacher:
                if s.key not in drop:
                    by_class.setdefault(s.label, []).append(s)
            for members in by_class.values():
                members.sort(key=lambda s: (s.ts, s.key), reverse=True)
                drop.update(s.key for s in members[self.max_per_class :])
        return sorted(drop)


class SampleStore:
    """Samples of one deployment in a Redis hash (key -> sample)."""

    def __init__(self, redis: Any, *, namespace: str = "pgkd") -> None:
        self.redis = redis
        self.hash = f"{namespace}:trainer:samples"
        self._add = redis.register_script(_ADD)

    def add(self, samples: Sequence[StoredSample]) -> int:
        """Store ``samples``; returns how many keys are new."""
        if not samples:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for s in samples:
            authoritative = "1" if s.source in AUTHORITATIVE else "0"
            self._add(keys=[self.hash], args=[s.key, json.dumps(asdict(s)), authoritative], client=pipe)
        return int(sum(pipe.execute()))

    def __len__(self) -> int:
        return int(self.redis.hlen(self.hash))

    def all(self) -> list[StoredSample]:
        """Every sample, in key order (so training sets are reproducible)."""
        raw = self.redis.hgetall(self.hash)
        return [StoredSample(**json.loads(raw[k])) for k in sorted(raw)]

    def prune(self, retention: Retention, now: float) -> int:
        """Remove what ``retention`` says has expired; returns how many samples went."""
        keys = retention.expired(self.all(), now)
        if keys:
            self.redis.hdel(self.hash, *keys)
        return len(keys)

    def counts(self) -> Counter[str]:
        """Samples per source."""
        return Counter(s.source for s in self.all())
