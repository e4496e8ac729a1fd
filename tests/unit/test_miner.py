"""The mining worker and a taxonomy an operator grows (test doubles for Redis and the registry)."""

from __future__ import annotations

from typing import Any, cast

from consumers.miner import Miner
from pgkd.data import Example, Splits
from pgkd.model_record import ModelRecord
from pgkd.taxonomy import NewClass, TaxonomyStore
from pgkd.teacher.shared import SharedTeacher
from pgkd.teacher.simulated import SimulatedTeacher
from streams.events import HardEvent
from streams.settings import StreamSettings

LABELS = ("business", "sport")
WEATHER = NewClass(
    name="weather", description="forecasts", examples=["rain", "snow", "a heatwave", "gales"], added_at=1.0
)


class Registry:
    def __init__(self) -> None:
        self.record = ModelRecord("v0001", "uri", "0" * 64, 0.0, labels=list(LABELS))

    def current(self) -> ModelRecord:
        return self.record

    def labels(self, record: ModelRecord) -> tuple[str, ...]:
        return tuple(record.labels)


class Added:
    def __init__(self) -> None:
        self.classes: list[NewClass] = []
        self.kept: list[str] = []

    def added(self) -> list[NewClass]:
        return self.classes

    def remember_unknown(self, texts: list[str]) -> None:
        self.kept += texts


POOL = [Example("shares fell", "business"), Example("a late goal", "sport")]


def miner_with(teacher: SimulatedTeacher, registry: Registry, added: Added) -> Miner:
    splits = Splits("s", LABELS, tuple(POOL), (), (), (), seed=0)
    return Miner(
        StreamSettings(),
        cast(SharedTeacher, teacher),
        cast(Any, registry),
        splits,
        taxonomy=cast(TaxonomyStore, added),
    )


def test_an_added_class_is_taught_once_and_a_generation_aims_at_it_when_a_model_knows_it():
    teacher, registry, added = SimulatedTeacher(LABELS, POOL), Registry(), Added()
    miner = miner_with(teacher, registry, added)
    assert miner.follow_taxonomy() == []
    added.classes = [WEATHER]
    assert miner.follow_taxonomy() == ["weather"]
    assert teacher.labels == (*LABELS, "weather")
    assert miner.awaiting == {"weather"} and miner.jobs.drift is None  # no model knows it yet
    assert set(WEATHER.examples) <= set(miner.jobs.exclude)  # the teacher's copies of them are dropped
    assert miner.follow_taxonomy() == [] and miner.jobs.drift is None
    registry.record = ModelRecord("v0002", "uri", "0" * 64, 0.0, labels=[*LABELS, "weather"])
    miner.follow_taxonomy()
    assert miner.jobs.drift == ("weather",) and miner.awaiting == set()


def test_out_of_taxonomy_texts_are_kept_for_suggestions_and_never_labelled():
    added = Added()
    miner = miner_with(SimulatedTeacher(LABELS, POOL), Registry(), added)
    for i, reason in enumerate(["out_of_taxonomy", "low_confidence", "out_of_taxonomy"]):
        event = HardEvent(
            id=f"e{i}",
            text=f"text {i}",
            reason=reason,
            predicted="sport",
            confidence=0.4,
            model_version="v0001",
        )
        assert miner.accept(event) == []
    assert list(miner.jobs.to_label) and all(e.reason == "low_confidence" for e in miner.jobs.to_label)
    miner.follow_taxonomy()
    assert added.kept == ["text 0", "text 2"] and not miner.unknown
