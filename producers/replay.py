"""Replays a dataset's traffic pool as live requests, with delayed ground truth for some of them.

Each example becomes a :class:`~streams.events.Request` at ``rate`` per second (None: as fast as the
producer goes); for a ``feedback_fraction`` of them a :class:`~streams.events.Feedback` with the gold
label follows ``feedback_delay`` seconds later (jittered by up to half of it), like a human review::

    pgkd replay --dataset bbc --rate 5 --feedback 0.3
"""

from __future__ import annotations

import heapq
import random
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pgkd.data import Example
from streams.events import Feedback, Request
from streams.topics import Topics


@dataclass
class ReplayReport:
    """What a replay sent: every request id, and which ones got feedback (with their gold label)."""

    ids: list[str] = field(default_factory=list)
    feedback: dict[str, str] = field(default_factory=dict)
    gold: dict[str, str] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return max(1e-9, self.finished - self.started)


class Replayer:
    """Sends requests and scheduled feedback through a kafka-python ``producer``."""

    def __init__(
        self,
        producer: Any,
        topics: Topics,
        *,
        rate: float | None = None,
        feedback_fraction: float = 0.3,
        feedback_delay: float = 5.0,
        seed: int = 0,
        id_prefix: str | None = None,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive or None, got {rate}")
        if not 0.0 <= feedback_fraction <= 1.0:
            raise ValueError(f"feedback_fraction must be in [0, 1], got {feedback_fraction}")
        if feedback_delay < 0:
            raise ValueError(f"feedback_delay must be >= 0, got {feedback_delay}")
        self.producer, self.topics = producer, topics
        self.rate, self.fraction, self.delay = rate, feedback_fraction, feedback_delay
        self.rng = random.Random(seed)
        self.prefix = id_prefix or f"replay-{uuid.uuid4().hex[:8]}"
        self.sent = 0  # numbers request ids across runs: a second run must not reuse the first's ids

    def run(
        self,
        examples: Sequence[Example],
        *,
        stop: threading.Event | None = None,
        report: ReplayReport | None = None,
    ) -> ReplayReport:
        """Send every example (until ``stop``), then the feedback still due; flushes at the end.
        ``report`` (a new one by default) is filled as the replay goes, for watching it live."""
        report = report if report is not None else ReplayReport()
        report.started = time.time()
        due: list[tuple[float, str, str]] = []  # (when, id, gold label)
        start = time.monotonic()
        for i, example in enumerate(examples):
            if stop is not None and stop.is_set():
                break
            if self.rate is not None:
                self._send_feedback(due, report, until=start + i / self.rate)
            request_id = f"{self.prefix}-{self.sent:06d}"
            self.sent += 1
            self.producer.send(
                self.topics.requests,
                key=request_id.encode(),
                value=Request(id=request_id, text=example.text, meta={"source": "replay"}).to_bytes(),
            )
            report.ids.append(request_id)
            report.gold[request_id] = example.label
            if self.rng.random() < self.fraction:
                jitter = self.rng.uniform(-0.5, 0.5) * self.delay
                heapq.heappush(due, (time.monotonic() + self.delay + jitter, request_id, example.label))
            self._send_feedback(due, report, until=time.monotonic())
        while due and not (stop is not None and stop.is_set()):
            self._send_feedback(due, report, until=due[0][0])
        self.producer.flush(timeout=60)
        report.finished = time.time()
        return report

    def _send_feedback(
        self, due: list[tuple[float, str, str]], report: ReplayReport, *, until: float
    ) -> None:
        """Send feedback that falls due before ``until``, sleeping until then."""
        while True:
            if due and due[0][0] <= until:
                when, request_id, label = heapq.heappop(due)
                time.sleep(max(0.0, when - time.monotonic()))
                self.producer.send(
                    self.topics.feedback,
                    key=request_id.encode(),
                    value=Feedback(id=request_id, label=label, source="replay").to_bytes(),
                )
                report.feedback[request_id] = label
                continue
            time.sleep(max(0.0, until - time.monotonic()))
            return
