"""Connections built from settings: kafka-python clients, faust apps, topic creation, Redis.

One place turns :class:`~streams.settings.StreamSettings` into client options, so TLS, SASL and the
timeouts are the same for every service.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import faust
import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay

from pgkd.registry import ModelRegistry
from pgkd.retry import Backoff
from streams import faust_transport
from streams.settings import StreamSettings
from streams.topics import Topics

log = logging.getLogger(__name__)
ADMIN_BACKOFF = Backoff(initial=0.25, cap=2.0)


def bootstrap(settings: StreamSettings) -> str:
    if not settings.bootstrap_servers:
        raise ValueError("no Kafka bootstrap servers: set PGKD_BOOTSTRAP_SERVERS or run `pgkd up`")
    return settings.bootstrap_servers


def kafka_options(settings: StreamSettings) -> dict[str, Any]:
    """Options every kafka-python client gets: servers, security, sane timeouts."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap(settings).split(","),
        "security_protocol": settings.kafka_security_protocol,
        "request_timeout_ms": 30_000,
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        password = settings.kafka_sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    if settings.kafka_security_protocol.endswith("SSL") and settings.kafka_ssl_cafile:
        options["ssl_cafile"] = settings.kafka_ssl_cafile
    return options


# Topics are created by ensure_topics only: a client that auto-created one on a broker that has just
# lost its data (or has never seen the deployment) would give it the broker's default partition
# count, and model-updates must have exactly one.
NO_AUTO_CREATE = {"allow_auto_create_topics": False}


def producer(settings: StreamSettings, **overrides: Any) -> KafkaProducer:
    """An idempotent-enough producer: acks from all replicas, small linger for batching."""
    options = {
        **kafka_options(settings),
        **NO_AUTO_CREATE,
        "acks": "all",
        "linger_ms": 5,
        "retries": 10,
        **overrides,
    }
    return KafkaProducer(**options)


def consumer(settings: StreamSettings, *topics: str, group: str | None, **overrides: Any) -> KafkaConsumer:
    """A consumer with manual commits (``group`` None: no group, for tailing a topic)."""
    session_ms = int(settings.kafka_session_timeout * 1000)
    options = {
        **kafka_options(settings),
        **NO_AUTO_CREATE,
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": max(100, session_ms // 5),
        **overrides,
    }
    return KafkaConsumer(*topics, **options)


def faust_app(settings: StreamSettings, service: str, datadir: Path | None = None) -> faust.App:
    """A faust app for ``service``: raw bytes in and out (services decode themselves, so a bad
    record can be dead-lettered), its own consumer group, commits every second, no web server."""
    credentials: Any = None
    protocol = settings.kafka_security_protocol
    context = None
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        credentials = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    elif protocol == "SSL":
        credentials = faust.SSLCredentials(context)
    faust_transport.register()
    faust_transport.fetch_max_wait_ms = settings.kafka_fetch_max_wait_ms
    servers = ";".join(f"{faust_transport.SCHEME}://{s}" for s in bootstrap(settings).split(","))
    return faust.App(
        f"{settings.namespace}-{service}",
        broker=servers,
        broker_credentials=credentials,
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.kafka_session_timeout,
        broker_heartbeat_interval=max(0.1, settings.kafka_session_timeout / 5),
        broker_commit_interval=1.0,
        datadir=str(
            datadir
            or Path(tempfile.gettempdir()) / f"pgkd-faust-{settings.namespace}-{service}-{os.getpid()}"
        ),
        producer_acks=-1,
    )


def ensure_topics(settings: StreamSettings, *, timeout: float = 30.0) -> dict[str, int]:
    """Create any missing topic of the deployment; returns name -> partitions. A ``model-updates``
    topic with more than one partition is an error: workers read partition 0 only."""
    topics = Topics(settings.namespace)
    layout = topics.layout(settings.partitions)
    try:
        for attempt in Retrying(
            retry=retry_if_exception_type(KafkaError),
            stop=stop_after_delay(timeout),
            wait=ADMIN_BACKOFF.wait(),
            reraise=True,
        ):
            with attempt:
                admin = KafkaAdminClient(**kafka_options(settings), client_id=f"{settings.namespace}-admin")
    except KafkaError as exc:
        raise RuntimeError(f"cannot reach Kafka at {settings.bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(
                name,
                n,
                settings.replication_factor,
                topic_configs={"cleanup.policy": "compact"} if topics.spec(name).compact else {},
            )
            for name, n in layout.items()
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another service was first
                admin.create_topics(missing)
        _single_partition_updates(settings, admin, topics.model_updates)
    finally:
        admin.close()
    return layout


def _single_partition_updates(settings: StreamSettings, admin: KafkaAdminClient, name: str) -> None:
    """Make sure ``model-updates`` has one partition. A broker that auto-creates topics (tansu does
    on a fetch, even with auto-creation off in the client) can recreate it with its default count
    after losing its data, before the trainer gets there: such a topic is empty, so it is replaced.
    One with records is a misconfiguration, left for a person to fix."""

    def partitions() -> int:
        return len(admin.describe_topics([name])[0].get("partitions", []))

    count = partitions()
    if count <= 1:
        return
    probe = KafkaConsumer(**kafka_options(settings), **NO_AUTO_CREATE, group_id=None)
    try:
        ends = probe.end_offsets([TopicPartition(name, p) for p in range(count)])
    finally:
        probe.close()
    if any(ends.values()):
        raise RuntimeError(f"{name} has {count} partitions and records; it must have 1")
    log.warning("%s was auto-created with %d partitions and is empty: recreating it with 1", name, count)
    spec = NewTopic(name, 1, settings.replication_factor, topic_configs={"cleanup.policy": "compact"})
    for _ in range(20):  # a worker's fetch can auto-create it again in between: repeat until ours
        with contextlib.suppress(KafkaError):
            admin.delete_topics([name])
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([spec])
        if partitions() == 1:
            return
        time.sleep(0.5)
    raise RuntimeError(f"could not recreate {name} with one partition")


def assign_all(consumer: KafkaConsumer, topic: str, *, from_beginning: bool) -> list[TopicPartition]:
    """Assign every partition of ``topic`` (no consumer group), from its beginning or its end."""
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})]
    consumer.assign(partitions)
    if from_beginning:
        consumer.seek_to_beginning(*partitions)
    else:
        consumer.seek_to_end(*partitions)
        for tp in partitions:
            consumer.position(tp)  # resolve "the end" now, not at the first poll
    return partitions


def read_to_end(consumer: KafkaConsumer, tp: TopicPartition, *, timeout: float = 30.0) -> list[Any]:
    """Every record of ``tp`` from the consumer's position to the end offset as of now."""
    end = consumer.end_offsets([tp])[tp]
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while consumer.position(tp) < end:
        if time.monotonic() > deadline:
            raise TimeoutError(f"reading {tp.topic}[{tp.partition}] to offset {end} took over {timeout:g} s")
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


def send_and_confirm(
    producer: KafkaProducer, topic: str, key: bytes, value: bytes, timeout: float = 30.0
) -> None:
    """Send one record and wait for the broker's acknowledgement; raises KafkaError if it failed
    (``flush`` alone only logs a failed record)."""
    producer.send(topic, key=key, value=value).get(timeout=timeout)


def registry(settings: StreamSettings, client: redis.Redis | None = None) -> ModelRegistry:
    """The deployment's model registry, indexed in its Redis."""
    return ModelRegistry(
        settings.registry_uri, redis=client or redis_client(settings), namespace=settings.namespace
    )


def redis_client(settings: StreamSettings, **overrides: Any) -> redis.Redis:
    """A Redis client with short timeouts, so a dead Redis fails fast instead of hanging a service."""
    options = {"socket_timeout": 5.0, "socket_connect_timeout": 3.0, "health_check_interval": 30, **overrides}
    return redis.Redis.from_url(settings.redis, **options)
