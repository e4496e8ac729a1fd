"""A training sample with its provenance, and the trainer's pool of them, one per content hash, in Redis.

:class:`Sample` is the one sample type from end to end: the mining and feedback services publish it
(``streams.events.Sample`` is this model with the record's schema version), the trainer stores it
with its provenance (who wrote or labelled it, from which prompt, for which model's mistakes), and
trains on its :attr:`~Sample.example`.

Samples arrive at-least-once (a replayed topic, a restarted miner) and from several sources; the
pool keeps one per key (the content hash of the normalised text), so duplicates never skew
training. Ground truth outranks a teacher: a ``feedback`` sample replaces a teacher's sample of the
same text, a teacher's never replaces anything. :meth:`SampleStore.prune` applies a
:class:`Retention` policy: teacher samples older than ``max_age`` seconds, or beyond the newest
``max_per_class`` of their class, go; ground truth always stays.

>>> store = SampleStore(redis.Redis(), namespace="pgkd")                        # doctest: +SKIP
>>> store.add([Sample.of("Spurs sign a striker", "sport", "teacher_labelled")])  # doctest: +SKIP
1
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from pgkd.data import Example
from pgkd.fingerprint import digest
from pgkd.teacher.filters import normalise

SampleSource = Literal["teacher_generated", "teacher_labelled", "feedback", "injected"]

AUTHORITATIVE = frozenset({"feedback"})

# Sets the sample unless one is there already, or replaces it when the new one is authoritative.
# Returns 1 for a new key, 0 otherwise.
_ADD = """
local existed = redis.call('HEXISTS', KEYS[1], ARGV[1])
if existed == 0 or ARGV[3] == '1' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1 - existed
"""


def sample_key(text: str) -> str:
    """Content hash that identifies a sample: the same text (normalised) is the same sample.

    >>> sample_key("Spurs sign a striker.") == sample_key("  spurs SIGN a striker ")
    True
    """
    return digest(normalise(text), length=32)


class Sample(BaseModel):
    """A new training example with its provenance.

    ``key`` is the content hash of the text (:func:`sample_key`): the pool keeps one sample per key,
    so a replayed topic does not skew training. ``teacher`` and ``prompt_hash`` say who wrote or
    labelled it and from which prompt, ``source_ids`` the hard events that led to it,
    ``model_version`` the model whose mistakes prompted it.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    key: str
    text: str = Field(min_length=1)
    label: str = Field(min_length=1)
    source: SampleSource
    teacher: str | None = None
    prompt_hash: str | None = None
    source_ids: list[str] = Field(default_factory=list, max_length=256)
    model_version: str | None = None
    ts: float = Field(default_factory=time.time)

    @classmethod
    def of(cls, text: str, label: str, source: SampleSource, **provenance: Any) -> Self:
        return cls(key=sample_key(text), text=text, label=label, source=source, **provenance)

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

    def expired(self, samples: Sequence[Sample], now: float) -> list[str]:
        """The keys of the teacher samples this policy removes.

        >>> old = Sample(key="a", text="x", label="sport", source="teacher_generated", ts=0.0)
        >>> new = Sample(key="b", text="y", label="sport", source="teacher_generated", ts=9.0)
        >>> truth = Sample(key="c", text="z", label="sport", source="feedback", ts=0.0)
        >>> Retention(max_per_class=1).expired([old, new, truth], now=10.0)
        ['a']
        """
        teacher = [s for s in samples if s.source not in AUTHORITATIVE]
        drop = {s.key for s in teacher if self.max_age is not None and now - s.ts > self.max_age}
        if self.max_per_class is not None:
            by_class: dict[str, list[Sample]] = {}
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

    def add(self, samples: Sequence[Sample]) -> int:
        """Store ``samples``; returns how many keys are new."""
        if not samples:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for s in samples:
            authoritative = "1" if s.source in AUTHORITATIVE else "0"
            self._add(
                keys=[self.hash],
                args=[s.key, s.model_dump_json(exclude_none=True), authoritative],
                client=pipe,
            )
        return int(sum(pipe.execute()))

    def __len__(self) -> int:
        return int(self.redis.hlen(self.hash))

    def all(self) -> list[Sample]:
        """Every sample, in key order (so training sets are reproducible)."""
        raw = self.redis.hgetall(self.hash)
        return [Sample.model_validate_json(raw[k]) for k in sorted(raw)]

    def prune(self, retention: Retention, now: float) -> int:
        """Remove what ``retention`` says has expired; returns how many samples went."""
        keys = retention.expired(self.all(), now)
        if keys:
            self.redis.hdel(self.hash, *keys)
        return len(keys)

    def counts(self) -> Counter[str]:
        """Samples per source."""
        return Counter(s.source for s in self.all())
