"""Wires settings into library objects and runs a distillation with a live progress display.

The CLI and the services call this; it holds no algorithm of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.status import Status
from rich.table import Table

from pgkd.data import Splits, make_splits
from pgkd.datasets import load_corpus
from pgkd.distill import ProgressEvent, distill
from pgkd.distill_records import DistillConfig
from pgkd.errors import ConfigError, PGKDError
from pgkd.out_of_taxonomy import DetectorConfig
from pgkd.report import write_report
from pgkd.settings import Settings
from pgkd.student import Student
from pgkd.teacher.base import Teacher, TeacherBudget
from pgkd.training import TrainConfig


def load_splits(settings: Settings) -> Splits:
    corpus = load_corpus(
        settings.dataset,
        text_column=settings.text_column,
        label_column=settings.label_column,
        max_chars=settings.max_chars,
    )
    return make_splits(
        corpus,
        seed=settings.seed,
        n_train=settings.n_train,
        n_validation=settings.n_validation,
        max_test=settings.max_test,
        max_traffic=settings.max_traffic,
    )


def data_lineage(settings: Settings, splits: Splits) -> dict[str, Any]:
    """What a model records of the data it was trained on, so ``pgkd evaluate`` can reload it."""
    return {
        "dataset": settings.dataset,
        "text_column": settings.text_column,
        "label_column": settings.label_column,
        "seed": settings.seed,
        "n_train": settings.n_train,
        "n_validation": settings.n_validation,
        "max_test": settings.max_test,
        "max_chars": settings.max_chars,
        "splits_fingerprint": splits.fingerprint(),
    }


def build_teacher(settings: Settings, splits: Splits, student: Student, stack: ExitStack) -> Teacher:
    """The teacher named by ``settings.teacher``; a local server is started inside ``stack``."""

    def embed(texts: Sequence[str]) -> np.ndarray:
        # The base student's encoder never trains, so its features can be memoised.
        return student.embed(texts, cache=True)

    if settings.teacher == "simulated":
        from pgkd.teacher.simulated import SimulatedTeacher

        return SimulatedTeacher(
            splits.labels,
            splits.traffic,
            accuracy=settings.simulated_accuracy,
            seed=settings.seed,
            embed=embed,
        )
    from pgkd.teacher.openai_compat import OpenAICompatibleTeacher

    base_url, model = settings.teacher_url, settings.teacher_model
    if settings.teacher == "local" and base_url is None:
        from pgkd.teacher.local import LocalTeacherServer

        server = stack.enter_context(
            LocalTeacherServer(settings.local_model, n_threads=settings.local_threads, n_ctx=8192)
        )
        base_url, model = server.base_url, server.model
    if base_url is None or model is None:
        raise PGKDError(
            "the openai teacher needs --teacher-url and --teacher-model (or PGKD_TEACHER_URL/_MODEL)"
        )
    return OpenAICompatibleTeacher(
        splits.labels,
        base_url=base_url,
        model=model,
        api_key=settings.teacher_api_key.get_secret_value(),
        timeout=settings.teacher_timeout,
        max_retries=settings.teacher_max_retries,
        budget=TeacherBudget(
            max_calls=settings.teacher_max_calls,
            max_tokens=settings.teacher_max_tokens,
            max_cost=settings.teacher_max_cost,
            prompt_price_per_1k=settings.prompt_price_per_1k,
            completion_price_per_1k=settings.completion_price_per_1k,
        ),
        demonstrations=splits.train,
        shots=settings.teacher_shots,
        samples_per_call=settings.teacher_samples_per_call,
        descriptions=splits.descriptions,
        embed=embed,
        seed=settings.seed,
    )


def train_config(settings: Settings) -> TrainConfig:
    return TrainConfig(
        mode=settings.mode,
        max_epochs=settings.max_epochs,
        class_weight=settings.class_weight,
        device=settings.device,
        seed=settings.seed,
    )


def distill_config(settings: Settings) -> DistillConfig:
    return DistillConfig(
        steps=settings.steps,
        samples_per_step=settings.samples_per_step,
        patience=settings.patience,
        prompt_examples=settings.prompt_examples,
        target_classes=settings.target_classes,
        train=train_config(settings),
        warm_start=settings.warm_start,
        guidance_split=settings.guidance_split,
        guidance_folds=settings.guidance_folds,
        min_improvement=settings.min_improvement,
        calibrate=settings.calibrate,
        detector=detector_config(settings),
        seed=settings.seed,
    )


def detector_config(settings: Settings) -> DetectorConfig | None:
    if not settings.detect_out_of_taxonomy:
        return None
    return DetectorConfig(settings.out_of_taxonomy_k, settings.out_of_taxonomy_quantile)


def run_distillation(settings: Settings, run_dir: Path, *, console: Console | None = None) -> dict[str, Any]:
    """Load data, build student and teacher, run PGKD, save the best model and the report."""
    console = console or Console()
    started = time.perf_counter()
    try:  # bad settings fail here, before minutes of loading and a server start
        config = distill_config(settings)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    splits = load_splits(settings)
    console.print(
        f"[bold]{splits.name}[/bold]: {len(splits.labels)} classes, " + json.dumps(splits.summary()["sizes"])
    )
    student = Student.create(
        splits.labels,
        settings.base_model,
        max_length=settings.max_length,
        seed=settings.seed,
        device=settings.device,
    )
    with ExitStack() as stack:
        teacher = build_teacher(settings, splits, student, stack)
        if teacher.name == "simulated":
            console.print(
                "[yellow]SIMULATED TEACHER[/yellow]: answers from the dataset's hidden gold labels; it "
                "measures what the loop achieves with a strong teacher, not what an LLM does."
            )
        console.print(f"teacher: {teacher.name}")
        with console.status("training the seed student ...") as status:
            result = distill(
                splits, teacher, config, student=student, on_event=StepTable(console, status, config.steps)
            )
    result.best.metadata.data = data_lineage(settings, splits)
    model_dir = result.best.save(run_dir / "model")
    context = {
        "dataset": splits.name,
        "seed": settings.seed,
        "teacher": teacher.name,
        "splits": splits.summary(),
        "splits_fingerprint": splits.fingerprint(),
        "mode": settings.mode,
        "wall_seconds": time.perf_counter() - started,
        "model_dir": str(model_dir),
    }
    report = write_report(result, run_dir, context=context)
    seed_test, best_test = result.seed_test, result.final_test
    summary = {
        "report": str(report),
        "model": str(model_dir),
        "best_step": result.best_step,
        "stop_reason": result.stop_reason,
        "seed_test_accuracy": seed_test.accuracy if seed_test else None,
        "seed_test_macro_f1": seed_test.macro_f1 if seed_test else None,
        "pgkd_test_accuracy": best_test.accuracy if best_test else None,
        "pgkd_test_macro_f1": best_test.macro_f1 if best_test else None,
        "teacher_usage": teacher.usage.as_dict(),
        "wall_seconds": context["wall_seconds"],
    }
    return summary


class StepTable:
    """Prints one row per PGKD step as it finishes, and what the loop is doing in between."""

    def __init__(self, console: Console, status: Status, steps: int) -> None:
        self.console, self.status, self.steps = console, status, steps

    def __call__(self, event: ProgressEvent) -> None:
        kind = event["event"]
        if kind == "train":
            self.status.update(f"step {event['step']}/{self.steps}: training on {event['size']} examples ...")
        elif kind == "guidance":
            folds = event["folds"]
            self.status.update(f"step {event['step']}/{self.steps}: {folds} out-of-fold students judging ...")
        elif kind == "teacher":
            self.status.update(
                f"step {event['step']}/{self.steps}: teacher writing for {', '.join(event['classes'])} ..."
            )
        elif kind == "step":
            r = event["record"]
            table = Table(show_header=r.step == 0, box=None, pad_edge=False)
            for col, width in [
                ("step", 4),
                ("train", 6),
                ("val F1", 7),
                ("test acc", 9),
                ("test F1", 7),
                ("accepted", 9),
                ("calls", 6),
                ("cost $", 7),
                ("seconds", 7),
                ("", 5),
            ]:
                table.add_column(col, width=width, justify="right", no_wrap=True)
            test = r.test or {}
            table.add_row(
                str(r.step),
                str(r.train_size),
                f"{r.validation['macro_f1']:.3f}",
                f"{test.get('accuracy', float('nan')):.3f}",
                f"{test.get('macro_f1', float('nan')):.3f}",
                f"{r.accepted}/{r.proposed}",
                str(r.teacher.get("calls", 0)),
                f"{r.teacher.get('cost', 0.0):.4f}",
                f"{r.wall_seconds:.0f}",
                "best" if r.improved else "",
            )
            self.console.print(table)
