"""Every event that crosses a topic, as one typed record each (pydantic), with a schema version.

Producers build these records and consumers decode them with :func:`decode`; nothing else touches
raw bytes. A record that cannot be decoded raises :class:`EventDecodeError`, whose ``reason`` (one of
:data:`DecodeReason`) goes into the :class:`DeadLetter` that the consumer publishes in its place.

>>> r = decode(Request, b'{"id": "r1", "text": "Shares rose 5%"}')
>>> r.id, r.v
('r1', 1)
>>> decode(Request, b'{"id": "r1"}')
Traceback (most recent call last):
...
streams.events.EventDecodeError: schema: text: Field required
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pgkd import samples
from pgkd.errors import PGKDError

SCHEMA_VERSION = 1
MAX_RECORD_BYTES = 256 * 1024  # a request bigger than this is dead-lettered before it is parsed
MAX_ORIGINAL_BYTES = 512 * 1024  # what a dead letter keeps of the original (base64 stays under 1 MB)
MAX_TEXT_CHARS = 100_000  # longer texts are dead-lettered; serving truncates far shorter ones
MAX_ID_CHARS = 200
MAX_META_ITEMS = 32

DecodeReason = Literal["oversized", "not_utf8", "bad_json", "schema", "unsupported_version"]
MetaValue = str | int | float | bool | None


def now() -> float:
    return time.time()


class Event(BaseModel):
    """Base of every record: immutable, unknown fields ignored (forward compatible), version checked."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)
    max_bytes: ClassVar[int] = MAX_RECORD_BYTES  # bigger records are refused unparsed
    v: int = SCHEMA_VERSION

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


EventId = Field(min_length=1, max_length=MAX_ID_CHARS)


class Request(Event):
    """``requests``: a text to classify. ``id`` must be unique per request; it keys every later event."""

    id: str = EventId
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    ts: float = Field(default_factory=now)  # when the producer sent it (epoch seconds)
    meta: dict[str, MetaValue] = Field(default_factory=dict, max_length=MAX_META_ITEMS)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("text is blank")
        return text


class Prediction(Event):
    """``predictions``: the student's verdict on one request, naming the model version that made it.

    Delivery is at-least-once: after a crash a request can be answered twice (by the same or the
    next model version); consumers deduplicate by ``id``.
    """

    id: str = EventId
    label: str
    confidence: float = Field(ge=0.0, le=1.0)
    model_version: str
    latency_ms: float  # request ``ts`` to this prediction
    inference_ms: float  # the student's share of it, per batch
    batch_size: int
    ts: float = Field(default_factory=now)
    probs: dict[str, float] | None = None
    # How far the text is from every class the model knows (pgkd.out_of_taxonomy), when the model
    # has a detector; ``out_of_taxonomy`` is that score above the model's threshold: the label is
    # the nearest class, not an answer.
    out_of_taxonomy_score: float | None = None
    out_of_taxonomy: bool = False
    # Who gave ``label``: the student, or (cascade) the teacher, whose answer then replaces
    # ``student_label``.
    answered_by: Literal["student", "teacher"] = "student"
    student_label: str | None = None
    student_confidence: float | None = Field(None, ge=0.0, le=1.0)


class Feedback(Event):
    """``feedback``: the ground truth for a request, arriving later (a human, a downstream system)."""

    id: str = EventId
    label: str = Field(min_length=1, max_length=MAX_ID_CHARS)
    source: str = Field("unknown", max_length=MAX_ID_CHARS)
    ts: float = Field(default_factory=now)


HardReason = Literal["low_confidence", "misclassified", "out_of_taxonomy"]


class HardEvent(Event):
    """``hard``: a request the student struggled with: unsure (no gold ``label``), far from every
    class (``out_of_taxonomy``), or wrong (``label`` is the ground truth from feedback,
    ``predicted`` what the student said)."""

    id: str = EventId
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    reason: HardReason
    predicted: str
    confidence: float = Field(ge=0.0, le=1.0)
    model_version: str
    label: str | None = None
    ts: float = Field(default_factory=now)


class Sample(Event, samples.Sample):
    """``samples``: a new training example with its provenance (:class:`pgkd.samples.Sample`, the one
    sample type), as a record of the topic."""

    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


UpdateKind = Literal["promote", "rollback"]


class ModelUpdate(Event):
    """``model-updates``: the model every serving worker should run now (the last record wins).

    ``uri`` is the model directory (a path or fsspec URI), ``sha256`` its weights' checksum, which a
    worker verifies before it swaps.
    """

    version: str
    uri: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    kind: UpdateKind = "promote"
    metrics: dict[str, Any] = Field(default_factory=dict)
    parent_version: str | None = None
    ts: float = Field(default_factory=now)


DriftSignal = Literal["confidence", "out_of_taxonomy", "class_mix", "accuracy"]


class DriftEvent(Event):
    """``drift``: live traffic stopped looking like what the current model was judged on
    (:mod:`pgkd.drift`): what moved, in words, and the classes it concerns."""

    model_version: str
    signals: dict[DriftSignal, str] = Field(min_length=1)
    classes: list[str] = Field(default_factory=list, max_length=100)
    predictions: int = Field(ge=0)
    ts: float = Field(default_factory=now)


class DeadLetter(Event):
    """``dead-letter``: a record a service could not process, with why and its original bytes (the
    first 512 KiB of them; ``truncated`` says whether that was all)."""

    max_bytes: ClassVar[int] = 1024 * 1024
    service: str
    topic: str
    partition: int | None = None
    offset: int | None = None
    reason: str
    error: str = Field(max_length=2000)
    original_b64: str
    truncated: bool = False
    ts: float = Field(default_factory=now)

    @classmethod
    def of(
        cls,
        raw: bytes,
        *,
        service: str,
        topic: str,
        reason: str,
        error: str,
        partition: int | None = None,
        offset: int | None = None,
    ) -> DeadLetter:
        # The original is kept (up to a cap that keeps the dead letter under Kafka's default 1 MB
        # message size), so an operator can replay it once the producer is fixed.
        return cls(
            service=service,
            topic=topic,
            partition=partition,
            offset=offset,
            reason=reason,
            error=error[:2000],
            original_b64=base64.b64encode(raw[:MAX_ORIGINAL_BYTES]).decode(),
            truncated=len(raw) > MAX_ORIGINAL_BYTES,
        )

    def original(self) -> bytes:
        return base64.b64decode(self.original_b64)


class EventDecodeError(PGKDError, ValueError):
    """A record is not a valid event; ``reason`` says why in one word (for the dead letter and metrics)."""

    def __init__(self, reason: DecodeReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: DecodeReason = reason
        self.detail = detail


E = TypeVar("E", bound=Event)


def decode(kind: type[E], raw: bytes | bytearray | memoryview | None, *, max_bytes: int | None = None) -> E:
    """Parse one record into ``kind``, or raise :class:`EventDecodeError` with the reason. Records
    over ``max_bytes`` (default: the kind's own cap) are refused before parsing."""
    max_bytes = kind.max_bytes if max_bytes is None else max_bytes
    if raw is None:
        raise EventDecodeError("bad_json", "empty record (no value)")
    raw = bytes(raw)
    if len(raw) > max_bytes:
        raise EventDecodeError("oversized", f"{len(raw)} bytes > {max_bytes}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventDecodeError("not_utf8", str(exc)) from None
    try:
        event = kind.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] in ("json_invalid", "json_type"):
            raise EventDecodeError("bad_json", first["msg"]) from None
        version = _declared_version(raw)
        if version is not None and version > SCHEMA_VERSION:  # a newer producer's shape
            raise EventDecodeError("unsupported_version", f"schema v{version} > v{SCHEMA_VERSION}") from None
        where = ".".join(str(p) for p in first["loc"]) or kind.__name__
        raise EventDecodeError("schema", f"{where}: {first['msg']}") from None
    except RecursionError:  # pathological nesting
        raise EventDecodeError("bad_json", "nesting too deep") from None
    if event.v > SCHEMA_VERSION:
        raise EventDecodeError("unsupported_version", f"schema v{event.v} > v{SCHEMA_VERSION}")
    return event


def _declared_version(raw: bytes) -> int | None:
    try:
        value = json.loads(raw).get("v")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
