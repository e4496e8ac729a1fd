"""What every service shares: settings, logging, the metrics endpoint, dead letters, running faust."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiokafka.errors
import redis
from tenacity import AsyncRetrying, RetryCallState

from pgkd.data import Splits
from pgkd.retry import Backoff, log_retry
from pgkd.runner import build_teacher
from pgkd.student import Student
from pgkd.teacher.breaker import CircuitBreaker
from pgkd.teacher.shared import HourlyLimits, SharedTeacher
from streams import metrics
from streams.events import DeadLetter
from streams.settings import StreamSettings

log = logging.getLogger("pgkd.services")


def service_settings(**flags: Any) -> StreamSettings:
    """Service settings from the environment (``PGKD_*``) and ``PGKD_CONFIG`` (a TOML file)."""
    from pgkd.settings import load_settings

    config = os.environ.get("PGKD_CONFIG")
    return load_settings(Path(config) if config else None, StreamSettings, **flags)


def setup_logging(service: str) -> None:
    level = os.environ.get("PGKD_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kafka", "aiokafka", "faust", "mode", "httpx", "openai"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def lower_priority(increment: int) -> int:
    """Make this process nicer by ``increment`` (raising it needs no privilege); the new niceness."""
    return os.nice(increment) if increment > 0 else os.nice(0)


def start_metrics(
    settings: StreamSettings, service: str, health: metrics.Health, labels: Sequence[str] = ()
) -> int | None:
    """Serve /metrics and /healthz if a port is configured; returns the bound port."""
    metrics.initialise(service, labels)
    if settings.metrics_port is None:
        return None
    _, port = metrics.serve_metrics(
        settings.metrics_port, health, service=service, host=settings.metrics_host
    )
    log.info("%s metrics on http://%s:%d/metrics", service, settings.metrics_host, port)
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


def dead_letter_event(event: Any, reason: str, error: str, service: str) -> tuple[bytes, bytes]:
    """Key and value of the dead letter for a faust ``event`` that could not be processed."""
    return event.message.topic.encode(), dead_letter_at(event.message, event.value, reason, error, service)


def dead_letter_at(position: Any, value: bytes | None, reason: str, error: str, service: str) -> bytes:
    """The dead letter for ``value`` read at ``position`` (anything with ``topic``, ``partition``
    and ``offset``: a faust message, a kafka-python record)."""
    return dead_letter(
        value,
        service=service,
        topic=position.topic,
        reason=reason,
        error=error,
        partition=position.partition,
        offset=position.offset,
    )


Send = Callable[[str, bytes, bytes], Awaitable[Any]]


def faust_sender(app: Any, *topics: str) -> Send:
    """``send(topic, key, value)`` for the faust ``app``'s output topics; await what it returns
    to wait for the broker's acknowledgement."""
    out = {name: app.topic(name) for name in topics}

    async def send(topic: str, key: bytes, value: bytes) -> Any:
        return await out[topic].send(key=key, value=value)

    return send


BATCH_BACKOFF = Backoff(initial=0.5, cap=30.0)

# Failures that go away by themselves (the broker or Redis is restarting): retry the batch forever,
# since its events are still safe in Kafka, unacknowledged.
TRANSIENT: tuple[type[BaseException], ...] = (
    aiokafka.errors.KafkaError,
    redis.RedisError,
    ConnectionError,
    TimeoutError,
)


async def process_batch(
    events: Sequence[Any],
    handle: Callable[[Sequence[Any]], Awaitable[None]],
    *,
    service: str,
    send: Send,
    dead_letter_topic: str,
    attempts: int = 3,
    backoff: Backoff = BATCH_BACKOFF,
) -> None:
    """Run ``handle`` on a batch until it succeeds; it must never raise into a faust ``take_events``
    loop, which would acknowledge (and so lose) the batch. Transient failures are retried with
    ``backoff`` for as long as they last; any other failure ``attempts`` times, after which every
    event of the batch is dead-lettered with the error (its original bytes kept for a replay)."""

    def give_up(state: RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome is not None else None
        return not isinstance(error, TRANSIENT) and state.attempt_number >= attempts

    what = f"{service}: batch of {len(events)}"
    try:
        async for attempt in AsyncRetrying(
            stop=give_up, wait=backoff.wait(), before_sleep=log_retry(log, what), reraise=True
        ):
            with attempt:
                await handle(events)
        return
    except Exception as exc:
        log.exception("%s failed %d times; dead-lettering it", what, attempts)
        error = f"{type(exc).__name__}: {exc}"
    # The dead-letter topic may be unreachable too: keep trying, the batch is still unacknowledged.
    async for attempt in AsyncRetrying(
        wait=backoff.wait(), before_sleep=log_retry(log, f"{what} dead letter")
    ):
        with attempt:
            pending = [
                await send(dead_letter_topic, *dead_letter_event(e, "processing_error", error, service))
                for e in events
            ]
            await asyncio.gather(*pending)


class LagGauge:
    """``pgkd_consumer_lag`` of one service: the latest lag of each assigned partition, and no
    series for a partition this process no longer owns (so sums stay right after a rebalance)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._shown: set[tuple[str, str]] = set()

    def update(self, lags: dict[tuple[str, int], int]) -> None:
        now = {(topic, str(partition)) for topic, partition in lags}
        for gone_topic, gone_partition in self._shown - now:
            metrics.CONSUMER_LAG.remove(self.service, gone_topic, gone_partition)
        for (topic, number), lag in lags.items():
            metrics.CONSUMER_LAG.labels(service=self.service, topic=topic, partition=str(number)).set(
                max(0, lag)
            )
        self._shown = now


def track_lag(app: Any, service: str, every: float = 5.0) -> None:
    """Export the consumer lag of a faust app's partitions every ``every`` seconds."""
    gauge = LagGauge(service)

    @app.timer(every)
    async def consumer_lag() -> None:
        consumer = app.consumer
        lags = {}
        for tp in consumer.assignment():
            try:
                position, high = await consumer.position(tp), consumer.highwater(tp)
            except Exception:  # partition moving in a rebalance: next tick
                continue
            if position is not None and high is not None:
                lags[(tp.topic, tp.partition)] = high - position
        gauge.update(lags)


def run_faust(app: Any) -> None:
    """Run a faust app in this process until SIGINT/SIGTERM (offsets of processed events committed)."""
    import faust

    level = os.environ.get("PGKD_LOG_LEVEL", "INFO").lower()
    faust.Worker(
        app, loglevel="warn" if level not in ("debug", "info") else level, quiet=True
    ).execute_from_commandline()


def live_teacher(
    settings: StreamSettings, redis_client: Any, splits: Splits, embedder: Student, stack: ExitStack
) -> tuple[SharedTeacher, CircuitBreaker]:
    """The teacher as every service shares it: the configured endpoint behind a circuit breaker,
    with one Redis cache, hourly budget and rate limit across replicas and services."""
    breaker = CircuitBreaker(
        build_teacher(settings, splits, embedder, stack),
        failures=settings.teacher_breaker_failures,
        cooldown=settings.teacher_breaker_cooldown,
    )
    shared = SharedTeacher(
        breaker,
        redis_client,
        namespace=settings.namespace,
        limits=HourlyLimits(
            calls=settings.teacher_calls_per_hour,
            tokens=settings.teacher_tokens_per_hour,
            cost=settings.teacher_cost_per_hour,
            calls_per_minute=settings.teacher_calls_per_minute,
        ),
        cache_ttl=settings.teacher_cache_ttl,
    )
    return shared, breaker
