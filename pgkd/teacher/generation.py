"""The generation side of a chat teacher's PGKD step: the prompt's shared context and per-request
quotas, the step's quotas cut into requests, and the written items checked and verified before they
become samples.

The chat calls themselves stay with the teacher
(:class:`~pgkd.teacher.openai_compat.OpenAICompatibleTeacher`); what they answer is handed to a
:class:`GenerationStep`.

>>> list(quota_chunks({"tech": 5, "sport": 2}, per_call=3))
[{'tech': 3}, {'tech': 2, 'sport': 1}, {'sport': 1}]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from pgkd.data import Example
from pgkd.errors import TeacherBudgetExceeded, TeacherResponseError
from pgkd.evaluation import ScoredExample
from pgkd.teacher.answers import parse_samples
from pgkd.teacher.base import GenerationResult, TeacherLabel, TeacherUsage
from pgkd.teacher.filters import NearDuplicateIndex, check_text
from pgkd.teacher.prompts import GENERATE_REQUEST, as_data
from pgkd.teacher.request import GenerationRequest

LabelOf = Callable[[str], TeacherLabel]


def generation_context(
    request: GenerationRequest, *, taxonomy: str, example_chars: int, max_chars: int
) -> str:
    """The shared part of every generation prompt of a step: the ``taxonomy``, the validation report
    verbatim and the three kinds of examples (each clipped to ``example_chars``), trimmed (examples
    dropped from the end of each list in turn) to ``max_chars``."""
    hard = list(request.hard_negatives)
    hard_texts = {s.text for s in hard}
    wrong = [s for s in request.misclassified if s.text not in hard_texts]
    right = list(request.correct)

    def quote(s: ScoredExample) -> str:
        return json.dumps(as_data(s.text, example_chars), ensure_ascii=False)

    while True:
        lines = [
            "Classes (the whole taxonomy):",
            taxonomy,
            "",
            "The classifier was evaluated on held-out validation data. Its classification report:",
            "<report>",
            request.report.strip("\n"),
            "</report>",
            "",
            "<examples>",
            "Examples it classified correctly (label: text):",
            *(f"- {s.label}: {quote(s)}" for s in right),
            "Examples it misclassified (true label, what it predicted: text):",
            *(f"- true {s.label}, predicted {s.predicted}: {quote(s)}" for s in wrong),
            "Hard negatives, misclassified although the classifier was confident "
            "(true label, what it predicted, its confidence: text):",
            *(
                f"- true {s.label}, predicted {s.predicted}, confidence {s.confidence:.2f}: {quote(s)}"
                for s in hard
            ),
            "</examples>",
        ]
        text = "\n".join(lines)
        if len(text) <= max_chars or not (right or wrong or hard):
            return text
        longest = max((right, wrong, hard), key=len)
        longest.pop()


def quota_prompt(chunk: dict[str, int], *, words: int) -> str:
    """The per-request part of a generation prompt: how many samples of which class, at most
    ``words`` words each.

    >>> quota_prompt({"tech": 2, "sport": 1}, words=40).splitlines()[0]
    'Write 3 new training examples: 2 labelled "tech", 1 labelled "sport".'
    """
    quotas = ", ".join(f'{k} labelled "{label}"' for label, k in chunk.items())
    return GENERATE_REQUEST.format(n=sum(chunk.values()), quotas=quotas, words=words)


def quota_chunks(quotas: dict[str, int], *, per_call: int) -> Iterator[dict[str, int]]:
    """The step's ``quotas`` cut into requests of at most ``per_call`` samples, in order."""
    chunk: dict[str, int] = {}
    room = per_call
    for label, wanted in quotas.items():
        while wanted > 0:
            take = min(wanted, room)
            chunk[label] = chunk.get(label, 0) + take
            wanted -= take
            room -= take
            if room == 0:
                yield chunk
                chunk, room = {}, per_call
    if chunk:
        yield chunk


class GenerationStep:
    """The bookkeeping of one ``generate`` step: every answer's items checked against the prompt's
    examples, the texts in ``request.exclude`` and each other, then verified; each rejection is
    counted in the step's result and in the teacher's ``usage``.

    Texts longer than ``max_chars`` are rejected; ``example_chars`` is how far the prompt clipped
    its examples.
    """

    def __init__(
        self,
        request: GenerationRequest,
        usage: TeacherUsage,
        *,
        example_chars: int,
        max_chars: int,
        duplicate_threshold: float,
    ) -> None:
        self.usage = usage
        self.max_chars = max_chars
        self.result = GenerationResult()
        examples = [s.text for s in request.examples]
        # The model saw each example clipped: a copy of the clipped text is a copy too.
        shown = examples + [t.strip()[:example_chars] for t in examples]
        self.prompt_index = NearDuplicateIndex(shown, threshold=duplicate_threshold, longest=max_chars)
        self.seen = NearDuplicateIndex(request.exclude, threshold=duplicate_threshold, longest=max_chars)
        self.candidates: list[Example] = []
        self.usable_calls = 0
        self.failures: list[str] = []

    def reject(self, reason: str) -> None:
        self.result.rejected[reason] += 1
        self.usage.rejected[reason] += 1

    def take(self, content: str | None, chunk: dict[str, int]) -> None:
        """Keep as candidates the items of one answer (``content``, to the request for ``chunk``)
        that pass the checks; an answer without any item counts as a failed call."""
        items, broken = parse_samples(content or "")
        self.result.proposed += len(items) + (1 if broken else 0)
        if broken:
            self.reject("invalid_json")
        if not items:
            self.usage.failed_calls += 1
            self.failures.append(repr((content or "")[:120]))
            return
        self.usable_calls += 1
        left = dict(chunk)
        for item in items:
            reason = self._check(item, left)
            if reason is not None:
                self.reject(reason)
                continue
            sample = Example(item["text"].strip(), item["label"])
            left[sample.label] -= 1
            self.seen.add(sample.text)
            self.candidates.append(sample)

    def _check(self, item: Any, left: dict[str, int]) -> str | None:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("text"), str)
            or not isinstance(item.get("label"), str)
        ):
            return "invalid_json"
        if item["label"] not in left:
            return "bad_label"
        problem = check_text(item["text"], max_chars=self.max_chars)
        if problem is not None:
            return problem
        if item["text"] in self.prompt_index:
            return "copy_of_prompt"
        if item["text"] in self.seen:
            return "duplicate"
        if left[item["label"]] <= 0:
            return "surplus"
        return None

    def finish(self, teacher: str, label_of: LabelOf | None) -> GenerationResult:
        """The step's result: the candidates that ``label_of`` (the teacher labelling its own
        sample; None: no check) labels as intended. Raises TeacherResponseError when no answer of
        the step was usable, naming ``teacher``."""
        for sample, reason in self._verify(label_of):
            if reason is None:
                self.result.samples.append(sample)
            else:
                self.reject(reason)
        if self.usable_calls == 0 and self.failures:
            raise TeacherResponseError(
                f"{teacher} gave no usable answer in {len(self.failures)} request(s); "
                f"the first began {self.failures[0]}"
            )
        return self.result

    def _verify(self, label_of: LabelOf | None) -> Iterator[tuple[Example, str | None]]:
        for i, sample in enumerate(self.candidates):
            if label_of is None:
                yield sample, None
                continue
            try:
                verdict = label_of(sample.text)
            except TeacherBudgetExceeded:
                # What the budget cannot check is not kept: an unchecked label may be wrong.
                for rest in self.candidates[i:]:
                    yield rest, "unverified"
                return
            yield sample, None if verdict.label == sample.label else "teacher_disagrees"
