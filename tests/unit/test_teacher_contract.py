"""The Teacher contract, run over every implementation.

The library's own checks (pgkd.teacher.checks) run over every teacher that needs no server: the
OpenAI-compatible client, the simulated teacher, and the circuit breaker around each (the shared
Redis wrapper and the real llama.cpp server run them in tests/integration/test_teacher_contract.py).
Below them, stronger tests for the teachers that know the gold labels: the OpenAI-compatible one
talks to a scripted endpoint that answers like a competent LLM (it knows the gold labels of the pool
and of the samples it wrote, and writes fresh samples on request).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from pgkd.data import Example
from pgkd.evaluation import ScoredExample
from pgkd.teacher.base import Teacher, TeacherLabel
from pgkd.teacher.breaker import CircuitBreaker
from pgkd.teacher.checks import CHECKS, ContractCase, check_label_answers_each_text_in_order
from pgkd.teacher.filters import normalise
from pgkd.teacher.request import GenerationRequest
from pgkd.teacher.simulated import SimulatedTeacher
from tests.unit.test_teacher_openai import completion, make_teacher

LABELS = ("business", "politics", "sport", "tech")
TOPICS = {
    "business": ["shares", "profits", "bank", "merger", "retailer", "investors", "prices", "exports"],
    "politics": ["minister", "election", "parliament", "vote", "party", "treaty", "senate", "policy"],
    "sport": ["striker", "league", "match", "coach", "tennis", "marathon", "cricket", "cup"],
    "tech": ["software", "chip", "smartphone", "robot", "broadband", "app", "browser", "satellite"],
}
PLACES = ["Lisbon", "Oslo", "Lagos", "Perth", "Quito", "Hanoi", "Cairo", "Dublin", "Lima", "Riga"]
POOL = [
    Example(f"{place} report on {word} and {other}", label)
    for label, words in TOPICS.items()
    for (word, other), place in zip(itertools.pairwise(words), PLACES, strict=False)
]
REPORT = (
    "              precision    recall  f1-score   support\n\n"
    "    business      0.400     0.500     0.444        8\n"
)
HARD = [ScoredExample(POOL[0].text, POOL[0].label, "tech", 0.95)]
MISCLASSIFIED = [ScoredExample(POOL[8].text, POOL[8].label, "sport", 0.6)]
CORRECT = [ScoredExample(POOL[16].text, POOL[16].label, POOL[16].label, 0.9)]


class OracleEndpoint:
    """Answers labelling requests with gold labels and generation requests with fresh samples."""

    def __init__(self, pool: list[Example]) -> None:
        self.gold = {normalise(e.text): e.label for e in pool}
        self.fresh = (f"{place} {n} update" for n in itertools.count() for place in PLACES)

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        content = body["messages"][-1]["content"]
        if "samples" in json.dumps(body["response_format"]):
            items: list[dict[str, str]] = []
            for k, label in re.findall(r'(\d+) labelled "(\w+)"', content):
                for _ in range(int(k)):
                    text = f"{next(self.fresh)} about {label} {TOPICS[label][len(items) % 8]}"
                    self.gold[normalise(text)] = label
                    items.append({"text": text, "label": label})
            return completion(json.dumps({"samples": items}), prompt_tokens=300, completion_tokens=80)
        text = content.removeprefix("<text>").removesuffix("</text>")
        label = self.gold.get(normalise(text))
        tokens = [('{"label": "', -0.01), (label or "tech", -0.1 if label else -2.0), ('"}', -0.01)]
        return completion(json.dumps({"label": label or "tech"}), logprobs=tokens, prompt_tokens=50)


def openai_teacher() -> Teacher:
    teacher, _ = make_teacher(
        OracleEndpoint(POOL), verify_generated=True, samples_per_call=3, min_confidence=0.5
    )
    return teacher


def simulated_teacher() -> Teacher:
    return SimulatedTeacher(LABELS, POOL, seed=0)


IMPLEMENTATIONS: dict[str, Callable[[], Teacher]] = {"openai": openai_teacher, "simulated": simulated_teacher}
EVERY_TEACHER: dict[str, Callable[[], Teacher]] = {
    **IMPLEMENTATIONS,
    "breaker(openai)": lambda: CircuitBreaker(openai_teacher()),
    "breaker(simulated)": lambda: CircuitBreaker(simulated_teacher()),
}
CASE = ContractCase(
    labels=LABELS,
    texts=(POOL[0].text, POOL[9].text, "a text nobody has seen"),
    request=GenerationRequest(
        REPORT, ("business", "politics"), tuple(CORRECT), tuple(MISCLASSIFIED), tuple(HARD), 5
    ),
    exclude=tuple(e.text for e in POOL if e.label == "business")[:5],
)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(EVERY_TEACHER))
def test_the_library_checks_hold(name: str, check: Callable[..., None]) -> None:
    check(EVERY_TEACHER[name], CASE)


def test_a_broken_teacher_fails_the_checks() -> None:
    class OffTaxonomy(SimulatedTeacher):
        def label(self, texts):
            return [TeacherLabel("weather", 0.9) for _ in texts]

    with pytest.raises(AssertionError, match="'weather' for"):
        check_label_answers_each_text_in_order(lambda: OffTaxonomy(LABELS, POOL, seed=0), CASE)


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def teacher(request: pytest.FixtureRequest) -> Teacher:
    return IMPLEMENTATIONS[request.param]()


def generate(teacher: Teacher, **kwargs: Any) -> Any:
    args: dict[str, Any] = {
        "report": REPORT,
        "classes": ["business", "politics"],
        "correct": CORRECT,
        "misclassified": MISCLASSIFIED,
        "hard_negatives": HARD,
        "n": 5,
    }
    args.update(kwargs)
    return teacher.generate(GenerationRequest(**args))


def test_it_is_a_teacher(teacher: Teacher) -> None:
    assert isinstance(teacher, Teacher)
    assert isinstance(teacher.name, str) and teacher.name
    assert teacher.labels == LABELS
    assert teacher.usage.calls == 0


def test_label_gives_one_answer_per_text_in_taxonomy_or_abstaining(teacher: Teacher) -> None:
    texts = [POOL[0].text, POOL[9].text, "a text nobody has seen", POOL[25].text.upper()]
    answers = teacher.label(texts)
    assert len(answers) == len(texts)
    for answer in answers:
        assert answer.label is None or answer.label in LABELS
        assert 0.0 <= answer.confidence <= 1.0
    assert answers[0].label == POOL[0].label
    assert answers[1].label == POOL[9].label
    assert answers[2].label is None
    assert answers[3].label == POOL[25].label
    assert teacher.usage.calls >= 1


def test_label_of_nothing_is_nothing(teacher: Teacher) -> None:
    assert teacher.label([]) == []


def test_generate_respects_classes_n_and_exclude(teacher: Teacher) -> None:
    exclude = [e.text for e in POOL if e.label == "business"][:5]
    result = generate(teacher, n=5, exclude=exclude)
    assert 0 < len(result.samples) <= 5
    assert {s.label for s in result.samples} <= {"business", "politics"}
    assert all(s.label in LABELS for s in result.samples)
    assert not {normalise(s.text) for s in result.samples} & {normalise(t) for t in exclude}
    assert result.proposed == len(result.samples) + sum(result.rejected.values())
    assert teacher.usage.calls >= 1
    assert all(isinstance(s, Example) and s.text.strip() for s in result.samples)


def test_generate_spreads_samples_over_the_requested_classes(teacher: Teacher) -> None:
    result = generate(teacher, classes=["sport", "tech", "politics"], n=6)
    counts = {c: sum(s.label == c for s in result.samples) for c in ("sport", "tech", "politics")}
    assert counts == {"sport": 2, "tech": 2, "politics": 2}


def test_generate_never_repeats_itself_across_steps(teacher: Teacher) -> None:
    first = generate(teacher, classes=["tech"], n=3)
    second = generate(teacher, classes=["tech"], n=3, exclude=[s.text for s in first.samples])
    assert not {normalise(s.text) for s in first.samples} & {normalise(s.text) for s in second.samples}


def test_generate_zero_is_empty_and_unknown_classes_are_refused(teacher: Teacher) -> None:
    assert generate(teacher, n=0).samples == []
    with pytest.raises(ValueError, match=r"classes \['weather'\] are not in the taxonomy"):
        generate(teacher, classes=["weather"])


def test_usage_is_json_ready(teacher: Teacher) -> None:
    teacher.label([POOL[0].text])
    generate(teacher, n=2)
    usage = teacher.usage.as_dict()
    json.dumps(usage)
    assert teacher.usage.calls >= 2
    assert {"calls", "failed_calls", "prompt_tokens", "completion_tokens", "cost", "rejected"} <= usage.keys()
