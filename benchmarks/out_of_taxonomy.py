"""How well the student knows what it does not know: calibration and out-of-taxonomy detection.

    python benchmarks/out_of_taxonomy.py --datasets bbc wordnet foldoc

Per dataset, seed-0 splits and the defaults of ``pgkd distill`` (a fine-tuned MiniLM):

1. **Calibration.** The student trained on every class; expected calibration error on the test
   set before and after temperature scaling fitted on validation (15 bins).
2. **Out-of-taxonomy detection, other texts.** That student scores its in-taxonomy test texts
   against texts of the other datasets, random tokens (words drawn from the tokenizer's
   vocabulary) and everyday sentences no dataset's classes cover.
3. **Out-of-taxonomy detection, held-out classes.** A second student is trained with ~15% of the
   classes removed from its data (seeded); its in-taxonomy test texts against texts of the
   removed classes: the hard case, the same genre and vocabulary, only a new topic.

Each detector's AUROC (in-taxonomy texts as negatives; sklearn's roc_auc_score):
``max-prob`` (1 - the calibrated top probability), ``energy`` (-logsumexp of the logits), and the
nearest-neighbour distance in the classifier's feature space at k = 1 and k = 10 (the shipped
detector, :mod:`pgkd.out_of_taxonomy`). Rows go to benchmarks/results/out_of_taxonomy.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logsumexp
from sklearn.metrics import roc_auc_score

from pgkd.calibration import calibrate, calibration_error
from pgkd.data import Corpus, Example, make_splits
from pgkd.datasets import load_corpus
from pgkd.out_of_taxonomy import OutOfTaxonomy
from pgkd.runner import train_config
from pgkd.settings import load_settings
from pgkd.student import Student

RESULTS = Path(__file__).parent / "results" / "out_of_taxonomy.json"
N_OUTSIDE = 500
# Everyday requests a news, dictionary or computing taxonomy has no class for (the first three are
# the ones issue 15 saw answered with confidence 0.96-1.00).
EVERYDAY = [
    "Remember to change the bed sheets and vacuum the stairs on Saturday.",
    "Feed the goldfish once a day and clean the tank every two weeks.",
    "asdf qwer zxcv uiop hjkl",
    "Can you pick up milk, eggs and a loaf of bread on the way home?",
    "My grandmother's recipe uses three cups of flour and a pinch of salt.",
    "The dentist appointment has been moved to Thursday at half past ten.",
    "Water the tomatoes in the evening when the sun is low.",
    "Happy birthday! Hope you have a wonderful day with the family.",
    "The cat knocked the vase off the windowsill again this morning.",
    "Please remember to lock the back door before you go to bed.",
    "We need a new shower curtain and two bath towels.",
    "I left my umbrella on the bus, could you check lost property?",
    "Knit two, purl two, and repeat until the end of the row.",
    "The recycling goes out on Tuesdays and the garden waste on Fridays.",
    "Don't forget to defrost the chicken for dinner tomorrow.",
    "Grandad is snoring in his armchair again.",
    "Put the kettle on, I'll be there in five minutes.",
    "The baby finally slept through the night.",
    "Mix the paint with a little water before you start on the fence.",
    "Could you walk the dog after lunch?",
]


def fit(settings: Any, splits: Any, labels: tuple[str, ...]) -> tuple[Student, dict[str, Any]]:
    base = Student.create(labels, settings.base_model, max_length=settings.max_length, seed=settings.seed)
    student = base.successor("full", seed=settings.seed)
    started = time.perf_counter()
    student.fit(list(splits.train), list(splits.validation), train_config(settings))
    seconds = time.perf_counter() - started
    fitted = calibrate(student, splits.validation)
    tested = calibration_error(student, splits.test, fitted.temperature)
    return student, {
        "train_seconds": round(seconds, 1),
        "temperature": fitted.temperature,
        "validation_ece_before": fitted.ece_before,
        "validation_ece_after": fitted.ece_after,
        "test_ece_before": tested["ece_before"],
        "test_ece_after": tested["ece_after"],
    }


def detectors(
    student: Student, train: list[Example], validation: list[Example]
) -> tuple[dict[str, Any], float]:
    """Each method as a function from texts to scores (higher = further from the taxonomy), and the
    threshold of the shipped detector (k = 10, the 95% validation quantile)."""
    feats = {
        name: student.predict([e.text for e in rows], features=True).features
        for name, rows in (("train", train), ("validation", validation))
    }
    knn = {k: OutOfTaxonomy.fit(feats["train"], feats["validation"], k=k) for k in (1, 10)}

    def scorer(method: str) -> Any:
        def score(texts: list[str]) -> np.ndarray:
            logits, features = student.scores(texts)
            z = logits.cpu().numpy()
            if method == "max-prob":
                return 1.0 - np.exp(z - logsumexp(z, axis=1, keepdims=True)).max(axis=1)
            if method == "energy":
                return -logsumexp(z, axis=1)
            return knn[int(method.split("=")[1])].score(features.cpu().numpy())

        return score

    return {m: scorer(m) for m in ("max-prob", "energy", "knn k=1", "knn k=10")}, knn[10].threshold


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    y = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return round(float(roc_auc_score(y, np.r_[inside, outside])), 4)


def random_tokens(student: Student, n: int, seed: int) -> list[str]:
    words = [w for w in student.tokenizer.get_vocab() if w.isalpha() and len(w) > 2]
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 20))) for _ in range(n)]


def held_out(corpus: Corpus, share: float, seed: int) -> tuple[Corpus, list[Example]]:
    labels = sorted(corpus.labels)
    removed = set(random.Random(f"held-out-{seed}").sample(labels, max(1, round(share * len(labels)))))
    kept = Corpus(
        corpus.name,
        tuple(c for c in labels if c not in removed),
        tuple(e for e in corpus.examples if e.label not in removed),
        corpus.descriptions,
    )
    return kept, [e for e in corpus.examples if e.label in removed]


def run(dataset: str, others: list[str], seed: int) -> dict[str, Any]:
    settings = load_settings(None, dataset=dataset, seed=seed)
    corpus = load_corpus(dataset, max_chars=settings.max_chars)
    sizes = {
        "n_train": settings.n_train,
        "n_validation": settings.n_validation,
        "max_test": settings.max_test,
    }
    splits = make_splits(corpus, seed=seed, **sizes)
    row: dict[str, Any] = {"dataset": dataset, "seed": seed, "classes": len(splits.labels)}
    student, row["calibration"] = fit(settings, splits, splits.labels)
    score, threshold = detectors(student, list(splits.train), list(splits.validation))
    rng = random.Random(seed)
    outside = {
        **{
            f"other corpus: {o}": [
                e.text for e in rng.sample(load_corpus(o, max_chars=settings.max_chars).examples, N_OUTSIDE)
            ]
            for o in others
        },
        "random tokens": random_tokens(student, N_OUTSIDE, seed),
        "everyday sentences": EVERYDAY,
    }
    inside = [e.text for e in splits.test]
    shipped = score["knn k=10"]
    row["auroc"] = {
        what: {m: auroc(f(inside), f(texts)) for m, f in score.items()} for what, texts in outside.items()
    }
    row["flagged_at_threshold"] = {
        what: round(float((shipped(texts) > threshold).mean()), 4)
        for what, texts in {"in-taxonomy test": inside, **outside}.items()
    }

    kept, removed = held_out(corpus, 0.15, seed)
    reduced = make_splits(kept, seed=seed, **sizes)
    student, _ = fit(settings, reduced, reduced.labels)
    score, threshold = detectors(student, list(reduced.train), list(reduced.validation))
    novel = [e.text for e in random.Random(seed).sample(removed, min(N_OUTSIDE, len(removed)))]
    inside = [e.text for e in reduced.test]
    row["held_out_classes"] = sorted({e.label for e in removed})
    row["auroc"]["held-out classes"] = {m: auroc(f(inside), f(novel)) for m, f in score.items()}
    row["flagged_at_threshold"]["held-out classes"] = round(
        float((score["knn k=10"](novel) > threshold).mean()), 4
    )
    row["flagged_at_threshold"]["in-taxonomy test (held-out student)"] = round(
        float((score["knn k=10"](inside) > threshold).mean()), 4
    )
    return row


def save(row: dict[str, Any]) -> None:
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    rows = [r for r in rows if (r["dataset"], r["seed"]) != (row["dataset"], row["seed"])] + [row]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(sorted(rows, key=lambda r: (r["dataset"], r["seed"])), indent=1) + "\n")


def table(rows: list[dict[str, Any]]) -> str:
    methods = ("max-prob", "energy", "knn k=1", "knn k=10")
    lines = [
        "| dataset | out-of-taxonomy texts | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for r in rows:
        for what, scores in r["auroc"].items():
            lines.append(
                f"| {r['dataset']} | {what} | " + " | ".join(f"{scores[m]:.3f}" for m in methods) + " |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["bbc", "wordnet", "foldoc"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if not args.table:
        every = ["bbc", "wordnet", "foldoc"]
        for dataset in args.datasets:
            row = run(dataset, [o for o in every if o != dataset], args.seed)
            save(row)
            print(json.dumps(row), flush=True)
    print(table(json.loads(RESULTS.read_text())))


if __name__ == "__main__":
    main()
