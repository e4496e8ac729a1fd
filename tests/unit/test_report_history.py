"""`pgkd report`: the registry's history drawn as a PNG."""

from __future__ import annotations

import pytest
from PIL import Image

from pgkd.model_record import ModelRecord
from pgkd.report import plot_history


def record(version: str, minute: float, val: float, test: float, cost: float, calls: int) -> ModelRecord:
    return ModelRecord(
        version=version,
        uri=f"/registry/{version}",
        sha256="0" * 64,
        created_at=1_000_000 + 60 * minute,
        metrics={"validation": {"macro_f1": val}, "test": {"accuracy": test}},
        teacher_usage_total={"cost": cost, "calls": calls},
    )


def test_history_plot_of_versions_rejections_and_cost(tmp_path):
    records = [record("v0001", 0, 0.80, 0.81, 0.0, 0), record("v0002", 3, 0.84, 0.83, 0.12, 40)]
    decisions = [{"ts": 1_000_000 + 120, "promoted": False, "candidate": 0.78, "reason": "macro_f1 dropped"}]
    out = plot_history(records, decisions, tmp_path / "history.png")
    image = Image.open(out)
    assert image.format == "PNG" and image.size[0] >= 800
    # Something was drawn: a blank canvas has a single colour.
    assert len(image.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 20


def test_history_needs_a_version(tmp_path):
    with pytest.raises(ValueError, match="no model version"):
        plot_history([], [], tmp_path / "x.png")
