"""`pgkd distill` end to end against the real local LLM server: the real student (all-MiniLM-L6-v2),
a real CSV dataset file, one PGKD step with a few samples. Slow on a 2-core CPU, so it is kept small."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from pgkd.student import Student
from tests.conftest import topic_examples


def test_distill_cli_with_the_real_local_teacher(
    tmp_path, local_teacher_url, local_teacher_model, monkeypatch
):
    data = tmp_path / "topics.csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["body", "topic"])
        for e in topic_examples(40, seed=4):
            writer.writerow([e.text, e.label])
    for key, value in {
        "PGKD_N_TRAIN": "30",
        "PGKD_N_VALIDATION": "24",
        "PGKD_SAMPLES_PER_STEP": "4",
        "PGKD_TEACHER_SAMPLES_PER_CALL": "4",
        "PGKD_TEACHER_SHOTS": "2",
    }.items():
        monkeypatch.setenv(key, value)
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "distill",
            "--dataset", str(data),
            "--text-column", "body",
            "--label-column", "topic",
            "--teacher", "openai",
            "--teacher-url", local_teacher_url,
            "--teacher-model", local_teacher_model,
            "--steps", "1",
            "--out", str(run),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((run / "report.json").read_text())
    assert report["teacher"] == f"openai:{local_teacher_model}"
    assert [s["step"] for s in report["steps"]] == [0, 1]
    step = report["steps"][1]
    # every item the LLM proposed is either accepted or rejected with a reason
    assert step["proposed"] >= 1
    assert step["accepted"] + sum(step["rejected"].values()) == step["proposed"]
    assert step["teacher"]["calls"] >= 1 and step["teacher"]["completion_tokens"] > 0
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == step["accepted"]
    assert all(s["label"] in {"business", "sport", "tech"} and s["text"].strip() for s in samples)
    model = Student.load(run / "model")
    assert model.labels == ("business", "sport", "tech")
    assert model.metadata.metrics["teacher"] == f"openai:{local_teacher_model}"
    for png in ("validation_macro_f1.png", "per_class_f1.png", "confusion_matrix.png"):
        assert (run / png).stat().st_size > 1000
    # the saved model knows its data: evaluate needs no dataset flags to score it on its own test split
    assert model.metadata.data["splits_fingerprint"] == report["splits_fingerprint"]
    scored = CliRunner().invoke(app, ["evaluate", str(run / "model")])
    assert scored.exit_code == 0, scored.output
    summary = json.loads(scored.output[scored.output.index("{") :])
    assert summary["split"] == "test" and summary["n"] == report["splits"]["sizes"]["test"]
    assert summary["accuracy"] == pytest.approx(report["best_test"]["accuracy"])
