"""``pgkd demo``: the run loop. It starts the embedded stack, replays traffic and decides when the
demo is over.

It starts everything (:class:`~streams.stack.EmbeddedStack`), waits for the seed model, replays the
dataset's traffic pool with delayed feedback for a fraction of it, and shows every second
(:mod:`cli.demo_display`) what :class:`~cli.demo_watcher.Watcher` counts: traffic, throughput, live
accuracy (over the requests whose feedback has arrived), the hard-event rate, teacher calls and
cost, and the model versions promoted. It ends with a summary (:mod:`cli.demo_summary`): the test
accuracy of the first and the last model, and the events lost (requests without a prediction: must
be 0).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cli.demo_display import Display, live_view, progress_line
from cli.demo_summary import print_summary, summarise
from cli.demo_watcher import Watcher
from pgkd.runner import load_splits
from producers.replay import Replayer, ReplayReport
from streams import connect
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
            with Display(console) as show:
                while True:
                    show(
                        lambda: live_view(
                            settings, registry, watcher, report, len(traffic), started, teacher
                        ),
                        lambda: progress_line(registry, watcher, report, len(traffic), started),
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
        summary = summarise(settings, watcher, report, started)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print()
    print_summary(console, summary)
    return summary


def _idle(stack: EmbeddedStack) -> bool:
    """Nothing left to do: no teacher job running or waiting, no sample waiting for a retrain."""
    mining, trainer = stack.services.get("mining"), stack.services.get("trainer")
    m = mining.health() if mining else {}
    t = trainer.health() if trainer else {}
    if m is None or t is None:
        return False
    return not (m.get("busy") or m.get("to_label") or m.get("hard_window") or t.get("pending"))
