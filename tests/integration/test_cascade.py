"""The cascade on the live system: a serving worker asks the real local LLM teacher (llama.cpp) for
the requests its student is unsure of, through the real broker and Redis."""

from __future__ import annotations

import pytest

from pgkd.runner import load_splits
from streams.events import Prediction, Request, decode
from streams.stack import EmbeddedStack
from streams.topics import Topics
from tests.integration.live import answered, live_settings, local_teacher, metric

pytestmark = pytest.mark.slow
OUTCOMES = ("late", "busy", "teacher", "failed", "over_budget", "abstained")
HEADLINES = [
    "Manchester United beat Arsenal 2-1 to reach the FA Cup final",
    "Bank of England raises interest rates as inflation climbs",
    "Prime minister calls a snap general election for June",
    "Apple unveils a faster iPhone chip and new operating system",
    # Two classes at once: a calibrated student is not sure of these.
    "Football club shares slump as the chancellor taxes television rights and streaming deals",
    "Film studio lobbies ministers over a broadband levy on online games",
]


def cascade_stack(broker, redis_url, namespace, tmp_path, url, model, deadline, redis_client, right=40):
    settings = live_settings(
        broker,
        redis_url,
        namespace,
        tmp_path,
        **local_teacher(url, model),
        cascade=True,
        cascade_threshold=1.0,  # the bar is the teacher's audited accuracy alone
        cascade_deadline=deadline,
        cascade_max_in_flight=1,
    )
    # The join's audit of the teacher on live traffic: right `right` times of 40, the student 20.
    # At 40 of 40 the bar is 1.0, so every request the student is not certain of goes to it.
    audit = {"judged": 40, "teacher_correct": right, "student_correct": 20}
    redis_client.hset(f"{namespace}:teacher:audit", mapping=audit)
    return settings, EmbeddedStack(settings, tmp_path / "stack", services=("trainer", "serving"))


def send(kafka, settings, topics, texts, prefix):
    producer = kafka.producer(settings)
    ids = []
    for i, text in enumerate(texts):
        request = Request(id=f"{prefix}-{i}", text=text)
        producer.send(topics.requests, key=request.id.encode(), value=request.to_bytes())
        ids.append(request.id)
    producer.flush()
    return ids


def test_the_real_teacher_answers_what_the_student_is_unsure_of(
    broker, redis_url, namespace, tmp_path, local_teacher_url, local_teacher_model, kafka, redis_client
):
    settings, stack = cascade_stack(
        broker, redis_url, namespace, tmp_path, local_teacher_url, local_teacher_model, 300.0, redis_client
    )
    topics = Topics(namespace)
    with stack:
        stack.wait_healthy(timeout=600)
        reader = kafka.reader(stack.settings, topics.predictions)
        ids = []
        for i, text in enumerate(HEADLINES[:2] + HEADLINES[-2:]):
            # One request at a time: a batch is labelled in one teacher call under one deadline, and
            # a 1.5B model on 2 busy cores can take a minute a text (CI saw six in one batch go late).
            (request_id,) = send(kafka, stack.settings, topics, [text], f"cascade{i}")
            reader.until(
                lambda rs, r=request_id: r in answered(rs), timeout=600, what=f"{request_id}'s answer"
            )
            ids.append(request_id)
        records = reader.records
        predictions = [answered(records)[i][0] for i in ids]
        by_teacher = [p for p in predictions if p.answered_by == "teacher"]
        port = stack.services["serving-0"].metrics_port
        outcomes = {o: metric(port, "pgkd_serving_cascade_total", outcome=o) for o in OUTCOMES}
        verdicts = [(p.answered_by, p.label, p.confidence, p.student_confidence) for p in predictions]
        assert by_teacher, f"none answered by the teacher, bar 1.0: {outcomes} {verdicts}"
        labels = set(load_splits(settings).labels)
        assert all(p.label in labels and p.student_label in labels for p in by_teacher)
        assert outcomes["teacher"] == len(by_teacher)
        assert metric(port, "pgkd_serving_cascade_bar") == pytest.approx(1.0)


def test_a_late_teacher_leaves_the_students_answer(
    broker, redis_url, namespace, tmp_path, local_teacher_url, local_teacher_model, kafka, redis_client
):
    settings, stack = cascade_stack(  # a perfect audit: every unsure request goes to the teacher
        broker, redis_url, namespace, tmp_path, local_teacher_url, local_teacher_model, 0.05, redis_client
    )
    topics = Topics(namespace)
    with stack:
        stack.wait_healthy(timeout=600)
        ids = send(kafka, stack.settings, topics, HEADLINES[-2:], "late")
        records = kafka.reader(stack.settings, topics.predictions).until(
            lambda rs: set(ids) <= set(answered(rs)), timeout=300, what="answers"
        )
        assert all(answered(records)[i][0].answered_by == "student" for i in ids)
        port = stack.services["serving-0"].metrics_port
        outcomes = {o: metric(port, "pgkd_serving_cascade_total", outcome=o) for o in OUTCOMES}
        outcomes["bar"] = metric(port, "pgkd_serving_cascade_bar")
        verdicts = [(p.confidence, p.answered_by) for p in (answered(records)[i][0] for i in ids)]
        assert outcomes["late"] >= 1 and outcomes["teacher"] == 0, f"{outcomes} {verdicts}"
        assert all(decode(Prediction, r.value).latency_ms < 60_000 for r in records)
