"""The Redis-backed shared state against a real Redis: join, sample pool, registry index, shared
teacher (around the simulated teacher, named so, and around the real local LLM server)."""

from __future__ import annotations

import itertools
import threading

import pytest

from pgkd.data import Example
from pgkd.errors import TeacherBudgetExceeded, TeacherRateLimited
from pgkd.feedback import Fact, FeedbackJoin
from pgkd.registry import ModelRegistry
from pgkd.samples import Retention, Sample, SampleStore
from pgkd.student import Student
from pgkd.teacher.openai_compat import OpenAICompatibleTeacher
from pgkd.teacher.shared import HourlyLimits, SharedTeacher, shared_usage
from pgkd.teacher.simulated import SimulatedTeacher
from streams.events import Sample as EventSample
from streams.events import decode
from tests.conftest import TOPICS

LABELS = sorted(TOPICS)


def stored(key, text, label, source, ts=0.0):
    return Sample(key=key, text=text, label=label, source=source, ts=ts)


def test_join_completes_once_whatever_the_order(redis_client, namespace):
    join = FeedbackJoin(redis_client, namespace=namespace, ttl=60, max_text_chars=10)
    facts = [
        Fact("r1", text="Spurs sign a striker from Rome"),
        Fact("r1", predicted="business", confidence=0.9, version="v0002"),
        Fact("r1", gold="sport"),
    ]
    for order in itertools.permutations(range(3)):
        redis_client.delete(f"{namespace}:join:r1")
        joined = [j for i in order for j in join.apply([facts[i]])]
        assert len(joined) == 1, order
        j = joined[0]
        assert (j.text, j.predicted, j.gold, j.version, j.correct) == (
            "Spurs sign",
            "business",
            "sport",
            "v0002",
            False,
        )
        assert j.confidence == pytest.approx(0.9)
    # A replayed prediction after the join does not emit it again; the key expires.
    assert join.apply([facts[1]]) == []
    assert 0 < redis_client.ttl(f"{namespace}:join:r1") <= 60


def test_the_teacher_is_audited_once_per_request_whatever_the_order(redis_client, namespace):
    join = FeedbackJoin(redis_client, namespace=namespace, ttl=60)
    # r1: teacher right, student wrong; r2: both wrong; r3: teacher label, no truth yet
    join.apply([Fact("r1", text="a", predicted="business", confidence=0.4, version="v1")])
    join.record_teacher([("r1", "sport"), ("r3", "tech")])  # the teacher answers before the truth
    join.apply([Fact("r1", gold="sport"), Fact("r2", gold="tech"), Fact("r2", text="b")])
    join.apply([Fact("r2", predicted="sport", confidence=0.3, version="v1")])
    join.record_teacher([("r2", "business")])  # ... and after it
    join.record_teacher([("r1", "sport")])  # a replayed teacher write counts nothing twice
    join.apply([Fact("r1", gold="sport")])
    audit = join.teacher_audit()
    assert (audit.judged, audit.teacher_correct, audit.student_correct) == (2, 1, 0)
    assert audit.teacher_accuracy == 0.5 and audit.student_accuracy == 0.0
    # a teacher write never completes (and so never steals) a join
    join.apply([Fact("r4", text="c"), Fact("r4", predicted="tech", confidence=0.9, version="v1")])
    join.record_teacher([("r4", "tech")])
    assert [j.id for j in join.apply([Fact("r4", gold="tech")])] == ["r4"]
    assert join.teacher_audit().judged == 3 and join.teacher_audit().student_correct == 1


def test_an_unconfirmed_join_is_emitted_again_after_its_lease(redis_client, namespace):
    now = [1000.0]
    join = FeedbackJoin(redis_client, namespace=namespace, ttl=60, lease=10.0, clock=lambda: now[0])
    facts = [
        Fact("r9", text="t"),
        Fact("r9", predicted="a", confidence=0.5, version="v1"),
        Fact("r9", gold="b"),
    ]
    assert [j.id for j in join.apply(facts)] == ["r9"]  # claimed, then the writer "crashes"
    now[0] += 5
    assert join.apply(facts) == []  # still within the lease: a concurrent writer stays quiet
    now[0] += 6
    assert [j.id for j in join.apply(facts)] == ["r9"]  # the replay after the crash emits it
    join.confirm(["r9"])
    now[0] += 60
    assert join.apply(facts) == []  # delivered: never again


def test_concurrent_joiners_emit_each_join_exactly_once(redis_client, namespace):
    join = FeedbackJoin(redis_client, namespace=namespace, ttl=60)
    ids = [f"r{i}" for i in range(300)]
    facts = [
        f
        for i in ids
        for f in (Fact(i, text="t"), Fact(i, predicted="a", confidence=0.5, version="v1"), Fact(i, gold="b"))
    ]
    results: list[list[str]] = [[], [], []]

    def work(k: int) -> None:
        for start in range(0, len(facts), 50):  # every worker writes every fact, as after a replay
            results[k] += [j.id for j in join.apply(facts[start : start + 50])]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    emitted = [i for r in results for i in r]
    assert sorted(emitted) == sorted(ids)


def test_sample_store_dedups_and_lets_ground_truth_win(redis_client, namespace):
    store = SampleStore(redis_client, namespace=namespace)
    teacher = stored("k1", "Spurs sign a striker", "business", "teacher_labelled")
    assert store.add([teacher, teacher]) == 1 and len(store) == 1
    assert store.add([stored("k1", "Spurs sign a striker", "sport", "feedback")]) == 0
    assert store.all()[0].label == "sport"
    store.add([stored("k1", "Spurs sign a striker", "tech", "teacher_generated")])
    assert store.all()[0].label == "sport" and store.counts() == {"feedback": 1}


def test_the_pool_keeps_a_published_samples_provenance(redis_client, namespace):
    store = SampleStore(redis_client, namespace=namespace)
    event = EventSample.of(
        "Spurs sign a striker",
        "sport",
        "teacher_generated",
        teacher="openai:m",
        prompt_hash="p1",
        source_ids=["r1"],
        model_version="v0003",
    )
    store.add([decode(EventSample, event.to_bytes())])
    (kept,) = store.all()
    assert kept == Sample.of(**{k: v for k, v in event.model_dump().items() if k not in ("key", "v")})
    assert (kept.teacher, kept.prompt_hash, kept.source_ids, kept.model_version) == (
        "openai:m",
        "p1",
        ["r1"],
        "v0003",
    )


def test_retention_prunes_old_and_surplus_teacher_samples_and_keeps_ground_truth(redis_client, namespace):
    store = SampleStore(redis_client, namespace=namespace)
    teacher = [stored(f"t{i}", f"text {i}", "sport", "teacher_generated", ts=float(i)) for i in range(10)]
    truth = [stored(f"g{i}", f"truth {i}", "sport", "feedback", ts=0.0) for i in range(3)]
    other = stored("o1", "markets", "business", "teacher_labelled", ts=9.0)
    store.add([*teacher, *truth, other])
    # At most 4 teacher samples a class, none older than 5 s at t=10: t0..t4 are old, t5 is surplus.
    assert store.prune(Retention(max_per_class=4, max_age=5.0), now=10.0) == 6
    kept = {s.key for s in store.all()}
    assert kept == {"t6", "t7", "t8", "t9", "g0", "g1", "g2", "o1"}
    assert store.prune(Retention(max_per_class=0), now=10.0) == 5 and {s.key for s in store.all()} == {
        "g0",
        "g1",
        "g2",
    }
    with pytest.raises(ValueError, match="max_age > 0"):
        Retention(max_age=0)


def test_registry_index_is_shared_and_rebuilt_from_storage(redis_client, namespace, tmp_path, tiny_encoder):
    root = tmp_path / "registry"
    a = ModelRegistry(root, redis=redis_client, namespace=namespace)
    b = ModelRegistry(root, redis=redis_client, namespace=namespace)
    first = a.publish(Student.create(LABELS, tiny_encoder))
    second = b.publish(Student.create(LABELS, tiny_encoder))
    assert (first.version, second.version) == ("v0001", "v0002")
    a.set_current("v0002")
    assert b.current().version == "v0002"
    a.record_decision({"promoted": False, "reason": "macro_f1 dropped"})
    assert b.decisions()[0]["reason"] == "macro_f1 dropped"
    for key in redis_client.scan_iter(f"{namespace}:registry:*"):
        redis_client.delete(key)  # Redis lost its data
    assert [r.version for r in b.versions()] == ["v0001", "v0002"] and b.current().version == "v0002"
    assert a.publish(Student.create(LABELS, tiny_encoder)).version == "v0003"


POOL = [
    Example(f"the {w} news number {i}", label) for label, words in TOPICS.items() for i, w in enumerate(words)
]


def test_shared_teacher_caches_and_shares_one_budget(redis_client, namespace):
    # SIMULATED teacher: it answers from gold labels; this test is about the sharing, not the answers.
    replicas = [
        SharedTeacher(
            SimulatedTeacher(LABELS, POOL), redis_client, namespace=namespace, limits=HourlyLimits(calls=5)
        )
        for _ in range(2)
    ]
    texts = [e.text for e in POOL[:3]]
    first = replicas[0].label(texts)
    assert [a.label for a in first] == [e.label for e in POOL[:3]]
    assert replicas[1].label(texts) == first and replicas[1].inner.usage.calls == 0  # served from the cache
    assert replicas[1].cache_hits["label"] == 3
    replicas[1].label([POOL[3].text, POOL[4].text])
    assert shared_usage(redis_client, namespace, "hour")["calls"] == 5
    with pytest.raises(
        TeacherBudgetExceeded, match=r"the shared hourly teacher budget for calls is spent \(5 per hour\)"
    ):
        replicas[0].label([POOL[5].text])  # the other replica spent the rest of the hour's budget
    assert replicas[0].remaining()["calls"] == 0


def test_shared_rate_limit_says_when_to_retry(redis_client, namespace):
    now = [1_000_000.0 * 60 + 10]  # 10 s into a minute
    teacher = SharedTeacher(
        SimulatedTeacher(LABELS, POOL),
        redis_client,
        namespace=namespace,
        limits=HourlyLimits(calls_per_minute=2),
        clock=lambda: now[0],
    )
    teacher.label([POOL[0].text])
    teacher.label([POOL[1].text])
    with pytest.raises(
        TeacherRateLimited, match=r"shared teacher rate limit of 2 calls/minute reached"
    ) as info:
        teacher.label([POOL[2].text])
    assert info.value.retry_after == pytest.approx(50.0)
    now[0] += 60
    assert teacher.label([POOL[2].text])[0].label == POOL[2].label


def test_shared_teacher_over_the_real_llm_server(
    redis_client, namespace, local_teacher_url, local_teacher_model
):
    inner = OpenAICompatibleTeacher(
        ("business", "sport", "tech"), base_url=local_teacher_url, model=local_teacher_model, timeout=300
    )
    shared = SharedTeacher(inner, redis_client, namespace=namespace)
    texts = [
        "Manchester United beat Arsenal 2-1 in the cup final",
        "Shares in Tesco fell 5% after a profit warning",
    ]
    first = shared.label(texts)
    spent = shared.spent("total")
    assert spent["calls"] == 2 and spent["prompt_tokens"] > 0
    again = SharedTeacher(
        OpenAICompatibleTeacher(
            ("business", "sport", "tech"), base_url=local_teacher_url, model=local_teacher_model
        ),
        redis_client,
        namespace=namespace,
    ).label(texts)
    assert again == first and shared.spent("total")["calls"] == 2  # a second replica paid nothing
