"""A class added at run time, on a real broker (tansu), a real Redis and the real local LLM teacher:
the operator's `pgkd add-class` reaches the trainer, a model of the grown taxonomy is judged on the
old classes and the new one, both serving workers hot-swap to it while traffic flows, losing no
event, and the teacher writes samples of the new class."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pgkd.runner import load_splits
from producers.replay import Replayer, ReplayReport
from streams import connect
from streams.events import Request, Sample, decode
from streams.stack import EmbeddedStack
from streams.topics import Topics
from tests.integration.live import (
    answered,
    check_answered_once_in_model_order,
    live_settings,
    local_teacher,
    metric,
    replay_until_a_new_model_answers,
)

pytestmark = pytest.mark.slow

WEATHER = [
    "Heavy rain is expected across the north of the country on Tuesday",
    "A heatwave will push temperatures past 35C this weekend",
    "Snow closes mountain passes as the cold snap deepens",
    "Forecasters warn of gales and high waves along the west coast",
    "Morning fog will lift by noon, leaving a sunny and warm afternoon",
    "Thunderstorms may bring hail and flash floods tonight",
    "A mild, dry week lies ahead once the storm has passed",
    "Frost is likely in rural areas before dawn on Friday",
    "Showers will clear to the east, with sunny spells and a light breeze",
    "The hurricane strengthened overnight and is expected to make landfall",
    "Drizzle and low cloud will linger over the hills all day",
    "Temperatures will drop sharply after the cold front passes on Sunday",
]
# Texts of the class that neither the trainer nor its check ever saw.
UNSEEN = [
    "Strong winds and sleet are forecast for the weekend",
    "A warm sunny spell will last until Thursday, then rain returns",
    "Blizzard warnings are in force as heavy snow sweeps in overnight",
    "Expect scattered showers and a cool breeze this afternoon",
]


def test_an_operator_adds_a_class_the_teacher_writes_for_it_and_both_workers_answer_with_it(
    broker, redis_url, namespace, tmp_path, kafka, local_teacher_url, local_teacher_model
):
    settings = live_settings(
        broker,
        redis_url,
        namespace,
        tmp_path,
        # No sample makes the trainer retrain (only the added class does), and no traffic is hard
        # enough to keep the teacher busy: its one job is the new class.
        retrain_every_samples=100_000,
        retrain_every_seconds=86_400,
        low_confidence=1.0,
        **local_teacher(local_teacher_url, local_teacher_model),
        samples_per_step=4,
        target_classes=1,
    )
    topics = Topics(namespace)
    services = ("trainer", "serving", "feedback", "mining")
    with EmbeddedStack(settings, tmp_path / "stack", services=services, serving_workers=2) as stack:
        stack.wait_healthy(timeout=300)
        registry = connect.registry(stack.settings)
        seed_labels = load_splits(settings).labels
        assert registry.current().version == "v0001"
        traffic = list(load_splits(settings).traffic)
        predictions = kafka.reader(stack.settings, topics.predictions)
        report = ReplayReport()

        def replay(stop: threading.Event) -> None:  # a steady trickle all through the addition and swap
            replayer = Replayer(kafka.producer(stack.settings), topics, rate=10, feedback_fraction=0.0)
            replayer.run(traffic * 4, stop=stop, report=report)

        def add_classes() -> None:
            pgkd = Path(sys.executable).with_name("pgkd")
            config = ["--config", str(tmp_path / "stack" / "settings.toml")]
            examples = [arg for text in WEATHER for arg in ("--example", text)]

            def add(name: str) -> subprocess.CompletedProcess[str]:
                argv = [pgkd, "add-class", name, "--description", "forecasts, storms", *examples, *config]
                return subprocess.run(argv, capture_output=True, text=True, timeout=120)

            refused = add("Sports")  # a seed label, whatever its case
            assert refused.returncode == 1 and "already in the taxonomy" in refused.stdout
            added = add("weather")
            assert added.returncode == 0, added.stdout + added.stderr
            assert "9 examples to train on, 3 held out" in added.stdout

        replay_until_a_new_model_answers(replay, predictions, timeout=300, during=add_classes)
        grown = registry.current()
        assert grown.version == "v0002" and tuple(grown.labels) == (*seed_labels, "weather")
        decision = next(d for d in registry.decisions() if d.get("version") == "v0002")
        assert decision["promoted"] and "taxonomy grown by 'weather'" in decision["reason"]
        assert grown.metrics["validation"]["per_class_f1"]["weather"] > 0
        trainer = stack.services["trainer"].metrics_port
        assert metric(trainer, "pgkd_trainer_taxonomy_classes", origin="added") == 1
        weather_f1 = grown.metrics["validation"]["per_class_f1"]["weather"]
        assert metric(trainer, "pgkd_trainer_class_f1", model="current", label="weather") == weather_f1
        records = predictions.until(
            lambda rs: set(report.ids) <= set(answered(rs)), timeout=300, what="every request answered"
        )
        check_answered_once_in_model_order(records, report.ids)

        # Both workers now answer in the grown taxonomy: unseen weather texts come back as weather.
        producer = kafka.producer(stack.settings)
        ids = [f"weather-{i}-{j}" for j in range(4) for i in range(len(UNSEEN))]  # keys spread on partitions
        for request_id in ids:
            text = UNSEEN[int(request_id.split("-")[1])]
            producer.send(
                topics.requests, key=request_id.encode(), value=Request(id=request_id, text=text).to_bytes()
            )
        producer.flush()
        answers = answered(
            predictions.until(
                lambda rs: set(ids) <= set(answered(rs)), timeout=120, what="the weather answers"
            )
        )
        verdicts = [answers[i][-1] for i in ids]
        assert {p.model_version for p in verdicts} == {"v0002"}
        assert sum(p.label == "weather" for p in verdicts) >= len(verdicts) // 2
        # The teacher learnt the class and, once v0002 knew it, wrote samples of it.
        samples = kafka.reader(stack.settings, topics.samples).until(
            lambda rs: any(written(r.value) for r in rs), timeout=600, what="a teacher's sample of weather"
        )
        sample = next(decode(Sample, r.value) for r in samples if written(r.value))
        assert sample.model_version == "v0002" and sample.text not in WEATHER
        workers = [stack.services["serving-0"], stack.services["serving-1"]]
        assert all(metric(w.metrics_port, "pgkd_serving_predictions_total") > 0 for w in workers)
        assert all(w.alive and w.health()["ok"] for w in workers)


def written(value: bytes) -> bool:
    sample = decode(Sample, value)
    return sample.source == "teacher_generated" and sample.label == "weather"
