"""Raw student forward throughput by batch size and sequence length, PyTorch eager vs dynamic int8
quantisation, with the accuracy each inference mode gets on the test set.

    python benchmarks/student_inference.py --datasets bbc wordnet

For each dataset (seed-0 splits) a student is trained on the 800 seed labels (head mode); then each
inference mode classifies the whole test set (accuracy, macro-F1, agreement with eager). Throughput
is measured on BBC articles (long enough that every sequence fills ``max_length``): ``--texts``
texts per cell (a quarter of them at batch size 1), after a warm-up batch. Results go to
runs/bench/student_inference.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from pgkd.data import make_splits
from pgkd.datasets import load_corpus
from pgkd.evaluation import evaluate
from pgkd.serving import inference_copy
from pgkd.student import Student
from pgkd.training import TrainConfig

MODES = ("eager", "int8")


def throughput(student: Student, texts: list[str], batch_size: int, max_length: int) -> float:
    student.metadata.max_length = max_length
    student.predict(texts[:batch_size], batch_size=batch_size)  # warm-up
    started = time.perf_counter()
    student.predict(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["bbc", "wordnet"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32, 64, 128])
    parser.add_argument("--lengths", nargs="+", type=int, default=[64, 128, 256])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/student_inference.json"))
    args = parser.parse_args()
    result: dict = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
        "accuracy": [],
        "throughput": [],
    }
    for dataset in args.datasets:
        splits = make_splits(load_corpus(dataset, max_chars=2000), seed=0)
        student = Student.create(splits.labels)
        student.fit(splits.train, splits.validation, TrainConfig(mode="head"))
        texts, gold = [e.text for e in splits.test], [e.label for e in splits.test]
        reference = None
        for mode in MODES:
            served = inference_copy(student, mode)
            labels = served.predict(texts).labels
            reference = reference or labels
            report = evaluate(splits.labels, gold, labels)
            row = {
                "dataset": dataset,
                "mode": mode,
                "n": len(texts),
                "accuracy": report.accuracy,
                "macro_f1": report.macro_f1,
                "agreement_with_eager": sum(a == b for a, b in zip(labels, reference, strict=True))
                / len(texts),
            }
            print(json.dumps(row), flush=True)
            result["accuracy"].append(row)
        if dataset != "bbc":
            continue
        pool = (texts * (args.texts // len(texts) + 1))[: args.texts]
        for mode in MODES:
            served = inference_copy(student, mode)
            for length in args.lengths:
                for batch_size in args.batch_sizes:
                    cell = pool[: max(batch_size, args.texts // 4)] if batch_size == 1 else pool
                    row = {
                        "mode": mode,
                        "max_length": length,
                        "batch_size": batch_size,
                        "per_second": throughput(served, cell, batch_size, length),
                    }
                    print(json.dumps(row), flush=True)
                    result["throughput"].append(row)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
