"""How to train the student: frozen-encoder head vs fine-tuning variants, same seed and splits.

    python benchmarks/student_modes.py --datasets wordnet bbc --seed 0
    python benchmarks/student_modes.py --datasets wordnet --variants full \
        --base-model runs/models/all-mpnet-base-v2 --tag mpnet      # after benchmarks/fetch_mpnet.sh

Variants (the defaults of pgkd distill otherwise: texts cut to 600 characters, 64 tokens):

* ``head``: linear head on mean-pooled features of the frozen encoder (the fast option);
* ``full``: the default: fine-tuned through the encoder's own classification head, square-root
  class weights;
* ``full-mean``: fine-tuned through mean-pooled features and a linear head (how pgkd fine-tuned
  before, and what sentence-transformers models were trained with);
* ``full-unweighted``: ``full`` without class weights;
* ``full-balanced``: ``full`` with inverse-frequency class weights.

Rows go to benchmarks/results/student_modes.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from pgkd.evaluation import evaluate
from pgkd.runner import load_splits, train_config
from pgkd.settings import load_settings
from pgkd.student import Student

RESULTS = Path(__file__).parent / "results" / "student_modes.json"
VARIANTS = {
    "head": {"mode": "head"},
    "full": {},
    "full-mean": {"pooling": "mean"},
    "full-unweighted": {"class_weight": "none"},
    "full-balanced": {"class_weight": "balanced"},
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["wordnet", "bbc"])
    parser.add_argument("--variants", nargs="+", default=["head", "full", "full-mean", "full-unweighted"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base-model", default=None)
    parser.add_argument("--tag", default="all-MiniLM-L6-v2", help="names the encoder in the rows")
    args = parser.parse_args()
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    for dataset in args.datasets:
        settings = load_settings(None, dataset=dataset, seed=args.seed, base_model=args.base_model)
        splits = load_splits(settings)
        for variant in args.variants:
            options = dict(VARIANTS[variant])
            pooling = options.pop("pooling", None)
            config = replace(train_config(settings), **options)
            base = Student.create(
                splits.labels, settings.base_model, max_length=settings.max_length, seed=args.seed
            )
            student = base.successor(config.mode, seed=args.seed)
            if pooling:
                student.metadata.pooling = pooling
            started = time.perf_counter()
            fit = student.fit(splits.train, splits.validation, config)
            seconds = time.perf_counter() - started
            refit = None
            if config.mode == "head":  # a retrain reuses the cached features
                again = base.successor("head", seed=args.seed)
                started = time.perf_counter()
                again.fit(splits.train, splits.validation, config)
                refit = round(time.perf_counter() - started, 1)
            report = evaluate(
                splits.labels,
                [e.label for e in splits.test],
                student.predict([e.text for e in splits.test]).labels,
            )
            row = {
                "dataset": dataset,
                "encoder": args.tag,
                "variant": variant,
                "seed": args.seed,
                "epochs": fit.epochs,
                "best_epoch": fit.best_epoch,
                "train_seconds": round(seconds, 1),
                "refit_seconds": refit,
                "test_accuracy": round(report.accuracy, 4),
                "test_macro_f1": round(report.macro_f1, 4),
            }
            print(json.dumps(row), flush=True)
            key = (dataset, args.tag, variant, args.seed)
            rows = [r for r in rows if (r["dataset"], r["encoder"], r["variant"], r["seed"]) != key] + [row]
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
