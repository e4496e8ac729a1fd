"""The library's commands: distill, evaluate, and run the embedded local teacher.

``pgkd`` (cli/main.py) adds the live system's commands to this app; the library itself never
imports the broker-facing packages. Every option can also come from the environment
(``PGKD_<OPTION>``) or a TOML file (``--config``).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pgkd.errors import ConfigError, LocalTeacherError, PGKDError
from pgkd.settings import S, Settings, load_settings

app = typer.Typer(
    help="Performance-Guided Knowledge Distillation: make a small student classifier as good as an LLM "
    "teacher on your classes, at a fraction of the cost.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
teacher_app = typer.Typer(help="The embedded local LLM teacher (an OpenAI-compatible llama.cpp server).")
app.add_typer(teacher_app, name="teacher")
console = Console()

Opt = typer.Option


@app.command()
def distill(
    dataset: Annotated[
        str | None, Opt(help="bbc, wordnet, foldoc, or a path to a CSV/JSONL file of (text, label)")
    ] = None,
    teacher: Annotated[
        str | None, Opt(help="local (embedded LLM server), openai (any OpenAI-compatible URL), or simulated")
    ] = None,
    teacher_url: Annotated[
        str | None, Opt(help="OpenAI-compatible base URL, e.g. http://host:8000/v1")
    ] = None,
    teacher_model: Annotated[str | None, Opt(help="model name to ask the teacher endpoint for")] = None,
    steps: Annotated[int | None, Opt(help="PGKD steps (paper: 10)")] = None,
    samples_per_step: Annotated[
        int | None, Opt(help="samples the teacher writes per step (paper: 32)")
    ] = None,
    patience: Annotated[
        int | None, Opt(help="stop after this many steps without improvement (paper: 5)")
    ] = None,
    mode: Annotated[
        str | None,
        Opt(
            help="full (default): fine-tune the encoder; head: the fast option, a linear head on a "
            "frozen encoder"
        ),
    ] = None,
    seed: Annotated[int | None, Opt(help="seed of the splits and training")] = None,
    text_column: Annotated[str | None, Opt(help="text column of a CSV/JSONL dataset")] = None,
    label_column: Annotated[str | None, Opt(help="label column of a CSV/JSONL dataset")] = None,
    simulated_accuracy: Annotated[
        float | None, Opt(help="labelling accuracy of the simulated teacher")
    ] = None,
    out: Annotated[
        Path | None, Opt(help="run directory (default: runs/<dataset>-<teacher>-seed<seed>)")
    ] = None,
    config: Annotated[Path | None, Opt(help="TOML file with any of these settings")] = None,
) -> None:
    """Distil a teacher into a student on a dataset (the paper's Algorithm 1) and write a run report."""
    settings: Settings = settings_from(
        config,
        dataset=dataset,
        teacher=teacher,
        teacher_url=teacher_url,
        teacher_model=teacher_model,
        steps=steps,
        samples_per_step=samples_per_step,
        patience=patience,
        mode=mode,
        seed=seed,
        text_column=text_column,
        label_column=label_column,
        simulated_accuracy=simulated_accuracy,
    )
    from pgkd.runner import run_distillation

    run_dir = (
        out or settings.runs_dir / f"{Path(settings.dataset).stem}-{settings.teacher}-seed{settings.seed}"
    )
    with library_errors():
        summary = run_distillation(settings, run_dir, console=console)
    console.print_json(json.dumps(summary))


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="a model directory written by pgkd")],
    dataset: Annotated[str | None, Opt(help="bbc, wordnet, foldoc, or a CSV/JSONL path")] = None,
    split: Annotated[str, Opt(help="test, validation, train or traffic")] = "test",
    seed: Annotated[int | None, Opt(help="seed of the splits (use the run's)")] = None,
    config: Annotated[Path | None, Opt(help="TOML settings file")] = None,
) -> None:
    """Score a saved student on a dataset split: accuracy, macro-F1 and the per-class report.

    By default the dataset and seed are the ones the model was distilled on (from its metadata), so
    the test split is the one it never saw."""
    from pgkd.evaluation import evaluate as score
    from pgkd.runner import load_splits
    from pgkd.student import Student

    with library_errors():
        student = Student.load(model)
        trained_on = student.metadata.data
        keys = (
            "dataset",
            "text_column",
            "label_column",
            "seed",
            "n_train",
            "n_validation",
            "max_test",
            "max_chars",
        )
        recorded = {k: trained_on.get(k) for k in keys}
        settings: Settings = settings_from(config, **{**recorded, **_given(dataset=dataset, seed=seed)})
        splits = load_splits(settings)
        if set(splits.labels) != set(student.labels):
            raise PGKDError(
                f"the model's labels {list(student.labels)} are not the dataset's {list(splits.labels)}"
            )
        if trained_on.get("splits_fingerprint") not in (None, splits.fingerprint()) and split != "traffic":
            console.print(
                "[yellow]warning:[/yellow] these splits differ from the ones the model was trained on"
            )
        parts = {
            "test": splits.test,
            "validation": splits.validation,
            "train": splits.train,
            "traffic": splits.traffic,
        }
        if split not in parts:
            raise typer.BadParameter(f"unknown split {split!r}; use one of {', '.join(parts)}")
        examples = parts[split]
        started = time.perf_counter()
        pred = student.predict([e.text for e in examples])
        seconds = time.perf_counter() - started
        report = score(student.labels, [e.label for e in examples], pred.labels)
    console.print(report.text)
    console.print_json(
        json.dumps(
            {
                "model": str(model),
                "version": student.metadata.version,
                "split": split,
                "n": len(examples),
                "accuracy": report.accuracy,
                "macro_f1": report.macro_f1,
                "examples_per_second": len(examples) / seconds,
            }
        )
    )


@teacher_app.command("serve")
def teacher_serve(
    model: Annotated[
        str | None, Opt(help="a candidate key (see `pgkd teacher models`) or a .gguf path")
    ] = None,
    host: Annotated[
        str, Opt(help="interface to bind; keep loopback unless you add auth in front")
    ] = "127.0.0.1",
    port: Annotated[int, Opt(help="port of the OpenAI-compatible API")] = 8011,
    threads: Annotated[int | None, Opt(help="CPU threads (default: all cores)")] = None,
    ctx: Annotated[int, Opt(help="context window in tokens (PGKD prompts need about 4k)")] = 8192,
) -> None:
    """Serve the embedded local teacher until Ctrl-C. Point any OpenAI client at http://HOST:PORT/v1."""
    from pgkd.processes import tail
    from pgkd.teacher.local import LocalTeacherServer
    from pgkd.teacher.models import DEFAULT_LOCAL_MODEL

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell starts background jobs with it ignored. Binding anything but loopback
    # exposes an unauthenticated LLM to the network; that is the operator's call.
    # Only the main thread may set handlers (an embedding program may call this from another).
    in_main = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGTERM, signal.SIGINT) if in_main else ()
    previous = {sig: signal.signal(sig, on_signal) for sig in signals}
    try:
        with (
            library_errors(),
            LocalTeacherServer(
                model or DEFAULT_LOCAL_MODEL, host=host, port=port, n_threads=threads, n_ctx=ctx
            ) as server,
        ):
            typer.echo(
                f"local teacher ready in {server.startup_s:.1f}s: base_url={server.base_url} "
                f"model={server.model} pid={server.pid} log={server.log_path}"
            )
            typer.echo("press Ctrl-C to stop")
            while server.running:
                time.sleep(0.5)
            raise LocalTeacherError(
                f"the local teacher server exited unexpectedly. Last lines of {server.log_path}:\n"
                f"{tail(server.log_path) if server.log_path else ''}"
            )
    except KeyboardInterrupt:
        typer.echo("local teacher stopped")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@teacher_app.command("models")
def teacher_models() -> None:
    """List the local teacher models that ship as PyPI packages, and whether each is installed."""
    from pgkd.teacher.models import DEFAULT_LOCAL_MODEL, MODELS, locate_part

    table = Table("key", "model", "installed", "default")
    for key, m in MODELS.items():
        installed = all(locate_part(p) is not None for p in m.parts)
        table.add_row(
            key, m.notes, "yes" if installed else m.pip_command, "*" if key == DEFAULT_LOCAL_MODEL else ""
        )
    console.print(table)


def _given(**flags: Any) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if v is not None}


def settings_from(config: Path | None, kind: type[S] = Settings, **flags: Any) -> S:  # type: ignore[assignment]
    """Settings of type ``kind``, or exit 2 with every bad setting named."""
    try:
        return load_settings(config, kind, **flags)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


@contextmanager
def library_errors() -> Iterator[None]:
    """Turn library errors into a one-line message and exit code 1 instead of a traceback."""
    try:
        yield
    except PGKDError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


if __name__ == "__main__":
    app()
