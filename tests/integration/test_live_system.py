"""The live system on a real broker (tansu), a real Redis and, for mining, the real local LLM server.

Each test runs the services as real processes (:class:`~streams.stack.EmbeddedStack` with the
session's broker and Redis) in its own namespace of topics and keys. BBC News is cut to a small seed
set and short texts so that a test runs in a minute or a few, not in tens.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from consumers.model_updates import rollback
from pgkd.runner import load_splits
from producers.client import classify
from producers.replay import Replayer, ReplayReport
from streams import connect
from streams.events import (
    MAX_RECORD_BYTES,
    DeadLetter,
    HardEvent,
    Request,
    Sample,
    decode,
)
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


def test_end_to_end_hard_events_mined_samples_generated_model_promoted_and_hot_swapped(
    broker, redis_url, namespace, tmp_path, local_teacher_url, local_teacher_model, kafka
):
    settings = live_settings(
        broker,
        redis_url,
        namespace,
        tmp_path,
        **local_teacher(local_teacher_url, local_teacher_model),
        low_confidence=0.3,
        min_hard=3,
        generate_every_seconds=30.0,
        samples_per_step=4,
        prompt_examples=6,
        retrain_every_samples=5,
        retrain_every_seconds=15.0,
    )
    topics = Topics(namespace)
    with EmbeddedStack(settings, tmp_path / "stack") as stack:
        stack.wait_healthy(timeout=600)
        # Retraining yields the cores to serving and to the teacher server beside it.
        trainer_pid = stack.services["trainer"].proc.pid
        assert os.getpriority(os.PRIO_PROCESS, trainer_pid) == min(19, os.nice(0) + settings.trainer_nice)
        traffic = list(load_splits(settings).traffic)
        predictions = kafka.reader(stack.settings, topics.predictions)
        report = ReplayReport()

        def replay(stop: threading.Event) -> None:  # a steady trickle until a hot-swap has been seen
            replayer = Replayer(
                kafka.producer(stack.settings),
                topics,
                rate=8,
                feedback_fraction=0.5,
                feedback_delay=1.0,
                id_prefix="e2e",
            )
            replayer.run(traffic * 4, stop=stop, report=report)

        replay_until_a_new_model_answers(replay, predictions, timeout=900)
        records = predictions.until(
            lambda rs: set(report.ids) <= set(answered(rs)), timeout=300, what="every request answered"
        )
        check_answered_once_in_model_order(records, report.ids)

        hard = [
            decode(HardEvent, r.value)
            for r in kafka.reader(stack.settings, topics.hard).until(
                lambda rs: len(rs) > 0, timeout=30, what="hard events"
            )
        ]
        assert {h.reason for h in hard} >= {"misclassified"}
        samples = kafka.reader(stack.settings, topics.samples).until(
            lambda rs: any(decode(Sample, r.value).source.startswith("teacher") for r in rs),
            timeout=600,
            what="a sample from the teacher",
        )
        sources = {decode(Sample, r.value).source for r in samples}
        assert "feedback" in sources and sources & {"teacher_labelled", "teacher_generated"}
        teacher_sample = next(
            decode(Sample, r.value) for r in samples if decode(Sample, r.value).source.startswith("teacher")
        )
        assert teacher_sample.teacher and teacher_sample.prompt_hash and teacher_sample.source_ids
        mining_port = stack.services["mining"].metrics_port
        deadline = time.monotonic() + 600
        while metric(mining_port, "pgkd_teacher_calls_total", operation="generate") < 1:
            assert time.monotonic() < deadline, "the miner never asked the teacher to generate"
            time.sleep(2)

        registry = connect.registry(stack.settings)
        versions = registry.versions()
        assert len(versions) >= 2 and versions[1].parent_version == "v0001"
        assert sum(versions[-1].samples_by_source.values()) > 0
        assert any(d["promoted"] and d.get("version") == versions[1].version for d in registry.decisions())

        # Rollback: every serving worker goes back to the first model, and it stays there: the
        # trainer, still fed samples, promotes nothing while the operator's hold lasts.
        rollback(stack.settings, "v0001")
        assert registry.held()["reason"] == "rollback to v0001"
        time.sleep(3)
        producer = kafka.producer(stack.settings)
        ids = [f"after-rollback-{i}" for i in range(10)]
        for i, request_id in enumerate(ids):
            producer.send(
                topics.requests,
                key=request_id.encode(),
                value=Request(id=request_id, text=traffic[i].text).to_bytes(),
            )
        producer.flush()
        records = predictions.until(
            lambda rs: set(ids) <= set(answered(rs)), timeout=120, what="answers after rollback"
        )
        assert {answered(records)[i][-1].model_version for i in ids} == {"v0001"}
        assert registry.current().version == "v0001"
        # The trainer shows the hold once its loop comes round (after a retrain it may be busy with).
        port = stack.services["trainer"].metrics_port
        deadline = time.monotonic() + 300
        while metric(port, "pgkd_trainer_promotion_held") != 1:
            assert time.monotonic() < deadline, "the trainer never showed the hold"
            time.sleep(2)
        assert registry.current().version == "v0001"


def test_a_model_worse_on_validation_is_not_promoted(broker, redis_url, namespace, tmp_path, kafka):
    settings = live_settings(
        broker, redis_url, namespace, tmp_path, retrain_every_samples=100, retrain_every_seconds=600
    )
    topics = Topics(namespace)
    with EmbeddedStack(settings, tmp_path / "stack", services=("trainer",)) as stack:
        stack.wait_healthy(timeout=300)
        registry = connect.registry(stack.settings)
        assert registry.current().version == "v0001"
        splits = load_splits(settings)
        labels = list(splits.labels)
        # Poison: real traffic texts, each with the wrong label (the next class in the taxonomy).
        producer = kafka.producer(stack.settings)
        for e in splits.traffic[:150]:
            wrong = labels[(labels.index(e.label) + 1) % len(labels)]
            sample = Sample.of(e.text, wrong, "injected")
            producer.send(topics.samples, key=sample.key.encode(), value=sample.to_bytes())
        producer.flush()
        deadline = time.monotonic() + 300
        while not registry.decisions() or registry.decisions()[0].get("promoted", True):
            assert time.monotonic() < deadline, "no rejected candidate recorded"
            time.sleep(1)
        decision = registry.decisions()[0]
        assert "macro_f1" in decision["reason"] and decision["candidate"] < decision["current"]
        assert decision["samples"] == 150
        assert registry.current().version == "v0001" and [r.version for r in registry.versions()] == ["v0001"]
        port = stack.services["trainer"].metrics_port
        assert metric(port, "pgkd_trainer_rejections_total", reason="metric") == 1


def test_a_teacher_that_fails_its_audit_is_not_trained_on(broker, redis_url, namespace, tmp_path, kafka):
    settings = live_settings(
        broker, redis_url, namespace, tmp_path, retrain_every_samples=100, retrain_every_seconds=600
    )
    topics = Topics(namespace)
    with EmbeddedStack(settings, tmp_path / "stack", services=("trainer",)) as stack:
        stack.wait_healthy(timeout=300)
        registry = connect.registry(stack.settings)
        # The join's audit says the teacher was right on 8 of 40 live requests, the student on 10.
        redis = connect.redis_client(stack.settings)
        redis.hset(
            f"{namespace}:teacher:audit", mapping={"judged": 40, "teacher_correct": 8, "student_correct": 10}
        )
        splits = load_splits(settings)
        labels = list(splits.labels)
        held_out = {e.text for e in (*splits.validation, *splits.test)}
        fresh = [e for e in splits.traffic if e.text not in held_out]
        producer = kafka.producer(stack.settings)
        for e in fresh[:60]:  # the teacher's labels: all wrong
            wrong = labels[(labels.index(e.label) + 1) % len(labels)]
            sample = Sample.of(e.text, wrong, "teacher_labelled", teacher="scripted")
            producer.send(topics.samples, key=sample.key.encode(), value=sample.to_bytes())
        for e in fresh[60:100]:  # ground truth
            sample = Sample.of(e.text, e.label, "feedback")
            producer.send(topics.samples, key=sample.key.encode(), value=sample.to_bytes())
        producer.flush()
        deadline = time.monotonic() + 300
        while not any("teacher_gate" in d for d in registry.decisions()):
            assert time.monotonic() < deadline, "no retrain decision recorded"
            time.sleep(1)
        decision = next(d for d in registry.decisions() if "teacher_gate" in d)
        assert decision["teacher_trusted"] is False and "0.200 on 40" in decision["teacher_gate"]
        assert decision["samples"] == 40, "the teacher's 60 samples were trained on"
        port = stack.services["trainer"].metrics_port
        assert metric(port, "pgkd_trainer_teacher_trusted") == 0


def test_malformed_requests_are_dead_lettered_and_two_workers_go_on_serving(
    broker, redis_url, namespace, tmp_path, kafka
):
    settings = live_settings(broker, redis_url, namespace, tmp_path)
    topics = Topics(namespace)
    bad = {
        b"{not json": "bad_json",
        b"\xff\xfe\xfa": "not_utf8",
        b'{"id": "m1"}': "schema",
        b'{"id": "m2", "text": ["a list"]}': "schema",
        b'{"id": "m3", "text": "   "}': "schema",
        b'{"id": "m4", "text": "' + b"x" * (MAX_RECORD_BYTES + 10) + b'"}': "oversized",
    }
    services = ("trainer", "serving", "feedback")  # both serving and the join read `requests`
    with EmbeddedStack(settings, tmp_path / "stack", services=services, serving_workers=2) as stack:
        stack.wait_healthy(timeout=300)
        producer = kafka.producer(stack.settings, max_request_size=2 * MAX_RECORD_BYTES)
        texts = [e.text for e in load_splits(settings).traffic[:200]]
        ids = []
        for i, text in enumerate(texts):
            if i < len(bad):
                producer.send(topics.requests, key=f"bad-{i}".encode(), value=list(bad)[i])
            request = Request(id=f"good-{i}", text=text)
            producer.send(topics.requests, key=request.id.encode(), value=request.to_bytes())
            ids.append(request.id)
        producer.flush()
        records = kafka.reader(stack.settings, topics.predictions).until(
            lambda rs: set(ids) <= set(answered(rs)), timeout=180, what="the valid requests answered"
        )
        by_id = answered(records)
        assert set(by_id) == set(ids) and all(len(v) == 1 for v in by_id.values())
        letters = kafka.reader(stack.settings, topics.dead_letter)
        letters.until(lambda rs: len(rs) >= len(bad), timeout=60, what="one dead letter per bad record")
        # The join reads `requests` too and skips what the topic's owner (serving) dead-letters.
        join = stack.services["feedback"].metrics_port
        deadline = time.monotonic() + 60
        while sum(metric(join, "pgkd_skipped_records_total", reason=r) for r in set(bad.values())) < len(bad):
            assert time.monotonic() < deadline, "the join never read the bad requests"
            time.sleep(1)
        for _ in range(6):  # a second letter for a record would be on the topic by now
            letters.poll()
        dead = [decode(DeadLetter, r.value) for r in letters.records]
        assert sorted(d.reason for d in dead) == sorted(bad.values())
        for d in dead:
            assert d.original() in bad and bad[d.original()] == d.reason
            assert d.service == "serving" and d.topic == topics.requests and d.offset is not None
        # Both workers of the group took partitions and served; both are still healthy.
        workers = [stack.services["serving-0"], stack.services["serving-1"]]
        served = [metric(w.metrics_port, "pgkd_serving_predictions_total") for w in workers]
        assert sum(served) == len(ids) and min(served) > 0
        assert all(w.alive and w.health()["ok"] for w in workers)
        # The one-shot client of a running system.
        prediction = classify(stack.settings, "Manchester United beat Arsenal in the cup final", timeout=60)
        assert prediction.label in load_splits(settings).labels and prediction.model_version == "v0001"


def test_a_corrupt_version_is_refused_by_every_worker_and_rollback_reaches_them_all(
    broker, redis_url, namespace, tmp_path, kafka
):
    from consumers.model_updates import announce
    from pgkd.model_files import WEIGHTS_FILE
    from pgkd.promotion import retrain
    from pgkd.student import Student
    from pgkd.training import TrainConfig

    settings = live_settings(broker, redis_url, namespace, tmp_path)
    topics = Topics(namespace)
    with EmbeddedStack(
        settings, tmp_path / "stack", services=("trainer", "serving"), serving_workers=2
    ) as stack:
        stack.wait_healthy(timeout=300)
        workers = [stack.services["serving-0"], stack.services["serving-1"]]
        registry = connect.registry(stack.settings)
        splits = load_splits(settings)
        base = Student.create(splits.labels, max_length=settings.max_length, seed=7)

        def new_version():
            candidate = retrain(
                base, None, list(splits.train), splits.validation, TrainConfig(mode="head", seed=7)
            )
            return registry.publish(candidate.student, metrics={"validation": candidate.validation.summary()})

        def wait_for(condition, what):
            deadline = time.monotonic() + 60
            while not condition():
                assert time.monotonic() < deadline, what
                time.sleep(0.5)

        def answers(prefix: str) -> set[str]:
            producer = kafka.producer(stack.settings)
            ids = [f"{prefix}-{i}" for i in range(40)]
            for i, request_id in enumerate(ids):
                request = Request(id=request_id, text=splits.traffic[i].text)
                producer.send(topics.requests, key=request_id.encode(), value=request.to_bytes())
            producer.flush()
            records = kafka.reader(stack.settings, topics.predictions).until(
                lambda rs: set(ids) <= set(answered(rs)), timeout=120, what=f"answers to {prefix}"
            )
            return {answered(records)[i][-1].model_version for i in ids}

        # v0002: its weights are altered after the checksum was taken.
        corrupt = new_version()
        weights = Path(corrupt.uri) / WEIGHTS_FILE
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
        announce(stack.settings, corrupt)
        wait_for(
            lambda: all(
                metric(w.metrics_port, "pgkd_serving_swaps_total", result="refused") >= 1 for w in workers
            ),
            "both workers refusing the corrupt version",
        )
        assert answers("after-corrupt") == {"v0001"}
        assert all(w.health()["ok"] and w.alive for w in workers)

        def staged(n: int) -> bool:  # the initial load counts as one
            return all(metric(w.metrics_port, "pgkd_serving_swap_seconds_count") >= n for w in workers)

        good = new_version()
        announce(stack.settings, good)
        wait_for(lambda: staged(2), "both workers staging the good version")
        assert answers("after-good") == {good.version}
        wait_for(
            lambda: all(
                metric(w.metrics_port, "pgkd_serving_model", version=good.version) == 1 for w in workers
            ),
            "both workers on the good version",
        )

        rollback(stack.settings, "v0001")
        wait_for(lambda: staged(3), "both workers staging v0001 again")
        # A worker swaps between batches, so it reports the rollback after its next batch.
        assert answers("after-rollback") == {"v0001"}
        wait_for(
            lambda: all(metric(w.metrics_port, "pgkd_serving_model", version="v0001") == 1 for w in workers),
            "both workers rolled back",
        )
        assert [r.version for r in registry.versions()] == ["v0001", corrupt.version, good.version]
