"""Running the live system: ``pgkd up`` (the whole stack on this machine), ``pgkd demo`` (the stack
plus replayed traffic, summarised) and one command per service process (``serve``, ``feedback``,
``mine``, ``train``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.options import ConfigOpt, TeacherOpt, stream_settings
from pgkd.cli import Opt, app, console, library_errors


@app.command()
def up(
    teacher: TeacherOpt = None,
    workers: Annotated[int, Opt(help="serving workers (one consumer group)")] = 1,
    run_dir: Annotated[Path, Opt(help="logs, registry and Redis data of this stack")] = Path("runs/live"),
    config: ConfigOpt = None,
) -> None:
    """Start everything on this machine: broker, Redis, teacher, trainer, serving, feedback, mining.

    A configured PGKD_BOOTSTRAP_SERVERS / PGKD_REDIS_URL / PGKD_TEACHER_URL is used instead of
    starting that part. A part that dies is restarted (PGKD_RESTART_* set the backoff and budget);
    one that keeps dying past its budget stops it all with exit status 1. Ctrl-C or SIGTERM stops it
    all with exit status 0."""
    from streams.stack import EmbeddedStack

    settings = stream_settings(config, teacher=teacher, registry_uri=str(run_dir / "registry"))

    def event(message: str) -> None:
        console.print(f"[yellow]{time.strftime('%H:%M:%S')} {message}[/yellow]", highlight=False)

    interrupted = False
    with _stopped_by_sigterm(), library_errors():
        stack = EmbeddedStack(settings, run_dir, serving_workers=workers, supervise=True, on_event=event)
        try:
            stack.start()
            table = Table("part", "where", title="pgkd up")
            for name, place in stack.where.items():
                table.add_row(name, place)
            console.print(table)
            console.print(f"namespace [bold]{stack.settings.namespace}[/bold]; logs in {run_dir / 'logs'}")
            with console.status("waiting for every service to be healthy ..."):
                stack.wait_healthy(timeout=900)
            console.print("[green]all services healthy[/green]; Ctrl-C to stop")
            assert stack.supervisor is not None
            while stack.supervisor.gave_up is None:
                time.sleep(1.0)
            part = stack.supervisor.gave_up
            console.print(
                f"[red]{part} kept dying past its restart budget[/red]; stopping everything. "
                f"Its log: {run_dir / 'logs' / (part + '.log')}"
            )
        except KeyboardInterrupt:
            interrupted = True
        finally:
            _ignore_signals()  # a second Ctrl-C or SIGTERM must not cut the orderly stop short
            stack.stop()
    if interrupted:
        console.print("stopped")
        return
    raise typer.Exit(1)


def _ignore_signals() -> None:
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


@contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM (a service manager, `kill`) stops the stack as Ctrl-C does: in order, exit status 0."""
    import signal

    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command()
def demo(
    teacher: TeacherOpt = None,
    dataset: Annotated[str | None, Opt(help="bbc, wordnet, foldoc or a CSV/JSONL path")] = None,
    rate: Annotated[float, Opt(help="requests per second (0: as fast as possible)")] = 5.0,
    feedback: Annotated[float, Opt(help="fraction of requests that get delayed ground truth")] = 0.5,
    feedback_delay: Annotated[float, Opt(help="seconds until the ground truth arrives")] = 5.0,
    limit: Annotated[int | None, Opt(help="replay only this many requests (default 2,100)")] = None,
    n_train: Annotated[
        int | None, Opt(help="seed labels of the first student (demo: 200, a cold start; the paper: 800)")
    ] = None,
    linger: Annotated[
        float, Opt(help="after the last answer, watch until mining and training are idle, at most this long")
    ] = 180.0,
    run_dir: Annotated[Path, Opt(help="logs, registry and summary.json")] = Path("runs/demo"),
    config: ConfigOpt = None,
) -> None:
    """The live system end to end: `up`, replay the traffic pool with delayed feedback, watch the
    student improve, and summarise (test accuracy of the first and last model; events lost: 0)."""
    import os
    import shutil

    from cli.demo import DEMO_DEFAULTS, DEMO_REQUESTS, run_demo

    defaults = {k: v for k, v in DEMO_DEFAULTS.items() if f"PGKD_{k.upper()}" not in os.environ}
    namespace = os.environ.get("PGKD_NAMESPACE", "demo")
    flags = {"teacher": teacher, "dataset": dataset, "n_train": n_train}
    settings = stream_settings(
        config,
        **{
            **defaults,
            **{k: v for k, v in flags.items() if v is not None},  # a flag given beats the demo's default
            "namespace": namespace,
            "registry_uri": str(run_dir / "registry"),
        },
    )
    # A demo starts clean: its registry folder and its Redis keys from an earlier run go.
    shutil.rmtree(run_dir / "registry", ignore_errors=True)
    with library_errors():
        _wipe_namespace(settings)
        summary = run_demo(
            settings,
            run_dir,
            rate=rate or None,
            feedback_fraction=feedback,
            feedback_delay=feedback_delay,
            limit=limit or DEMO_REQUESTS,
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
