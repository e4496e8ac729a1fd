"""The record of one registered model version: what ``record.json`` holds beside the student.

It carries the version's lineage (parent, training-set fingerprint, teacher cost since the parent)
and its scores; the registry (:mod:`pgkd.registry`) writes it and serves it from Redis or storage.

>>> record = ModelRecord("v0001", "memory://models/v0001", "0" * 64, 0.0, metrics={"test": {"accuracy": 1}})
>>> ModelRecord.from_json(record.to_json()) == record
True
>>> record.metric("accuracy", "test"), record.metric("accuracy")  # validation was not scored
(1.0, None)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pgkd.errors import ModelError


@dataclass(frozen=True)
class ModelRecord:
    """What the registry knows of one version. ``metrics`` holds at least ``validation`` (the
    :meth:`~pgkd.evaluation.ValidationReport.summary` promotion compares) and, when computed, ``test``."""

    version: str
    uri: str
    sha256: str
    created_at: float
    parent_version: str | None = None
    data_fingerprint: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    train_size: int = 0
    samples_by_source: dict[str, int] = field(default_factory=dict)
    teacher_cost_since_parent: float = 0.0
    teacher_calls_since_parent: int = 0
    teacher_usage_total: dict[str, float] = field(default_factory=dict)
    note: str = ""
    labels: list[str] = field(default_factory=list)  # the taxonomy the model answers in

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelRecord:
        """Parse a record; fields a newer pgkd added are ignored."""
        try:
            data = json.loads(text)
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"not a model record: {exc}") from exc

    def metric(self, name: str, split: str = "validation") -> float | None:
        value = (self.metrics.get(split) or {}).get(name)
        return float(value) if isinstance(value, int | float) else None
