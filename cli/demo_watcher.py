"""The demo's live tallies: a thread that tails ``predictions`` and ``hard`` and measures throughput
and live accuracy (over the requests whose feedback was sent)."""

from __future__ import annotations

import threading
import time
from collections import deque

from kafka import TopicPartition

from producers.replay import ReplayReport
from streams import connect
from streams.events import EventDecodeError, Prediction, decode
from streams.settings import StreamSettings
from streams.topics import Topics


class Watcher(threading.Thread):
    """Tails ``predictions`` and ``hard`` from the beginning and keeps the demo's tallies."""

    def __init__(self, settings: StreamSettings) -> None:
        super().__init__(name="demo-watcher", daemon=True)
        self.settings = settings
        self.topics = Topics(settings.namespace)
        self.lock = threading.Lock()
        self.answers: dict[str, Prediction] = {}
        self.duplicates = 0
        self.hard = 0
        self.first_seen: dict[str, float] = {}  # model version -> when its first prediction arrived
        self.recent: deque[float] = deque(maxlen=10_000)
        self.stopping = threading.Event()

    def run(self) -> None:
        consumer = connect.consumer(self.settings, group=None)
        try:
            parts = []
            for topic in (self.topics.predictions, self.topics.hard):
                parts += [
                    TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})
                ]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            while not self.stopping.is_set():
                for tp, records in consumer.poll(timeout_ms=500).items():
                    with self.lock:
                        for record in records:
                            self._take(tp.topic, record.value)
        finally:
            consumer.close()

    def _take(self, topic: str, value: bytes) -> None:
        if topic == self.topics.hard:
            self.hard += 1
            return
        try:
            p = decode(Prediction, value)
        except EventDecodeError:
            return
        if p.id in self.answers:
            self.duplicates += 1
            return
        self.answers[p.id] = p
        self.recent.append(time.time())
        self.first_seen.setdefault(p.model_version, time.time())

    def throughput(self, window: float = 10.0) -> float:
        now = time.time()
        with self.lock:
            return sum(1 for t in self.recent if t > now - window) / window

    def live_accuracy(
        self, report: ReplayReport, last: int = 300, *, first: bool = False
    ) -> tuple[float | None, int]:
        """Accuracy over the latest (``first``: the earliest) ``last`` answered requests whose
        feedback was sent."""
        with self.lock:
            sent = list(report.feedback.items())
            window = sent[:last] if first else sent[-last:]
            judged = [(i, label) for i, label in window if i in self.answers]
            if not judged:
                return None, 0
            return sum(self.answers[i].label == label for i, label in judged) / len(judged), len(judged)
