"""Learning curves and the paper-style ablation: what each kind of added sample does to the student.

    python benchmarks/learning.py --dataset wordnet --arms seed random pgkd --seeds 0 1 2
    python benchmarks/learning.py --dataset wordnet --arms uncertainty pgkd-no-report \
        pgkd-no-hard-negatives --seeds 0
    python benchmarks/learning.py --dataset wordnet --arms pgkd-local --seeds 0

Arms (every one on the same seed's splits, 800 train / 200 validation labels, the same student
settings as ``pgkd distill``: TrainConfig's defaults):

* ``seed``: the seed labels only;
* ``random``: plus R gold-labelled texts drawn at random from the traffic pool (``--random``);
* ``uncertainty``: plus the R traffic texts the seed student is least sure of (lowest top
  probability), with their gold labels: the classic active-learning baseline;
* ``pgkd``: Algorithm 1 with the SIMULATED teacher (gold labels of the traffic pool; 10 steps,
  32 samples a step); ``pgkd-no-report`` and ``pgkd-no-hard-negatives`` are its ablations;
  ``pgkd-guided`` keeps half of validation for guidance and half for selection;
* ``pgkd-local``: Algorithm 1 with the local LLM teacher (Qwen2.5-Coder-1.5B on llama.cpp).

Rows are merged into benchmarks/results/learning.json as {dataset, arm, seed, n_train,
test_accuracy, test_macro_f1, ...}; a PGKD row also records its chosen step, its validation lift
and the test score of the step test would have chosen (the selection regret).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import random
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from pgkd.data import Example, Splits
from pgkd.distill import ProgressEvent, distill
from pgkd.distill_records import DistillConfig, StepSelection
from pgkd.evaluation import evaluate
from pgkd.runner import build_teacher, distill_config, load_splits, train_config
from pgkd.settings import Settings, load_settings
from pgkd.student import Student

RESULTS = Path(__file__).parent / "results" / "learning.json"
PGKD_ARMS = {
    "pgkd": {"teacher": "simulated"},
    # Half of validation guides the teacher (report, examples, hard negatives), the other half
    # alone picks the step: the selection is no longer graded on what the teacher was aimed at.
    "pgkd-guided": {"teacher": "simulated", "guidance_split": 0.5},
    # Guidance from 2-fold out-of-fold verdicts on the seed labels; all 200 validation labels select.
    "pgkd-oof": {"teacher": "simulated", "guidance_folds": 2},
    # Design choices (BENCHMARKS.md section 4): each step keeps fine-tuning the previous
    # step's model instead of the base; the teacher aims at 4 weak classes a step instead of 10.
    "pgkd-warm": {"teacher": "simulated", "warm_start": True},
    "pgkd-4-targets": {"teacher": "simulated", "target_classes": 4},
    "pgkd-no-report": {"teacher": "simulated", "use_report": False},
    "pgkd-no-hard-negatives": {"teacher": "simulated", "use_hard_negatives": False},
    "pgkd-local": {"teacher": "local"},
}


def fit_and_test(settings: Settings, splits: Splits, train: list[Example]) -> tuple[Student, dict[str, Any]]:
    base = Student.create(
        splits.labels, settings.base_model, max_length=settings.max_length, seed=settings.seed
    )
    config = train_config(settings)
    student = base.successor(config.mode, seed=settings.seed)
    fit = student.fit(train, splits.validation, config)
    pred = student.predict([e.text for e in splits.test])
    test = evaluate(splits.labels, [e.label for e in splits.test], pred.labels)
    val = evaluate(
        splits.labels,
        [e.label for e in splits.validation],
        student.predict([e.text for e in splits.validation]).labels,
    )
    return student, {
        "n_train": len(train),
        "test_accuracy": test.accuracy,
        "test_macro_f1": test.macro_f1,
        "validation_macro_f1": val.macro_f1,
        "train_seconds": round(fit.seconds, 1),
        "epochs_run": fit.epochs,
    }


def draw_random(splits: Splits, r: int, seed: int) -> list[Example]:
    pool = list(splits.traffic)
    return random.Random(f"random-{seed}").sample(pool, min(r, len(pool)))


def draw_uncertain(student: Student, splits: Splits, r: int, seed: int, scan: int = 6000) -> list[Example]:
    """The ``r`` least confident of ``scan`` random traffic texts (scoring all of a large pool costs
    minutes on a CPU and changes little)."""
    pool = list(splits.traffic)
    if len(pool) > scan:
        pool = random.Random(f"scan-{seed}").sample(pool, scan)
    confidence = student.predict([e.text for e in pool]).confidence
    return [pool[i] for i in np.argsort(confidence, kind="stable")[:r]]


def print_step(event: ProgressEvent) -> None:
    """A line on stderr per finished step: an hour-long run shows where it is, a killed one what it
    measured."""
    if event["event"] == "step":
        r = event["record"]
        test = r.test or {"accuracy": float("nan"), "macro_f1": float("nan")}
        print(
            f"step {r.step}: train {r.train_size}, validation macro-F1 {r.validation['macro_f1']:.3f}, "
            f"test {test['accuracy']:.3f} / {test['macro_f1']:.3f}, {r.wall_seconds:.0f} s",
            file=sys.stderr,
            flush=True,
        )


def run_pgkd(settings: Settings, splits: Splits, arm: str, steps: int | None) -> dict[str, Any]:
    options = dict(PGKD_ARMS[arm])
    settings = settings.model_copy(update={"teacher": options.pop("teacher")})
    base_config = distill_config(settings)
    config = DistillConfig(
        **{**base_config.__dict__, **options, **({"steps": steps} if steps is not None else {})}
    )
    base = Student.create(
        splits.labels, settings.base_model, max_length=settings.max_length, seed=settings.seed
    )
    with ExitStack() as stack:
        teacher = build_teacher(settings, splits, base, stack)
        result = distill(splits, teacher, config, student=base, on_event=print_step)
    history = result.history
    tested = [r for r in history if r.test]
    by_test = max(tested, key=lambda r: r.test["macro_f1"])  # type: ignore[index]
    chosen = next(r for r in history if r.step == result.best_step)
    seed_row = history[0]
    return {
        "n_train": chosen.train_size,
        "test_accuracy": chosen.test["accuracy"],  # type: ignore[index]
        "test_macro_f1": chosen.test["macro_f1"],  # type: ignore[index]
        "chosen_step": result.best_step,
        "steps_run": len(history) - 1,
        "stop_reason": result.stop_reason,
        "min_improvement": config.min_improvement,  # the validation margin a step needed to be kept
        "validation_lift": chosen.validation["macro_f1"] - seed_row.validation["macro_f1"],
        "test_lift": chosen.test["macro_f1"] - seed_row.test["macro_f1"],  # type: ignore[index]
        "best_test_step": by_test.step,
        "regret_macro_f1": by_test.test["macro_f1"] - chosen.test["macro_f1"],  # type: ignore[index]
        "accepted": sum(r.accepted for r in history),
        "teacher_calls": teacher.usage.calls,
        "steps": [
            {
                "step": r.step,
                "train_size": r.train_size,
                "validation_macro_f1": r.validation["macro_f1"],
                "test_accuracy": (r.test or {}).get("accuracy"),
                "test_macro_f1": (r.test or {}).get("macro_f1"),
                "accepted": r.accepted,
                "target_classes": r.target_classes,
            }
            for r in history
        ],
    }


def save(row: dict[str, Any]) -> None:
    """Merge ``row`` into the results file; a lock beside it lets several runs share the file."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
        key = (row["dataset"], row["arm"], row["seed"], row.get("added"))
        rows = [r for r in rows if (r["dataset"], r["arm"], r["seed"], r.get("added")) != key]
        rows.append(row)
        rows.sort(key=lambda r: (r["dataset"], r["arm"], r["seed"], r.get("added") or 0))
        RESULTS.write_text(json.dumps(rows, indent=1) + "\n")


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as the markdown table of BENCHMARKS.md: mean ± sd over seeds per (dataset, arm,
    samples added)."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["arm"], int(r.get("added") or 0)), []).append(r)

    def stat(values: list[float]) -> str:
        if len(values) == 1:
            return f"{values[0]:.3f}"
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"

    lines = [
        "| dataset | arm | samples added | seeds | train size | test accuracy | test macro-F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for (dataset, arm, added), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        seeds = ",".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"]))
        added_text = f"{added} (at the chosen step)" if arm.startswith("pgkd") else str(added)
        sizes = [r["n_train"] for r in rs]
        size = str(sizes[0]) if len(set(sizes)) == 1 else f"{statistics.mean(sizes):.0f}"
        lines.append(
            f"| {dataset} | {arm} | {added_text} | {seeds} | {size} | "
            f"{stat([r['test_accuracy'] for r in rs])} | {stat([r['test_macro_f1'] for r in rs])} |"
        )
    return "\n".join(lines)


def replay(steps: list[dict[str, Any]], margin: float, patience: int = 5) -> tuple[int, int]:
    """(chosen step, last step run) had the run used ``margin``: each step's samples and model do
    not depend on which step is kept (guidance comes from the step's own model), so a recorded run
    replays exactly under a larger margin, which can only stop it sooner."""
    selection = StepSelection(steps[0]["validation_macro_f1"], margin, patience)
    last = 0
    for s in steps[1:]:
        last = s["step"]
        selection.observe(last, s["validation_macro_f1"], bool(s["accepted"]))
        if selection.exhausted:
            break
    return selection.best_step, last


def replay_table(rows: list[dict[str, Any]], margins: list[float]) -> str:
    """Each recorded PGKD run's test macro-F1 lift over its seed model under each selection margin."""
    lines = [
        "| dataset | arm | seed | recorded with | " + " | ".join(f"margin {m:g}" for m in margins) + " |",
        "|---|---|---|---|" + "---|" * len(margins),
    ]
    for r in rows:
        if not r["arm"].startswith("pgkd") or not r.get("steps"):
            continue
        cells = []
        for m in margins:
            if m < r.get("min_improvement", 0):  # a smaller margin could have run on past the stop
                cells.append("-")
                continue
            chosen, last = replay(r["steps"], m)
            lift = r["steps"][chosen]["test_macro_f1"] - r["steps"][0]["test_macro_f1"]
            cells.append(f"step {chosen} of {last}: {lift:+.3f}")
        lines.append(
            f"| {r['dataset']} | {r['arm']} | {r['seed']} | {r.get('min_improvement', 0):g} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="wordnet")
    parser.add_argument("--arms", nargs="+", default=["seed", "random", "pgkd"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--random", nargs="+", type=int, default=[320, 1600], help="R of random/uncertainty")
    parser.add_argument("--steps", type=int, default=None, help="PGKD steps (default: the paper's 10)")
    parser.add_argument("--mode", default=None, help="override the training mode (head or full)")
    parser.add_argument("--base-model", default=None, help="encoder folder (default all-MiniLM-L6-v2)")
    parser.add_argument("--arm-suffix", default="", help="appended to arm names, e.g. -mpnet or -head")
    parser.add_argument("--table", action="store_true", help="print the results table and exit")
    parser.add_argument(
        "--replay-margins", nargs="+", type=float, help="replay the recorded PGKD runs under these margins"
    )
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(RESULTS.read_text())))
        return
    if args.replay_margins:
        print(replay_table(json.loads(RESULTS.read_text()), args.replay_margins))
        return
    for seed in args.seeds:
        flags: dict[str, Any] = {"dataset": args.dataset, "seed": seed}
        if args.mode:
            flags["mode"] = args.mode
        if args.base_model:
            flags["base_model"] = args.base_model
        settings = load_settings(None, **flags)
        splits = load_splits(settings)
        seed_student: Student | None = None
        for arm in args.arms:
            started = time.perf_counter()
            common = {
                "dataset": args.dataset,
                "arm": arm + args.arm_suffix,
                "seed": seed,
                "mode": settings.mode,
                "base_model": settings.base_model or "all-MiniLM-L6-v2",
            }
            if arm == "seed":
                seed_student, result = fit_and_test(settings, splits, list(splits.train))
                rows = [{**common, "added": 0, **result}]
            elif arm in ("random", "uncertainty"):
                rows = []
                for r in args.random:
                    if arm == "random":
                        extra = draw_random(splits, r, seed)
                    else:
                        if seed_student is None:
                            seed_student, _ = fit_and_test(settings, splits, list(splits.train))
                        extra = draw_uncertain(seed_student, splits, r, seed)
                    _, result = fit_and_test(settings, splits, [*splits.train, *extra])
                    # A small traffic pool (BBC: 699 texts) caps R: the row says what was added.
                    rows.append({**common, "added": len(extra), "requested": r, **result})
            elif arm in PGKD_ARMS:
                result = run_pgkd(settings, splits, arm, args.steps)
                rows = [{**common, "added": result["n_train"] - len(splits.train), **result}]
            else:
                raise SystemExit(f"unknown arm {arm!r}")
            for row in rows:
                row["wall_seconds"] = round(time.perf_counter() - started, 1)
                save(row)
                print(json.dumps({k: v for k, v in row.items() if k != "steps"}), flush=True)


if __name__ == "__main__":
    main()
