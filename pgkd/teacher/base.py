"""The teacher interface: what the distillation loop and the services may ask of an LLM teacher.

Two verbs, the same for every backend:

* :meth:`Teacher.label` gives a label (or an abstention) for texts without ground truth, such as
  the hard production traffic the student was unsure about;
* :meth:`Teacher.generate` is one PGKD step (Algorithm 1 of the paper): shown the student's
  validation report, some correct and misclassified validation samples and its hard negatives, the
  teacher writes new labelled samples for the classes the student is weak at.

Both account what they spend in :attr:`Teacher.usage` and respect a :class:`TeacherBudget`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pgkd.data import Example
from pgkd.errors import TeacherBudgetExceeded
from pgkd.fingerprint import json_digest
from pgkd.teacher.request import GenerationRequest

# Texts -> one embedding row each: how a teacher finds the examples nearest a text.
Embed = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True, slots=True)
class TeacherLabel:
    """The teacher's verdict on one text. ``label`` is None when the teacher abstains; ``confidence``
    is in [0, 1] (0.0 for an abstention)."""

    label: str | None
    confidence: float

    @property
    def abstained(self) -> bool:
        return self.label is None


@dataclass
class GenerationResult:
    """What one :meth:`Teacher.generate` step produced.

    ``proposed`` counts every item the teacher returned (an unparseable answer counts as one item),
    so ``len(samples) + sum(rejected.values()) == proposed``. ``rejected`` maps a reason to a count:
    ``bad_label``, ``empty``, ``too_long``, ``copy_of_prompt``, ``duplicate``, ``surplus`` (more
    samples of a class than asked for), ``teacher_disagrees``, ``unverified`` (the budget ran out
    before the check) and ``invalid_json``.
    """

    samples: list[Example] = field(default_factory=list)
    proposed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def accepted(self) -> int:
        return len(self.samples)


@dataclass
class TeacherUsage:
    """What a teacher has spent so far. ``calls`` counts logical requests (the client's own retries
    of one request are not counted again); ``failed_calls`` those that gave nothing usable."""

    calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    rejected: Counter[str] = field(default_factory=Counter)
    abstained: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready snapshot, e.g. for a run summary or a metrics event."""
        return {
            "calls": self.calls,
            "failed_calls": self.failed_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens": self.tokens,
            "cost": self.cost,
            "rejected": dict(self.rejected),
            "abstained": self.abstained,
        }


@dataclass(frozen=True)
class TeacherBudget:
    """Limits on what one teacher may spend; None means unlimited.

    Prices are per 1,000 tokens in whatever currency the limit uses; the default (0) suits a local
    server, where only calls and tokens matter.

    >>> budget = TeacherBudget(max_calls=100, prompt_price_per_1k=0.00015, completion_price_per_1k=0.0006)
    >>> round(budget.cost(prompt_tokens=2000, completion_tokens=1000), 4)
    0.0009
    """

    max_calls: int | None = None
    max_tokens: int | None = None
    max_cost: float | None = None
    prompt_price_per_1k: float = 0.0
    completion_price_per_1k: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_calls", "max_tokens", "max_cost", "prompt_price_per_1k", "completion_price_per_1k"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"TeacherBudget.{name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"TeacherBudget.{name} must not be negative, got {value!r}")

    def cost(self, *, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.prompt_price_per_1k + completion_tokens * self.completion_price_per_1k
        ) / 1000

    def exhausted(self, usage: TeacherUsage) -> str | None:
        """The resource that is spent (``"calls"``, ``"tokens"``, ``"cost"``), or None."""
        if self.max_calls is not None and usage.calls >= self.max_calls:
            return "calls"
        if self.max_tokens is not None and usage.tokens >= self.max_tokens:
            return "tokens"
        if self.max_cost is not None and usage.cost >= self.max_cost:
            return "cost"
        return None

    def check(self, usage: TeacherUsage) -> None:
        """Raise :class:`TeacherBudgetExceeded` if another call would go over the budget."""
        resource = self.exhausted(usage)
        if resource is None:
            return
        spent = {"calls": usage.calls, "tokens": usage.tokens, "cost": usage.cost}[resource]
        limit = {"calls": self.max_calls, "tokens": self.max_tokens, "cost": self.max_cost}[resource]
        raise TeacherBudgetExceeded(f"teacher budget for {resource} is spent ({spent} of {limit})", resource)


UNLIMITED = TeacherBudget()
"""The default budget: no limit on calls, tokens or cost."""


@runtime_checkable
class Teacher(Protocol):
    """An LLM teacher (or a stand-in for one). Implementations: ``OpenAICompatibleTeacher`` for any
    OpenAI-compatible endpoint (OpenAI, vLLM, the embedded llama.cpp server) and
    ``SimulatedTeacher``, an oracle over a labelled pool for measuring the loop itself.

    Errors: ``TeacherUnavailable``, ``TeacherRateLimited``, ``TeacherBudgetExceeded`` and
    ``TeacherResponseError`` from :mod:`pgkd.errors`; callers back off and try again later.
    """

    @property
    def name(self) -> str:
        """Who answers, e.g. ``openai:gpt-4o-mini`` or ``simulated`` (reports and cache keys)."""
        ...

    @property
    def labels(self) -> tuple[str, ...]:
        """The taxonomy."""
        ...

    @property
    def usage(self) -> TeacherUsage:
        """What this teacher has spent so far."""
        ...

    def label(self, texts: Sequence[str]) -> list[TeacherLabel]:
        """One :class:`TeacherLabel` per text, in order: a taxonomy label or an abstention."""
        ...

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """One PGKD step: at most ``request.n`` new samples, spread evenly over ``request.classes``
        (the weakest first gets the remainder), none of them a text in ``request.exclude`` (compared
        normalised)."""
        ...

    def add_class(self, name: str, description: str, examples: Sequence[str]) -> None:
        """Take up a class an operator added (:mod:`pgkd.taxonomy`): from now on a label answer may
        be ``name`` and a request may ask for samples of it. Adding a known class does nothing."""
        ...


class WrappedTeacher:
    """Base of a teacher that adds behaviour around ``inner`` (a breaker, a shared cache): who
    answers, the taxonomy and the spending are the inner teacher's."""

    def __init__(self, inner: Teacher) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def labels(self) -> tuple[str, ...]:
        return self.inner.labels

    @property
    def usage(self) -> TeacherUsage:
        return self.inner.usage

    def add_class(self, name: str, description: str, examples: Sequence[str]) -> None:
        self.inner.add_class(name, description, examples)


def spread(classes: Sequence[str], n: int, labels: Sequence[str]) -> dict[str, int]:
    """How many samples each requested class gets: ``n`` spread evenly, the first classes (the
    weakest, as :func:`pgkd.evaluation.target_classes` orders them) taking the remainder.

    >>> spread(["tech", "sport", "politics"], 8, ["politics", "sport", "tech"])
    {'tech': 3, 'sport': 3, 'politics': 2}
    """
    if n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    wanted = list(dict.fromkeys(classes))
    unknown = [c for c in wanted if c not in labels]
    if unknown:
        raise ValueError(f"classes {unknown} are not in the taxonomy {list(labels)}")
    if not wanted:
        if n:
            raise ValueError("no classes to generate for")
        return {}
    each, extra = divmod(n, len(wanted))
    quotas = {c: each + (1 if i < extra else 0) for i, c in enumerate(wanted)}
    return {c: k for c, k in quotas.items() if k > 0}


def check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """Validate a taxonomy: at least two distinct, non-empty labels."""
    if isinstance(labels, str):
        raise TypeError("labels must be a sequence of label names, not one string")
    result = tuple(labels)
    if len(result) < 2:
        raise ValueError(f"a taxonomy needs at least two labels, got {list(result)}")
    if len(set(result)) != len(result):
        raise ValueError(f"labels must be distinct, got {list(result)}")
    if any(not isinstance(x, str) or not x.strip() for x in result):
        raise ValueError(f"labels must be non-empty strings, got {list(result)}")
    return result


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), so that a dot product is a cosine."""
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"embed must return an (n, d) array, got shape {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def prompt_hash(teacher: str, **prompt: Any) -> str:
    """A stable hash of what a teacher is shown (equal hashes, equal prompts) and of who is shown it,
    for caching answers and recording which prompt produced a sample: the label of one text
    (``text=...``) or one PGKD step (``generate=request.fingerprint``).

    >>> prompt_hash("openai:gpt", text="hi") == prompt_hash("openai:gpt", text="hi")
    True
    >>> prompt_hash("openai:gpt", text="hi") == prompt_hash("simulated", text="hi")
    False
    """
    return json_digest({"teacher": teacher, **prompt}, length=32)
