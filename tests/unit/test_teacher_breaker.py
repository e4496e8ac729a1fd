"""The circuit breaker: open after repeated failures, fail fast, probe once, close on success."""

from __future__ import annotations

import pytest

from pgkd.errors import TeacherRateLimited, TeacherResponseError, TeacherUnavailable
from pgkd.teacher.base import TeacherLabel, TeacherUsage
from pgkd.teacher.breaker import CircuitBreaker


class ScriptedTeacher:
    """A unit-test double: each label() call pops the next outcome (an exception or a label)."""

    name = "scripted"
    labels = ("a", "b")

    def __init__(self, outcomes: list) -> None:
        self.outcomes = outcomes
        self.usage = TeacherUsage()
        self.calls = 0

    def label(self, texts):
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return [TeacherLabel(outcome, 1.0) for _ in texts]

    def generate(self, request):  # pragma: no cover - not used here
        raise NotImplementedError


def test_opens_after_consecutive_failures_and_fails_fast():
    now = [0.0]
    inner = ScriptedTeacher([TeacherUnavailable("down")] * 3)
    breaker = CircuitBreaker(inner, failures=3, cooldown=10, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(TeacherUnavailable, match="down"):
            breaker.label(["x"])
    assert breaker.state == "open" and breaker.trips == 1
    with pytest.raises(TeacherUnavailable, match="circuit open"):
        breaker.label(["x"])
    assert inner.calls == 3  # the open circuit did not call the endpoint


def test_half_open_probe_closes_on_success_and_reopens_longer_on_failure():
    now = [0.0]
    inner = ScriptedTeacher([TeacherResponseError("junk")] * 2 + [TeacherUnavailable("still down"), "a"])
    breaker = CircuitBreaker(inner, failures=2, cooldown=10, clock=lambda: now[0])
    for _ in range(2):
        with pytest.raises(TeacherResponseError, match=r"^junk$"):
            breaker.label(["x"])
    now[0] = 11
    assert breaker.state == "half_open"
    with pytest.raises(TeacherUnavailable, match="still down"):
        breaker.label(["x"])  # the probe failed: open for twice as long
    assert breaker.state == "open" and breaker.cooldown == 20
    now[0] = 25
    assert breaker.state == "open"
    now[0] = 32
    assert breaker.label(["x"]) == [TeacherLabel("a", 1.0)]
    assert breaker.state == "closed" and breaker.consecutive_failures == 0 and breaker.cooldown == 10


def test_rate_limits_and_successes_do_not_count_as_failures():
    inner = ScriptedTeacher(
        [TeacherUnavailable("x"), TeacherRateLimited("slow down", 5), "a", TeacherUnavailable("y")]
    )
    breaker = CircuitBreaker(inner, failures=2, cooldown=10, clock=lambda: 0.0)
    for expected, message in ((TeacherUnavailable, r"^x$"), (TeacherRateLimited, r"^slow down$")):
        with pytest.raises(expected, match=message):
            breaker.label(["x"])
    breaker.label(["x"])  # a success resets the count
    with pytest.raises(TeacherUnavailable, match=r"^y$"):
        breaker.label(["x"])
    assert breaker.state == "closed"
