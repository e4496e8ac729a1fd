"""The run report of a distillation: JSON for machines, PNG plots for people."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from pgkd.distill_records import DistillResult  # noqa: E402
from pgkd.model_record import ModelRecord  # noqa: E402


def write_report(
    result: DistillResult, out_dir: str | Path, *, context: dict[str, Any] | None = None
) -> Path:
    """Write ``report.json``, ``samples.jsonl`` and three plots into ``out_dir``; returns the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    body = {**(context or {}), **result.as_dict()}
    path = out / "report.json"
    path.write_text(json.dumps(body, indent=2, default=float))
    steps = [r.step for r in result.history for _ in range(r.accepted)]
    with (out / "samples.jsonl").open("w") as f:
        for step, s in zip(steps, result.samples, strict=True):
            used = step <= result.best_step  # whether the saved (best) model was trained on it
            f.write(
                json.dumps({"text": s.text, "label": s.label, "step": step, "in_best_model": used}) + "\n"
            )
    plot_validation_curve(body["steps"], out / "validation_macro_f1.png")
    before = result.history[0].test or result.history[0].validation
    after = result.final_test.summary() if result.final_test else result.final_validation.summary()
    plot_per_class(before["per_class_f1"], after["per_class_f1"], out / "per_class_f1.png")
    final = result.final_test or result.final_validation
    plot_confusion(final.confusion, list(final.labels), out / "confusion_matrix.png")
    return path


def plot_validation_curve(steps: list[dict[str, Any]], path: Path) -> None:
    xs = [s["step"] for s in steps]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(xs, [s["validation"]["macro_f1"] for s in steps], marker="o", label="validation")
    if all(s.get("test") for s in steps):
        ax.plot(xs, [s["test"]["macro_f1"] for s in steps], marker=".", ls="--", label="test")
    best = [s["step"] for s in steps if s["improved"]]
    ax.scatter(
        best,
        [steps[xs.index(b)]["validation"]["macro_f1"] for b in best],
        s=80,
        facecolors="none",
        edgecolors="green",
        label="new best",
    )
    ax.set(xlabel="PGKD step (0 = seed labels only)", ylabel="macro-F1", title="Macro-F1 per step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_per_class(before: dict[str, float], after: dict[str, float], path: Path) -> None:
    labels = list(before)
    y = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.28 * len(labels) + 1)))
    ax.barh(y - 0.2, [before[c] for c in labels], height=0.4, label="seed student")
    ax.barh(y + 0.2, [after.get(c, 0.0) for c in labels], height=0.4, label="PGKD student")
    ax.set_yticks(y, labels, fontsize=8 if len(labels) > 12 else 10)
    ax.invert_yaxis()
    ax.set(xlabel="F1 (test set)", xlim=(0, 1))
    ax.set_title("Per-class F1 before vs after PGKD", pad=24)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(confusion: list[list[int]], labels: list[str], path: Path) -> None:
    m = np.asarray(confusion, dtype=float)
    rows = m / np.clip(m.sum(axis=1, keepdims=True), 1, None)
    size = max(4.0, 0.3 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(labels))
    small = len(labels) > 12
    ax.set_xticks(ticks, labels, rotation=90, fontsize=6 if small else 9)
    ax.set_yticks(ticks, labels, fontsize=6 if small else 9)
    if not small:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(m[i, j])),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if rows[i, j] > 0.5 else "black",
                    )
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (best model)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_history(records: list[ModelRecord], decisions: list[dict[str, Any]], path: str | Path) -> Path:
    """The live system's history from the registry: validation macro-F1 and test accuracy of every
    promoted version, the candidates that were not promoted, and the teacher's cumulative cost and
    calls. ``decisions`` are :meth:`~pgkd.registry.ModelRegistry.decisions` (any order)."""
    if not records:
        raise ValueError("the registry holds no model version yet")
    path = Path(path)
    start = min(r.created_at for r in records)

    def minutes(ts: float) -> float:
        return (ts - start) / 60

    xs = [minutes(r.created_at) for r in records]
    fig, (quality, teacher) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=(3, 2))
    val = [r.metric("macro_f1") for r in records]
    test = [r.metric("accuracy", "test") for r in records]
    quality.plot(xs, [np.nan if v is None else v for v in val], marker="o", label="validation macro-F1")
    if any(t is not None for t in test):
        quality.plot(
            xs, [np.nan if t is None else t for t in test], marker="s", ls="--", label="test accuracy"
        )
    rejected = [d for d in decisions if not d.get("promoted") and d.get("candidate") is not None]
    if rejected:
        quality.scatter(
            [minutes(d["ts"]) for d in rejected],
            [d["candidate"] for d in rejected],
            marker="x",
            color="red",
            label="not promoted (validation macro-F1)",
        )
    for r, x in zip(records, xs, strict=True):
        score = val[xs.index(x)] or 0.0
        quality.annotate(r.version, (x, score), textcoords="offset points", xytext=(0, 6), fontsize=7)
        quality.axvline(x, color="green", alpha=0.15)
    quality.set(ylabel="score", title="Model versions: promotions (green lines) and their scores")
    quality.legend(fontsize=8, loc="lower right")
    cost = [float(r.teacher_usage_total.get("cost", 0.0)) for r in records]
    calls = [float(r.teacher_usage_total.get("calls", 0.0)) for r in records]
    teacher.step(xs, calls, where="post", label="teacher calls (cumulative)", color="tab:purple")
    teacher.set(xlabel="minutes since the first version", ylabel="calls")
    twin = teacher.twinx()
    twin.step(xs, cost, where="post", label="teacher cost (cumulative)", color="tab:orange")
    twin.set(ylabel="cost")
    handles = teacher.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    teacher.legend(handles, [str(h.get_label()) for h in handles], fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
