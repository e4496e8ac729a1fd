"""Replay scheduling (with a recording producer, a test double) and the stream settings."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from pgkd.data import Example
from producers.replay import Replayer
from streams.connect import kafka_options
from streams.events import Feedback, Request, decode
from streams.settings import StreamSettings
from streams.topics import Topics
from tests.conftest import settings_env


class RecordingProducer:
    """Stands in for KafkaProducer in unit tests: remembers what was sent, and when."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str, bytes, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((time.monotonic(), topic, key, value))

    def flush(self, timeout: float | None = None) -> None:
        pass


def test_replay_sends_every_request_and_feedback_after_it():
    producer, topics = RecordingProducer(), Topics("t")
    examples = [Example(f"text {i}", "a" if i % 2 else "b") for i in range(200)]
    report = Replayer(producer, topics, feedback_fraction=0.3, feedback_delay=0.01, seed=1).run(examples)
    requests = [decode(Request, v) for _, t, _, v in producer.sent if t == topics.requests]
    feedback = [(when, decode(Feedback, v)) for when, t, _, v in producer.sent if t == topics.feedback]
    assert [r.id for r in requests] == report.ids and len(set(report.ids)) == 200
    assert 40 <= len(feedback) <= 80 and len(feedback) == len(report.feedback)
    sent_at = {decode(Request, v).id: when for when, t, _, v in producer.sent if t == topics.requests}
    for when, f in feedback:
        assert f.label == report.gold[f.id] and when >= sent_at[f.id]


def test_a_second_run_of_one_replayer_never_reuses_a_request_id():
    replayer = Replayer(RecordingProducer(), Topics("t"), feedback_fraction=0.0, id_prefix="r")
    examples = [Example(f"text {i}", "a") for i in range(5)]
    first, second = replayer.run(examples), replayer.run(examples)
    assert len(set(first.ids) | set(second.ids)) == 10


def test_replay_paces_to_the_rate():
    producer = RecordingProducer()
    started = time.monotonic()
    Replayer(producer, Topics("t"), rate=50, feedback_fraction=0.0).run(
        [Example(f"x{i}", "a") for i in range(26)]
    )
    assert time.monotonic() - started >= 0.5


def test_replay_rejects_bad_settings():
    with pytest.raises(ValueError, match=r"rate must be positive or None, got 0"):
        Replayer(RecordingProducer(), Topics("t"), rate=0)
    with pytest.raises(ValueError, match=r"feedback_fraction must be in \[0, 1\], got 1\.5"):
        Replayer(RecordingProducer(), Topics("t"), feedback_fraction=1.5)


def test_stream_settings_from_env_and_back(monkeypatch):
    monkeypatch.setenv("PGKD_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("PGKD_REDIS_URL", "redis://:s3cret@r:6379/1")
    monkeypatch.setenv("PGKD_SERVE_BATCH", "16")
    settings = StreamSettings()
    assert settings.serve_batch == 16 and settings.redis == "redis://:s3cret@r:6379/1"
    assert "s3cret" not in repr(settings)
    for key in list(settings_env(settings)):
        monkeypatch.delenv(key, raising=False)
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    assert StreamSettings() == settings


def test_sasl_needs_credentials_and_reaches_the_client_options():
    with pytest.raises(ValidationError, match="SASL"):
        StreamSettings(bootstrap_servers="k:9092", kafka_security_protocol="SASL_SSL")
    settings = StreamSettings(
        bootstrap_servers="k:9092",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password="pw",
        kafka_ssl_cafile="/etc/ca.pem",
    )
    options = kafka_options(settings)
    assert options["sasl_plain_password"] == "pw" and options["ssl_cafile"] == "/etc/ca.pem"
    assert options["bootstrap_servers"] == ["k:9092"] and options["sasl_mechanism"] == "SCRAM-SHA-512"


def test_a_service_gets_its_settings_as_one_file_only_its_owner_reads(tmp_path, monkeypatch):
    import stat

    from pgkd.settings import load_settings
    from streams.settings_file import write_settings

    settings = StreamSettings(
        bootstrap_servers="k:9092",
        redis_url="redis://:s3cret@r:6379/1",
        teacher_api_key="sk-x",
        serve_batch=16,
    )
    path = write_settings(settings, tmp_path / "run" / "settings.toml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for key in [k for k in __import__("os").environ if k.startswith("PGKD_")]:
        monkeypatch.delenv(key)
    assert load_settings(path, StreamSettings) == settings
