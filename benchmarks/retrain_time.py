"""Wall time of one retrain (what the trainer does on its schedule) vs the number of new samples,
head-only and full fine-tuning, so that users can pick a schedule.

    python benchmarks/retrain_time.py --datasets bbc wordnet --samples 0 200 800 3200 --full-samples 0 400

For each dataset (seed-0 splits, texts cut to ``--max-chars``): the seed-only model is trained
first on a fresh encoder, as the trainer's bootstrap does (head mode: the encoder features of the
seed and validation sets are cached then); then one retrain with ``k`` new labelled samples drawn
from the traffic pool (what mining would publish) is timed from the call to a scored candidate, as
:func:`pgkd.continual.retrain` runs in the trainer: fit with early stopping, then the validation
report. None of the ``k`` samples is in the feature cache: the worst case of a trainer whose
samples all arrived since its last retrain. Full mode fine-tunes a copy of the seed-only model.
Writes runs/bench/retrain_time.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from pgkd.continual import retrain
from pgkd.data import load_corpus, make_splits
from pgkd.student import Student, TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["bbc", "wordnet"])
    parser.add_argument("--samples", nargs="+", type=int, default=[0, 200, 800, 3200])
    parser.add_argument("--full-samples", nargs="+", type=int, default=[0, 400])
    parser.add_argument("--full-datasets", nargs="+", default=["wordnet"])
    parser.add_argument("--max-chars", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/retrain_time.json"))
    args = parser.parse_args()
    rows = []
    for dataset in args.datasets:
        splits = make_splits(load_corpus(dataset, max_chars=args.max_chars), seed=0)
        pool = list(splits.traffic)
        random.Random(0).shuffle(pool)
        plans = [("head", k) for k in args.samples]
        if dataset in args.full_datasets:
            plans += [("full", k) for k in args.full_samples]
        for mode, k in plans:
            if k > len(pool):
                continue
            config = TrainConfig(mode=mode, seed=0)  # type: ignore[arg-type]
            base = Student.create(splits.labels, seed=0)  # a fresh feature cache for every row
            current = retrain(base, None, list(splits.train), splits.validation, config).student
            train = [*splits.train, *pool[:k]]
            started = time.perf_counter()
            candidate = retrain(base, current if mode == "full" else None, train, splits.validation, config)
            seconds = time.perf_counter() - started
            row = {
                "dataset": dataset,
                "mode": mode,
                "new_samples": k,
                "train_size": len(train),
                "seconds": round(seconds, 2),
                "epochs": candidate.fit.epochs,
                "validation_macro_f1": round(candidate.validation.macro_f1, 4),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
