"""The end of ``pgkd demo``: its summary (models first and last, live accuracy, events lost, teacher
spend) as a dict for ``summary.json``, and as a table."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from cli.demo_watcher import Watcher
from pgkd.model_record import ModelRecord
from pgkd.samples import SampleStore
from pgkd.teacher.shared import shared_usage
from producers.replay import ReplayReport
from streams import connect
from streams.settings import StreamSettings


def summarise(
    settings: StreamSettings, watcher: Watcher, report: ReplayReport, started: float
) -> dict[str, Any]:
    """The run's outcome, read once the traffic is over: what ``summary.json`` holds."""
    redis = connect.redis_client(settings)
    registry = connect.registry(settings, redis)
    versions = registry.versions()
    current = registry.current()
    first = versions[0] if versions else None
    promoted_after = [r for r in versions if r.created_at > started]
    missing = [i for i in report.ids if i not in watcher.answers]
    return {
        "requests": len(report.ids),
        "answered": len(report.ids) - len(missing),
        "events_lost": len(missing),
        "duplicate_predictions": watcher.duplicates,
        "feedback": len(report.feedback),
        "hard_events": watcher.hard,
        "samples": dict(SampleStore(redis, namespace=settings.namespace).counts()),
        "teacher": shared_usage(redis, settings.namespace),
        "first_model": _model_summary(first),
        "last_model": _model_summary(current),
        "live_accuracy_first": watcher.live_accuracy(report, 200, first=True)[0],
        "live_accuracy_last": watcher.live_accuracy(report, 200)[0],
        "versions": [
            {
                "version": r.version,
                "test_accuracy": r.metric("accuracy", "test"),
                "test_macro_f1": r.metric("macro_f1", "test"),
                "validation_macro_f1": r.metric("macro_f1"),
                "samples": r.samples_by_source,
                "seconds_after_first_request": round(r.created_at - started, 1)
                if r.created_at > started
                else None,
            }
            for r in versions
        ],
        "seconds_to_first_promotion": round(promoted_after[0].created_at - started, 1)
        if promoted_after
        else None,
        "decisions": registry.decisions(50),
        "wall_seconds": round(time.time() - started, 1),
    }


def _model_summary(record: ModelRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "version": record.version,
        "test_accuracy": record.metric("accuracy", "test"),
        "test_macro_f1": record.metric("macro_f1", "test"),
    }


def print_summary(console: Console, s: dict[str, Any]) -> None:
    table = Table(box=None, show_header=False, title="summary")
    table.add_column(style="bold")
    table.add_column()
    first, last = s["first_model"] or {}, s["last_model"] or {}

    def score(m: dict[str, Any], key: str) -> str:
        return "-" if m.get(key) is None else f"{m[key]:.3f}"

    for name, m in (("first model", first), ("last model", last)):
        table.add_row(
            name,
            f"{m.get('version', '-')}: test accuracy {score(m, 'test_accuracy')}, "
            f"macro-F1 {score(m, 'test_macro_f1')}",
        )
    table.add_row(
        "live accuracy",
        f"first 200 judged {score(s, 'live_accuracy_first')} -> last 200 {score(s, 'live_accuracy_last')}",
    )
    table.add_row("versions promoted", str(len(s["versions"])))
    trail = [v for v in s["versions"] if v.get("test_macro_f1") is not None]
    if trail:
        table.add_row(
            "test macro-F1 by version",
            " -> ".join(f"{v['version']} {v['test_macro_f1']:.3f}" for v in trail),
        )
    table.add_row("requests / answered", f"{s['requests']} / {s['answered']}")
    style = "green" if s["events_lost"] == 0 else "red"
    table.add_row("events lost", f"[{style}]{s['events_lost']}[/{style}]")
    table.add_row("duplicate predictions", str(s["duplicate_predictions"]))
    table.add_row("hard events", str(s["hard_events"]))
    table.add_row("samples by source", json.dumps(s["samples"]))
    t = s["teacher"]
    table.add_row("teacher", f"{t['calls']:.0f} calls, {t['tokens']:.0f} tokens, ${t['cost']:.4f}")
    first_promotion = s["seconds_to_first_promotion"]
    table.add_row(
        "first promotion", "-" if first_promotion is None else f"{first_promotion} s after the first request"
    )
    console.print(table)
