"""The added classes in a real Redis: one name once, by any operator, and a broken record said aloud."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from pgkd.taxonomy import NewClass, TaxonomyError, TaxonomyStore

SEED = ("business", "sport")
EXAMPLES = ["rain on Monday", "a storm at sea", "snow in the hills", "a hot, dry week"]


def new(name: str, added_at: float = 0.0) -> NewClass:
    return NewClass(name=name, description="d", examples=EXAMPLES, added_at=added_at)


def test_classes_are_added_once_in_order_and_a_taken_name_is_refused(redis_client, namespace):
    store = TaxonomyStore(redis_client, namespace=namespace)
    assert store.added() == []
    store.add(new("weather", 2.0), SEED)
    store.add(new("science", 1.0), SEED)
    assert [c.name for c in store.added()] == ["science", "weather"]  # oldest first
    assert store.added()[1].examples == EXAMPLES
    for taken in ("weather", "Weather", "SPORT"):
        with pytest.raises(TaxonomyError, match="already in the taxonomy"):
            store.add(new(taken), SEED)
    # Another namespace is another deployment.
    assert TaxonomyStore(redis_client, namespace=namespace + "-other").added() == []


def test_two_operators_adding_one_name_at_once_add_it_once(redis_client, namespace):
    store = TaxonomyStore(redis_client, namespace=namespace)

    def add(i: int) -> bool:
        try:
            TaxonomyStore(redis_client, namespace=namespace).add(new("weather", float(i)), SEED)
        except TaxonomyError:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(add, range(16))) == 1
    assert [c.name for c in store.added()] == ["weather"]


def test_an_unreadable_record_is_an_error_not_a_class_dropped_in_silence(redis_client, namespace):
    store = TaxonomyStore(redis_client, namespace=namespace)
    store.add(new("weather"), SEED)
    redis_client.hset(store.key, "science", b"{not json")
    with pytest.raises(TaxonomyError, match="'science'.*unreadable"):
        store.added()
