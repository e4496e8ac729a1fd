"""Writes the Grafana dashboard of the live system: deploy/grafana/dashboards/pgkd.json.

    python deploy/grafana/dashboard.py

The panels are declared here, once, as (title, unit, [(legend, PromQL)]); tests evaluate every
expression against a real Prometheus scraping a running stack, and check the JSON is up to date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "pgkd-prometheus"}
OUT = Path(__file__).resolve().parent / "dashboards" / "pgkd.json"


def q(quantile: float, metric: str, window: str = "1m", by: str = "le") -> str:
    return f"histogram_quantile({quantile}, sum by ({by}) (rate({metric}_bucket[{window}])))"


ROWS: list[tuple[str, list[tuple[str, str, list[tuple[str, str]], str]]]] = [
    (
        "Traffic",
        [
            (
                "Requests and predictions",
                "reqps",
                [
                    ("requests in", "sum(rate(pgkd_serving_requests_total[1m]))"),
                    ("predictions out", "sum(rate(pgkd_serving_predictions_total[1m]))"),
                ],
                "timeseries",
            ),
            (
                "Dead letters by service and reason",
                "short",
                [
                    (
                        "{{service}} {{reason}}",
                        "sum by (service, reason) (increase(pgkd_dead_letters_total[5m]))",
                    )
                ],
                "timeseries",
            ),
            (
                "Stack parts (supervisor of `pgkd up`; compose restarts containers itself)",
                "short",
                [
                    ("restarts of {{part}}", "sum by (part) (pgkd_stack_restarts_total)"),
                    ("{{part}} up", "min by (part) (pgkd_stack_part_up)"),
                ],
                "timeseries",
            ),
            (
                "Cascade and out-of-taxonomy traffic",
                "reqps",
                [
                    ("cascade: {{outcome}}", "sum by (outcome) (rate(pgkd_serving_cascade_total[5m]))"),
                    ("out of the taxonomy", "sum(rate(pgkd_serving_out_of_taxonomy_total[5m]))"),
                ],
                "timeseries",
            ),
            (
                "Consumer lag",
                "short",
                [("{{service}} {{topic}}", "sum by (service, topic) (pgkd_consumer_lag)")],
                "timeseries",
            ),
            (
                "Micro-batch size (p50, p99)",
                "short",
                [
                    ("p50", q(0.5, "pgkd_serving_batch_size", "5m")),
                    ("p99", q(0.99, "pgkd_serving_batch_size", "5m")),
                ],
                "timeseries",
            ),
        ],
    ),
    (
        "Latency",
        [
            (
                "Request to prediction (p50, p99)",
                "s",
                [
                    ("p50", q(0.5, "pgkd_serving_latency_seconds")),
                    ("p99", q(0.99, "pgkd_serving_latency_seconds")),
                ],
                "timeseries",
            ),
            (
                "Student forward pass per batch (p50, p99)",
                "s",
                [
                    ("p50", q(0.5, "pgkd_serving_inference_seconds")),
                    ("p99", q(0.99, "pgkd_serving_inference_seconds")),
                ],
                "timeseries",
            ),
            (
                "Model swaps",
                "short",
                [
                    ("{{result}}", "sum by (result) (increase(pgkd_serving_swaps_total[15m]))"),
                    ("swap seconds (p99)", q(0.99, "pgkd_serving_swap_seconds", "1h")),
                ],
                "timeseries",
            ),
        ],
    ),
    (
        "Live quality",
        [
            (
                "Live accuracy (feedback window)",
                "percentunit",
                [("accuracy", "max(pgkd_live_accuracy)")],
                "timeseries",
            ),
            (
                "Drift: events raised by signal, and answered by mining",
                "short",
                [
                    ("{{signal}}", "sum by (signal) (increase(pgkd_drift_events_total[15m]))"),
                    ("targeted generations", "sum(increase(pgkd_mining_drift_events_total[15m]))"),
                ],
                "timeseries",
            ),
            (
                "Live recall per class",
                "percentunit",
                [("{{label}}", "max by (label) (pgkd_live_recall)")],
                "timeseries",
            ),
            (
                "Confidence of predictions",
                "short",
                [("{{le}}", "sum by (le) (increase(pgkd_serving_confidence_bucket[5m]))")],
                "heatmap",
            ),
            (
                "Low-confidence and misclassified rate",
                "percentunit",
                [
                    (
                        "low confidence",
                        "sum(rate(pgkd_serving_low_confidence_total[5m])) "
                        "/ clamp_min(sum(rate(pgkd_serving_predictions_total[5m])), 1e-9)",
                    ),
                    (
                        "misclassified (of joined)",
                        "sum(rate(pgkd_feedback_misclassified_total[5m])) "
                        "/ clamp_min(sum(rate(pgkd_feedback_joined_total[5m])), 1e-9)",
                    ),
                ],
                "timeseries",
            ),
            (
                "Hard events by reason",
                "short",
                [("{{reason}}", "sum by (reason) (increase(pgkd_mining_hard_events_total[5m]))")],
                "timeseries",
            ),
        ],
    ),
    (
        "Teacher",
        [
            (
                "Teacher calls by operation and outcome",
                "short",
                [
                    (
                        "{{operation}} {{outcome}}",
                        "sum by (operation, outcome) (increase(pgkd_teacher_calls_total[15m]))",
                    ),
                    ("circuit open", "max(pgkd_teacher_circuit_open)"),
                ],
                "timeseries",
            ),
            (
                "Teacher time per operation (p50)",
                "s",
                [("{{operation}}", q(0.5, "pgkd_teacher_seconds", "1h", "le, operation"))],
                "timeseries",
            ),
            (
                "Teacher cost and tokens",
                "short",
                [
                    ("cost (total)", "sum(pgkd_teacher_cost_total)"),
                    ("{{kind}} tokens (total)", "sum by (kind) (pgkd_teacher_tokens_total)"),
                ],
                "timeseries",
            ),
            (
                "Cache hits and budget left this hour",
                "short",
                [
                    ("cache hits {{operation}}", "sum by (operation) (pgkd_teacher_cache_hits_total)"),
                    ("budget left: {{resource}}", "min by (resource) (pgkd_teacher_budget_remaining)"),
                ],
                "timeseries",
            ),
            (
                "Teacher audited against live ground truth",
                "percentunit",
                [
                    ("{{who}} accuracy on audited requests", "max by (who) (pgkd_teacher_live_accuracy)"),
                    ("teacher samples trained on (1 = yes)", "min(pgkd_trainer_teacher_trusted)"),
                ],
                "timeseries",
            ),
            (
                "Samples published and rejected",
                "short",
                [
                    ("published {{source}}", "sum by (source) (pgkd_samples_published_total)"),
                    ("rejected {{reason}}", "sum by (reason) (pgkd_samples_rejected_total)"),
                ],
                "timeseries",
            ),
        ],
    ),
    (
        "Models",
        [
            (
                "Model version served",
                "short",
                [
                    ("current (trainer)", "max(pgkd_model_version_number)"),
                    ("workers on {{version}}", "sum by (version) (pgkd_serving_model)"),
                ],
                "timeseries",
            ),
            (
                "Validation macro-F1: candidate vs current",
                "percentunit",
                [("{{model}}", "max by (model) (pgkd_trainer_validation_macro_f1)")],
                "timeseries",
            ),
            (
                "Confidence calibration: expected calibration error on validation",
                "percentunit",
                [
                    (
                        "{{model}} {{when}} temperature scaling",
                        "max by (model, when) (pgkd_trainer_calibration_error)",
                    )
                ],
                "timeseries",
            ),
            (
                "Validation F1 per class (current model)",
                "percentunit",
                [("{{label}}", 'max by (label) (pgkd_trainer_class_f1{model="current"})')],
                "timeseries",
            ),
            (
                "Promotions and rejections",
                "short",
                [
                    ("promoted", "sum(pgkd_trainer_promotions_total)"),
                    ("rejected: {{reason}}", "sum by (reason) (pgkd_trainer_rejections_total)"),
                    ("held by an operator's rollback (1 = yes)", "max(pgkd_trainer_promotion_held)"),
                ],
                "timeseries",
            ),
            (
                "Training set by source",
                "short",
                [("{{source}}", "max by (source) (pgkd_trainer_training_set)")],
                "timeseries",
            ),
            (
                "Retraining time (p50)",
                "s",
                [("p50", q(0.5, "pgkd_trainer_train_seconds", "1h"))],
                "timeseries",
            ),
            ("Services up", "short", [("{{service}}", "max by (service) (pgkd_service_up)")], "timeseries"),
            (
                "In-process caches and queues (each bounded)",
                "short",
                [("{{job}} {{cache}}", "max by (job, cache) (pgkd_cache_entries)")],
                "timeseries",
            ),
            (
                "Classes candidates learn: the seed labels and those an operator added",
                "short",
                [("{{origin}}", "max by (origin) (pgkd_trainer_taxonomy_classes)")],
                "timeseries",
            ),
        ],
    ),
]

# Promotion markers: every change of the current model's version number.
ANNOTATION = "changes(max(pgkd_model_version_number)[1m:10s]) > 0"


def expressions() -> list[str]:
    """Every PromQL expression of the dashboard (panels and annotations)."""
    return [expr for _, panels in ROWS for _, _, targets, _ in panels for _, expr in targets] + [ANNOTATION]


def panel(
    pid: int, title: str, unit: str, targets: list[tuple[str, str]], kind: str, x: int, y: int
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (legend, expr) in enumerate(targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row_title, row_panels in ROWS:
        panels.append(
            {
                "id": pid,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid, y = pid + 1, y + 1
        for i, (title, unit, targets, kind) in enumerate(row_panels):
            panels.append(panel(pid, title, unit, targets, kind, 8 * (i % 3), y + 8 * (i // 3)))
            pid += 1
        y += 8 * ((len(row_panels) + 2) // 3)
    return {
        "uid": "pgkd-live",
        "title": "pgkd: live distillation",
        "tags": ["pgkd"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "annotations": {
            "list": [
                {
                    "name": "model promoted",
                    "datasource": DATASOURCE,
                    "enable": True,
                    "expr": ANNOTATION,
                    "iconColor": "green",
                    "step": "10s",
                    "titleFormat": "model promoted",
                }
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
