"""The offline PGKD loop: Algorithm 1 of Di Palo et al. (arXiv 2411.05045).

1. train the student on the seed labels; 2. evaluate it on validation (per-class report, hard
negatives = misclassified samples it was most confident about); 3. prompt the teacher with the
taxonomy, correct and misclassified examples, hard negatives and the report verbatim; 4. add the
accepted samples to the training set and retrain; 5. keep the best model on validation, stopping
after ``patience`` steps without improvement or ``steps`` steps in all. The run's configuration
and the records it returns are in :mod:`pgkd.distill_records`.
"""

from __future__ import annotations

import random
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from sklearn.model_selection import StratifiedKFold

from pgkd.calibration import calibrate, calibration_error
from pgkd.data import Example, Splits
from pgkd.distill_records import DistillConfig, DistillResult, Metric, StepRecord, StepSelection
from pgkd.errors import (
    ModelError,
    TeacherBudgetExceeded,
    TeacherError,
    TeacherRateLimited,
    TeacherResponseError,
    TeacherUnavailable,
)
from pgkd.evaluation import (
    ScoredExample,
    ValidationReport,
    evaluate,
    score,
)
from pgkd.fingerprint import digest_chunks
from pgkd.out_of_taxonomy import fit_detector
from pgkd.student import Student
from pgkd.teacher.base import Teacher
from pgkd.teacher.request import generation_request
from pgkd.training import TrainMode

ProgressEvent = dict[str, Any]  # one line of a run's progress (train, step, teacher, done)
DEFAULT_CONFIG = DistillConfig()  # the paper's knobs but a 0.02 selection margin; frozen, so safe to share


def fingerprint(examples: Sequence[Example]) -> str:
    """Order-independent sha256 of a training set, recorded as the model's data lineage."""
    return digest_chunks(
        f"{label}\x1f{text}\x1e" for text, label in sorted((e.text, e.label) for e in examples)
    )


def distill(
    splits: Splits,
    teacher: Teacher,
    config: DistillConfig = DEFAULT_CONFIG,
    *,
    student: Student | None = None,
    on_event: Callable[[ProgressEvent], None] | None = None,
) -> DistillResult:
    """Run PGKD and return the best student on validation (step 0 is the seed-only student).

    ``student`` is an untrained (or pre-trained) starting point; by default a fresh all-MiniLM-L6-v2
    student. ``on_event`` receives progress events: ``{"event": "step", ...}`` and others.
    """
    emit = on_event or (lambda _e: None)
    mode = config.train.mode
    head = mode == "head"
    base = student or Student.create(splits.labels, seed=config.seed)
    if not set(base.labels) == set(splits.labels) == set(teacher.labels):
        raise ModelError(
            f"student, data and teacher disagree on the taxonomy: student {list(base.labels)}, "
            f"data {list(splits.labels)}, teacher {list(teacher.labels)}"
        )
    guide_set, select_set = split_validation(splits.validation, config.guidance_split, seed=config.seed)
    exclude = [e.text for e in (*splits.train, *splits.validation, *splits.test)]
    train_set = list(splits.train)
    samples: list[Example] = []
    started = time.perf_counter()

    def judge(model: Student, step: int) -> tuple[ValidationReport, list[ScoredExample], ValidationReport]:
        """The guidance report and verdicts the teacher reads, and the selection report."""
        if config.guidance_folds:
            emit({"event": "guidance", "step": step, "folds": config.guidance_folds})
            added = train_set[len(splits.train) :]
            guide_report, guide_scored = out_of_fold(base, splits.train, added, select_set, config)
            return guide_report, guide_scored, assess(model, select_set, head)[0]
        guide_report, guide_scored = assess(model, guide_set, head)
        if guide_set is select_set:
            return guide_report, guide_scored, guide_report
        return guide_report, guide_scored, assess(model, select_set, head)[0]

    emit({"event": "train", "step": 0, "size": len(train_set)})
    current = successor(base, base, mode, seed=config.seed)
    fit = current.fit(train_set, select_set, config.train)
    guide_report, scored_val, val_report = judge(current, 0)
    test_report = assess(current, splits.test, head)[0] if config.evaluate_test else None
    seed_test = test_report
    best = current
    selection = StepSelection(_metric(val_report, config.metric), config.min_improvement, config.patience)
    best_val, best_test = val_report, test_report
    history = [
        StepRecord(
            step=0,
            train_size=len(train_set),
            validation=val_report.summary(),
            test=test_report.summary() if test_report else None,
            improved=True,
            teacher=teacher.usage.as_dict(),
            train_seconds=fit.seconds,
            wall_seconds=time.perf_counter() - started,
            note="seed labels only",
        )
    ]
    emit({"event": "step", "record": history[-1]})
    stop_reason = f"completed {config.steps} steps"
    for step in range(1, config.steps + 1):
        step_started = time.perf_counter()
        request = generation_request(
            guide_report,
            scored_val,
            n=config.samples_per_step,
            examples=config.prompt_examples,
            classes=config.target_classes,
            seed=config.seed + step,
            use_report=config.use_report,
            use_hard_negatives=config.use_hard_negatives,
            exclude=exclude,
        )
        emit({"event": "teacher", "step": step, "classes": list(request.classes)})
        try:
            result = teacher.generate(request)
        except TeacherResponseError as exc:  # nothing usable this step; the next one may do better
            accepted: list[Example] = []
            proposed, rejected, note = 1, Counter({"invalid_json": 1}), f"teacher answer unusable: {exc}"
        except TeacherRateLimited as exc:  # back off, and let the step count as one without samples
            time.sleep(min(exc.retry_after or 10.0, 60.0))
            accepted, proposed, rejected, note = [], 0, Counter(), f"teacher rate-limited: {exc}"
        except (TeacherBudgetExceeded, TeacherUnavailable) as exc:
            stop_reason = f"teacher stopped the run at step {step}: {exc}"
            break
        except TeacherError as exc:
            stop_reason = f"teacher error at step {step}: {exc}"
            break
        else:
            accepted, proposed, rejected, note = result.samples, result.proposed, result.rejected, ""
        teacher_seconds = time.perf_counter() - step_started
        samples.extend(accepted)
        exclude.extend(e.text for e in accepted)
        train_set.extend(accepted)
        train_seconds = 0.0
        if accepted:
            emit({"event": "train", "step": step, "size": len(train_set)})
            current = successor(base, current, mode, seed=config.seed, warm=config.warm_start)
            train_seconds = current.fit(train_set, select_set, config.train).seconds
            guide_report, scored_val, val_report = judge(current, step)
            test_report = assess(current, splits.test, head)[0] if config.evaluate_test else None
        else:
            note = note or "no sample accepted; model unchanged"
        value = _metric(val_report, config.metric)
        improved = selection.observe(step, value, bool(accepted))
        if improved:
            best, best_val, best_test = current, val_report, test_report
        history.append(
            StepRecord(
                step=step,
                train_size=len(train_set),
                validation=val_report.summary(),
                test=test_report.summary() if test_report else None,
                improved=improved,
                target_classes=list(request.classes),
                proposed=proposed,
                accepted=len(accepted),
                rejected=dict(rejected),
                teacher=teacher.usage.as_dict(),
                teacher_seconds=teacher_seconds,
                train_seconds=train_seconds,
                wall_seconds=time.perf_counter() - step_started,
                note=note,
            )
        )
        emit({"event": "step", "record": history[-1]})
        if selection.exhausted:
            stop_reason = f"early stop: no validation improvement for {config.patience} steps"
            break

    best_step = selection.best_step
    best.metadata.data_fingerprint = fingerprint(
        [*splits.train, *samples[: _samples_used(history, best_step)]]
    )
    best.metadata.metrics = {
        "validation": best_val.summary(),
        "test": best_test.summary() if best_test else None,
        "step": best_step,
        "teacher": teacher.name,
        "teacher_usage": teacher.usage.as_dict(),
    }
    if config.calibrate:
        fitted = calibrate(best, splits.validation)  # records itself in best.metadata.metrics
        if config.evaluate_test:
            tested = calibration_error(best, splits.test, fitted.temperature)
            best.metadata.metrics["calibration"].update(
                test_ece_before=tested["ece_before"], test_ece_after=tested["ece_after"]
            )
    if config.detector is not None:
        used = [*splits.train, *samples[: _samples_used(history, best_step)]]
        fit_detector(best, used, splits.validation, config.detector, cache=head)
    return DistillResult(best, best_step, history, samples, stop_reason, best_val, best_test, seed_test)


def successor(base: Student, current: Student, mode: TrainMode, *, seed: int, warm: bool = False) -> Student:
    """The student to train next: a fresh candidate from the untrained ``base`` (a new head on the
    frozen encoder, or the pretrained encoder to fine-tune), or, with ``warm``, a copy of
    ``current`` to keep fine-tuning."""
    if warm and mode == "full" and current is not base:
        return current.clone()
    return base.successor(mode, seed=seed)


def out_of_fold(
    base: Student,
    gold: Sequence[Example],
    added: Sequence[Example],
    select: Sequence[Example],
    config: DistillConfig,
) -> tuple[ValidationReport, list[ScoredExample]]:
    """Every gold training text judged by a student that never trained on it: ``guidance_folds``
    students from ``base``, each fitted on the other folds plus every ``added`` sample and early-stopped
    on ``select``. Only gold texts are judged: the report describes real data, not the teacher's."""
    k = config.guidance_folds
    head = config.train.mode == "head"
    labels = [e.label for e in gold]
    try:
        with warnings.catch_warnings():  # a class rarer than k still splits, sklearn just warns
            warnings.simplefilter("ignore", UserWarning)
            folds = list(StratifiedKFold(k, shuffle=True, random_state=config.seed).split(labels, labels))
    except ValueError as exc:
        raise ModelError(f"cannot split {len(gold)} training examples into {k} folds: {exc}") from exc
    predicted = [""] * len(gold)
    confidence = [0.0] * len(gold)
    for fit_on, held_out in folds:
        judge = base.successor(config.train.mode, seed=config.seed)
        judge.fit([gold[i] for i in fit_on] + list(added), select, config.train)
        pred = judge.predict([gold[i].text for i in held_out], cache=head)
        for i, label, conf in zip(held_out, pred.labels, pred.confidence.tolist(), strict=True):
            predicted[i], confidence[i] = label, conf
    return evaluate(base.labels, labels, predicted), score(gold, predicted, confidence)


def split_validation(
    validation: Sequence[Example], guidance: float, *, seed: int = 0
) -> tuple[Sequence[Example], Sequence[Example]]:
    """(guidance set, selection set): ``guidance`` of each class's examples guide the teacher, the
    rest select the model. With ``guidance == 0`` both are ``validation`` itself (the paper).

    >>> g, s = split_validation([Example(str(i), "ab"[i % 2]) for i in range(8)], 0.5)
    >>> len(g), len(s), sorted({e.label for e in g}) == sorted({e.label for e in s})
    (4, 4, True)
    """
    if guidance <= 0:
        return validation, validation
    by_class: dict[str, list[Example]] = {}
    for e in validation:
        by_class.setdefault(e.label, []).append(e)
    rng = random.Random(seed)
    guide: list[Example] = []
    select: list[Example] = []
    carry = 0.0  # spreads the rounding over classes, so the guidance share holds overall
    for label in sorted(by_class):
        members = by_class[label]
        rng.shuffle(members)
        carry += guidance * len(members)
        take = min(len(members) - 1, int(carry)) if len(members) > 1 else 0
        carry -= take
        guide += members[:take]
        select += members[take:]
    if not guide:
        raise ModelError(f"guidance_split {guidance} leaves no validation example to guide the teacher")
    return guide, select


def assess(
    student: Student, examples: Sequence[Example], cache: bool
) -> tuple[ValidationReport, list[ScoredExample]]:
    """The student's report on labelled ``examples`` and its verdict on each (``cache``: head mode)."""
    pred = student.predict([e.text for e in examples], cache=cache)
    report = evaluate(student.labels, [e.label for e in examples], pred.labels)
    return report, score(examples, pred.labels, pred.confidence.tolist())


def _metric(report: ValidationReport, metric: Metric) -> float:
    return report.macro_f1 if metric == "macro_f1" else report.accuracy


def _samples_used(history: list[StepRecord], step: int) -> int:
    return sum(r.accepted for r in history if 0 < r.step <= step)
