"""Settings of the live system: the offline settings (:class:`pgkd.settings.Settings`) plus where
the broker, Redis and the registry are, and the knobs of each service.

Every field is also ``PGKD_<NAME>`` in the environment and a key of the ``--config`` TOML file.
Secrets (Kafka and Redis passwords, the teacher key) are ``SecretStr``: they never print.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from pgkd.mining import UncertaintyRule
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
    include_probs: bool = False
    torch_threads: int | None = Field(None, ge=1)
    # --- feedback join
    join_ttl_seconds: int = Field(900, ge=1, description="how long a request waits for its feedback")
    join_max_text_chars: int = Field(2000, ge=1)
    quality_window: int = Field(1000, ge=1, description="feedbacks in the live-accuracy window")
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
    retrain_every_seconds: float = Field(300.0, gt=0)
    promotion_metric: Literal["macro_f1", "accuracy"] = "macro_f1"
    promotion_min_delta: float = Field(0.0, description="candidate must beat current by this (0: not drop)")
    promotion_max_class_drop: float | None = None
    # --- observability
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Prometheus /metrics port; 0: any")
    metrics_host: str = Field("0.0.0.0", description="interface of /metrics and /healthz")

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
