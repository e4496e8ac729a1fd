"""Which model every serving worker runs: ``model-updates`` announcements, and the operator's
rollback and release.

The trainer announces each promotion here; an operator's :func:`rollback` makes an earlier
version current again everywhere and holds automatic promotion until :func:`release`::

    pgkd rollback v0003      # then, when the cause is fixed: pgkd release
"""

from __future__ import annotations

import time
from typing import Any

from pgkd.registry import ModelRecord
from streams import connect
from streams.events import ModelUpdate
from streams.settings import StreamSettings
from streams.topics import Topics


def update_for(record: ModelRecord, kind: str = "promote") -> ModelUpdate:
    return ModelUpdate(
        version=record.version,
        uri=record.uri,
        sha256=record.sha256,
        kind=kind,  # type: ignore[arg-type]
        metrics={k: v for k, v in record.metrics.items() if k in ("validation", "test")},
        parent_version=record.parent_version,
    )


def announce(
    settings: StreamSettings, record: ModelRecord, kind: str = "promote", producer: Any = None
) -> None:
    """Publish ``record`` on ``model-updates``; returns once the broker has acknowledged it and
    raises KafkaError if it did not."""
    own = producer is None
    producer = producer or connect.producer(settings)
    try:
        update = update_for(record, kind)
        topic = Topics(settings.namespace).model_updates
        connect.send_and_confirm(producer, topic, record.version.encode(), update.to_bytes())
    finally:
        if own:
            producer.close()


def rollback(settings: StreamSettings, version: str, *, hold: bool = True) -> ModelRecord:
    """Make an earlier ``version`` current again, in the registry and in every serving worker.

    With ``hold`` (the default) the trainer promotes nothing until :func:`release`: a rollback
    that the next retrain undoes a minute later is no rollback."""
    registry = connect.registry(settings)
    # Hold and pointer under one lock: a retrain finishing meanwhile cannot promote over the rollback.
    record = registry.hold(f"rollback to {version}", version) if hold else registry.set_current(version)
    assert record is not None
    announce(settings, record, kind="rollback")
    registry.record_decision(
        {
            "ts": time.time(),
            "version": version,
            "promoted": True,
            "reason": "rollback" + (" (automatic promotion held)" if hold else ""),
            "kind": "rollback",
        }
    )
    return record


def release(settings: StreamSettings) -> dict[str, Any] | None:
    """Let the trainer promote again after a held rollback; returns the hold that was lifted."""
    registry = connect.registry(settings)
    hold = registry.held()
    registry.release()
    if hold is not None:
        registry.record_decision(
            {
                "ts": time.time(),
                "promoted": False,
                "reason": f"hold lifted ({hold['reason']})",
                "kind": "release",
            }
        )
    return hold
