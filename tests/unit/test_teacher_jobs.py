"""The live teacher's next job: generation before labels, drift-aimed generations, and undo."""

from __future__ import annotations

from pgkd.continual import Guidance, HardWindow
from pgkd.evaluation import ScoredExample, evaluate
from pgkd.teacher_jobs import Generation, JobPlanner, Labelling

LABELS = ["business", "politics", "sport", "tech"]
ROWS = (
    ScoredExample("match goal", "sport", "sport", 0.9),
    ScoredExample("shares profit", "business", "business", 0.8),
    ScoredExample("chip phone", "tech", "business", 0.95),
    ScoredExample("vote held", "politics", "politics", 0.9),
)
MODEL = ("v0001", Guidance(evaluate(LABELS, [r.label for r in ROWS], [r.predicted for r in ROWS]), ROWS))


def planner(**kwargs) -> JobPlanner[str]:
    args = {
        "label_queue": 10,
        "label_batch": 2,
        "samples_per_step": 8,
        "prompt_examples": 16,
        "target_classes": 10,
        "exclude": ["match goal"],
    }
    return JobPlanner(HardWindow(min_hard=2, every_seconds=3600), **{**args, **kwargs})


def test_a_ready_window_makes_a_generation_before_any_labels():
    p = planner()
    p.queue("unsure text")
    p.window.add(ScoredExample("robot software", "tech", "sport", 0.99), "r1")
    assert not p.due()
    p.window.add(ScoredExample("cup season", "sport", "tech", 0.5), "r2")
    assert p.due() and isinstance(p.next(None), Labelling), "no model known: labels meanwhile"
    p.queue("unsure text")
    job = p.next(MODEL)
    assert isinstance(job, Generation) and job.kind == "generate" and job.version == "v0001"
    assert job.request.n == 8 and job.request.source_ids == ("r1", "r2")
    assert "match goal" in job.request.exclude and len(p.window) == 0 and p.generations == 1
    job.undo()
    assert len(p.window) == 2, "a failed generation puts its hard negatives back"
    assert isinstance(p.next(None), Labelling)


def test_a_drift_asks_for_a_generation_aimed_at_its_classes_and_a_newer_one_wins_on_undo():
    p = planner()
    p.drifted(["politics"])
    assert p.due()
    job = p.next(MODEL)
    assert isinstance(job, Generation) and job.request.classes[0] == "politics"
    assert p.drift is None and not p.due()
    job.undo()
    assert p.drift == ("politics",)
    job = p.next(MODEL)
    p.drifted(["sport"])
    assert job is not None
    job.undo()
    assert p.drift == ("sport",)


def test_labels_go_in_batches_oldest_first_and_undo_keeps_their_order():
    p = planner(label_queue=3)
    dropped = [p.queue(t) for t in "abcd"]
    assert dropped == [False, False, False, True]
    job = p.next(MODEL)
    assert isinstance(job, Labelling) and job.kind == "label" and job.batch == ["b", "c"]
    job.undo()
    assert list(p.to_label) == ["b", "c", "d"]
    assert [p.next(None).batch, p.next(None).batch, p.next(None)] == [["b", "c"], ["d"], None]
