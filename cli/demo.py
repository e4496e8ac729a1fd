"""``pgkd demo``: the embedded stack under replayed traffic, watched live.

It starts everything (:class:`~streams.stack.EmbeddedStack`), waits for the seed model, replays the
dataset's traffic pool with delayed feedback for a fraction of it, and shows every second: traffic,
throughput, live accuracy (over the requests whose feedback has arrived), the hard-event rate,
teacher calls and cost, and the model versions promoted. It ends with a summary: the test accuracy
of the first and the last model, and the events lost (requests without a prediction: must be 0).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka import TopicPartition
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from pgkd.registry import ModelRecord, ModelRegistry
from pgkd.runner import load_splits
from pgkd.samples import SampleStore
from pgkd.teacher.shared import shared_usage
from producers.replay import Replayer, ReplayReport
from streams import connect
from streams.events import EventDecodeError, Prediction, decode
from streams.settings import StreamSettings
from streams.stack import EmbeddedStack
from streams.topics import Topics

# What the demo changes so that a quarter of an hour shows the whole loop learning on two cores:
# WordNet's 41 classes, where a fine-tuned student still has much to learn (BBC's 5 are at 0.96
# before any sample); a cold start from 200 seed labels, so that ten minutes of live feedback move
# the student by more than the noise of a 200-request accuracy window (from the paper's 800, the
# ~1,000 labels a demo collects are worth +0.02-0.03, inside that noise: BENCHMARKS.md section 4);
# generation and retraining after a handful of events instead of production's dozens; retrains that
# continue from the current model for a few epochs (a fresh fine-tune takes minutes per retrain
# there); one torch thread per service, so that serving, the trainer and the LLM teacher share the
# cores instead of fighting over them. Flags and PGKD_* variables win.
DEMO_DEFAULTS: dict[str, Any] = {
    "dataset": "wordnet",
    "n_train": 200,
    "min_hard": 4,
    "generate_every_seconds": 120.0,
    "samples_per_step": 8,
    "retrain_every_samples": 120,
    "retrain_every_seconds": 120.0,
    "warm_start": True,
    "warm_epochs": 3,
    "torch_threads": 1,
    "low_confidence": 0.4,
}
DEMO_REQUESTS = 2100  # of the traffic pool: 7 minutes at the default rate


class Watcher(threading.Thread):
    """Tails ``predictions`` and ``hard`` from the beginning and keeps the demo's tallies."""

    def __init__(self, settings: StreamSettings) -> None:
        super().__init__(name="demo-watcher", daemon=True)
        self.settings = settings
        self.topics = Topics(settings.namespace)
        self.lock = threading.Lock()
        self.answers: dict[str, Prediction] = {}
        self.duplicates = 0
        self.hard = 0
        self.first_seen: dict[str, float] = {}  # model version -> when its first prediction arrived
        self.recent: deque[float] = deque(maxlen=10_000)
        self.stopping = threading.Event()

    def run(self) -> None:
        consumer = connect.consumer(self.settings, group=None)
        try:
            parts = []
            for topic in (self.topics.predictions, self.topics.hard):
                parts += [
                    TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or {0})
                ]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            while not self.stopping.is_set():
                for tp, records in consumer.poll(timeout_ms=500).items():
                    with self.lock:
                        for record in records:
                            self._take(tp.topic, record.value)
        finally:
            consumer.close()

    def _take(self, topic: str, value: bytes) -> None:
        if topic == self.topics.hard:
            self.hard += 1
            return
        try:
            p = decode(Prediction, value)
        except EventDecodeError:
            return
        if p.id in self.answers:
            self.duplicates += 1
            return
        self.answers[p.id] = p
        self.recent.append(time.time())
        self.first_seen.setdefault(p.model_version, time.time())

    def throughput(self, window: float = 10.0) -> float:
        now = time.time()
        with self.lock:
            return sum(1 for t in self.recent if t > now - window) / window

    def live_accuracy(
        self, report: ReplayReport, last: int = 300, *, first: bool = False
    ) -> tuple[float | None, int]:
        """Accuracy over the latest (``first``: the earliest) ``last`` answered requests whose
        feedback was sent."""
        with self.lock:
            sent = list(report.feedback.items())
            window = sent[:last] if first else sent[-last:]
            judged = [(i, label) for i, label in window if i in self.answers]
            if not judged:
                return None, 0
            return sum(self.answers[i].label == label for i, label in judged) / len(judged), len(judged)


def _accuracy(record: ModelRecord) -> str:
    value = record.metric("accuracy", "test")
    return "-" if value is None else f"{value:.3f}"


def _view(
    settings: StreamSettings,
    registry: ModelRegistry,
    watcher: Watcher,
    report: ReplayReport,
    total: int,
    started: float,
    teacher: str,
) -> Group:
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


def run_demo(
    settings: StreamSettings,
    run_dir: Path,
    *,
    rate: float | None = 3.0,
    feedback_fraction: float = 0.3,
    feedback_delay: float = 5.0,
    limit: int | None = None,
    linger: float = 300.0,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the demo; returns (and writes to ``run_dir/summary.json``) its summary."""
    console = console or Console()
    run_dir.mkdir(parents=True, exist_ok=True)
    if settings.teacher == "simulated":
        console.print(
            "[yellow]SIMULATED TEACHER[/yellow]: it answers from the dataset's hidden gold labels and "
            "draws real unseen examples; it shows what a strong teacher would achieve, not what an LLM does."
        )

    def event(message: str) -> None:  # the supervisor restarting a part that died
        console.print(f"[yellow]{time.strftime('%H:%M:%S')} {message}[/yellow]", highlight=False)

    with EmbeddedStack(settings, run_dir, supervise=True, on_event=event) as stack:
        settings = stack.settings
        where = Table("part", "where", title="pgkd up")
        for name, place in stack.where.items():
            where.add_row(name, place)
        console.print(where)
        with console.status("starting services and training the seed student ..."):
            stack.wait_healthy(timeout=900)
        splits = load_splits(settings)
        traffic = list(splits.traffic[:limit] if limit else splits.traffic)
        watcher = Watcher(settings)
        watcher.start()
        registry = connect.registry(settings)
        producer = connect.producer(settings)
        replayer = Replayer(
            producer,
            Topics(settings.namespace),
            rate=rate,
            feedback_fraction=feedback_fraction,
            feedback_delay=feedback_delay,
            seed=settings.seed,
            id_prefix="demo",
        )
        report = ReplayReport()
        stop = threading.Event()
        thread = threading.Thread(
            target=replayer.run, args=(traffic,), kwargs={"stop": stop, "report": report}, daemon=True
        )
        started = time.time()
        thread.start()
        teacher = (
            "SIMULATED" if settings.teacher == "simulated" else stack.where.get("teacher", settings.teacher)
        )
        drained_at: float | None = None
        try:
            with _Display(console) as show:
                while True:
                    show(
                        lambda: _view(settings, registry, watcher, report, len(traffic), started, teacher),
                        lambda: _progress_line(registry, watcher, report, len(traffic), started),
                    )
                    if stack.supervisor and stack.supervisor.gave_up:
                        console.print(f"[red]{stack.supervisor.gave_up} kept dying: stopping the demo[/red]")
                        break
                    replayed = not thread.is_alive() and len(watcher.answers) >= len(report.ids)
                    if replayed and drained_at is None:
                        drained_at = time.time()
                    # After the traffic: let mining and training finish what the traffic started.
                    if drained_at is not None and (_idle(stack) or time.time() - drained_at >= linger):
                        break
                    if (
                        not thread.is_alive()
                        and time.time() - (report.finished or time.time()) > linger + 300
                    ):
                        break  # answers stopped coming: report what is missing
                    time.sleep(1.0)
        except KeyboardInterrupt:
            stop.set()
            console.print("[yellow]interrupted: shutting down[/yellow]")
        stop.set()
        thread.join(timeout=30)
        producer.close()
        watcher.stopping.set()
        summary = _summary(settings, watcher, report, started)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print()
    _print_summary(console, summary)
    return summary


class _Display:
    """A live panel on a terminal; on a pipe or a log file (``make demo | tee``), where a live
    panel prints nothing until the end, one plain progress line every ``every`` seconds."""

    def __init__(self, console: Console, every: float = 15.0) -> None:
        self.console, self.every = console, every
        self.live = Live(console=console, refresh_per_second=1) if console.is_terminal else None
        self.last = 0.0

    def __enter__(self) -> _Display:
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


def _progress_line(
    registry: ModelRegistry, watcher: Watcher, report: ReplayReport, total: int, started: float
) -> str:
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


def _idle(stack: EmbeddedStack) -> bool:
    """Nothing left to do: no teacher job running or waiting, no sample waiting for a retrain."""
    mining, trainer = stack.services.get("mining"), stack.services.get("trainer")
    m = mining.health() if mining else {}
    t = trainer.health() if trainer else {}
    if m is None or t is None:
        return False
    return not (m.get("busy") or m.get("to_label") or m.get("hard_window") or t.get("pending"))


def _summary(
    settings: StreamSettings, watcher: Watcher, report: ReplayReport, started: float
) -> dict[str, Any]:
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


def _print_summary(console: Console, s: dict[str, Any]) -> None:
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
