"""Seed-only student vs PGKD student, same seeds and splits, mean and spread over seeds.

    python benchmarks/distill_seeds.py --datasets bbc wordnet --teachers simulated local --seeds 0 1 2

Each run's report lands in runs/bench/<dataset>-<teacher>-seed<k>/; the aggregate table is printed
and written to runs/bench/distill_seeds.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from rich.console import Console

from pgkd.runner import run_distillation
from pgkd.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["bbc", "wordnet"])
    parser.add_argument("--teachers", nargs="+", default=["simulated"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    console = Console()
    results_path = args.out / "distill_seeds.json"
    rows = json.loads(results_path.read_text()) if results_path.exists() else []
    for dataset in args.datasets:
        for teacher in args.teachers:
            for seed in args.seeds:
                settings = load_settings(None, dataset=dataset, teacher=teacher, seed=seed, steps=args.steps)
                console.rule(f"{dataset} / {teacher} / seed {seed}")
                summary = run_distillation(
                    settings, args.out / f"{dataset}-{teacher}-seed{seed}", console=console
                )
                rows = [
                    r for r in rows if (r["dataset"], r["teacher"], r["seed"]) != (dataset, teacher, seed)
                ]
                rows.append({"dataset": dataset, "teacher": teacher, "seed": seed, **summary})
                args.out.mkdir(parents=True, exist_ok=True)
                results_path.write_text(json.dumps(rows, indent=2))
    console.print(markdown_table(rows))


def markdown_table(rows: list[dict]) -> str:
    def stat(values: list[float]) -> str:
        mean = statistics.mean(values)
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{mean:.3f} ± {spread:.3f}"

    lines = [
        "| dataset | teacher | seeds | seed-only acc | PGKD acc | seed-only macro-F1 | PGKD macro-F1 "
        "| teacher calls | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["teacher"]), []).append(r)
    for (dataset, teacher), rs in sorted(groups.items()):
        lines.append(
            f"| {dataset} | {teacher} | {len(rs)} | {stat([r['seed_test_accuracy'] for r in rs])} | "
            f"{stat([r['pgkd_test_accuracy'] for r in rs])} | "
            f"{stat([r['seed_test_macro_f1'] for r in rs])} | "
            f"{stat([r['pgkd_test_macro_f1'] for r in rs])} | "
            f"{statistics.mean([r['teacher_usage']['calls'] for r in rs]):.0f} | "
            f"{statistics.mean([r['wall_seconds'] for r in rs]):.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
