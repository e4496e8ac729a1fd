"""Every Prometheus metric of the system, named once, and the HTTP endpoint that serves them.

Labels are bounded: a service name, a reason from a fixed set, a class of the taxonomy or a model
version (a handful alive at a time); never a request id or a text. Each service process exports the
metrics it updates on ``/metrics``, and ``/healthz`` answers 200 only while it can do its job.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import get_args
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app

from streams.events import DecodeReason, HardReason, SampleSource

Health = Callable[[], tuple[bool, dict[str, object]]]

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_CONFIDENCE = tuple(i / 10 for i in range(1, 11))
_TEACHER = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# --- every service
DEAD_LETTERS = Counter("pgkd_dead_letters", "Records sent to the dead-letter topic", ["service", "reason"])
UP = Gauge("pgkd_service_up", "1 while the service can do its job", ["service"])
CONSUMER_LAG = Gauge("pgkd_consumer_lag", "Records not yet consumed", ["service", "topic", "partition"])

# --- serving
REQUESTS = Counter("pgkd_serving_requests", "Request records consumed")
PREDICTIONS = Counter("pgkd_serving_predictions", "Predictions published")
LOW_CONFIDENCE = Counter("pgkd_serving_low_confidence", "Predictions routed to the hard topic")
BATCH_SIZE = Histogram("pgkd_serving_batch_size", "Requests per micro-batch", buckets=_BATCH)
INFERENCE_SECONDS = Histogram(
    "pgkd_serving_inference_seconds", "Student forward pass per batch", buckets=_LATENCY
)
LATENCY_SECONDS = Histogram(
    "pgkd_serving_latency_seconds", "Request sent to prediction published", buckets=_LATENCY
)
CONFIDENCE = Histogram("pgkd_serving_confidence", "Confidence of each prediction", buckets=_CONFIDENCE)
MODEL_INFO = Gauge("pgkd_serving_model", "1 for the model version being served", ["version"])
SWAPS = Counter("pgkd_serving_swaps", "Model versions staged and swapped in, or refused", ["result"])
SWAP_SECONDS = Histogram(
    "pgkd_serving_swap_seconds", "Fetch, verify, load and warm up a version", buckets=_LATENCY
)

# --- feedback join and live quality
FEEDBACK = Counter("pgkd_feedback", "Feedback records consumed")
JOINED = Counter("pgkd_feedback_joined", "Predictions matched with their ground truth")
MISCLASSIFIED = Counter("pgkd_feedback_misclassified", "Joined predictions that were wrong", ["label"])
LIVE_ACCURACY = Gauge("pgkd_live_accuracy", "Accuracy over the latest feedback window")
LIVE_RECALL = Gauge("pgkd_live_recall", "Per-class recall over the latest feedback window", ["label"])

# --- mining and the teacher
HARD_EVENTS = Counter("pgkd_mining_hard_events", "Hard events received", ["reason", "label"])
HARD_DROPPED = Counter("pgkd_mining_dropped", "Hard events dropped before the teacher saw them", ["reason"])
TEACHER_CALLS = Counter("pgkd_teacher_calls", "Teacher operations", ["operation", "outcome"])
TEACHER_SECONDS = Histogram("pgkd_teacher_seconds", "Teacher operation time", ["operation"], buckets=_TEACHER)
TEACHER_TOKENS = Counter("pgkd_teacher_tokens", "Teacher tokens spent", ["kind"])
TEACHER_COST = Counter("pgkd_teacher_cost", "Estimated teacher cost, in the configured currency")
TEACHER_CACHE_HITS = Counter(
    "pgkd_teacher_cache_hits", "Teacher answers served from the cache", ["operation"]
)
CIRCUIT_OPEN = Gauge("pgkd_teacher_circuit_open", "1 while the teacher's circuit breaker is open")
BUDGET_REMAINING = Gauge("pgkd_teacher_budget_remaining", "What this hour's budget has left", ["resource"])
SAMPLES = Counter("pgkd_samples_published", "Samples published to the samples topic", ["source"])
SAMPLES_REJECTED = Counter("pgkd_samples_rejected", "Teacher samples rejected", ["reason"])

# --- trainer
TRAIN_RUNS = Counter("pgkd_trainer_runs", "Retraining runs", ["outcome"])
TRAIN_SECONDS = Histogram(
    "pgkd_trainer_train_seconds", "Time to train and score a candidate", buckets=_TEACHER
)
VALIDATION_F1 = Gauge("pgkd_trainer_validation_macro_f1", "Validation macro-F1", ["model"])
CLASS_F1 = Gauge("pgkd_trainer_class_f1", "Validation F1 per class", ["model", "label"])
PROMOTIONS = Counter("pgkd_trainer_promotions", "Candidates promoted")
REJECTIONS = Counter("pgkd_trainer_rejections", "Candidates not promoted", ["reason"])
TRAINING_SET = Gauge("pgkd_trainer_training_set", "Examples in the training set", ["source"])
CURRENT_VERSION = Gauge("pgkd_model_version_number", "Sequence number of the current model version")


DECODE_REASONS = (*get_args(DecodeReason), "processing_error")
SAMPLE_CHECKS = ("unknown_label", "bad_key", "held_out_text")
REJECT_REASONS = (
    "bad_label", "empty", "too_long", "copy_of_prompt", "duplicate", "surplus",
    "teacher_disagrees", "unverified", "invalid_json", "abstained",
)  # fmt: skip


def initialise(service: str, labels: Sequence[str] = ()) -> None:
    """Create the labelled series ``service`` can emit, at 0: a dashboard then shows "none yet"
    instead of "no data", and rates are right from the first event."""
    UP.labels(service=service).set(0)
    for reason in DECODE_REASONS + (SAMPLE_CHECKS if service == "trainer" else ()):
        DEAD_LETTERS.labels(service=service, reason=reason)
    if service == "serving":
        for result in ("swapped", "refused"):
            SWAPS.labels(result=result)
    elif service == "feedback":
        for label in labels:
            MISCLASSIFIED.labels(label=label)
    elif service == "mining":
        HARD_DROPPED.labels(reason="label_queue_full")
        for reason in get_args(HardReason):
            for label in (*labels, "other"):
                HARD_EVENTS.labels(reason=reason, label=label)
        for operation in ("label", "generate"):
            TEACHER_SECONDS.labels(operation=operation)
            TEACHER_CACHE_HITS.labels(operation=operation)
            for outcome in ("ok", "error"):
                TEACHER_CALLS.labels(operation=operation, outcome=outcome)
        for kind in ("prompt", "completion"):
            TEACHER_TOKENS.labels(kind=kind)
        for source in get_args(SampleSource):
            SAMPLES.labels(source=source)
        for reason in REJECT_REASONS:
            SAMPLES_REJECTED.labels(reason=reason)
    elif service == "trainer":
        for outcome in ("promoted", "rejected"):
            TRAIN_RUNS.labels(outcome=outcome)
        for check in ("metric", "class_drop"):
            REJECTIONS.labels(reason=check)


def set_model(version: str) -> None:
    """Mark ``version`` as served by this worker (and no other: the label set stays one)."""
    MODEL_INFO.clear()
    MODEL_INFO.labels(version=version).set(1)


def set_current_version(version: str) -> None:
    """The trainer's view: the sequence number of the registry's current version."""
    digits = "".join(ch for ch in version if ch.isdigit())
    if digits:
        CURRENT_VERSION.set(int(digits))


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


def serve_metrics(
    port: int, health: Health, *, service: str, host: str = "0.0.0.0"
) -> tuple[WSGIServer, int]:
    """Serve ``/metrics`` and ``/healthz`` on ``port`` (0: a free one) in a daemon thread, and keep
    ``pgkd_service_up`` equal to what ``/healthz`` says; returns the server and the port it bound."""
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        if environ.get("PATH_INFO") == "/healthz":
            ok, detail = health()
            body = json.dumps({"ok": ok, **detail}, default=str).encode()
            start_response(
                "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")]
            )
            return [body]
        return metrics_app(environ, start_response)

    def track_health() -> None:
        while True:
            try:
                UP.labels(service=service).set(1 if health()[0] else 0)
            except Exception:  # a health check that fails is a service that is not up
                UP.labels(service=service).set(0)
            time.sleep(2.0)

    server = make_server(host, port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    threading.Thread(target=track_health, name="health", daemon=True).start()
    return server, server.server_port
