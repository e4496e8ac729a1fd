"""Settings of the live system: the offline settings (:class:`pgkd.settings.Settings`) plus where
the broker, Redis and the registry are, and the knobs of each service.

Every field is also ``PGKD_<NAME>`` in the environment and a key of the ``--config`` TOML file.
Secrets (Kafka and Redis passwords, the teacher key) are ``SecretStr``: they never print.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from pgkd.evaluation import UncertaintyRule
from pgkd.settings import Settings


class StreamSettings(Settings):
    """Everything a service, a producer or ``pgkd up`` can be configured with."""

    # --- Kafka: none = the embedded broker that `pgkd up` starts
    bootstrap_servers: str | None = Field(None, description="host:port[,host:port]; none: embedded broker")
    namespace: str = Field("pgkd", pattern=r"^[A-Za-z0-9._-]{1,100}$", description="topic/key prefix")
    partitions: int = Field(4, ge=1, description="partitions of each new data topic")
    replication_factor: int = Field(1, ge=1, description="replicas of each new topic (3 on a real cluster)")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_fetch_max_wait_ms: int = Field(
        50, ge=1, le=5000, description="how long an empty fetch may wait (stream services)"
    )
    kafka_session_timeout: float = Field(
        10.0, gt=0, description="seconds before a dead consumer's partitions move"
    )
    # --- Redis: the shared state (registry index, join, budget, cache, locks)
    redis_url: SecretStr = Field(SecretStr("redis://127.0.0.1:6379/0"), description="redis:// or rediss://")
    # --- registry
    registry_uri: str = Field("runs/registry", description="model store: a folder or any fsspec URI")
    # --- serving
    serve_batch: int = Field(64, ge=1, le=4096, description="max requests per micro-batch")
    serve_wait_ms: float = Field(10.0, ge=0, description="max wait to fill a micro-batch")
    serve_max_chars: int = Field(2000, ge=1, description="texts are cut to this before tokenising")
    serve_inference: Literal["eager", "int8"] = Field(
        "eager", description="eager (float32) or int8 (dynamically quantised encoder; see BENCHMARKS.md)"
    )
    low_confidence: float = Field(0.5, ge=0, le=1, description="uncertainty above this goes to `hard`")
    uncertainty_rule: UncertaintyRule = "confidence"
    out_of_taxonomy_threshold: float | None = Field(
        None,
        ge=0,
        le=2,
        description="out-of-taxonomy score above which a text goes to `hard`; none: the model's",
    )
    include_probs: bool = False
    torch_threads: int | None = Field(None, ge=1)
    # A retrain shares the cores with serving (and, on a small machine, a local LLM teacher whose
    # threads spin-wait on each other): at a lower priority it takes only what they leave idle.
    # On 200 validation labels macro-F1 moves by about +-0.03 between neighbouring runs.
    new_class_max_old_drop: float = Field(
        0.05, ge=0, le=1, description="how far the old classes' macro-F1 may fall when a class is added"
    )
    new_class_min_recall: float = Field(
        0.5, ge=0, le=1, description="recall an added class needs on its held-out examples to be promoted"
    )
    trainer_nice: int = Field(
        10, ge=0, le=19, description="the trainer lowers its CPU priority by this (0: unchanged)"
    )
    # --- cascade (pgkd/cascade.py): the teacher answers what the student is likely wrong about
    cascade: bool = Field(False, description="serving asks the teacher for requests under the bar")
    cascade_threshold: float = Field(
        0.5, ge=0, le=1, description="calibrated confidence under which a request may go to the teacher"
    )
    cascade_deadline: float = Field(2.0, gt=0, le=600, description="seconds the teacher has per batch")
    # Off: the teacher's label answer is a class of the taxonomy, with no "none of these" to give.
    cascade_out_of_taxonomy: bool = Field(False, description="out-of-taxonomy texts go to the teacher too")
    cascade_max_in_flight: int = Field(
        2, ge=1, le=64, description="teacher calls a worker waits on at most; more: the student answers"
    )
    # --- feedback join
    join_ttl_seconds: int = Field(900, ge=1, description="how long a request waits for its feedback")
    join_max_text_chars: int = Field(2000, ge=1)
    quality_window: int = Field(1000, ge=1, description="feedbacks in the live-accuracy window")
    # --- drift (pgkd/drift.py), watched by the feedback join
    detect_drift: bool = Field(True, description="raise drift events from live predictions and feedback")
    drift_window: int = Field(400, ge=20, le=100_000, description="predictions per reference/current window")
    drift_alpha: float = Field(0.001, gt=0, lt=1, description="significance of each drift test")
    drift_min_feedback: int = Field(
        15, ge=1, description="ground truths of a class before its accuracy is judged"
    )
    drift_cooldown: int = Field(400, ge=0, description="predictions after a drift event before the next")
    # --- mining
    label_batch: int = Field(8, ge=1, description="low-confidence texts labelled per teacher round")
    label_queue: int = Field(1000, ge=1, description="low-confidence texts waiting at most")
    min_hard: int = Field(16, ge=1, description="misclassified events that trigger a generation")
    generate_every_seconds: float = Field(600.0, gt=0, description="generate at least this often")
    train_on_feedback: bool = Field(True, description="misclassified events with ground truth become samples")
    teacher_calls_per_hour: int | None = None
    teacher_tokens_per_hour: int | None = None
    teacher_cost_per_hour: float | None = None
    teacher_calls_per_minute: int | None = None
    teacher_cache_ttl: int = Field(7 * 24 * 3600, ge=1)
    teacher_breaker_failures: int = Field(5, ge=1, description="failures in a row that open the circuit")
    teacher_breaker_cooldown: float = Field(30.0, gt=0, description="seconds the circuit stays open at first")
    # --- trainer
    retrain_every_samples: int = Field(32, ge=1)
    sample_max_per_class: int | None = Field(
        5000, ge=0, description="teacher samples kept per class, the newest (ground truth always stays)"
    )
    sample_max_age: float | None = Field(None, gt=0, description="seconds a teacher sample is kept")
    retrain_every_seconds: float = Field(300.0, gt=0)
    warm_epochs: int = Field(3, ge=1, description="epochs of a warm-started retrain (warm_start: true)")
    promotion_metric: Literal["macro_f1", "accuracy"] = "macro_f1"
    promotion_min_delta: float = Field(0.0, description="candidate must beat current by this (0: not drop)")
    promotion_max_class_drop: float | None = None
    promotion_confidence: float | None = Field(
        None, gt=0, lt=1, description="e.g. 0.9: the bootstrap interval of the macro-F1 lift must clear 0"
    )
    teacher_audit_min: int = Field(20, ge=1, description="audited teacher labels before the gate judges")
    teacher_min_accuracy: float = Field(
        0.5, ge=0, le=1, description="audited accuracy the teacher needs for its samples to be trained on"
    )
    # --- `pgkd up`: a part that dies is restarted (streams/supervisor.py)
    restart_backoff: float = Field(1.0, ge=0, le=60, description="seconds before the first restart")
    restart_max_backoff: float = Field(60.0, ge=0, le=3600, description="longest wait between restarts")
    restart_budget: int = Field(5, ge=1, le=1000, description="restarts of one part allowed per window")
    restart_window: float = Field(600.0, gt=0, le=86400, description="seconds of the restart budget")
    # --- observability
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Prometheus /metrics port; 0: any")
    metrics_host: str = Field("0.0.0.0", description="interface of /metrics and /healthz")

    @model_validator(mode="after")
    def _backoff_in_order(self) -> StreamSettings:
        if self.restart_backoff > self.restart_max_backoff:
            raise ValueError(
                f"restart_backoff ({self.restart_backoff}) must not exceed restart_max_backoff "
                f"({self.restart_max_backoff})"
            )
        return self

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> StreamSettings:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError("SASL needs kafka_sasl_username and kafka_sasl_password")
        return self

    @property
    def redis(self) -> str:
        return self.redis_url.get_secret_value()
