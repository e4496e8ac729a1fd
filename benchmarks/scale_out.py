"""Scale-out: throughput of 1, 2 and 4 serving workers on a 4-partition requests topic.

    python benchmarks/scale_out.py --workers 1 2 4 --n 1200 --chars 200

For each worker count it starts a tansu broker, a trainer (which promotes the seed model) and the
serving workers as one consumer group (each with ``cores // workers`` torch threads, at least 1),
waits until every worker is healthy and the group has settled, produces ``n`` requests as fast as
possible and measures throughput from the first to the last prediction's broker timestamp. The raw
batched forward pass of the same model in this process is the reference. Efficiency is the speedup
over one worker divided by min(workers, cores): more workers than cores cannot add compute, only
overlap. Writes runs/bench/scale_out.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import Collector  # noqa: E402

from pgkd.runner import load_splits  # noqa: E402
from pgkd.serving import inference_copy  # noqa: E402
from producers.replay import Replayer  # noqa: E402
from streams import connect  # noqa: E402
from streams.settings import StreamSettings  # noqa: E402
from streams.stack import EmbeddedStack  # noqa: E402
from streams.topics import Topics  # noqa: E402


def run(workers: int, n: int, chars: int, batch: int, inference: str, cores: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"pgkd-bench-scale-{workers}-"))
    settings = StreamSettings(
        namespace=f"benchscale{workers}x{int(time.time())}",
        registry_uri=str(root / "registry"),
        teacher="simulated",
        max_chars=chars,
        serve_max_chars=chars,
        serve_batch=batch,
        serve_inference=inference,
        partitions=4,
        torch_threads=max(1, cores // workers),
    )
    with EmbeddedStack(settings, root, services=("trainer", "serving"), serving_workers=workers) as stack:
        stack.wait_healthy(timeout=900)
        settings = stack.settings
        splits = load_splits(settings)
        examples = (splits.traffic * 20)[:n]
        collector = Collector(settings)
        collector.start()
        producer = connect.producer(settings)
        topics = Topics(settings.namespace)
        # Warm-up until every worker has answered: the group has settled on its partitions.
        warm = Replayer(producer, topics, feedback_fraction=0.0, id_prefix="warm").run(examples[:200])
        collector.wait_for(warm.ids, timeout=300)
        time.sleep(5)
        report = Replayer(producer, topics, feedback_fraction=0.0, id_prefix="peak").run(examples)
        collector.wait_for(report.ids, timeout=900)
        collector.stop.set()
        stamps = sorted(collector.rows[i][2] for i in report.ids)
        latencies = sorted(collector.rows[i][1] for i in report.ids)
        registry = connect.registry(settings)
        current = registry.current()
        assert current is not None
        student = inference_copy(registry.load(current.version), inference)  # type: ignore[arg-type]
        texts = [e.text[:chars] for e in examples]
        student.predict(texts[:batch], batch_size=batch)
        started = time.perf_counter()
        student.predict(texts, batch_size=batch)
        raw = n / (time.perf_counter() - started)
        return {
            "workers": workers,
            "torch_threads_each": max(1, cores // workers),
            "n": n,
            "per_second": (n - 1) / (stamps[-1] - stamps[0]),
            "raw_per_second": raw,
            "p50_ms": latencies[len(latencies) // 2],
            "p99_ms": latencies[int(len(latencies) * 0.99)],
            "versions": dict(Counter(collector.rows[i][0] for i in report.ids)),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--chars", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--inference", choices=["eager", "int8"], default="eager")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/scale_out.json"))
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    for workers in args.workers:
        row = run(workers, args.n, args.chars, args.batch, args.inference, cores)
        one = rows[0]["per_second"] if rows else row["per_second"]
        row["speedup"] = row["per_second"] / one
        row["efficiency"] = row["speedup"] / min(workers, cores)
        print(json.dumps(row), flush=True)
        rows.append(row)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"cores": cores, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
