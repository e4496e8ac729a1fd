"""The mining worker and a taxonomy an operator grows (test doubles for Redis and the registry)."""

from __future__ import annotations

from typing import Any, cast

from consumers.miner import Miner
from pgkd.data import Example, Splits
from pgkd.model_record import ModelRecord
from pgkd.taxonomy import NewClass, TaxonomyStore
from pgkd.teacher.shared import SharedTeacher
from pgkd.teacher.simulated import SimulatedTeacher
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

    def added(self) -> list[NewClass]:
        return self.classes


def test_an_added_class_is_taught_once_and_a_generation_aims_at_it_when_a_model_knows_it():
    pool = [Example("shares fell", "business"), Example("a late goal", "sport")]
    splits = Splits("s", LABELS, tuple(pool), (), (), (), seed=0)
    teacher = SimulatedTeacher(LABELS, pool)
    registry, added = Registry(), Added()
    miner = Miner(
        StreamSettings(),
        cast(SharedTeacher, teacher),
        cast(Any, registry),
        splits,
        taxonomy=cast(TaxonomyStore, added),
    )
    assert miner.follow_taxonomy() == []
    added.classes = [WEATHER]
    assert miner.follow_taxonomy() == ["weather"]
    assert teacher.labels == (*LABELS, "weather")
    assert miner.awaiting == {"weather"} and miner.jobs.drift is None  # no model knows it yet
    assert miner.follow_taxonomy() == [] and miner.jobs.drift is None
    registry.record = ModelRecord("v0002", "uri", "0" * 64, 0.0, labels=[*LABELS, "weather"])
    miner.follow_taxonomy()
    assert miner.jobs.drift == ("weather",) and miner.awaiting == set()
