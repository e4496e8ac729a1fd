"""The model card written beside a student's weights (``README.md``, the Hugging Face convention):
what the model classifies, how well, on what data, taught by which teacher at what cost, and how
to load it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CARD_FILE = "README.md"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _scores(metrics: dict[str, Any]) -> list[str]:
    rows = []
    for split in ("validation", "test"):
        summary = metrics.get(split) or {}
        if summary:
            rows.append(
                f"| {split} | {_fmt(summary.get('accuracy', '-'))} | {_fmt(summary.get('macro_f1', '-'))} |"
            )
    return ["| split | accuracy | macro-F1 |", "|---|---|---|", *rows] if rows else ["not evaluated"]


def render_model_card(meta: dict[str, Any]) -> str:
    """The card's Markdown for a student's metadata (``pgkd.json``).

    >>> card = render_model_card({"labels": ["a", "b"], "metrics": {"test": {"accuracy": 0.9}}})
    >>> "| test | 0.9000 |" in card
    True
    """
    labels = list(meta.get("labels", []))
    metrics = dict(meta.get("metrics") or {})
    train = dict(meta.get("train") or {})
    data = dict(meta.get("data") or {})
    native = meta.get("pooling", "native") == "native"
    usage = metrics.get("teacher_usage") or {}
    front = [
        "---",
        "library_name: transformers" if native else "library_name: pgkd",
        "pipeline_tag: text-classification",
        f"base_model: {meta.get('base_model') or 'unknown'}",
        "tags: [pgkd, knowledge-distillation, text-classification]",
        "---",
    ]
    if native:
        loading = [
            "A standard Hugging Face sequence classifier; transformers gives the same labels and",
            "probabilities as pgkd:",
            "",
            "```python",
            "from transformers import pipeline",
            'classify = pipeline("text-classification", model="<this folder>", top_k=None)',
            "```",
        ]
    else:
        loading = [
            "Scored through mean-pooled encoder features and a linear head (pgkd's `head` mode), which",
            "no transformers class reproduces; `config.json` names a model type transformers refuses.",
            "Load it with `pgkd.Student.load(folder)`.",
        ]
    body = [
        f"# pgkd student {meta.get('version') or ''}".rstrip(),
        "",
        f"A {len(labels)}-class text classifier distilled with Performance-Guided Knowledge Distillation",
        "(Di Palo et al., arXiv 2411.05045) by [pgkd](https://pypi.org/project/pgkd/).",
        "",
        "## Classes",
        "",
        ", ".join(f"`{c}`" for c in labels),
        "",
        "## Quality",
        "",
        *_scores(metrics),
        "",
        *_calibration(metrics.get("calibration")),
        *_detector(meta.get("out_of_taxonomy")),
        "## Training",
        "",
        f"- base encoder: {meta.get('base_model') or 'unknown'}; max length {meta.get('max_length')} tokens",
        f"- mode: {train.get('mode', '-')}, {train.get('epochs_run', '-')} epochs run "
        f"(best {train.get('best_epoch', '-')}), learning rate {train.get('learning_rate') or 'default'}, "
        f"class weights {train.get('class_weight', '-')}, on {train.get('train_size', '-')} examples",
        f"- parent version: {meta.get('parent_version') or 'none'}; created {meta.get('created_at') or '-'}",
        "",
        "## Data lineage",
        "",
        f"- dataset: {data.get('dataset', '-')}, seed {data.get('seed', '-')}, "
        f"splits fingerprint {data.get('splits_fingerprint', '-')}",
        f"- training-set fingerprint: {meta.get('data_fingerprint') or '-'}",
        "",
        "## Teacher",
        "",
        f"- teacher: {metrics.get('teacher', 'none')}",
        f"- calls {_fmt(usage.get('calls', 0))}, tokens "
        f"{_fmt(usage.get('tokens', usage.get('prompt_tokens', 0) + usage.get('completion_tokens', 0)))}, "
        f"cost {float(usage.get('cost', 0.0)):.4f} (in the configured currency)",
        "",
        "## Loading",
        "",
        *loading,
        "",
        f"Weights: `model.safetensors`, sha256 `{meta.get('weights_sha256') or '-'}`.",
        "",
    ]
    return "\n".join([*front, "", *body])


def _calibration(calibration: dict[str, Any] | None) -> list[str]:
    if not calibration:
        return []
    test = ""
    if calibration.get("test_ece_after") is not None:
        test = f"; on test {calibration['test_ece_before']:.4f} -> {calibration['test_ece_after']:.4f}"
    return [
        "## Confidence",
        "",
        f"Calibrated by temperature scaling on {calibration.get('n', '-')} validation examples (T = "
        f"{calibration['temperature']:.3f}, folded into the last layer's weights). Expected calibration "
        f"error on validation {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}{test}.",
        "",
    ]


def _detector(record: str | None) -> list[str]:
    if not record:
        return []
    detector = json.loads(record)
    return [
        "## Texts that fit no class",
        "",
        f"`ood.safetensors` holds the features of the training set: a text whose cosine distance to its "
        f"{detector['k']}-th nearest training example is above {detector['threshold']:.4f} (the "
        f"{detector['quantile']:.0%} quantile on validation) is out of the taxonomy (pgkd serving "
        "flags it; transformers alone does not read this file).",
        "",
    ]


def write_model_card(directory: Path, meta: dict[str, Any]) -> Path:
    path = Path(directory) / CARD_FILE
    path.write_text(render_model_card(meta))
    return path
