"""The ``pgkd`` command line: distill, evaluate, and run the embedded local teacher.

Every option can also come from the environment (``PGKD_<OPTION>``) or a TOML file (``--config``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pgkd.errors import PGKDError
from pgkd.settings import Settings, load_settings

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
        str | None, Opt(help="bbc, wordnet, or a path to a CSV/JSONL file of (text, label)")
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
        str | None, Opt(help="head: train the classifier on a frozen encoder (fast); full: fine-tune all")
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
    settings = _settings(
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
    with _errors():
        summary = run_distillation(settings, run_dir, console=console)
    console.print_json(json.dumps(summary))


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="a model directory written by pgkd")],
    dataset: Annotated[str | None, Opt(help="bbc, wordnet, or a CSV/JSONL path")] = None,
    split: Annotated[str, Opt(help="test, validation, train or traffic")] = "test",
    seed: Annotated[int | None, Opt(help="seed of the splits (use the run's)")] = None,
    config: Annotated[Path | None, Opt(help="TOML settings file")] = None,
) -> None:
    """Score a saved student on a dataset split: accuracy, macro-F1 and the per-class report.

    By default the dataset and seed are the ones the model was distilled on (from its metadata), so
    the test split is the one it never saw."""
    from pgkd.mining import evaluate as score
    from pgkd.runner import load_splits
    from pgkd.student import Student

    with _errors():
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
        settings = _settings(config, **{**recorded, **_given(dataset=dataset, seed=seed)})
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
    from pgkd.teacher.local import DEFAULT_LOCAL_MODEL, serve

    with _errors():
        serve(model or DEFAULT_LOCAL_MODEL, host=host, port=port, n_threads=threads, n_ctx=ctx)


@teacher_app.command("models")
def teacher_models() -> None:
    """List the local teacher models that ship as PyPI packages, and whether each is installed."""
    from pgkd.teacher.local import DEFAULT_LOCAL_MODEL, MODELS, locate_part

    table = Table("key", "model", "installed", "default")
    for key, m in MODELS.items():
        installed = all(locate_part(p) is not None for p in m.parts)
        table.add_row(
            key, m.notes, "yes" if installed else m.pip_command, "*" if key == DEFAULT_LOCAL_MODEL else ""
        )
    console.print(table)


# --- the live system: services, the embedded stack, producers ---------------------------------------
# These commands drive streams/, consumers/ and producers/ (Kafka and Redis); they are imported only
# when one of them runs, so the offline library keeps no dependency on a broker.

ConfigOpt = Annotated[Path | None, Opt("--config", help="TOML file with any PGKD_* setting")]
TeacherOpt = Annotated[str | None, Opt(help="local (embedded LLM server), openai or simulated")]


def _stream_settings(config: Path | None, **flags: Any) -> Any:
    from streams.settings import StreamSettings

    try:
        return load_settings(config, StreamSettings, **flags)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def up(
    teacher: TeacherOpt = None,
    workers: Annotated[int, Opt(help="serving workers (one consumer group)")] = 1,
    run_dir: Annotated[Path, Opt(help="logs, registry and Redis data of this stack")] = Path("runs/live"),
    config: ConfigOpt = None,
) -> None:
    """Start everything on this machine: broker, Redis, teacher, trainer, serving, feedback, mining.

    A configured PGKD_BOOTSTRAP_SERVERS / PGKD_REDIS_URL / PGKD_TEACHER_URL is used instead of
    starting that part. Ctrl-C stops it all."""
    from streams.stack import EmbeddedStack

    settings = _stream_settings(config, teacher=teacher, registry_uri=str(run_dir / "registry"))
    with _errors(), EmbeddedStack(settings, run_dir, serving_workers=workers) as stack:
        table = Table("part", "where", title="pgkd up")
        for name, place in stack.where.items():
            table.add_row(name, place)
        console.print(table)
        console.print(f"namespace [bold]{stack.settings.namespace}[/bold]; logs in {run_dir / 'logs'}")
        try:
            with console.status("waiting for every service to be healthy ..."):
                stack.wait_healthy(timeout=900)
            console.print("[green]all services healthy[/green]; Ctrl-C to stop")
            while all(c.alive for c in stack.services.values()):
                time.sleep(1.0)
            console.print("[red]a service exited[/red]; see its log")
        except KeyboardInterrupt:
            console.print("stopping ...")


@app.command()
def demo(
    teacher: TeacherOpt = None,
    dataset: Annotated[str | None, Opt(help="bbc, wordnet or a CSV/JSONL path")] = None,
    rate: Annotated[float, Opt(help="requests per second (0: as fast as possible)")] = 3.0,
    feedback: Annotated[float, Opt(help="fraction of requests that get delayed ground truth")] = 0.3,
    feedback_delay: Annotated[float, Opt(help="seconds until the ground truth arrives")] = 5.0,
    limit: Annotated[int | None, Opt(help="replay only this many requests")] = None,
    linger: Annotated[
        float, Opt(help="after the last answer, watch until mining and training are idle, at most this long")
    ] = 300.0,
    run_dir: Annotated[Path, Opt(help="logs, registry and summary.json")] = Path("runs/demo"),
    config: ConfigOpt = None,
) -> None:
    """The live system end to end: `up`, replay the traffic pool with delayed feedback, watch the
    student improve, and summarise (test accuracy of the first and last model; events lost: 0)."""
    import os
    import shutil

    from streams.demo import DEMO_DEFAULTS, run_demo

    defaults = {k: v for k, v in DEMO_DEFAULTS.items() if f"PGKD_{k.upper()}" not in os.environ}
    namespace = os.environ.get("PGKD_NAMESPACE", "demo")
    settings = _stream_settings(
        config,
        **{
            **defaults,
            "teacher": teacher,
            "dataset": dataset,
            "namespace": namespace,
            "registry_uri": str(run_dir / "registry"),
        },
    )
    # A demo starts clean: its registry folder and its Redis keys from an earlier run go.
    shutil.rmtree(run_dir / "registry", ignore_errors=True)
    with _errors():
        _wipe_namespace(settings)
        summary = run_demo(
            settings,
            run_dir,
            rate=rate or None,
            feedback_fraction=feedback,
            feedback_delay=feedback_delay,
            limit=limit,
            linger=linger,
            console=console,
        )
    if summary["events_lost"]:
        raise typer.Exit(1)


def _wipe_namespace(settings: Any) -> None:
    import redis

    from streams.connect import redis_client

    try:
        client = redis_client(settings, socket_connect_timeout=1.0)
        keys = list(client.scan_iter(f"{settings.namespace}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    except redis.RedisError:
        pass  # no Redis at that URL: the stack starts its own, which is empty


def _service(name: str) -> None:
    import importlib

    importlib.import_module(f"consumers.{name}").main()


@app.command()
def serve() -> None:
    """Run one serving worker (settings from PGKD_* and PGKD_CONFIG); run more to scale out."""
    _service("serving")


@app.command("feedback")
def feedback_service() -> None:
    """Run the feedback join (predictions + delayed ground truth -> live accuracy, hard events)."""
    _service("feedback")


@app.command()
def mine() -> None:
    """Run the mining service (hard events -> teacher labels and targeted samples)."""
    _service("mining")


@app.command()
def train() -> None:
    """Run the trainer (samples -> retrain -> promote if validation does not drop)."""
    _service("trainer")


@app.command()
def rollback(
    version: Annotated[str, typer.Argument(help="a version in the registry, e.g. v0003")],
    config: ConfigOpt = None,
) -> None:
    """Make an earlier model version current again in the registry and in every serving worker."""
    from consumers.trainer import rollback as roll_back

    settings = _stream_settings(config)
    with _errors():
        record = roll_back(settings, version)
    console.print(f"rolled back to {record.version} ({record.uri})")


@app.command()
def versions(config: ConfigOpt = None) -> None:
    """List the registry's model versions with their metrics and lineage."""
    from streams.connect import registry

    settings = _stream_settings(config)
    reg = registry(settings)
    current = reg.current()
    table = Table("version", "parent", "val macro-F1", "test acc", "train size", "teacher $", "note", "")
    for r in reg.versions():
        val, test = r.metric("macro_f1"), r.metric("accuracy", "test")
        table.add_row(
            r.version,
            r.parent_version or "-",
            "-" if val is None else f"{val:.3f}",
            "-" if test is None else f"{test:.3f}",
            str(r.train_size),
            f"{r.teacher_cost_since_parent:.4f}",
            r.note,
            "current" if current and current.version == r.version else "",
        )
    console.print(table)


@app.command()
def report(
    out: Annotated[Path, Opt(help="where to write the PNG")] = Path("runs/history.png"),
    config: ConfigOpt = None,
) -> None:
    """Plot the live system's history from the registry: scores of every version, rejected
    candidates, promotions and the teacher's cumulative cost."""
    import redis

    from pgkd.registry import ModelRegistry
    from pgkd.report import plot_history
    from streams.connect import redis_client

    settings = _stream_settings(config)
    try:
        client = redis_client(settings, socket_connect_timeout=2.0)
        client.ping()
    except redis.RedisError:
        client = None  # storage alone still has every version; rejected candidates need Redis
    registry = ModelRegistry(settings.registry_uri, redis=client, namespace=settings.namespace)
    with _errors():
        records = registry.versions()
        if not records:
            raise PGKDError(f"no model version in {settings.registry_uri} (namespace {settings.namespace})")
        out.parent.mkdir(parents=True, exist_ok=True)
        plot_history(records, registry.decisions(1000), out)
    console.print(f"wrote {out} ({len(records)} versions)")


@app.command()
def replay(
    dataset: Annotated[str | None, Opt(help="bbc, wordnet or a CSV/JSONL path")] = None,
    rate: Annotated[float, Opt(help="requests per second (0: as fast as possible)")] = 0.0,
    feedback: Annotated[float, Opt(help="fraction of requests that get delayed ground truth")] = 0.3,
    feedback_delay: Annotated[float, Opt(help="seconds until the ground truth arrives")] = 5.0,
    limit: Annotated[int | None, Opt(help="replay only this many requests")] = None,
    config: ConfigOpt = None,
) -> None:
    """Replay a dataset's traffic pool as requests (and delayed feedback) to a running system."""
    from pgkd.runner import load_splits
    from producers.replay import Replayer
    from streams.connect import producer
    from streams.topics import Topics

    settings = _stream_settings(config, dataset=dataset)
    with _errors():
        splits = load_splits(settings)
        traffic = splits.traffic[:limit] if limit else splits.traffic
        replayer = Replayer(
            producer(settings),
            Topics(settings.namespace),
            rate=rate or None,
            feedback_fraction=feedback,
            feedback_delay=feedback_delay,
            seed=settings.seed,
        )
        report = replayer.run(traffic)
    console.print(
        f"sent {len(report.ids)} requests and {len(report.feedback)} feedbacks in {report.seconds:.1f} s "
        f"({len(report.ids) / report.seconds:.1f}/s)"
    )


@app.command()
def classify(
    text: Annotated[str, typer.Argument(help="the text to classify")],
    timeout: Annotated[float, Opt(help="seconds to wait for the prediction")] = 60.0,
    config: ConfigOpt = None,
) -> None:
    """Publish one request to a running system and print its prediction."""
    from producers.client import classify as send_and_wait

    settings = _stream_settings(config)
    try:
        prediction = send_and_wait(settings, text, timeout=timeout)
    except TimeoutError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print_json(prediction.model_dump_json())


def _given(**flags: Any) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if v is not None}


def _settings(config: Path | None, **flags: Any) -> Settings:
    try:
        return load_settings(config, **flags)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


@contextmanager
def _errors() -> Iterator[None]:
    """Turn library errors into a one-line message and exit code 1 instead of a traceback."""
    try:
        yield
    except PGKDError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


if __name__ == "__main__":
    app()
