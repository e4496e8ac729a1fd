"""Memory of a serving worker across consecutive hot-swaps, under a steady trickle of traffic.

    python benchmarks/swap_memory.py --swaps 20 --inference eager

Starts a tansu broker, a trainer (which promotes the seed model) and one serving worker, publishes a
second version, then announces the two versions alternately ``--swaps`` times (each announcement
makes the worker fetch, verify, load and warm up a fresh copy, then swap it in between batches)
while requests flow at ``--rate``/s. After each swap it records the worker's resident memory
(VmRSS) and its peak (VmHWM) from /proc. Writes runs/bench/swap_memory-<inference>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consumers.model_updates import announce  # noqa: E402
from pgkd.promotion import retrain  # noqa: E402
from pgkd.runner import load_splits  # noqa: E402
from pgkd.student import Student  # noqa: E402
from pgkd.training import TrainConfig  # noqa: E402
from producers.replay import Replayer  # noqa: E402
from streams import connect  # noqa: E402
from streams.settings import StreamSettings  # noqa: E402
from streams.stack import EmbeddedStack  # noqa: E402
from streams.topics import Topics  # noqa: E402


def proc_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def swaps_done(port: int | None) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith('pgkd_serving_swaps_total{result="swapped"}'):
                return float(line.split()[-1])
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--inference", choices=["eager", "int8"], default="eager")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path(f"runs/bench/swap_memory-{args.inference}.json")
    root = Path(tempfile.mkdtemp(prefix="pgkd-bench-swaps-"))
    settings = StreamSettings(
        namespace=f"benchswap{int(time.time())}",
        registry_uri=str(root / "registry"),
        teacher="simulated",
        max_chars=2000,
        serve_inference=args.inference,
        partitions=2,
    )
    with EmbeddedStack(settings, root, services=("trainer", "serving")) as stack:
        stack.wait_healthy(timeout=900)
        settings = stack.settings
        splits = load_splits(settings)
        registry = connect.registry(settings)
        first = registry.current()
        assert first is not None
        base = Student.create(splits.labels, max_length=settings.max_length, seed=settings.seed + 1)
        candidate = retrain(
            base, None, list(splits.train), splits.validation, TrainConfig(mode="head", seed=1)
        )
        second = registry.publish(candidate.student, metrics={"validation": candidate.validation.summary()})

        worker = stack.services["serving-0"]
        assert worker.proc is not None
        pid, port = worker.proc.pid, worker.metrics_port
        stop = threading.Event()
        replayer = Replayer(
            connect.producer(settings), Topics(settings.namespace), rate=args.rate, feedback_fraction=0.0
        )
        traffic = threading.Thread(
            target=replayer.run, args=(list(splits.traffic) * 100,), kwargs={"stop": stop}, daemon=True
        )
        traffic.start()
        time.sleep(10)
        rows = [{"swap": 0, "rss_mb": proc_mb(pid, "VmRSS"), "peak_mb": proc_mb(pid, "VmHWM")}]
        print(json.dumps(rows[-1]), flush=True)
        for i in range(1, args.swaps + 1):
            record = second if i % 2 else first
            before = swaps_done(port)
            registry.set_current(record.version)
            announce(settings, record, kind="rollback")
            deadline = time.monotonic() + 120
            while swaps_done(port) <= before:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"swap {i} to {record.version} not seen in 120 s")
                time.sleep(0.2)
            time.sleep(2)  # let the old model go
            rows.append({"swap": i, "rss_mb": proc_mb(pid, "VmRSS"), "peak_mb": proc_mb(pid, "VmHWM")})
            print(json.dumps(rows[-1]), flush=True)
        stop.set()
        traffic.join(30)
    result = {
        "inference": args.inference,
        "swaps": args.swaps,
        "rows": rows,
        "rss_after_first_swap_mb": rows[1]["rss_mb"],
        "rss_after_last_swap_mb": rows[-1]["rss_mb"],
        "growth_first_to_last_mb": rows[-1]["rss_mb"] - rows[1]["rss_mb"],
        "peak_mb": max(r["peak_mb"] for r in rows),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
