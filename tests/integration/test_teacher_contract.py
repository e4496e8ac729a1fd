"""The library's Teacher checks (pgkd.teacher.checks) over the teachers that need real servers: the
OpenAI-compatible client against the real local llama.cpp server, and the shared teacher on the
real Redis (around the simulated teacher, which is named as such)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from pgkd.data import Example
from pgkd.teacher.checks import CHECKS, ContractCase
from pgkd.teacher.request import GenerationRequest
from pgkd.teacher.shared import SharedTeacher
from pgkd.teacher.simulated import SimulatedTeacher
from tests.integration.test_teacher_real_server import (
    CORRECT,
    HARD,
    HEADLINES,
    LABELS,
    MISCLASSIFIED,
    REPORT,
    local_teacher,
)

pytestmark = pytest.mark.integration

CASE = ContractCase(
    labels=LABELS,
    texts=tuple(text for text, _ in HEADLINES[:3]),
    # Two samples: one call of a 1.5B model on CPU, seconds rather than minutes.
    request=GenerationRequest(REPORT, ("tech", "business"), CORRECT, MISCLASSIFIED, HARD, 2),
    exclude=("Bank shares fell sharply on Monday.", "Apple launches a new phone."),
)
POOL = [Example(text, label) for text, label in HEADLINES] + [
    Example(f"Report number {i} on {label} news", label) for label in LABELS for i in range(6)
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_real_local_teacher_keeps_the_contract(
    check: Callable[..., None], local_teacher_url: str, local_teacher_model: str
) -> None:
    check(lambda: local_teacher(local_teacher_url, local_teacher_model), CASE)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_shared_teacher_on_real_redis_keeps_the_contract(
    check: Callable[..., None], redis_client, namespace: str
) -> None:
    fresh = itertools.count()

    def make() -> SharedTeacher:  # each teacher starts with an empty cache of its own
        inner = SimulatedTeacher(LABELS, POOL, seed=0)
        return SharedTeacher(inner, redis_client, namespace=f"{namespace}-{next(fresh)}")

    check(make, CASE)
