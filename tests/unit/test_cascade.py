"""The cascade's policy, its offline replay, and a serving worker's use of it (scripted teachers)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import cast

import numpy as np
import pytest

from consumers.cascade import Cascade
from consumers.serving import Routing, respond
from pgkd.cascade import CascadePolicy, replay
from pgkd.errors import TeacherBudgetExceeded, TeacherUnavailable
from pgkd.feedback import TeacherAudit
from pgkd.registry import ModelRegistry
from pgkd.serving import ModelSlot
from pgkd.student import Predictions, Student
from pgkd.taxonomy import NewClass, TaxonomyStore
from pgkd.teacher.base import TeacherLabel
from streams import metrics
from streams.events import Prediction, Request, decode
from streams.topics import Topics
from tests.conftest import TOPICS

LABELS = sorted(TOPICS)


class Join:
    def __init__(self, audit: TeacherAudit) -> None:
        self.audit = audit

    def teacher_audit(self) -> TeacherAudit:
        return self.audit


class ScriptedTeacher:
    """Answers ``label`` after ``delay`` seconds, or raises ``error``."""

    name, labels = "scripted", tuple(LABELS)

    def __init__(self, answer: str | None = "tech", delay: float = 0.0, error: Exception | None = None):
        self.answer, self.delay, self.error = answer, delay, error
        self.asked: list[list[str]] = []
        self.release = threading.Event()

    def label(self, texts):
        self.asked.append(list(texts))
        if self.delay:
            self.release.wait(self.delay)
        if self.error:
            raise self.error
        return [TeacherLabel(self.answer, 0.9) for _ in texts]


def outcome(name: str) -> float:
    return metrics.CASCADE.labels(outcome=name)._value.get()


TRUSTED = TeacherAudit(judged=40, teacher_correct=34, student_correct=20)  # teacher 0.85


def test_the_bar_is_the_lower_of_the_threshold_and_the_teachers_audited_accuracy():
    policy = CascadePolicy(threshold=0.7, out_of_taxonomy=True, min_audited=20)
    assert policy.bar(0.85, 40) == 0.7
    assert policy.bar(0.55, 40) == 0.55, "a teacher weaker than the student's confidence gets nothing"
    assert policy.bar(0.99, 19) is None and policy.bar(None, 100) is None
    confidence = np.array([0.2, 0.6, 0.95])
    outside = np.array([False, False, True])
    assert policy.route(confidence, outside, 0.85, 40).tolist() == [True, True, True]
    assert CascadePolicy(0.7).route(confidence, outside, 0.85, 40).tolist() == [  # the default: no
        True,
        True,
        False,
    ]
    with pytest.raises(ValueError, match="deadline"):
        CascadePolicy(deadline=0)


def test_replay_counts_only_answers_that_come_in_time():
    gold = ["a", "b", "c", "d"]
    student = ["a", "x", "x", "x"]
    confidence = np.array([0.95, 0.2, 0.3, 0.4])
    teacher = ["a", "b", None, "d"]  # abstains on the third
    seconds = np.array([1.0, 1.0, 1.0, 5.0])  # late on the fourth
    result = replay(
        gold,
        student,
        confidence,
        teacher,
        seconds,
        20.0,
        CascadePolicy(0.5, deadline=2.0),
        teacher_accuracy=0.9,
    )
    assert result.accuracy == 0.5 and result.routed == 0.75 and result.answered_by_teacher == 0.25
    assert result.p99_ms == pytest.approx(20.0 + 2000.0, rel=0.02)
    never = replay(
        gold, student, confidence, teacher, seconds, 20.0, CascadePolicy(0.5), teacher_accuracy=0.1
    )
    assert never.routed == 0 and never.accuracy == 0.25


def run(coro):
    return asyncio.run(coro)


def test_a_trusted_teacher_answers_the_unsure_requests_in_time():
    teacher = ScriptedTeacher("tech")
    cascade = Cascade(CascadePolicy(0.6, deadline=5.0), teacher, Join(TRUSTED), max_in_flight=2)
    before = outcome("teacher")
    answers = run(cascade.answer(["sure", "unsure"], np.array([0.99, 0.3]), None))
    assert answers[0] is None and answers[1] == TeacherLabel("tech", 0.9)
    assert teacher.asked == [["unsure"]] and outcome("teacher") == before + 1


def test_the_cascade_teacher_learns_the_classes_an_operator_added():
    class Taught(ScriptedTeacher):
        def add_class(self, name, description, examples):
            self.labels, self.examples = (*self.labels, name), list(examples)

    class Added:  # a test double of the TaxonomyStore
        def added(self):
            return [NewClass(name="weather", description="d", examples=["rain", "snow", "hail", "fog"])]

    teacher = Taught("weather")
    cascade = Cascade(
        CascadePolicy(0.6, deadline=5.0), teacher, Join(TRUSTED), 2, cast(TaxonomyStore, Added())
    )
    answers = run(cascade.answer(["storms ahead"], np.array([0.3]), None))
    assert teacher.labels[-1] == "weather" and answers[0] == TeacherLabel("weather", 0.9)
    assert len(teacher.examples) == 3  # the held-out example is not the teacher's to see


@pytest.mark.parametrize(
    ("teacher", "name"),
    [
        (ScriptedTeacher(delay=5.0), "late"),
        (ScriptedTeacher(error=TeacherUnavailable("circuit open")), "failed"),
        (ScriptedTeacher(error=TeacherBudgetExceeded("calls 100/100", "calls")), "over_budget"),
        (ScriptedTeacher(answer=None), "abstained"),
    ],
)
def test_the_student_answer_stands_when_the_teacher_is_late_failing_over_budget_or_abstains(teacher, name):
    cascade = Cascade(CascadePolicy(0.6, deadline=0.2), teacher, Join(TRUSTED), max_in_flight=2)
    before = outcome(name)
    started = time.monotonic()
    answers = run(cascade.answer(["unsure"], np.array([0.3]), None))
    assert answers == [None] and outcome(name) == before + 1
    assert time.monotonic() - started < 2.0, "a late teacher must not hold the batch past its deadline"
    teacher.release.set()


def test_an_untrusted_or_busy_teacher_is_not_asked():
    teacher = ScriptedTeacher(delay=5.0)
    weak = Cascade(CascadePolicy(0.6), teacher, Join(TeacherAudit(40, 10, 30)), max_in_flight=1)
    assert run(weak.answer(["unsure"], np.array([0.3]), None)) == [None] and teacher.asked == []
    busy = Cascade(CascadePolicy(0.6, deadline=0.1), teacher, Join(TRUSTED), max_in_flight=1)
    run(busy.answer(["first"], np.array([0.3]), None))  # late: its call still runs
    before = outcome("busy")
    assert run(busy.answer(["second"], np.array([0.3]), None)) == [None]
    assert outcome("busy") == before + 1 and teacher.asked == [["first"]]
    teacher.release.set()


def test_a_prediction_says_who_answered(tmp_path, tiny_encoder):
    registry = ModelRegistry(tmp_path / "registry")
    record = registry.publish(Student.create(LABELS, tiny_encoder, seed=1))
    slot = ModelSlot(cache_dir=tmp_path / "cache")
    slot.stage(record.version, record.uri, record.sha256)
    requests = [Request(id=f"r{i}", text=f"text {i}", ts=100.0) for i in range(2)]
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25]], dtype=np.float32)
    verdicts = Predictions([LABELS[i] for i in probs.argmax(1)], probs.max(1), probs)
    topics = Topics("t")
    out = respond(
        requests,
        slot.current,
        verdicts,
        Routing(topics),
        inference_ms=1.0,
        now=100.0,
        teacher=[None, TeacherLabel("tech", 0.8)],
    )
    p = [decode(Prediction, v) for t, _, v in out if t == topics.predictions]
    assert (p[0].answered_by, p[0].label, p[0].student_label) == ("student", LABELS[0], None)
    assert (p[1].answered_by, p[1].label, p[1].confidence, p[1].student_label) == (
        "teacher",
        "tech",
        0.8,
        LABELS[0],
    )
