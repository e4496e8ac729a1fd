"""Soak: the whole embedded stack for ``--minutes`` at a sustained share of its peak rate, with
retrains, promotions and hot-swaps throughout, on random distinct texts; the resident memory (RSS)
of every service sampled over time.

    python benchmarks/soak.py --minutes 30

The broker (tansu), Redis and the four services (trainer, serving, mining, feedback) run as
processes, with the SIMULATED teacher (an oracle over the traffic pool: no LLM competes for the 2
cores) and the fine-tuned student's trainer in ``head`` mode so that a retrain takes seconds and
swaps come often. Every request is a new text (traffic sentences with random words spliced in), so
no per-text cache can serve a repeat; half get delayed ground truth. The peak rate is measured
first with a burst; the soak then sends ``--share`` of it.

Writes benchmarks/results/soak.json (RSS per service every ``--every`` seconds, requests answered,
swaps) and benchmarks/results/soak.png. "Bounded" is read after ``--warmup`` minutes: the RSS slope
per hour from a least-squares line, and the growth from the warm-up sample to the last.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pgkd.data import Example  # noqa: E402
from pgkd.runner import load_splits  # noqa: E402
from producers.replay import Replayer, ReplayReport  # noqa: E402
from streams import connect  # noqa: E402
from streams.settings import StreamSettings  # noqa: E402
from streams.stack import EmbeddedStack  # noqa: E402
from streams.topics import Topics  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SERVICES = ("trainer", "serving-0", "mining", "feedback")


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return float("nan")
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pid_of(stack: EmbeddedStack, name: str) -> int:
    proc = stack.services[name].proc  # the current process: the supervisor may have restarted it
    return proc.pid if proc is not None else -1


def distinct_texts(pool: list[Example], n: int, seed: int) -> list[Example]:
    """``n`` texts none of which repeats: a pool text with random pool words spliced in."""
    rng = random.Random(seed)
    words = [w for e in pool[:2000] for w in e.text.split()]
    out = []
    for i in range(n):
        base = pool[i % len(pool)]
        extra = " ".join(rng.choice(words) for _ in range(6))
        out.append(Example(f"{base.text} {extra} #{i}", base.label))
    return out


def answered_ids(consumer, stop: threading.Event, seen: set[str]) -> None:
    while not stop.is_set():
        for records in consumer.poll(timeout_ms=500).values():
            for r in records:
                seen.add(r.key.decode())


def slope_per_hour(times: list[float], values: list[float]) -> float:
    if len(times) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(times) / 3600.0, np.asarray(values), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0, help="minutes before memory is judged")
    parser.add_argument("--every", type=float, default=15.0, help="seconds between RSS samples")
    parser.add_argument("--share", type=float, default=0.7, help="of the measured peak rate")
    parser.add_argument("--retrain-seconds", type=float, default=90.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pgkd-soak-"))
    settings = StreamSettings(
        namespace=f"soak{int(time.time())}",
        registry_uri=str(root / "registry"),
        teacher="simulated",
        mode="head",
        max_chars=300,
        serve_max_chars=200,
        serve_batch=32,
        low_confidence=0.6,
        min_hard=3,
        samples_per_step=8,
        generate_every_seconds=10.0,
        retrain_every_samples=1_000_000,
        retrain_every_seconds=args.retrain_seconds,
        promotion_min_delta=-1.0,  # every retrain is promoted: the soak is about swaps, not quality
        promotion_max_class_drop=1.0,
        partitions=2,
    )
    with EmbeddedStack(settings, root) as stack:
        stack.wait_healthy(timeout=900)
        settings = stack.settings
        topics = Topics(settings.namespace)
        pool = list(load_splits(settings).traffic)
        producer = connect.producer(settings)
        consumer = connect.consumer(settings, group=None)
        connect.assign_all(consumer, topics.predictions, from_beginning=False)
        seen: set[str] = set()
        stop_reading = threading.Event()
        reader = threading.Thread(target=answered_ids, args=(consumer, stop_reading, seen), daemon=True)
        reader.start()

        burst = distinct_texts(pool, 600, seed=1)
        sent = Replayer(producer, topics, feedback_fraction=0.0, id_prefix="burst").run(burst)
        started = time.monotonic()
        while not set(sent.ids) <= seen and time.monotonic() - started < 600:
            time.sleep(0.2)
        peak = len(burst) / (time.monotonic() - started)
        rate = args.share * peak
        print(f"peak {peak:.1f}/s; soaking at {rate:.1f}/s for {args.minutes:g} min", flush=True)

        texts = distinct_texts(pool, int(rate * args.minutes * 60) + 1000, seed=2)
        report = ReplayReport()
        stop = threading.Event()
        replayer = Replayer(producer, topics, rate=rate, feedback_fraction=0.5, id_prefix="soak")
        sender = threading.Thread(target=replayer.run, args=(texts,), kwargs={"stop": stop, "report": report})
        soak_started = time.monotonic()
        sender.start()
        samples: list[dict[str, float]] = []
        while time.monotonic() - soak_started < args.minutes * 60:
            row = {
                "t": time.monotonic() - soak_started,
                "answered": float(len(seen & set(report.ids[-50_000:]))),
            }
            row.update({name: rss_mb(pid_of(stack, name)) for name in SERVICES})
            samples.append(row)
            print(json.dumps({k: round(v, 1) for k, v in row.items()}), flush=True)
            time.sleep(args.every)
        stop.set()
        sender.join(timeout=120)
        drain = time.monotonic()
        while not set(report.ids) <= seen and time.monotonic() - drain < 600:
            time.sleep(0.5)
        stop_reading.set()
        missing = len(set(report.ids) - seen)
        versions = [r.version for r in connect.registry(settings).versions()]
        restarts = dict(stack.supervisor.restarts) if stack.supervisor is not None else {}

    judged = [s for s in samples if s["t"] >= args.warmup * 60]
    summary = {
        name: {
            "rss_mb_at_warmup": round(judged[0][name], 1) if judged else None,
            "rss_mb_at_end": round(samples[-1][name], 1),
            "rss_mb_max": round(max(s[name] for s in samples), 1),
            "slope_mb_per_hour_after_warmup": round(
                slope_per_hour([s["t"] for s in judged], [s[name] for s in judged]), 1
            ),
        }
        for name in SERVICES
    }
    result = {
        "minutes": args.minutes,
        "peak_per_s": round(peak, 1),
        "rate_per_s": round(rate, 1),
        "requests": len(report.ids),
        "unanswered": missing,
        "model_versions": len(versions),
        "restarts": restarts,
        "summary": summary,
        "samples": samples,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(result, indent=1))
    plot(samples, args.warmup, RESULTS / "soak.png")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))


def plot(samples: list[dict[str, float]], warmup: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    minutes = [s["t"] / 60 for s in samples]
    for name in SERVICES:
        ax.plot(minutes, [s[name] for s in samples], label=name)
    ax.axvline(warmup, color="grey", linestyle=":", label="end of warm-up")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MB)")
    ax.set_title("pgkd soak: resident memory of each service")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
