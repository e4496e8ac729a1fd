"""The loop (Algorithm 1) with a tiny student and a scripted teacher double (unit test only)."""

from collections import Counter

import pytest

from pgkd.data import Example, Splits
from pgkd.distill import distill, fingerprint
from pgkd.distill_records import DistillConfig, StepSelection
from pgkd.errors import TeacherBudgetExceeded
from pgkd.report import write_report
from pgkd.student import Student
from pgkd.teacher.base import GenerationResult, TeacherLabel, TeacherUsage
from pgkd.training import TrainConfig
from tests.conftest import TOPICS, topic_examples

LABELS = tuple(sorted(TOPICS))


class ScriptedTeacher:
    """A test double: hands out prepared samples, records what the loop asked for."""

    name = "scripted-test-double"

    def __init__(self, supply: list[Example], fail_at: int | None = None) -> None:
        self.labels = LABELS
        self.usage = TeacherUsage()
        self.supply = list(supply)
        self.requests: list[dict] = []
        self.fail_at = fail_at

    def label(self, texts):
        return [TeacherLabel(None, 0.0) for _ in texts]

    def generate(self, request):
        self.usage.calls += 1
        if self.fail_at is not None and self.usage.calls >= self.fail_at:
            raise TeacherBudgetExceeded("spent", "calls")
        self.requests.append(
            {
                "report": request.report,
                "classes": list(request.classes),
                "hard": list(request.hard_negatives),
                "n": request.n,
                "exclude": set(request.exclude),
            }
        )
        out = [e for e in self.supply if e.label in request.classes and e.text not in request.exclude]
        out = out[: request.n]
        for e in out:
            self.supply.remove(e)
        return GenerationResult(samples=out, proposed=len(out) + 1, rejected=Counter({"duplicate": 1}))


@pytest.fixture()
def splits():
    ex = topic_examples(60, seed=2)
    # a sparse, skewed seed set: "tech" has only 2 training examples
    train = [e for e in ex[:100] if e.label != "tech"][:30] + [e for e in ex if e.label == "tech"][:2]
    rest = [e for e in ex if e not in train]
    return Splits("toy", LABELS, tuple(train), tuple(rest[:30]), tuple(rest[30:60]), tuple(rest[60:]), seed=0)


@pytest.fixture()
def student(tiny_encoder):
    return Student.create(LABELS, tiny_encoder, seed=0)


CFG = TrainConfig(mode="head", max_epochs=40, learning_rate=5e-2)


def test_loop_follows_algorithm_1(splits, student, tmp_path):
    teacher = ScriptedTeacher(list(splits.traffic))
    events = []
    result = distill(
        splits,
        teacher,
        DistillConfig(
            steps=3, samples_per_step=6, patience=5, prompt_examples=4, target_classes=2, train=CFG
        ),
        student=student,
        on_event=events.append,
    )
    assert [r.step for r in result.history] == [0, 1, 2, 3]
    first = teacher.requests[0]
    assert "precision" in first["report"] and "recall" in first["report"]  # the report, verbatim
    assert len(first["hard"]) <= 4 and all(h.label != h.predicted for h in first["hard"])
    confidences = [h.confidence for h in first["hard"]]
    assert confidences == sorted(confidences, reverse=True)  # most confident mistakes first
    # validation and test texts are never handed out as training samples
    assert {e.text for e in splits.validation + splits.test} <= first["exclude"]
    assert result.history[1].train_size == len(splits.train) + result.history[1].accepted
    assert sum(r.accepted for r in result.history) == len(result.samples)
    best_val = max(r.validation["macro_f1"] for r in result.history)
    assert result.final_validation.macro_f1 == pytest.approx(best_val)
    assert result.history[result.best_step].improved
    assert any(e["event"] == "teacher" for e in events)
    assert result.best.metadata.data_fingerprint == fingerprint(
        [*splits.train, *result.samples[: sum(r.accepted for r in result.history[1 : result.best_step + 1])]]
    )
    report = write_report(result, tmp_path, context={"dataset": "toy"})
    for name in (
        "report.json",
        "samples.jsonl",
        "validation_macro_f1.png",
        "per_class_f1.png",
        "confusion_matrix.png",
    ):
        assert (tmp_path / name).stat().st_size > 0
    assert report.read_text().count('"step"') >= 4


def test_early_stopping_after_patience(splits, student):
    teacher = ScriptedTeacher([])  # writes nothing: no step can improve
    result = distill(splits, teacher, DistillConfig(steps=10, patience=2, train=CFG), student=student)
    assert [r.step for r in result.history] == [0, 1, 2]
    assert result.best_step == 0 and "early stop" in result.stop_reason
    assert all(not r.improved for r in result.history[1:])


def test_budget_exhaustion_stops_the_run_and_keeps_the_best(splits, student):
    teacher = ScriptedTeacher(list(splits.traffic), fail_at=2)
    result = distill(splits, teacher, DistillConfig(steps=5, samples_per_step=6, train=CFG), student=student)
    assert len(result.history) == 2
    assert "budget" not in result.stop_reason or "step 2" in result.stop_reason
    assert "teacher stopped the run at step 2" in result.stop_reason


def test_config_validates_itself():
    with pytest.raises(ValueError, match="patience"):
        DistillConfig(patience=0)
    with pytest.raises(ValueError, match="metric"):
        DistillConfig(metric="loss")  # type: ignore[arg-type]


def test_taxonomy_mismatch_is_refused_before_training(splits, tiny_encoder):
    from pgkd.errors import ModelError

    other = Student.create([*LABELS, "weather"], tiny_encoder)
    with pytest.raises(ModelError, match="taxonomy"):
        distill(splits, ScriptedTeacher([]), DistillConfig(steps=1, train=CFG), student=other)


def test_rate_limited_step_is_skipped_not_fatal(splits, student, monkeypatch):
    from pgkd.errors import TeacherRateLimited

    class RateLimitedOnce(ScriptedTeacher):
        def generate(self, request):
            if not self.requests and self.usage.calls == 0:
                self.usage.calls += 1
                raise TeacherRateLimited("slow down", retry_after=0.01)
            return super().generate(request)

    import sys

    monkeypatch.setattr(sys.modules["pgkd.distill"].time, "sleep", lambda s: None)
    teacher = RateLimitedOnce(list(splits.traffic))
    result = distill(splits, teacher, DistillConfig(steps=2, samples_per_step=4, train=CFG), student=student)
    assert [r.step for r in result.history] == [0, 1, 2]
    assert "rate-limited" in result.history[1].note and result.history[2].accepted > 0


def test_full_mode_fine_tunes_afresh_from_the_base_each_step(splits, student, monkeypatch):
    import sys

    loop = sys.modules["pgkd.distill"]  # the package re-exports distill() under the same name
    starts = []
    real = loop.successor

    def spy(base, current, mode, *, seed, warm=False):
        nxt = real(base, current, mode, seed=seed, warm=warm)
        starts.append((current is base, warm, nxt.pooling))
        return nxt

    monkeypatch.setattr(loop, "successor", spy)
    teacher = ScriptedTeacher(list(splits.traffic))
    full = TrainConfig(max_epochs=2, learning_rate=3e-3)
    distill(splits, teacher, DistillConfig(steps=2, samples_per_step=6, train=full), student=student)
    assert len(starts) == 3 and all(not warm and pooling == "native" for _, warm, pooling in starts)
    starts.clear()
    distill(
        splits,
        teacher,
        DistillConfig(steps=1, samples_per_step=6, train=full, warm_start=True),
        student=student,
    )
    assert starts[-1][1] is True and starts[-1][0] is False  # step 1 continues from step 0's model


def test_guidance_split_keeps_the_teacher_off_the_selection_set(splits, student):
    from pgkd.distill import split_validation

    guide, select = split_validation(splits.validation, 0.5, seed=0)
    assert not {e.text for e in guide} & {e.text for e in select}
    assert len(guide) + len(select) == len(splits.validation)
    assert abs(len(guide) - len(select)) <= 3
    teacher = ScriptedTeacher(list(splits.traffic))
    result = distill(
        splits,
        teacher,
        DistillConfig(steps=1, samples_per_step=6, prompt_examples=30, guidance_split=0.5, train=CFG),
        student=student,
    )
    shown = {h.text for h in teacher.requests[0]["hard"]}
    assert shown and shown <= {e.text for e in guide}
    # the selection report covers the other half only
    assert sum(result.history[0].validation["per_class_f1"].values()) >= 0
    with pytest.raises(ValueError, match="guidance_split"):
        DistillConfig(guidance_split=1.0)


def test_out_of_fold_guidance_judges_each_seed_label_with_a_student_that_never_saw_it(
    splits, student, monkeypatch
):
    fits: list[set[str]] = []
    stopped_on: list[int] = []
    real_fit = Student.fit

    def spy(self, train, validation, config):
        fits.append({e.text for e in train})
        stopped_on.append(len(validation))
        return real_fit(self, train, validation, config)

    monkeypatch.setattr(Student, "fit", spy)
    teacher = ScriptedTeacher(list(splits.traffic))
    config = DistillConfig(steps=1, samples_per_step=6, prompt_examples=30, guidance_folds=2, train=CFG)
    result = distill(splits, teacher, config, student=student)
    seed = {e.text for e in splits.train}
    added = {e.text for e in result.samples}
    # step 0: the candidate and 2 fold students; step 1 the same, every fold student with the samples
    assert len(fits) == 6 and fits[0] == seed and fits[3] == seed | added
    for candidate, folds in ((fits[0], fits[1:3]), (fits[3], fits[4:6])):
        held_out = [candidate - f for f in folds]
        assert all(held_out) and not held_out[0] & held_out[1] and held_out[0] | held_out[1] == seed
    assert added <= fits[4] & fits[5]
    shown = {h.text for h in teacher.requests[0]["hard"]}
    assert shown and shown <= seed  # hard negatives come from the training set, not validation
    assert "precision" in teacher.requests[0]["report"]
    assert stopped_on == [len(splits.validation)] * 6  # all of validation early-stops and selects
    with pytest.raises(ValueError, match="guidance_folds"):
        DistillConfig(guidance_folds=1)
    with pytest.raises(ValueError, match="choose one"):
        DistillConfig(guidance_folds=2, guidance_split=0.5)


def test_a_selection_margin_keeps_the_seed_model_unless_a_step_clears_it(splits, student):
    # No validation gain can exceed 1.0: every step is trained and recorded, none is kept.
    teacher = ScriptedTeacher(list(splits.traffic))
    config = DistillConfig(steps=2, samples_per_step=6, prompt_examples=4, min_improvement=1.0, train=CFG)
    result = distill(splits, teacher, config, student=student)
    assert [r.accepted > 0 for r in result.history[1:]] == [True, True]
    assert not any(r.improved for r in result.history[1:])
    assert result.best_step == 0
    assert result.best.metadata.metrics["step"] == 0
    assert result.final_validation.summary() == result.history[0].validation
    with pytest.raises(ValueError, match="min_improvement"):
        DistillConfig(min_improvement=-0.01)


def test_ablations_drop_the_report_or_the_hard_negatives(splits, student):
    no_report = ScriptedTeacher(list(splits.traffic))
    distill(
        splits,
        no_report,
        DistillConfig(steps=1, samples_per_step=6, use_report=False, train=CFG),
        student=student,
    )
    assert no_report.requests[0]["report"] == "" and no_report.requests[0]["classes"]
    no_hard = ScriptedTeacher(list(splits.traffic))
    distill(
        splits,
        no_hard,
        DistillConfig(steps=1, samples_per_step=6, use_hard_negatives=False, train=CFG),
        student=student,
    )
    assert no_hard.requests[0]["hard"] == [] and "precision" in no_hard.requests[0]["report"]


def test_step_selection_keeps_only_clear_gains_with_samples_and_runs_out_of_patience():
    selection = StepSelection(best_score=0.40, margin=0.02, patience=2)
    assert not selection.observe(1, 0.415, accepted=True)  # inside the margin
    assert selection.observe(2, 0.43, accepted=True)
    assert not selection.observe(3, 0.90, accepted=False)  # no samples, the model did not change
    assert not selection.exhausted
    assert not selection.observe(4, 0.44, accepted=True)
    assert selection.exhausted and (selection.best_step, selection.best_score) == (2, 0.43)


def test_every_pgkd_arm_of_the_learning_benchmark_is_a_valid_distill_config():
    from benchmarks.learning import PGKD_ARMS

    for arm, options in PGKD_ARMS.items():
        config = dict(options)
        assert config.pop("teacher") in ("simulated", "local"), arm
        DistillConfig(**config)  # a misspelt option raises TypeError here, not an hour into a run
