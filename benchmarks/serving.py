"""Serving through the broker vs the student's raw batched forward pass, in one run.

    python benchmarks/serving.py --n 600 --chars 2000 200 --out runs/bench/serving.json

For each text length (BBC articles cut to ``--chars`` characters; the student reads at most 128
tokens), it starts a tansu broker, a trainer (which trains and promotes the seed model) and one
serving worker, then measures:

1. raw: the promoted model loaded in this process, ``predict`` on ``n`` texts in batches of the
   serving batch size, with the serving worker idle;
2. through the broker: ``n`` requests produced as fast as possible, throughput from the first to
   the last prediction's timestamp (what a client sees), and the ratio to raw;
3. latency at half of that peak: a replay at 0.5 x peak for ``--seconds``; p50/p99 of each
   request's send-to-prediction time;
4. the same during a hot-swap: a new model version is promoted mid-replay; p50/p99 and the worst
   latency in the 10 s around the swap, and the swap's own duration (fetch, verify, load, warm up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from kafka import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consumers.model_updates import announce  # noqa: E402
from pgkd.promotion import retrain  # noqa: E402
from pgkd.runner import load_splits  # noqa: E402
from pgkd.student import Student  # noqa: E402
from pgkd.training import TrainConfig  # noqa: E402
from producers.replay import Replayer  # noqa: E402
from streams import connect  # noqa: E402
from streams.events import Prediction, decode  # noqa: E402
from streams.settings import StreamSettings  # noqa: E402
from streams.stack import EmbeddedStack  # noqa: E402
from streams.topics import Topics  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class Collector(threading.Thread):
    """Collects every prediction (id, model version, latency, broker timestamp)."""

    def __init__(self, settings: StreamSettings) -> None:
        super().__init__(daemon=True)
        self.consumer = connect.consumer(settings, group=None)
        topic = Topics(settings.namespace).predictions
        parts = [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic) or {0})]
        self.consumer.assign(parts)
        self.consumer.seek_to_end(*parts)
        for tp in parts:
            self.consumer.position(tp)
        self.rows: dict[str, tuple[str, float, float]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for records in self.consumer.poll(timeout_ms=200).values():
                for r in records:
                    p = decode(Prediction, r.value)
                    self.rows.setdefault(p.id, (p.model_version, p.latency_ms, p.ts))

    def wait_for(self, ids: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not set(ids) <= set(self.rows):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(set(ids) - set(self.rows))} of {len(ids)} requests unanswered")
            time.sleep(0.2)


def bench_length(chars: int, n: int, seconds: float, batch: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"pgkd-bench-serving-{chars}-"))
    settings = StreamSettings(
        namespace=f"bench{chars}x{int(time.time())}",
        registry_uri=str(root / "registry"),
        teacher="simulated",
        max_chars=chars,
        serve_max_chars=chars,
        serve_batch=batch,
        partitions=4,
    )
    with EmbeddedStack(settings, root, services=("trainer", "serving")) as stack:
        stack.wait_healthy(timeout=900)
        settings = stack.settings
        topics = Topics(settings.namespace)
        splits = load_splits(settings)
        texts = [e.text for e in (splits.traffic * 10)[:n]]
        registry = connect.registry(settings)
        current = registry.current()
        assert current is not None
        student = registry.load(current.version)

        student.predict(texts[:batch], batch_size=batch)  # warm-up
        started = time.perf_counter()
        student.predict(texts, batch_size=batch)
        raw = n / (time.perf_counter() - started)

        collector = Collector(settings)
        collector.start()
        producer = connect.producer(settings)
        peak_report = Replayer(producer, topics, feedback_fraction=0.0, id_prefix="peak").run(
            [e for e in (splits.traffic * 10)[:n]]
        )
        collector.wait_for(peak_report.ids, timeout=max(300.0, 5 * n / raw))
        stamps = sorted(collector.rows[i][2] for i in peak_report.ids)
        through_broker = (n - 1) / (stamps[-1] - stamps[0])

        rate = through_broker / 2
        steady_examples = (splits.traffic * 50)[: int(rate * seconds)]
        steady = Replayer(producer, topics, rate=rate, feedback_fraction=0.0, id_prefix="steady").run(
            steady_examples
        )
        collector.wait_for(steady.ids, timeout=120)
        steady_latency = [collector.rows[i][1] for i in steady.ids]

        # A second model to swap to: a fresh head on one more sample (any valid new version will do).
        base = Student.create(splits.labels, max_length=settings.max_length, seed=settings.seed + 1)
        candidate = retrain(
            base, None, list(splits.train), splits.validation, TrainConfig(mode="head", seed=1)
        )
        record = registry.publish(candidate.student, metrics={"validation": candidate.validation.summary()})
        swap_examples = (splits.traffic * 50)[: int(rate * seconds)]
        swap_at: dict[str, float] = {}

        def promote_midway() -> None:
            time.sleep(seconds / 2)
            registry.set_current(record.version)
            swap_at["t"] = time.time()
            announce(settings, record)

        promoter = threading.Thread(target=promote_midway)
        promoter.start()
        swap = Replayer(producer, topics, rate=rate, feedback_fraction=0.0, id_prefix="swap").run(
            swap_examples
        )
        promoter.join()
        collector.wait_for(swap.ids, timeout=120)
        collector.stop.set()
        versions = [collector.rows[i][0] for i in swap.ids]
        around = [
            collector.rows[i][1]
            for i in swap.ids
            if abs(collector.rows[i][2] - collector.rows[i][1] / 1000 - swap_at["t"]) <= 5.0
        ]
        swap_latency = [collector.rows[i][1] for i in swap.ids]
        swap_seconds = _swap_seconds(stack)
        return {
            "chars": chars,
            "n": n,
            "serve_batch": batch,
            "raw_per_second": round(raw, 1),
            "broker_per_second": round(through_broker, 1),
            "ratio": round(through_broker / raw, 3),
            "half_peak_rate": round(rate, 1),
            "steady": {
                "requests": len(steady_latency),
                "p50_ms": round(percentile(steady_latency, 50), 1),
                "p99_ms": round(percentile(steady_latency, 99), 1),
            },
            "during_swap": {
                "requests": len(swap_latency),
                "p50_ms": round(percentile(swap_latency, 50), 1),
                "p99_ms": round(percentile(swap_latency, 99), 1),
                "within_5s_of_swap": len(around),
                "p99_ms_within_5s": round(percentile(around, 99), 1),
                "max_ms_within_5s": round(max(around), 1) if around else None,
                "answered_by_new_version": versions.count(record.version),
                "unanswered": 0,
                "swap_seconds": swap_seconds,
            },
            "mean_steady_ms": round(statistics.fmean(steady_latency), 1),
        }


def _swap_seconds(stack: EmbeddedStack) -> float | None:
    import urllib.request

    port = stack.services["serving-0"].metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = count = None
    for line in text.splitlines():
        if line.startswith("pgkd_serving_swap_seconds_sum"):
            total = float(line.split()[-1])
        if line.startswith("pgkd_serving_swap_seconds_count"):
            count = float(line.split()[-1])
    if not total or not count:
        return None
    return round(total / count, 2)  # the initial load and the swap, averaged


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--chars", type=int, nargs="+", default=[2000, 200])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/serving.json"))
    args = parser.parse_args()
    rows = [bench_length(chars, args.n, args.seconds, args.batch) for chars in args.chars]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
