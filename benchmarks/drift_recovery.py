"""Drift on the live system, detection and recovery: a replay whose class mix shifts to the classes the
student does worst on, until a model trained after the shift serves and the live accuracy recovers.

    python benchmarks/drift_recovery.py --dataset wordnet --minutes 20

The whole embedded stack (tansu, Redis, trainer, serving, feedback, mining) with the SIMULATED teacher
(an oracle over the traffic pool) and the default fine-tuned student. Before the shift, traffic comes
from the classes the bootstrap model scored best on validation; after it, from the ``--weak`` classes
it scored worst on (the hard case for a live system: its accuracy falls). Half the requests get
ground truth ``--feedback-delay`` seconds later. Traffic goes on at ``--rate`` until a model promoted
after the shift has answered ``--judge`` shifted requests, or ``--minutes`` pass.

Measured from every prediction (each request's gold label is known to the benchmark): the drift
event's delay (requests and seconds after the shift), each model version's accuracy on the shifted
traffic it answered, and the recovery time: from the shift to the first answer of the first model
that does better on the shifted traffic than the model serving at the shift. Rows go to
benchmarks/results/drift_recovery.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pgkd.runner import load_splits  # noqa: E402
from producers.replay import Replayer, ReplayReport  # noqa: E402
from streams import connect  # noqa: E402
from streams.events import DriftEvent, Prediction, decode  # noqa: E402
from streams.settings import StreamSettings  # noqa: E402
from streams.stack import EmbeddedStack  # noqa: E402
from streams.topics import Topics  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "drift_recovery.json"


class Tail:
    """Every record of a topic from its beginning, read on a thread, decoded as ``kind``."""

    def __init__(self, settings: StreamSettings, topic: str, kind: type) -> None:
        self.consumer = connect.consumer(settings, group=None)
        connect.assign_all(self.consumer, topic, from_beginning=True)
        self.kind, self.events, self.stop = kind, [], threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            for records in self.consumer.poll(timeout_ms=500).values():
                self.events += [(time.time(), decode(self.kind, r.value)) for r in records]


def accuracy_by_version(
    predictions: dict[str, Prediction], gold: dict[str, str], ids: list[str]
) -> dict[str, dict[str, Any]]:
    by: dict[str, dict[str, Any]] = {}
    for i in ids:
        p = predictions.get(i)
        if p is None:
            continue
        row = by.setdefault(p.model_version, {"answered": 0, "correct": 0, "first_answer": p.ts})
        row["answered"] += 1
        row["correct"] += p.label == gold[i]
        row["first_answer"] = min(row["first_answer"], p.ts)
    for row in by.values():
        row["accuracy"] = round(row["correct"] / row["answered"], 4)
    return by


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="wordnet")
    parser.add_argument("--weak", type=int, default=10, help="classes the shifted traffic comes from")
    parser.add_argument("--before", type=int, default=400, help="requests before the shift")
    parser.add_argument("--rate", type=float, default=8.0, help="requests per second")
    parser.add_argument("--feedback", type=float, default=0.5, help="share of requests with ground truth")
    parser.add_argument("--feedback-delay", type=float, default=2.0)
    parser.add_argument("--judge", type=int, default=300, help="shifted requests a new model must answer")
    parser.add_argument("--minutes", type=float, default=20.0, help="longest the shifted traffic runs")
    parser.add_argument("--drift-window", type=int, default=200)
    parser.add_argument("--retrain-every-samples", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pgkd-drift-"))
    settings = StreamSettings(
        namespace=f"drift{int(time.time())}",
        registry_uri=str(root / "registry"),
        dataset=args.dataset,
        teacher="simulated",
        drift_window=args.drift_window,
        drift_cooldown=args.drift_window,
        retrain_every_samples=args.retrain_every_samples,
        retrain_every_seconds=3600.0,  # retrains come from new samples, not the clock
        partitions=2,
    )
    started_at = time.time()
    with EmbeddedStack(settings, root) as stack:
        stack.wait_healthy(timeout=1800)
        healthy_at = time.time()  # the bootstrap fine-tune included
        settings = stack.settings
        topics = Topics(settings.namespace)
        registry = connect.registry(settings)
        first = registry.current()
        if first is None:
            raise SystemExit("the trainer published no model")
        f1 = first.metrics["validation"]["per_class_f1"]
        pool = list(load_splits(settings).traffic)
        present = {e.label for e in pool}
        ranked = sorted((c for c in f1 if c in present), key=lambda c: (f1[c], c))
        weak = set(ranked[: args.weak])
        rng = random.Random(0)
        rng.shuffle(pool)
        before = [e for e in pool if e.label not in weak][: args.before]
        after = [e for e in pool if e.label in weak]
        print(
            f"bootstrap {first.version}; shifted traffic from {sorted(weak)} ({len(after)} texts)", flush=True
        )

        predictions = Tail(settings, topics.predictions, Prediction)
        drifts = Tail(settings, topics.drift, DriftEvent)
        producer = connect.producer(settings)
        replayer = Replayer(
            producer,
            topics,
            rate=args.rate,
            feedback_fraction=args.feedback,
            feedback_delay=args.feedback_delay,
            id_prefix="drift",
        )
        report_before = replayer.run(before)
        shift_at = time.time()
        report_after = ReplayReport()
        stop = threading.Event()
        sender = threading.Thread(
            target=replayer.run, args=(after,), kwargs={"stop": stop, "report": report_after}, daemon=True
        )
        sender.start()
        deadline = time.monotonic() + args.minutes * 60
        answered: dict[str, Prediction] = {}
        while time.monotonic() < deadline and sender.is_alive():
            time.sleep(5)
            answered = {p.id: p for _, p in list(predictions.events)}
            by = accuracy_by_version(answered, report_after.gold, list(report_after.ids))
            newer = {v: r for v, r in by.items() if v != first.version}
            print(
                json.dumps({v: [r["answered"], r["accuracy"]] for v, r in sorted(by.items())}),
                flush=True,
            )
            if any(r["answered"] >= args.judge for r in newer.values()):
                break
        stop.set()
        sender.join(timeout=120)
        every = report_before.ids + report_after.ids
        until = time.monotonic() + 300
        while not set(every) <= {p.id for _, p in predictions.events} and time.monotonic() < until:
            time.sleep(1)
        answered = {p.id: p for _, p in list(predictions.events)}
        predictions.stop.set()
        drifts.stop.set()
        records = {r.version: r for r in registry.versions()}
        decisions = registry.decisions()

    gold = {**report_before.gold, **report_after.gold}
    before_by = accuracy_by_version(answered, gold, report_before.ids)
    after_by = accuracy_by_version(answered, gold, report_after.ids)
    at_shift = max(
        (p for p in answered.values() if p.id in set(report_before.ids)), key=lambda p: p.ts
    ).model_version
    baseline = after_by.get(at_shift, {}).get("accuracy", 0.0)
    recovered = sorted(
        (r["first_answer"], v)
        for v, r in after_by.items()
        if v != at_shift and r["answered"] >= 50 and r["accuracy"] > baseline
    )
    first_drift = next((e for _, e in drifts.events if e.ts >= shift_at), None)
    result = {
        "dataset": args.dataset,
        "settings": vars(args),
        "weak_classes": sorted(weak),
        "requests": len(every),
        "lost": len(set(every) - set(answered)),
        "stack_start_s": round(healthy_at - started_at, 1),
        "version_at_shift": at_shift,
        "before_shift_by_version": before_by,
        "after_shift_by_version": {
            v: {**r, "first_answer_after_shift_s": round(r["first_answer"] - shift_at, 1)}
            for v, r in after_by.items()
        },
        "drift": None
        if first_drift is None
        else {
            # the monitor counts predictions per model version
            "delay_requests": first_drift.predictions
            - before_by.get(first_drift.model_version, {}).get("answered", 0),
            "model_version": first_drift.model_version,
            "delay_s": round(first_drift.ts - shift_at, 1),
            "signals": first_drift.signals,
            "classes": first_drift.classes,
        },
        "drift_events_before_shift": sum(1 for _, e in drifts.events if e.ts < shift_at),
        "recovery_s": round(recovered[0][0] - shift_at, 1) if recovered else None,
        "recovered_by": recovered[0][1] if recovered else None,
        "models": {
            v: {
                "created_after_shift_s": round(r.created_at - shift_at, 1),
                "validation_macro_f1": r.metric("macro_f1"),
                "train_size": r.train_size,
                "samples_by_source": r.samples_by_source,
            }
            for v, r in records.items()
        },
        "decisions": decisions[:20],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("decisions",)}, indent=1, default=str))


if __name__ == "__main__":
    main()
