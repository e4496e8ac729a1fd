"""The cascade's curve: accuracy, cost and p99 latency as the confidence threshold moves.

    python benchmarks/cascade.py --datasets bbc wordnet --n 100

Per dataset (seed-0 splits, the defaults of ``pgkd distill``): the fine-tuned student, calibrated on
validation, answers ``--n`` test texts (its latency: one text at a time, measured); each teacher
answers the same texts:

* ``simulated@A``: a SIMULATED teacher right with probability A (0.70, 0.85, 0.95), answering in
  ``--simulated-seconds`` (an API's latency, assumed) at the local teacher's measured tokens per call;
* ``local``: the local LLM teacher (Qwen2.5-Coder-1.5B on llama.cpp, this machine's CPU), each
  call timed, its tokens counted.

For thresholds 0 (student alone) to 1 (every text to the teacher, the teacher alone up to its
abstentions), :func:`pgkd.cascade.replay` gives accuracy, dollars per 1,000 requests (the teacher's
tokens at Claude 3 Haiku's list prices, $0.25 / $1.25 per million prompt / completion tokens) and the
p99 latency. The ``policy`` column marks the rows the default policy can reach: it routes only under
min(threshold, the teacher's measured accuracy), so a teacher weaker than the student answers
nothing. The live audit scores the teacher on the traffic mining sends it, the texts under
``low_confidence`` (0.5); so does this column (``audited_accuracy``), not the teacher's accuracy over
all texts, which hard texts pull down less. Each threshold also has both classifiers' accuracy on
the texts it routes. Rows, with every text's verdicts, go to benchmarks/results/cascade.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from pgkd.calibration import calibrate
from pgkd.cascade import CascadePolicy, replay
from pgkd.runner import build_teacher, load_splits, train_config
from pgkd.settings import load_settings
from pgkd.student import Student
from streams.settings import StreamSettings

RESULTS = Path(__file__).parent / "results" / "cascade.json"
PROMPT_PRICE, COMPLETION_PRICE = 0.25 / 1e6, 1.25 / 1e6  # Claude 3 Haiku, $ per token
THRESHOLDS = [0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0]
# What mining asks the teacher to label, so what the live audit scores it on.
LOW_CONFIDENCE = StreamSettings.model_fields["low_confidence"].default


def accuracy_on(predicted: list[str | None], gold: list[str], mask: np.ndarray) -> float | None:
    """Accuracy over the texts in ``mask`` that got an answer (None: there are none)."""
    pairs = [(p, g) for p, g, m in zip(predicted, gold, mask, strict=True) if m and p is not None]
    return round(float(np.mean([p == g for p, g in pairs])), 4) if pairs else None


def simulated(gold: list[str], labels: tuple[str, ...], accuracy: float, seed: int) -> list[str | None]:
    rng = random.Random(f"simulated-{accuracy}-{seed}")
    return [g if rng.random() < accuracy else rng.choice([c for c in labels if c != g]) for g in gold]


def curve(
    gold: list[str],
    student: Any,
    teacher_labels: list[str | None],
    seconds: np.ndarray,
    cost_per_call: float,
    deadline: float,
) -> list[dict[str, Any]]:
    answered = [t for t in teacher_labels if t is not None]
    accuracy = float(np.mean([t == g for t, g in zip(teacher_labels, gold, strict=True) if t is not None]))
    confidence = student["confidence"]
    audited = accuracy_on(teacher_labels, gold, confidence < LOW_CONFIDENCE)
    rows = []
    for threshold in THRESHOLDS:
        policy = CascadePolicy(threshold, out_of_taxonomy=False, deadline=deadline, min_audited=0)
        raw = replay(
            gold,
            student["labels"],
            student["confidence"],
            teacher_labels,
            seconds,
            student["ms"],
            policy,
            teacher_accuracy=1.0,
        )  # the bare threshold, whatever the teacher's accuracy
        under = confidence < threshold
        rows.append(
            {
                "threshold": threshold,
                "accuracy": round(raw.accuracy, 4),
                "routed": round(raw.routed, 4),
                "usd_per_1000": round(raw.teacher_calls_per_1000 * cost_per_call, 4),
                "p50_ms": round(raw.p50_ms, 1),
                "p99_ms": round(raw.p99_ms, 1),
                "teacher_accuracy_routed": accuracy_on(teacher_labels, gold, under),
                "student_accuracy_routed": accuracy_on(student["labels"], gold, under),
                "policy_routes": threshold == 0.0 or (audited is not None and threshold <= audited),
            }
        )
    head = {
        "teacher_accuracy": round(accuracy, 4),
        "audited_accuracy": audited,
        "teacher_answered": len(answered) / len(gold),
    }
    return [head, *rows]


def run(dataset: str, n: int, deadline: float, simulated_seconds: float) -> list[dict[str, Any]]:
    settings = load_settings(None, dataset=dataset, seed=0, teacher="local")
    splits = load_splits(settings)
    student = Student.create(splits.labels, settings.base_model, max_length=settings.max_length).successor(
        "full"
    )
    student.fit(list(splits.train), list(splits.validation), train_config(settings))
    calibrate(student, splits.validation)
    test = random.Random(0).sample(list(splits.test), n)
    gold, texts = [e.label for e in test], [e.text for e in test]
    started = time.perf_counter()
    verdicts = [student.predict([t]) for t in texts]
    student_ms = 1000 * (time.perf_counter() - started) / n
    seen = {
        "labels": [v.labels[0] for v in verdicts],
        "confidence": np.array([float(v.confidence[0]) for v in verdicts]),
        "ms": student_ms,
    }
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        teacher = build_teacher(settings, splits, student, stack)
        labels, seconds = [], []
        for text in texts:
            t0 = time.perf_counter()
            labels.append(teacher.label([text])[0].label)
            seconds.append(time.perf_counter() - t0)
            if len(seconds) % 10 == 0:
                print(f"{dataset}: teacher answered {len(seconds)}/{n}", flush=True)
        usage = teacher.usage
    per_call = (usage.prompt_tokens * PROMPT_PRICE + usage.completion_tokens * COMPLETION_PRICE) / max(
        1, usage.calls
    )
    common = {
        "dataset": dataset,
        "n": n,
        "student_ms": round(student_ms, 2),
        "deadline": deadline,
        "student_accuracy": round(
            float(np.mean([p == g for p, g in zip(seen["labels"], gold, strict=True)])), 4
        ),
    }
    head, *points = curve(gold, seen, labels, np.array(seconds), per_call, deadline)
    rows.append(
        {
            **common,
            "teacher": "local",
            **head,
            "seconds_per_call": round(float(np.mean(seconds)), 2),
            "tokens_per_call": round(usage.tokens / max(1, usage.calls), 1),
            "usd_per_call": per_call,
            "curve": points,
            "verdicts": {
                "gold": gold,
                "student": seen["labels"],
                "confidence": [round(float(c), 4) for c in seen["confidence"]],
                "teacher": labels,
                "seconds": [round(s, 3) for s in seconds],
            },
        }
    )
    for accuracy in (0.70, 0.85, 0.95):
        fake = simulated(gold, splits.labels, accuracy, 0)
        head, *points = curve(gold, seen, fake, np.full(n, simulated_seconds), per_call, deadline)
        rows.append(
            {
                **common,
                "teacher": f"simulated@{accuracy:.2f}",
                **head,
                "seconds_per_call": simulated_seconds,
                "usd_per_call": per_call,
                "curve": points,
            }
        )
    return rows


def table(rows: list[dict[str, Any]], thresholds: list[float] | None = None) -> str:
    lines = [
        "| dataset | teacher | teacher acc (all / audited) | threshold | accuracy | routed "
        "| teacher / student acc on routed | $ / 1,000 | p99 ms | policy routes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    for r in rows:
        for p in r["curve"]:
            if thresholds is not None and p["threshold"] not in thresholds:
                continue
            lines.append(
                f"| {r['dataset']} | {r['teacher']} | {r['teacher_accuracy']:.2f} / "
                f"{num(r.get('audited_accuracy'))} | {p['threshold']:.2f} | {p['accuracy']:.2f} | "
                f"{p['routed']:.2f} | {num(p.get('teacher_accuracy_routed'))} / "
                f"{num(p.get('student_accuracy_routed'))} | {p['usd_per_1000']:.3f} | {p['p99_ms']:.0f} | "
                f"{'yes' if p['policy_routes'] else 'no'} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["bbc", "wordnet"])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds the teacher has per request")
    parser.add_argument("--simulated-seconds", type=float, default=1.0)
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--show", nargs="+", type=float, default=None, help="thresholds the table shows")
    args = parser.parse_args()
    if not args.table:
        rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
        for dataset in args.datasets:
            new = run(dataset, args.n, args.deadline, args.simulated_seconds)
            rows = [r for r in rows if r["dataset"] != dataset] + new
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(rows, indent=1) + "\n")
            print(json.dumps(new), flush=True)
    print(table(json.loads(RESULTS.read_text()), args.show))


if __name__ == "__main__":
    main()
