"""One PGKD step asked of the teacher: what generation_request puts in it, and its fingerprint."""

from __future__ import annotations

import pytest

from pgkd.continual import Guidance
from pgkd.evaluation import ScoredExample, evaluate
from pgkd.teacher.request import GenerationRequest, generation_request

LABELS = ["business", "politics", "sport", "tech"]


def scored(text, label, predicted, confidence):
    return ScoredExample(text, label, predicted, confidence)


ROWS = (
    scored("match goal", "sport", "sport", 0.9),
    scored("shares profit", "business", "business", 0.8),
    scored("chip phone", "tech", "business", 0.95),
    scored("app online", "tech", "tech", 0.7),
    scored("bank deal", "business", "tech", 0.6),
    scored("vote held", "politics", "politics", 0.9),
)
GUIDANCE = Guidance(evaluate(LABELS, [r.label for r in ROWS], [r.predicted for r in ROWS]), ROWS)
LIVE = [scored("robot software", "tech", "sport", 0.99), scored("cup season", "sport", "tech", 0.5)]


def request(**kwargs):
    args = {"n": 8, "examples": 3, "classes": 2, "live_hard": LIVE}
    return generation_request(GUIDANCE.report, GUIDANCE.scored, **{**args, **kwargs})


def test_live_hard_negatives_come_first_then_validation_ones():
    r = request(source_ids=["r1", "r2"])
    assert [h.text for h in r.hard_negatives] == ["robot software", "cup season", "chip phone"]
    assert len(r.classes) == 2 and set(r.classes) <= set(LABELS)
    assert r.n == 8 and r.source_ids == ("r1", "r2")
    assert r.report == GUIDANCE.report.text
    assert all(s.correct for s in r.correct) and not any(s.correct for s in r.misclassified)


def test_the_weakest_classes_are_targeted_and_focus_comes_first():
    assert request().classes[0] in {"business", "tech"}  # the only classes with mistakes
    assert request(focus=["politics", "weather"]).classes == ("politics", request().classes[0])


def test_the_ablations_drop_the_report_or_the_hard_negatives():
    no_report = request(use_report=False, live_hard=())
    assert no_report.report == ""
    assert no_report.classes[0] == "tech"  # the class of the most confident mistake shown
    no_hard = request(use_hard_negatives=False)
    assert no_hard.hard_negatives == () and no_hard.misclassified


def test_the_fingerprint_covers_what_the_teacher_is_shown_and_nothing_else():
    r = request()
    assert r.fingerprint == request(exclude=["x"], source_ids=["r9"]).fingerprint
    assert r.fingerprint != request(live_hard=LIVE[:1]).fingerprint
    assert r.fingerprint != request(n=9).fingerprint
    assert len(r.fingerprint) == 32


def test_a_negative_count_is_refused():
    with pytest.raises(ValueError, match="n must not be negative"):
        GenerationRequest("", ("sport",), (), (), (), -1)
