"""What ``pgkd demo`` shows while it runs: a live rich panel on a terminal, plain progress lines on a
pipe or a log file."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from cli.demo_watcher import Watcher
from pgkd.model_record import ModelRecord
from pgkd.registry import ModelRegistry
from pgkd.teacher.shared import shared_usage
from producers.replay import ReplayReport
from streams.settings import StreamSettings


def _accuracy(record: ModelRecord) -> str:
    value = record.metric("accuracy", "test")
    return "-" if value is None else f"{value:.3f}"


def live_view(
    settings: StreamSettings,
    registry: ModelRegistry,
    watcher: Watcher,
    report: ReplayReport,
    total: int,
    started: float,
    teacher: str,
) -> Group:
    """The terminal panel: the run's numbers so far, and one row per model version."""
    usage = shared_usage(registry.redis, settings.namespace)
    versions = registry.versions()
    accuracy, judged = watcher.live_accuracy(report)
    elapsed = time.time() - started
    answered = len(watcher.answers)
    stats = Table(box=None, show_header=False, pad_edge=False)
    stats.add_column(style="bold")
    stats.add_column()
    rows = [
        ("elapsed", f"{elapsed:.0f} s"),
        ("requests sent / answered", f"{len(report.ids)} of {total} / {answered}"),
        ("throughput (10 s)", f"{watcher.throughput():.1f} predictions/s"),
        ("feedback sent", f"{len(report.feedback)}"),
        ("live accuracy (feedback)", "-" if accuracy is None else f"{accuracy:.3f} over {judged}"),
        ("hard events", f"{watcher.hard} ({watcher.hard / max(1, answered):.1%} of predictions)"),
        (
            "teacher",
            f"{teacher}: {usage['calls']:.0f} calls, {usage['tokens']:.0f} tokens, ${usage['cost']:.4f}",
        ),
    ]
    for name, value in rows:
        stats.add_row(name, value)
    models = Table(
        "version", "promoted", "val macro-F1", "test acc", "samples", "first served", title="models"
    )
    for r in versions:
        seen = watcher.first_seen.get(r.version)
        served = "-" if seen is None else f"+{seen - started:.0f} s"
        val = r.metric("macro_f1")
        models.add_row(
            r.version,
            time.strftime("%H:%M:%S", time.localtime(r.created_at)),
            "-" if val is None else f"{val:.3f}",
            _accuracy(r),
            str(sum(r.samples_by_source.values())),
            served,
        )
    return Group(Panel(stats, title="pgkd demo"), models)


class Display:
    """A live panel on a terminal; on a pipe or a log file (``make demo | tee``), where a live
    panel prints nothing until the end, one plain progress line every ``every`` seconds."""

    def __init__(self, console: Console, every: float = 15.0) -> None:
        self.console, self.every = console, every
        self.live = Live(console=console, refresh_per_second=1) if console.is_terminal else None
        self.last = 0.0

    def __enter__(self) -> Display:
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.live.__exit__(*exc)

    def __call__(self, view: Callable[[], Group], line: Callable[[], str]) -> None:
        if self.live:
            self.live.update(view())
        elif time.time() - self.last >= self.every:
            self.last = time.time()
            self.console.print(line(), highlight=False, soft_wrap=True)


def progress_line(
    registry: ModelRegistry, watcher: Watcher, report: ReplayReport, total: int, started: float
) -> str:
    """The panel's headline numbers in one line, for a pipe or a log file."""
    accuracy, judged = watcher.live_accuracy(report)
    current = registry.current()
    model = "-"
    if current is not None:
        f1 = current.metric("macro_f1", "test")
        model = current.version + ("" if f1 is None else f" (test macro-F1 {f1:.3f})")
    live = "-" if accuracy is None else f"{accuracy:.3f} over {judged}"
    return (
        f"[{time.time() - started:5.0f} s] sent {len(report.ids)}/{total}, answered {len(watcher.answers)}, "
        f"live accuracy {live}, hard events {watcher.hard}, model {model}, "
        f"versions {len(registry.versions())}"
    )
