"""What every service shares: settings, logging, the metrics endpoint, dead letters, running faust."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from streams import metrics
from streams.events import DeadLetter, EventDecodeError
from streams.settings import StreamSettings

log = logging.getLogger("pgkd.services")


def load_settings(**flags: Any) -> StreamSettings:
    """Service settings from the environment (``PGKD_*``) and ``PGKD_CONFIG`` (a TOML file)."""
    from pgkd.settings import load_settings as load

    config = os.environ.get("PGKD_CONFIG")
    return load(Path(config) if config else None, StreamSettings, **flags)


def setup_logging(service: str) -> None:
    level = os.environ.get("PGKD_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kafka", "aiokafka", "faust", "mode", "httpx", "openai"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def start_metrics(settings: StreamSettings, service: str, health: metrics.Health) -> int | None:
    """Serve /metrics and /healthz if a port is configured; returns the bound port."""
    if settings.metrics_port is None:
        return None
    _, port = metrics.serve_metrics(settings.metrics_port, health)
    log.info("%s metrics on http://0.0.0.0:%d/metrics", service, port)
    return port


def dead_letter(
    raw: bytes | None,
    *,
    service: str,
    topic: str,
    reason: str,
    error: str,
    partition: int | None = None,
    offset: int | None = None,
) -> bytes:
    """The dead-letter record for a bad input; logged with its position and counted by reason."""
    metrics.DEAD_LETTERS.labels(service=service, reason=reason).inc()
    log.warning("dead-lettering %s[%s]@%s: %s: %s", topic, partition, offset, reason, error[:200])
    record = DeadLetter.of(
        raw or b"",
        service=service,
        topic=topic,
        reason=reason,
        error=error,
        partition=partition,
        offset=offset,
    )
    return record.to_bytes()


def dead_letter_event(event: Any, exc: EventDecodeError, service: str) -> tuple[bytes, bytes]:
    """Key and value of the dead letter for a faust ``event`` that failed to decode."""
    message = event.message
    value = dead_letter(
        event.value,
        service=service,
        topic=message.topic,
        reason=exc.reason,
        error=exc.detail,
        partition=message.partition,
        offset=message.offset,
    )
    return message.topic.encode(), value


def run_faust(app: Any) -> None:
    """Run a faust app in this process until SIGINT/SIGTERM (offsets of processed events committed)."""
    import faust

    level = os.environ.get("PGKD_LOG_LEVEL", "INFO").lower()
    faust.Worker(
        app, loglevel="warn" if level not in ("debug", "info") else level, quiet=True
    ).execute_from_commandline()
