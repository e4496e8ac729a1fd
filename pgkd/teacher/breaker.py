"""A circuit breaker around a teacher: stop calling an endpoint that keeps failing.

After ``failures`` consecutive failures (the endpoint unreachable, timing out, answering 5xx or
nothing usable), the circuit *opens*: every call fails at once with
:class:`~pgkd.errors.TeacherUnavailable` for ``cooldown`` seconds, without touching the network.
Then one call is let through (*half-open*): if it succeeds the circuit closes, if it fails it opens
again for twice as long (at most ``max_cooldown``). Rate limiting (429) and a spent budget are not
failures of the endpoint and leave the circuit alone.

>>> teacher = CircuitBreaker(OpenAICompatibleTeacher(...), failures=5, cooldown=30)   # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

from pgkd.errors import TeacherBudgetExceeded, TeacherError, TeacherRateLimited, TeacherUnavailable
from pgkd.teacher.base import GenerationResult, Teacher, TeacherLabel, WrappedTeacher
from pgkd.teacher.request import GenerationRequest

T = TypeVar("T")
State = Literal["closed", "open", "half_open"]


class CircuitBreaker(WrappedTeacher):
    """``teacher`` behind a circuit breaker (see the module docstring); thread-safe."""

    def __init__(
        self,
        teacher: Teacher,
        *,
        failures: int = 5,
        cooldown: float = 30.0,
        max_cooldown: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or cooldown <= 0 or max_cooldown < cooldown:
            raise ValueError(
                "need failures >= 1 and 0 < cooldown <= max_cooldown, "
                f"got {failures}, {cooldown}, {max_cooldown}"
            )
        super().__init__(teacher)
        self.threshold = failures
        self.base_cooldown, self.max_cooldown, self.clock = cooldown, max_cooldown, clock
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.cooldown = cooldown
        self.trips = 0  # how many times the circuit opened
        self._lock = threading.Lock()
        self._trial = False

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def label(self, texts: Sequence[str]) -> list[TeacherLabel]:
        return self._call(lambda: self.inner.label(texts))

    def generate(self, request: GenerationRequest) -> GenerationResult:
        return self._call(lambda: self.inner.generate(request))

    def _state(self) -> State:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at < self.cooldown:
            return "open"
        return "half_open"

    def _call(self, call: Callable[[], T]) -> T:
        with self._lock:
            state = self._state()
            if state == "open" or (state == "half_open" and self._trial):
                assert self.opened_at is not None
                left = self.cooldown - (self.clock() - self.opened_at)
                raise TeacherUnavailable(
                    f"{self.name}: circuit open after {self.consecutive_failures} failures in a row; "
                    f"next try in {max(0.0, left):.0f} s"
                )
            self._trial = state == "half_open"
        try:
            result = call()
        except (TeacherRateLimited, TeacherBudgetExceeded):
            with self._lock:
                self._trial = False
            raise  # the endpoint is fine; it is our pace or our budget
        except TeacherError:
            self._failed()
            raise
        with self._lock:
            self.consecutive_failures, self.opened_at, self._trial = 0, None, False
            self.cooldown = self.base_cooldown
        return result

    def _failed(self) -> None:
        with self._lock:
            self.consecutive_failures += 1
            if self._trial:  # the half-open trial failed: open again, for longer
                self.cooldown = min(self.max_cooldown, self.cooldown * 2)
                self.opened_at, self._trial = self.clock(), False
                self.trips += 1
            elif self.opened_at is None and self.consecutive_failures >= self.threshold:
                self.opened_at = self.clock()
                self.trips += 1
