"""The Teacher contract as checks that ship with the library, run over every implementation.

Each check takes a factory of fresh teachers and a :class:`ContractCase` (the taxonomy, texts to
label, a generation request) and raises ``AssertionError`` when the teacher breaks the contract of
:class:`~pgkd.teacher.base.Teacher`. They ask only what any competent teacher must do (answers in
order and in the taxonomy, generation within the classes, the count and the exclusions, usage that
serialises), so they run as well against a real LLM as against a stand-in; a third-party teacher can
run them too::

    for check in CHECKS:
        check(lambda: MyTeacher(...), case)

The test suite runs them over every implementation in the library: the OpenAI-compatible client
(against a scripted endpoint, and against the real local llama.cpp server), the simulated teacher,
and the shared (Redis) and circuit-breaker wrappers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from pgkd.data import Example
from pgkd.teacher.base import Teacher
from pgkd.teacher.filters import normalise
from pgkd.teacher.request import GenerationRequest

TeacherFactory = Callable[[], Teacher]


@dataclass(frozen=True)
class ContractCase:
    """What the checks ask a teacher: ``texts`` to label and one generation ``request`` whose classes
    are in ``labels``; ``exclude`` holds texts the teacher could plausibly write (they must not
    come back)."""

    labels: tuple[str, ...]
    texts: tuple[str, ...]
    request: GenerationRequest
    exclude: tuple[str, ...] = ()


def check_is_a_teacher(make: TeacherFactory, case: ContractCase) -> None:
    teacher = make()
    assert isinstance(teacher, Teacher), f"{type(teacher).__name__} does not implement Teacher"
    assert isinstance(teacher.name, str) and teacher.name, "a teacher needs a non-empty name"
    assert tuple(teacher.labels) == case.labels, f"taxonomy {teacher.labels} != {case.labels}"
    assert teacher.usage.calls == 0, "a fresh teacher has spent nothing"


def check_label_answers_each_text_in_order(make: TeacherFactory, case: ContractCase) -> None:
    teacher = make()
    assert teacher.label([]) == [], "labelling nothing gives nothing"
    answers = teacher.label(list(case.texts))
    assert len(answers) == len(case.texts), f"{len(answers)} answers for {len(case.texts)} texts"
    for text, answer in zip(case.texts, answers, strict=True):
        assert answer.label is None or answer.label in case.labels, f"{answer.label!r} for {text!r}"
        assert 0.0 <= answer.confidence <= 1.0, f"confidence {answer.confidence} for {text!r}"
    assert teacher.usage.calls >= 1, "labelling is accounted in usage.calls"


def check_generate_stays_within_classes_count_and_exclusions(
    make: TeacherFactory, case: ContractCase
) -> None:
    teacher = make()
    request = replace(case.request, exclude=case.exclude)
    result = teacher.generate(request)
    assert len(result.samples) <= request.n, f"{len(result.samples)} samples for n={request.n}"
    assert {s.label for s in result.samples} <= set(request.classes), "a sample outside the classes asked"
    assert all(isinstance(s, Example) and s.text.strip() for s in result.samples), "empty sample"
    excluded = {normalise(t) for t in case.exclude}
    assert not {normalise(s.text) for s in result.samples} & excluded, "an excluded text came back"
    assert result.proposed >= 1, "the teacher proposed nothing"
    assert result.proposed == len(result.samples) + sum(result.rejected.values()), "counts do not add up"
    assert teacher.usage.calls >= 1, "generation is accounted in usage.calls"


def check_generate_nothing_and_refuse_unknown_classes(make: TeacherFactory, case: ContractCase) -> None:
    teacher = make()
    assert teacher.generate(replace(case.request, n=0)).samples == [], "n=0 gives no sample"
    try:
        teacher.generate(replace(case.request, classes=("not-a-class-of-the-taxonomy",)))
    except ValueError as exc:
        assert "not in the taxonomy" in str(exc), f"unclear error: {exc}"
    else:
        raise AssertionError("a class outside the taxonomy was accepted")


def check_an_added_class_joins_the_taxonomy(make: TeacherFactory, case: ContractCase) -> None:
    teacher = make()
    name = "added-at-run-time"
    teacher.add_class(name, "texts of a class an operator added", list(case.texts))
    teacher.add_class(name, "added twice", list(case.texts))
    assert tuple(teacher.labels) == (*case.labels, name), f"taxonomy {teacher.labels} after add_class"
    # A request for the new class is taken (n=0: no call); labels stay in the grown taxonomy.
    assert teacher.generate(replace(case.request, classes=(name,), n=0)).samples == []
    for answer in teacher.label(list(case.texts)):
        assert answer.label is None or answer.label in teacher.labels, f"{answer.label!r} after add_class"


def check_usage_is_json_ready(make: TeacherFactory, case: ContractCase) -> None:
    teacher = make()
    teacher.label(list(case.texts[:1]))
    usage = teacher.usage.as_dict()
    json.dumps(usage)
    needed = {"calls", "failed_calls", "prompt_tokens", "completion_tokens", "cost", "rejected"}
    assert needed <= usage.keys(), f"usage lacks {needed - usage.keys()}"


CHECKS: Sequence[Callable[[TeacherFactory, ContractCase], None]] = (
    check_is_a_teacher,
    check_label_answers_each_text_in_order,
    check_generate_stays_within_classes_count_and_exclusions,
    check_generate_nothing_and_refuse_unknown_classes,
    check_an_added_class_joins_the_taxonomy,
    check_usage_is_json_ready,
)
"""Every check of the contract, in the order they are cheapest to fail."""
