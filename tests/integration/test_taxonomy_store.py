"""The added classes in a real Redis: one name once, by any operator, and a broken record said aloud."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def test_the_latest_out_of_taxonomy_texts_are_kept_newest_first_within_the_cap(redis_client, namespace):
    store = TaxonomyStore(redis_client, namespace=namespace, keep_unknown=5)
    store.remember_unknown([])
    assert store.unknown() == []
    store.remember_unknown([f"text {i}" for i in range(4)])
    store.remember_unknown(["text 4", "text 5", "text 6"])
    assert store.unknown() == ["text 6", "text 5", "text 4", "text 3", "text 2"]


def test_suggest_classes_offers_clusters_with_examples_files_and_adds_nothing(redis_url, namespace, tmp_path):
    import redis

    store = TaxonomyStore(redis.Redis.from_url(redis_url), namespace=namespace)
    weather = [
        "Heavy rain and strong winds are forecast for tonight",
        "Snow is expected on high ground by the weekend",
        "A heatwave will bring temperatures above 35C",
        "Thunderstorms and hail are likely this afternoon",
        "Frost and fog will clear by mid morning",
        "Gales will batter the coast with heavy rain",
    ]
    spam = ["zork plugh xyzzy frob blarg wibble"] * 3  # too few to offer, and counted once
    store.remember_unknown(weather + spam)
    env = {**os.environ, "PGKD_REDIS_URL": redis_url, "PGKD_NAMESPACE": namespace}
    out = tmp_path / "suggested"
    pgkd = Path(sys.executable).with_name("pgkd")
    run = subprocess.run(
        [pgkd, "suggest-classes", "--out", str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "9 out-of-taxonomy texts kept; candidates (clusters of 5 or more): 1" in " ".join(
        run.stdout.split()
    )
    assert sorted((out / "candidate-1.txt").read_text().splitlines()) == sorted(weather)
    assert store.added() == []
