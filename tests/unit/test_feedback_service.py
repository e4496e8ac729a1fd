"""The feedback service's taxonomy: the current model's, followed as it changes."""

from __future__ import annotations

from consumers.feedback import Taxonomy
from pgkd.model_record import ModelRecord
from pgkd.taxonomy import NewClass


def test_feedback_follows_the_current_models_taxonomy():
    class Registry:  # a test double: the current record changes under the feedback service
        def __init__(self):
            self.record = None

        def current(self):
            return self.record

        def labels(self, record):
            return tuple(record.labels)

    registry = Registry()
    taxonomy = Taxonomy(registry, refresh_seconds=0.0)
    assert taxonomy.refresh() is None  # no model yet: feedback waits
    registry.record = ModelRecord("v0001", "uri", "0" * 64, 0.0, labels=["business", "sport"])
    assert taxonomy.refresh() == {"business", "sport"}
    registry.record = ModelRecord("v0002", "uri", "0" * 64, 0.0, labels=["business", "sport", "weather"])
    assert taxonomy.refresh() == {"business", "sport", "weather"}
    registry.current = lambda: (_ for _ in ()).throw(ConnectionError("redis away"))
    assert taxonomy.refresh() == {"business", "sport", "weather"}  # the last one read stands


def test_feedback_also_takes_the_classes_an_operator_added_before_a_model_knows_them():
    class Registry:
        def current(self):
            return ModelRecord("v0001", "uri", "0" * 64, 0.0, labels=["business", "sport"])

        def labels(self, record):
            return tuple(record.labels)

    class Added:  # a test double of the TaxonomyStore
        classes: list = []

        def added(self):
            return self.classes

    added = Added()
    taxonomy = Taxonomy(Registry(), refresh_seconds=0.0, store=added)
    assert taxonomy.refresh() == {"business", "sport"}
    added.classes = [NewClass(name="weather", description="forecasts", examples=["a", "b", "c", "d"])]
    assert taxonomy.refresh() == {"business", "sport", "weather"}
