"""Teacher labelling accuracy and student vs teacher speed and cost, side by side in one run.

    python benchmarks/student_vs_teacher.py --datasets bbc wordnet --n 200 --shots 0 8

For each dataset (seed-0 splits): a student is trained on the 800 seed labels (head mode); then, on
the same ``n`` test texts, the student classifies them in batches of 64 and one at a time, and the
local LLM teacher labels them one call per text with each ``--shots`` setting (0 = zero-shot; k =
k demonstrations chosen by similarity to the query), label descriptions in the prompt, output
constrained to the taxonomy by a JSON schema. Results go to runs/bench/student_vs_teacher.json.

Cost per 1,000 classifications: the student's CPU time priced at ``--cpu-hour`` dollars per core-hour
(2 cores), the teacher's at the same CPU price for the local model and, as the paper's reference, its
measured tokens priced as Claude 3 Haiku (``--prompt-price``, ``--completion-price`` per 1k tokens).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from rich.console import Console

from pgkd.data import make_splits
from pgkd.datasets import load_corpus
from pgkd.student import Student
from pgkd.teacher.local import LocalTeacherServer
from pgkd.teacher.models import DEFAULT_LOCAL_MODEL
from pgkd.teacher.openai_compat import OpenAICompatibleTeacher
from pgkd.training import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["bbc", "wordnet"])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--shots", nargs="+", type=int, default=[0, 4])
    parser.add_argument(
        "--logprobs", action="store_true", help="ask for token logprobs (confidence; ~3 s more per call here)"
    )
    parser.add_argument("--model", default=DEFAULT_LOCAL_MODEL)
    parser.add_argument("--cpu-hour", type=float, default=0.05, help="$ per core-hour (cloud CPU list price)")
    parser.add_argument("--prompt-price", type=float, default=0.00025, help="$ per 1k prompt tokens (Haiku)")
    parser.add_argument("--completion-price", type=float, default=0.00125, help="$ per 1k completion tokens")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/student_vs_teacher.json"))
    args = parser.parse_args()
    console = Console()
    results = []
    with LocalTeacherServer(args.model, n_ctx=4096) as server:
        for dataset in args.datasets:
            splits = make_splits(load_corpus(dataset, max_chars=2000), seed=0)
            sample = random.Random(0).sample(list(splits.test), min(args.n, len(splits.test)))
            texts, gold = [e.text for e in sample], [e.label for e in sample]
            student = Student.create(splits.labels)
            student.fit(splits.train, splits.validation, TrainConfig(mode="head"))
            row: dict = {"dataset": dataset, "n": len(sample), "teacher_model": server.model}
            student.predict(texts[:64])  # warm-up
            started = time.perf_counter()
            pred = student.predict(texts, batch_size=64)
            batched = time.perf_counter() - started
            started = time.perf_counter()
            for t in texts:
                student.predict([t], batch_size=1)
            single = time.perf_counter() - started
            row["student"] = {
                "accuracy": sum(p == g for p, g in zip(pred.labels, gold, strict=True)) / len(gold),
                "per_second_batched": len(texts) / batched,
                "per_second_single": len(texts) / single,
                "seconds_per_1000_batched": 1000 * batched / len(texts),
                "seconds_per_1000_single": 1000 * single / len(texts),
            }
            for shots in args.shots:
                teacher = OpenAICompatibleTeacher(
                    splits.labels,
                    base_url=server.base_url,
                    model=server.model,
                    demonstrations=splits.train if shots else (),
                    shots=shots,
                    embed=lambda xs, s=student: s.embed(xs, cache=True),
                    timeout=300,
                    request_logprobs=args.logprobs,
                    descriptions=splits.descriptions,
                )
                started = time.perf_counter()
                answers = teacher.label(texts)
                seconds = time.perf_counter() - started
                usage = teacher.usage
                row[f"teacher_{shots}shot"] = {
                    "accuracy": sum(a.label == g for a, g in zip(answers, gold, strict=True)) / len(gold),
                    "abstained": sum(a.label is None for a in answers),
                    "seconds_per_call": seconds / len(texts),
                    "per_second": len(texts) / seconds,
                    "seconds_per_1000": 1000 * seconds / len(texts),
                    "prompt_tokens_per_call": usage.prompt_tokens / len(texts),
                    "completion_tokens_per_call": usage.completion_tokens / len(texts),
                }
                console.print(dataset, shots, row[f"teacher_{shots}shot"])
                save(args.out, [*results, row])  # an interrupted run keeps what it measured
            best = max((row[f"teacher_{s}shot"] for s in args.shots), key=lambda r: r["accuracy"])
            s, t = row["student"], best
            core_hour = args.cpu_hour / 3600 * 2  # 2 cores busy, $ per second
            row["comparison"] = {
                "speed_ratio_batched": s["per_second_batched"] / t["per_second"],
                "speed_ratio_single": s["per_second_single"] / t["per_second"],
                "student_cost_per_1000": s["seconds_per_1000_batched"] * core_hour,
                "teacher_local_cost_per_1000": t["seconds_per_1000"] * core_hour,
                "teacher_api_cost_per_1000": 1000
                * (
                    t["prompt_tokens_per_call"] * args.prompt_price
                    + t["completion_tokens_per_call"] * args.completion_price
                )
                / 1000,
            }
            c = row["comparison"]
            c["cost_ratio_local"] = c["teacher_local_cost_per_1000"] / c["student_cost_per_1000"]
            c["cost_ratio_api"] = c["teacher_api_cost_per_1000"] / c["student_cost_per_1000"]
            console.print(row)
            results.append(row)
            save(args.out, results)


def save(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
