"""Secrets never leave the settings: the teacher API key and the Redis and Kafka passwords appear
in no log, no metric, no health answer, no registry record or model metadata, no dead letter and no
service's environment (the services read them from a settings file only their owner can read)."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from pgkd.runner import load_splits
from producers.replay import Replayer
from streams.children import start_redis
from streams.stack import EmbeddedStack
from streams.topics import Topics
from tests.integration.live import answered, live_settings, metric
from tests.integration.scripted_teacher import ScriptedTeacherServer

pytestmark = pytest.mark.slow

API_KEY = "sk-pgkd-test-1b2c3d4e5f6a7b8c9d0e"
REDIS_PASSWORD = "redis-pw-9f8e7d6c5b4a"
# tansu has no SASL, so this one travels through the settings (the services' settings file) only
# (the protocol stays PLAINTEXT): what is checked is that nothing prints or exports it.
KAFKA_PASSWORD = "kafka-pw-0a1b2c3d4e5f"


def test_no_secret_in_logs_metrics_health_registry_or_dead_letters(broker, namespace, tmp_path, kafka):
    redis_server, url = start_redis(tmp_path / "redis", tmp_path / "redis.log", password=REDIS_PASSWORD)
    label = lambda body: '{"label": "sport"}'  # noqa: E731 - the scripted teacher's answer
    try:
        with ScriptedTeacherServer(default=("ok", label)) as teacher:
            settings = live_settings(
                broker,
                url,
                namespace,
                tmp_path,
                teacher="openai",
                teacher_url=teacher.base_url,
                teacher_model="scripted",
                teacher_api_key=API_KEY,
                kafka_sasl_username="pgkd",
                kafka_sasl_password=KAFKA_PASSWORD,
                low_confidence=0.2,
                retrain_every_samples=5,
                retrain_every_seconds=5.0,
            )
            topics = Topics(namespace)
            with EmbeddedStack(settings, tmp_path / "stack") as stack:
                stack.wait_healthy(timeout=300)
                traffic = load_splits(settings).traffic[:150]
                producer = kafka.producer(stack.settings)
                report = Replayer(producer, topics, rate=50, feedback_fraction=0.5, feedback_delay=0.5).run(
                    traffic
                )
                producer.send(topics.requests, key=b"bad", value=b"{broken")  # a dead letter too
                producer.flush()
                kafka.reader(stack.settings, topics.predictions).until(
                    lambda rs: set(report.ids) <= set(answered(rs)), 120, "answers"
                )
                mining = stack.services["mining"].metrics_port
                trainer = stack.services["trainer"].metrics_port
                deadline = time.monotonic() + 180
                while (  # the key and the password have been used: a teacher answer and a retrain
                    metric(mining, "pgkd_teacher_calls_total", outcome="ok") < 1
                    or metric(trainer, "pgkd_trainer_runs_total") < 1
                ):
                    assert time.monotonic() < deadline, "no teacher call or retrain"
                    time.sleep(1)
                assert teacher.requests, "the teacher was never called"
                exposed = []
                for child in stack.services.values():
                    for path in ("/metrics", "/healthz"):
                        try:
                            with urllib.request.urlopen(f"http://127.0.0.1:{child.metrics_port}{path}") as r:
                                exposed.append(r.read().decode())
                        except urllib.error.HTTPError as exc:
                            exposed.append(exc.read().decode())
                    exposed.append(repr(child))
                exposed += [
                    r.value.decode("utf-8", "replace")
                    for r in kafka.reader(stack.settings, topics.dead_letter).until(
                        lambda rs: len(rs) >= 1, 60, "a dead letter"
                    )
                ]
                exposed.append(repr(stack.settings) + str(stack.settings) + repr(stack.where))
                # A service's environment carries no secret (any process it starts would inherit
                # it): its settings come in one file only its owner can read.
                for child in stack.services.values():
                    assert child.proc is not None
                    exposed.append(
                        Path(f"/proc/{child.proc.pid}/environ").read_bytes().decode(errors="replace")
                    )
                settings_file = tmp_path / "stack" / "settings.toml"
                assert settings_file.stat().st_mode & 0o077 == 0, "the settings file is readable by others"
        files = [p for p in Path(tmp_path).rglob("*") if p.is_file() and p.suffix in {".log", ".json", ""}]
        exposed += [
            p.read_text(errors="replace")
            for p in files
            if "redis" not in p.parts and p.stat().st_size < 50_000_000
        ]
        for secret in (API_KEY, REDIS_PASSWORD, KAFKA_PASSWORD):
            leaks = [
                text[max(0, text.find(secret) - 80) : text.find(secret) + 40]
                for text in exposed
                if secret in text
            ]
            assert not leaks, f"secret leaked: {leaks[:3]}"
        assert any((tmp_path / "registry").rglob("record.json")) and any(
            (tmp_path / "stack" / "logs").glob("*.log")
        )
    finally:
        redis_server.stop(grace=2)
