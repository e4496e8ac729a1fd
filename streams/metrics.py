"""Every Prometheus metric of the system, named once, and the HTTP endpoint that serves them.

Labels are bounded: a service name, a reason from a fixed set, a class of the taxonomy or a model
version (a handful alive at a time); never a request id or a text. Each service process exports the
metrics it updates (and the common ones) on ``/metrics`` from a registry of its own
(:func:`registry_for`), and ``/healthz`` answers 200 only while it can do its job.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, get_args
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)

from pgkd.samples import SampleSource
from streams.events import DecodeReason, DriftSignal, HardReason

Health = Callable[[], tuple[bool, dict[str, object]]]

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_CONFIDENCE = tuple(i / 10 for i in range(1, 11))
_TEACHER = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# Each metric belongs to the service that updates it, and each service exports only its own
# (and the common ones) from a registry of its own: a mining endpoint that served
# `pgkd_serving_requests_total 0` would read as a serving worker that does nothing.
_GROUPS: dict[str, list[Any]] = {"common": [], "serving": [], "feedback": [], "mining": [], "trainer": []}


def _counter(group: str, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
    return _keep(group, Counter(name, doc, labels, registry=None))


def _gauge(group: str, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    return _keep(group, Gauge(name, doc, labels, registry=None))


def _histogram(
    group: str, name: str, doc: str, labels: Sequence[str] = (), *, buckets: Sequence[float]
) -> Histogram:
    return _keep(group, Histogram(name, doc, labels, registry=None, buckets=buckets))


M = TypeVar("M")


def _keep(group: str, metric: M) -> M:
    _GROUPS[group].append(metric)
    return metric


def registry_for(service: str) -> CollectorRegistry:
    """The registry ``service`` exports: its own metrics, the common ones, and the process's."""
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    for metric in (*_GROUPS["common"], *_GROUPS.get(service, [])):
        registry.register(metric)
    return registry


# --- every service
CACHE_ENTRIES = _gauge(
    "common",
    "pgkd_cache_entries",
    "Entries held by each in-process cache or queue of a service (each is bounded)",
    ["cache"],
)
DEAD_LETTERS = _counter(
    "common", "pgkd_dead_letters", "Records sent to the dead-letter topic", ["service", "reason"]
)
SKIPPED = _counter(
    "common",
    "pgkd_skipped_records",
    "Bad records of a topic another service owns (and dead-letters): skipped here",
    ["service", "topic", "reason"],
)
UP = _gauge("common", "pgkd_service_up", "1 while the service can do its job", ["service"])
CONSUMER_LAG = _gauge(
    "common", "pgkd_consumer_lag", "Records not yet consumed", ["service", "topic", "partition"]
)

# --- serving
REQUESTS = _counter("serving", "pgkd_serving_requests", "Request records consumed")
PREDICTIONS = _counter("serving", "pgkd_serving_predictions", "Predictions published")
CASCADE = _counter(
    "serving", "pgkd_serving_cascade", "Requests the cascade routed to the teacher, by outcome", ["outcome"]
)
CASCADE_BAR = _gauge(
    "serving", "pgkd_serving_cascade_bar", "Confidence under which the teacher answers (NaN: not trusted yet)"
)
LOW_CONFIDENCE = _counter(
    "serving", "pgkd_serving_low_confidence", "Predictions routed to `hard` as low-confidence"
)
OUT_OF_TAXONOMY = _counter(
    "serving",
    "pgkd_serving_out_of_taxonomy",
    "Predictions of texts far from every class, routed to `hard` as such",
)
BATCH_SIZE = _histogram("serving", "pgkd_serving_batch_size", "Requests per micro-batch", buckets=_BATCH)
INFERENCE_SECONDS = _histogram(
    "serving", "pgkd_serving_inference_seconds", "Student forward pass per batch", buckets=_LATENCY
)
LATENCY_SECONDS = _histogram(
    "serving", "pgkd_serving_latency_seconds", "Request sent to prediction published", buckets=_LATENCY
)
CONFIDENCE = _histogram(
    "serving", "pgkd_serving_confidence", "Confidence of each prediction", buckets=_CONFIDENCE
)
MODEL_INFO = _gauge("serving", "pgkd_serving_model", "1 for the model version being served", ["version"])
SWAPS = _counter(
    "serving", "pgkd_serving_swaps", "Model versions staged and swapped in, or refused", ["result"]
)
SWAP_SECONDS = _histogram(
    "serving", "pgkd_serving_swap_seconds", "Fetch, verify, load and warm up a version", buckets=_LATENCY
)

# --- feedback join and live quality
FEEDBACK = _counter("feedback", "pgkd_feedback", "Feedback records consumed")
JOINED = _counter("feedback", "pgkd_feedback_joined", "Predictions matched with their ground truth")
MISCLASSIFIED = _counter(
    "feedback", "pgkd_feedback_misclassified", "Joined predictions that were wrong", ["label"]
)
LIVE_ACCURACY = _gauge("feedback", "pgkd_live_accuracy", "Accuracy over the latest feedback window")
LIVE_RECALL = _gauge(
    "feedback", "pgkd_live_recall", "Per-class recall over the latest feedback window", ["label"]
)
DRIFT_EVENTS = _counter("feedback", "pgkd_drift_events", "Drift raised, by signal", ["signal"])
TEACHER_AUDITED = _gauge(
    "feedback", "pgkd_teacher_audited", "Teacher-labelled requests whose ground truth arrived"
)
TEACHER_LIVE_ACCURACY = _gauge(
    "feedback", "pgkd_teacher_live_accuracy", "Accuracy on audited requests", ["who"]
)  # who: teacher, or the student on the same requests

# --- mining and the teacher
HARD_EVENTS = _counter("mining", "pgkd_mining_hard_events", "Hard events received", ["reason", "label"])
HARD_DROPPED = _counter(
    "mining", "pgkd_mining_dropped", "Hard events dropped before the teacher saw them", ["reason"]
)
TEACHER_CALLS = _counter("mining", "pgkd_teacher_calls", "Teacher operations", ["operation", "outcome"])
TEACHER_SECONDS = _histogram(
    "mining", "pgkd_teacher_seconds", "Teacher operation time", ["operation"], buckets=_TEACHER
)
TEACHER_TOKENS = _counter("mining", "pgkd_teacher_tokens", "Teacher tokens spent", ["kind"])
TEACHER_COST = _counter("mining", "pgkd_teacher_cost", "Estimated teacher cost, in the configured currency")
TEACHER_CACHE_HITS = _counter(
    "mining", "pgkd_teacher_cache_hits", "Teacher answers served from the cache", ["operation"]
)
CIRCUIT_OPEN = _gauge("mining", "pgkd_teacher_circuit_open", "1 while the teacher's circuit breaker is open")
BUDGET_REMAINING = _gauge(
    "mining", "pgkd_teacher_budget_remaining", "What this hour's budget has left", ["resource"]
)
DRIFT_RECEIVED = _counter(
    "mining", "pgkd_mining_drift_events", "Drift events answered with a targeted generation"
)
SAMPLES = _counter("mining", "pgkd_samples_published", "Samples published to the samples topic", ["source"])
SAMPLES_REJECTED = _counter("mining", "pgkd_samples_rejected", "Teacher samples rejected", ["reason"])

# --- trainer
TRAIN_RUNS = _counter("trainer", "pgkd_trainer_runs", "Retraining runs", ["outcome"])
TRAIN_SECONDS = _histogram(
    "trainer", "pgkd_trainer_train_seconds", "Time to train and score a candidate", buckets=_TEACHER
)
VALIDATION_F1 = _gauge("trainer", "pgkd_trainer_validation_macro_f1", "Validation macro-F1", ["model"])
CLASS_F1 = _gauge("trainer", "pgkd_trainer_class_f1", "Validation F1 per class", ["model", "label"])
SAMPLES_PRUNED = _counter(
    "trainer", "pgkd_trainer_samples_pruned", "Teacher samples the retention policy removed"
)
PROMOTIONS = _counter("trainer", "pgkd_trainer_promotions", "Candidates promoted")
REJECTIONS = _counter("trainer", "pgkd_trainer_rejections", "Candidates not promoted", ["reason"])
TRAINING_SET = _gauge("trainer", "pgkd_trainer_training_set", "Examples in the training set", ["source"])
TAXONOMY_CLASSES = _gauge(
    "trainer", "pgkd_trainer_taxonomy_classes", "Classes candidates are trained on", ["origin"]
)  # origin: seed (the dataset's labels) or added (by an operator, pgkd add-class)
TEACHER_TRUSTED = _gauge(
    "trainer", "pgkd_trainer_teacher_trusted", "1 while the teacher's samples are trained on"
)
PROMOTION_HELD = _gauge(
    "trainer",
    "pgkd_trainer_promotion_held",
    "1 while an operator's hold (a rollback) stops automatic promotion",
)
CALIBRATION_ERROR = _gauge(
    "trainer",
    "pgkd_trainer_calibration_error",
    "Expected calibration error on validation, before and after temperature scaling",
    ["model", "when"],
)
TEMPERATURE = _gauge(
    "trainer",
    "pgkd_trainer_temperature",
    "The temperature fitted when the model was calibrated (on its weights as trained)",
    ["model"],
)
CURRENT_VERSION = _gauge(
    "trainer", "pgkd_model_version_number", "Sequence number of the current model version"
)


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
        for outcome in ("teacher", "abstained", "late", "failed", "over_budget", "busy"):
            CASCADE.labels(outcome=outcome)
        CASCADE_BAR.set(math.nan)
    elif service == "feedback":
        for label in labels:
            MISCLASSIFIED.labels(label=label)
        for who in ("teacher", "student"):
            TEACHER_LIVE_ACCURACY.labels(who=who).set(math.nan)  # unknown until a label is audited
        for signal in get_args(DriftSignal):
            DRIFT_EVENTS.labels(signal=signal)
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
        for check in ("metric", "class_drop", "uncertain", "held"):
            REJECTIONS.labels(reason=check)
        TEACHER_TRUSTED.set(1)  # trusted until its audit says otherwise
        PROMOTION_HELD.set(0)


def set_calibration(model: str, calibration: dict[str, float] | None) -> None:
    """The calibration of the ``current`` or ``candidate`` model (as the trainer recorded it)."""
    if not calibration:
        return
    TEMPERATURE.labels(model=model).set(calibration["temperature"])
    for when in ("before", "after"):
        CALIBRATION_ERROR.labels(model=model, when=when).set(calibration[f"ece_{when}"])


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
    metrics_app = make_wsgi_app(registry_for(service))

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
