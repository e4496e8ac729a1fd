"""Wall time and quality of one live retrain vs the size of the training set, per strategy, so that
a trainer's schedule can be chosen with numbers.

    python benchmarks/retrain_time.py --dataset wordnet --sizes 1000 3000 10000 \
        --strategies head full full-warm

Seed-0 splits with the defaults of ``pgkd distill`` (texts cut to 600 characters, 64 tokens). For
each training-set size N: the seed labels plus N - 800 gold-labelled traffic texts (what feedback
and mining publish). Strategies, each timed from the call to a scored candidate as
:func:`pgkd.promotion.retrain` runs in the trainer:

* ``head``: a fresh linear head on the frozen encoder's cached features (the cache holds the seed
  and validation texts, not the new ones: the worst case of a trainer whose samples all arrived
  since its last retrain);
* ``full``: a fresh fine-tune of the base encoder on the union (the trainer's default);
* ``full-warm``: the seed-only fine-tuned model fine-tuned further on the union, at most
  ``--warm-epochs`` epochs (``PGKD_WARM_START=true PGKD_MAX_EPOCHS=...``).

Rows (seconds, epochs, validation and test macro-F1) go to benchmarks/results/retrain_time.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

from pgkd.promotion import retrain
from pgkd.runner import load_splits, train_config
from pgkd.settings import load_settings
from pgkd.student import Student

RESULTS = Path(__file__).parent / "results" / "retrain_time.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="wordnet")
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 3000, 10000])
    parser.add_argument("--strategies", nargs="+", default=["head", "full", "full-warm"])
    parser.add_argument("--warm-epochs", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings(None, dataset=args.dataset, seed=0)
    splits = load_splits(settings)
    pool = list(splits.traffic)
    random.Random(0).shuffle(pool)
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    seed_models: dict[str, Student] = {}
    for strategy in args.strategies:
        mode = "head" if strategy == "head" else "full"
        config = replace(train_config(settings), mode=mode)
        for size in args.sizes:
            extra = size - len(splits.train)
            if extra < 0 or extra > len(pool):
                continue
            base = Student.create(splits.labels, max_length=settings.max_length, seed=0)
            current = None
            if strategy == "head":  # the bootstrap caches the seed and validation features
                retrain(base, None, list(splits.train), splits.validation, config)
            if strategy == "full-warm":
                if mode not in seed_models:
                    seed_models[mode] = retrain(
                        base, None, list(splits.train), splits.validation, config
                    ).student
                current = seed_models[mode]
                config = replace(config, max_epochs=args.warm_epochs)
            train = [*splits.train, *pool[:extra]]
            started = time.perf_counter()
            candidate = retrain(
                base,
                current,
                train,
                splits.validation,
                config,
                test=splits.test,
                warm_start=current is not None,
            )
            seconds = time.perf_counter() - started
            row = {
                "dataset": args.dataset,
                "strategy": strategy,
                "train_size": len(train),
                "seconds": round(seconds, 1),
                "epochs": candidate.fit.epochs,
                "validation_macro_f1": round(candidate.validation.macro_f1, 4),
                "test_accuracy": round(candidate.test.accuracy, 4) if candidate.test else None,
                "test_macro_f1": round(candidate.test.macro_f1, 4) if candidate.test else None,
            }
            print(json.dumps(row), flush=True)
            rows = [
                r
                for r in rows
                if (r["dataset"], r["strategy"], r["train_size"])
                != (row["dataset"], row["strategy"], row["train_size"])
            ]
            rows.append(row)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
