"""The one retry policy: the delays it gives, and that tenacity's loops wait exactly those."""

from __future__ import annotations

import logging

import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from pgkd.retry import Backoff, Cooldown, log_retry


def test_delays_double_up_to_the_cap():
    assert Backoff(initial=2.0, cap=300.0).delays(10)[-3:] == [256.0, 300.0, 300.0]
    assert Backoff(0, 0).delays(3) == [0.0, 0.0, 0.0]


def test_a_cap_under_the_first_wait_is_refused():
    with pytest.raises(ValueError, match="need 0 <= initial <= cap"):
        Backoff(initial=5, cap=1)


def test_tenacity_waits_the_policys_delays_and_logs_each_retry(caplog):
    slept: list[float] = []
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise ConnectionError("down")
        return "up"

    policy = Backoff(initial=0.5, cap=1.5)
    retrying = Retrying(
        retry=retry_if_exception_type(ConnectionError),
        wait=policy.wait(),
        stop=stop_after_attempt(5),
        sleep=slept.append,
        before_sleep=log_retry(logging.getLogger("t"), "the call"),
    )
    with caplog.at_level(logging.WARNING):
        assert retrying(flaky) == "up"
    assert slept == policy.delays(3) == [0.5, 1.0, 1.5]
    assert "the call failed (ConnectionError('down')); retry 3 in 1.5 s" in caplog.text


def test_a_cooldown_follows_the_policy_unless_the_failure_says_how_long():
    cooldown = Cooldown(Backoff(initial=0.0, cap=0.0))
    assert cooldown.failed() == 0.0 and not cooldown.waiting
    assert cooldown.failed(retry_after=60.0) == 60.0 and cooldown.waiting and cooldown.failures == 2
    cooldown.succeeded()
    assert cooldown.failures == 0 and not cooldown.waiting
