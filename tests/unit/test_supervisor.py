"""The supervisor's decisions on a scripted stack and a scripted clock (no processes)."""

from __future__ import annotations

import pytest

from streams.supervisor import RestartPolicy, Supervisor


class ScriptedStack:
    """Parts whose exit statuses the test sets; ``restart`` brings a part back (or fails)."""

    def __init__(self, *parts: str) -> None:
        self.status: dict[str, int | None] = dict.fromkeys(parts)
        self.restarted: list[str] = []
        self.failing: set[str] = set()

    def parts(self) -> dict[str, int | None]:
        return dict(self.status)

    def restart(self, part: str) -> None:
        self.restarted.append(part)
        if part in self.failing:
            raise RuntimeError(f"{part} did not start")
        self.status[part] = None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def supervisor(stack: ScriptedStack, clock: Clock, **policy: float) -> tuple[Supervisor, list[str]]:
    events: list[str] = []
    rules = {"backoff": 1.0, "max_backoff": 8.0, "budget": 3, "window": 100.0, **policy}
    return Supervisor(stack, RestartPolicy(**rules), on_event=events.append, clock=clock), events


def sample(s: Supervisor, name: str, part: str) -> float:
    value = s.registry.get_sample_value(name, {"part": part})
    assert value is not None, f"{name}{{part={part}}} is not exported"
    return value


def test_a_dead_part_is_restarted_after_its_backoff_logged_and_counted():
    stack, clock = ScriptedStack("broker", "serving-0"), Clock()
    s, events = supervisor(stack, clock)
    s.check()
    assert stack.restarted == []
    stack.status["serving-0"] = -9
    s.check()  # noticed: restart due in 1 s
    assert stack.restarted == [] and sample(s, "pgkd_stack_part_up", "serving-0") == 0
    assert events == ["serving-0 exited with status -9; restart 1 of 3 in 1 s"]
    clock.now += 1.0
    s.check()
    assert stack.restarted == ["serving-0"] and s.restarts == {"serving-0": 1}
    assert sample(s, "pgkd_stack_restarts_total", "serving-0") == 1
    assert sample(s, "pgkd_stack_part_up", "serving-0") == 1
    assert sample(s, "pgkd_stack_part_up", "broker") == 1
    assert events[-1] == "serving-0 restarted (1 restart(s) so far)"


def test_backoff_doubles_and_a_part_past_its_budget_is_given_up_on():
    stack, clock = ScriptedStack("mining"), Clock()
    s, events = supervisor(stack, clock)
    waits = []
    for _ in range(3):
        stack.status["mining"] = 1
        s.check()
        waits.append(events[-1].rsplit(" in ", 1)[1])
        clock.now += 10.0
        s.check()
    assert waits == ["1 s", "2 s", "4 s"] and stack.restarted == ["mining"] * 3
    stack.status["mining"] = 1
    s.check()
    assert s.gave_up == "mining" and "giving up" in events[-1] and "3 restarts" in events[-1]
    clock.now += 60.0
    s.check()
    assert stack.restarted == ["mining"] * 3, "a part given up on must not be restarted again"


def test_restarts_older_than_the_window_no_longer_count():
    stack, clock = ScriptedStack("trainer"), Clock()
    s, events = supervisor(stack, clock, window=30.0)
    for _ in range(5):  # five deaths, each long after the last: never past a budget of 3
        stack.status["trainer"] = 1
        s.check()
        assert events[-1].endswith("restart 1 of 3 in 1 s")
        clock.now += 1.0
        s.check()
        clock.now += 40.0
    assert s.gave_up is None and s.restarts == {"trainer": 5}


def test_a_restart_that_fails_is_tried_again_with_a_longer_wait():
    stack, clock = ScriptedStack("teacher"), Clock()
    s, events = supervisor(stack, clock)
    stack.failing.add("teacher")
    stack.status["teacher"] = 1
    s.check()
    clock.now += 1.0
    s.check()
    assert stack.restarted == ["teacher"] and events[-1].startswith("teacher did not come back")
    s.check()  # still dead: scheduled again, one restart inside the window
    assert events[-1].endswith("restart 2 of 3 in 2 s")
    stack.failing.clear()
    clock.now += 2.0
    s.check()
    assert stack.status["teacher"] is None and s.restarts == {"teacher": 1}


def test_nothing_is_restarted_while_paused():
    stack, clock = ScriptedStack("redis"), Clock()
    s, _ = supervisor(stack, clock, backoff=0.0)
    with s.paused():
        stack.status["redis"] = 0
        s.check()
        clock.now += 5.0
        s.check()
        assert stack.restarted == []
    s.check()
    assert stack.restarted == ["redis"]


def test_policy_bounds_are_checked():
    with pytest.raises(ValueError, match="backoff <= max_backoff"):
        RestartPolicy(backoff=10, max_backoff=1)
    with pytest.raises(ValueError, match="budget must be >= 1"):
        RestartPolicy(budget=0)
