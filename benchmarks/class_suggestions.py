"""Are the candidate classes of ``pgkd suggest-classes`` real classes? Clustering out-of-taxonomy
texts at several cut distances.

    python benchmarks/class_suggestions.py --datasets bbc wordnet foldoc --seeds 0 1 2

Per dataset and seed: 3 classes drawn at random stand for the topics the taxonomy lacks; 30 traffic
texts of each (cut to 300 characters) plus 20 strings of random made-up words (spam) are the
out-of-taxonomy traffic. :func:`pgkd.class_suggestions.suggest_classes` clusters them with the base
encoder (all-MiniLM-L6-v2) at each ``--distances``, min size 5. Per cut: the candidates offered, their
mean purity (share of a candidate's texts from its most common source) and the coverage (share of
the 110 texts inside a candidate). Rows go to benchmarks/results/class_suggestions.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from pgkd.class_suggestions import suggest_classes
from pgkd.runner import load_splits
from pgkd.settings import Settings
from pgkd.student import Student

RESULTS = Path(__file__).parent / "results" / "class_suggestions.json"
NONSENSE = ["alpha", "bravo", "quux", "zork", "plugh", "xyzzy", "frob", "blarg", "wibble", "snark"]


def traffic(dataset: str, seed: int) -> tuple[list[str], dict[str, str], list[str]]:
    """The out-of-taxonomy texts, their source (a class or ``spam``) and the classes drawn."""
    splits = load_splits(Settings(dataset=dataset, seed=seed))
    rng = random.Random(seed)
    classes = rng.sample(sorted({e.label for e in splits.traffic}), 3)
    source: dict[str, str] = {}
    for label in classes:
        for text in rng.sample([e.text[:300] for e in splits.traffic if e.label == label], 30):
            source[text] = label
    for _ in range(20):
        source[" ".join(rng.choice(NONSENSE) for _ in range(6))] = "spam"
    return list(source), source, classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["bbc", "wordnet", "foldoc"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--distances", nargs="+", type=float, default=[0.7, 0.8, 0.85, 0.9])
    args = parser.parse_args()
    encoder = Student.create(("known", "unknown"))
    rows: list[dict[str, Any]] = []
    for dataset in args.datasets:
        for seed in args.seeds:
            texts, source, classes = traffic(dataset, seed)
            for distance in args.distances:
                found = suggest_classes(
                    texts, encoder.embed, min_size=5, max_distance=distance, max_examples=10_000
                )
                purity = [Counter(source[t] for t in c.examples).most_common(1)[0][1] / c.size for c in found]
                row = {
                    "dataset": dataset,
                    "seed": seed,
                    "classes": classes,
                    "max_distance": distance,
                    "candidates": len(found),
                    "purity": statistics.mean(purity) if purity else None,
                    "coverage": sum(c.size for c in found) / len(texts),
                }
                rows.append(row)
                print(json.dumps(row))
    RESULTS.write_text(json.dumps(rows, indent=1) + "\n")
    print("\n| dataset | cut | candidates (4 sources) | mean purity | coverage |\n|---|---|---|---|---|")
    for dataset in args.datasets:
        for distance in args.distances:
            at = [r for r in rows if r["dataset"] == dataset and r["max_distance"] == distance]
            purities = [r["purity"] for r in at if r["purity"] is not None]
            print(
                f"| {dataset} | {distance} | {statistics.mean(r['candidates'] for r in at):.1f} | "
                f"{statistics.mean(purities):.2f} | {statistics.mean(r['coverage'] for r in at):.2f} |"
            )


if __name__ == "__main__":
    main()
