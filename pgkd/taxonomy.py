"""The taxonomy an operator grows at run time: classes added after the seed labels, kept in Redis.

An operator adds a class with a name, a description and a few examples (``pgkd add-class``). Every
service reads the same :class:`TaxonomyStore`: the trainer trains its candidates on the seed labels
plus the added classes (:func:`grown`), keeping a part of each class's examples out of training to
check the new class on (:meth:`NewClass.split`), and the teachers learn the class's description.

A class is added once and never changed in place: a wrong class is fixed by a new name, so no model
in the registry is ever relabelled behind its back.

>>> new = NewClass(name="weather", description="forecasts and storms",
...                examples=["Rain all week", "A storm hits the coast", "Snow in May", "Heatwave ends"])
>>> train, held_out = new.split()
>>> len(train), len(held_out)
(3, 1)
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pgkd.data import Example, Splits
from pgkd.errors import PGKDError
from pgkd.samples import sample_key
from pgkd.teacher.base import Teacher

MIN_EXAMPLES = 4  # at least 3 to train on and 1 to check the class on
MAX_EXAMPLES = 200


class TaxonomyError(PGKDError):
    """A class that cannot be added: the message says why (a taken name, too few examples, ...)."""


class NewClass(BaseModel):
    """A class an operator added: its ``name`` (the label models predict), what it covers
    (``description``, shown to the teachers) and the operator's ``examples`` of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(min_length=1, max_length=1000)
    examples: list[str] = Field(min_length=MIN_EXAMPLES, max_length=MAX_EXAMPLES)
    added_at: float = Field(default_factory=time.time)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        name = name.strip()
        if not name or any(c in name for c in "\n\r\t") or name != " ".join(name.split()):
            raise ValueError("a class name is one line of words with single spaces between them")
        return name

    @field_validator("examples")
    @classmethod
    def _distinct_examples(cls, examples: list[str]) -> list[str]:
        examples = [e.strip() for e in examples]
        if any(not e for e in examples):
            raise ValueError("an example is empty")
        if len({sample_key(e) for e in examples}) != len(examples):
            raise ValueError("two examples are the same text")
        return examples

    @classmethod
    def of(cls, name: str, description: str, examples: Sequence[str]) -> NewClass:
        """A new class, or a :class:`TaxonomyError` that says in one line what is wrong with it."""
        try:
            return cls(name=name, description=description, examples=list(examples))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise TaxonomyError(f"class {name!r} cannot be added: {problems}") from None

    def split(self, held_out_fraction: float = 0.25) -> tuple[list[str], list[str]]:
        """The examples to train on and those kept to check the class on (at least one each way).
        Which is which depends only on the texts, so every trainer and every round agree."""
        ordered = sorted(self.examples, key=sample_key)
        n_held = min(len(ordered) - 1, max(1, round(len(ordered) * held_out_fraction)))
        return ordered[n_held:], ordered[:n_held]


def grown(splits: Splits, added: Sequence[NewClass]) -> Splits:
    """``splits`` with the ``added`` classes: their labels after the seed labels, their training
    examples in ``train`` and their held-out examples in ``validation`` (so validation scores every
    class); the test set and the traffic stay as they are."""
    if not added:
        return splits
    train, validation = list(splits.train), list(splits.validation)
    for new in added:
        fit, check = new.split()
        train += [Example(text, new.name) for text in fit]
        validation += [Example(text, new.name) for text in check]
    return replace(
        splits,
        labels=(*splits.labels, *(new.name for new in added)),
        train=tuple(train),
        validation=tuple(validation),
        descriptions={**splits.descriptions, **{new.name: new.description for new in added}},
    )


def teach(teacher: Teacher, added: Sequence[NewClass]) -> list[str]:
    """Teach ``teacher`` the ``added`` classes it does not know yet, with their descriptions and
    training examples (never the held-out ones: they judge the model); the names it learnt."""
    taught = []
    for new in added:
        if new.name not in teacher.labels:
            teacher.add_class(new.name, new.description, new.split()[0])
            taught.append(new.name)
    return taught


class TaxonomyStore:
    """The added classes of one namespace, in a Redis hash (name -> class as JSON), and the latest
    out-of-taxonomy texts, in a capped list, from which :mod:`pgkd.class_suggestions` offers
    candidate classes."""

    def __init__(self, redis: Any, *, namespace: str, keep_unknown: int = 2000) -> None:
        self.redis, self.keep_unknown = redis, keep_unknown
        self.key = f"{namespace}:taxonomy:added"
        self.unknown_key = f"{namespace}:taxonomy:unknown"

    def remember_unknown(self, texts: Sequence[str]) -> None:
        """Keep ``texts`` (out of the taxonomy) among the latest ``keep_unknown`` such texts."""
        if texts:
            pipe = self.redis.pipeline(transaction=True)
            pipe.lpush(self.unknown_key, *texts)
            pipe.ltrim(self.unknown_key, 0, self.keep_unknown - 1)
            pipe.execute()

    def unknown(self) -> list[str]:
        """The latest out-of-taxonomy texts, newest first."""
        return [t.decode() if isinstance(t, bytes) else t for t in self.redis.lrange(self.unknown_key, 0, -1)]

    def add(self, new: NewClass, base_labels: Sequence[str]) -> NewClass:
        """Add ``new`` unless its name is taken (by a seed label or an added class, case aside);
        atomic, so two operators cannot add one name twice."""
        taken = {label.casefold() for label in (*base_labels, *(c.name for c in self.added()))}
        if new.name.casefold() in taken:
            raise TaxonomyError(f"class {new.name!r} is already in the taxonomy")
        if not self.redis.hsetnx(self.key, new.name, new.model_dump_json()):
            raise TaxonomyError(f"class {new.name!r} is already in the taxonomy")
        return new

    def added(self) -> list[NewClass]:
        """The added classes, oldest first. A record that does not parse is an error, not skipped:
        training without a class the operator added would drop it silently."""
        classes = []
        for name, raw in self.redis.hgetall(self.key).items():
            try:
                classes.append(NewClass.model_validate(json.loads(raw)))
            except (ValueError, ValidationError) as exc:
                shown = name.decode(errors="replace") if isinstance(name, bytes) else name
                raise TaxonomyError(f"added class {shown!r} in {self.key} is unreadable: {exc}") from exc
        return sorted(classes, key=lambda c: (c.added_at, c.name))
