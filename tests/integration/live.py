"""Helpers of the live-system tests: settings for a small, fast deployment and topic readers."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from kafka import KafkaProducer, TopicPartition

from streams import connect
from streams.events import Prediction, decode
from streams.settings import StreamSettings


def live_settings(
    broker: str, redis_url: str, namespace: str, tmp_path: Path, **overrides: Any
) -> StreamSettings:
    base: dict[str, Any] = {
        "bootstrap_servers": broker,
        "redis_url": redis_url,
        "namespace": namespace,
        "registry_uri": str(tmp_path / "registry"),
        "dataset": "bbc",
        "n_train": 60,
        "n_validation": 100,
        "max_chars": 300,
        "teacher": "simulated",
        # The frozen-encoder head trains in seconds, which these tests of the plumbing need;
        # test_live_fine_tuned.py runs the default (fine-tuning) trainer.
        "mode": "head",
        "partitions": 2,
        "kafka_session_timeout": 6.0,
        "serve_batch": 16,
    }
    return StreamSettings(**{**base, **overrides})


def local_teacher(url: str, model: str) -> dict[str, Any]:
    """The settings of the session's real local LLM teacher (a slow one: a generation takes minutes)."""
    return {"teacher": "local", "teacher_url": url, "teacher_model": model, "teacher_timeout": 300.0}


# A whole stack under load: short texts, many hard events, small teacher steps.
BUSY: dict[str, Any] = {
    "serve_max_chars": 200,
    "serve_batch": 32,
    "low_confidence": 0.6,
    "min_hard": 3,
    "samples_per_step": 8,
}


class TopicReader:
    """Reads a topic from the beginning, all partitions, without a consumer group."""

    def __init__(self, settings: StreamSettings, topic: str) -> None:
        self.consumer = connect.consumer(settings, group=None)
        parts = self.consumer.partitions_for_topic(topic) or {0}
        self.parts = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(self.parts)
        self.consumer.seek_to_beginning(*self.parts)
        self.records: list[Any] = []

    def poll(self) -> list[Any]:
        new = [r for rs in self.consumer.poll(timeout_ms=500).values() for r in rs]
        self.records += new
        return new

    def until(self, done: Callable[[list[Any]], bool], timeout: float, what: str) -> list[Any]:
        deadline = time.monotonic() + timeout
        while not done(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            self.poll()
        return self.records

    def close(self) -> None:
        self.consumer.close()


class KafkaClients:
    """A test's own producers and topic readers, all closed when it ends: a client left open keeps
    its network thread running (and the broker connection open) for the rest of the session."""

    def __init__(self) -> None:
        self._producers: list[KafkaProducer] = []
        self._readers: list[TopicReader] = []

    def producer(self, settings: StreamSettings, **overrides: Any) -> KafkaProducer:
        producer = connect.producer(settings, **overrides)
        self._producers.append(producer)
        return producer

    def reader(self, settings: StreamSettings, topic: str) -> TopicReader:
        reader = TopicReader(settings, topic)
        self._readers.append(reader)
        return reader

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
        for producer in self._producers:
            producer.close(timeout=10)  # bounded: the broker may already be gone


def answered(records: list[Any]) -> dict[str, list[Prediction]]:
    by_id: dict[str, list[Prediction]] = defaultdict(list)
    for r in records:
        p = decode(Prediction, r.value)
        by_id[p.id].append(p)
    return by_id


def versions(records: list[Any]) -> set[str]:
    """The model versions that answered ``records`` of ``predictions``."""
    return {p.model_version for ps in answered(records).values() for p in ps}


def replay_until_a_new_model_answers(
    replay: Callable[[threading.Event], None],
    predictions: TopicReader,
    timeout: float,
    during: Callable[[], None] = lambda: None,
) -> list[Any]:
    """Run ``replay`` (traffic until its event is set) in a thread, do ``during``, and wait for an
    answer from a second model version; the traffic stops either way."""
    stop = threading.Event()
    thread = threading.Thread(target=replay, args=(stop,), daemon=True)
    thread.start()
    try:
        during()
        return predictions.until(
            lambda rs: len(versions(rs)) >= 2, timeout=timeout, what="a second model's answer"
        )
    finally:
        stop.set()
        thread.join(timeout=60)


def check_answered_once_in_model_order(records: list[Any], ids: Collection[str]) -> None:
    """Each of ``ids`` answered exactly once, and hot-swaps in order: swaps happen between batches,
    so on each partition, once a newer model answers, no older one does."""
    by_id = answered(records)
    assert set(by_id) >= set(ids), f"{len(set(ids) - set(by_id))} requests never answered"
    assert all(len(by_id[i]) == 1 for i in ids), "a request was answered twice"
    last: dict[int, int] = {}
    for r in records:
        n = int(decode(Prediction, r.value).model_version[1:])
        assert n >= last.get(r.partition, 0), "an older model answered after a newer one"
        last[r.partition] = n


def metric(port: int | None, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample of a running service whose labels include ``labels``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
