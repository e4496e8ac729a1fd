"""The deployment files parse and agree with the code: compose against the Compose Specification
schema, every service command a real `pgkd` command, Prometheus and Grafana files well formed, and the
dashboard JSON what its generator writes."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.main import get_command

from cli.main import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dashboard_module():
    spec = importlib.util.spec_from_file_location("dashboard", ROOT / "deploy/grafana/dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compose_file_is_valid_against_the_compose_specification():
    schema = json.loads((ROOT / "tests/data/compose_spec.json").read_text())
    jsonschema.Draft201909Validator(schema).validate(COMPOSE)


def test_every_pgkd_service_runs_an_existing_command_with_health_and_restart():
    commands = get_command(app).commands  # type: ignore[attr-defined]
    built = {
        name: svc for name, svc in COMPOSE["services"].items() if svc.get("image", "").startswith("pgkd")
    }
    assert {"trainer", "serving", "feedback", "mining", "teacher"} <= set(built)
    for name, svc in built.items():
        command = svc.get("command") or ["teacher", "serve"]
        assert command[0] in commands, f"{name}: `pgkd {command[0]}` does not exist"
        if command[0] == "teacher":
            assert command[1] in commands["teacher"].commands  # type: ignore[attr-defined]
        if name != "replay":
            assert svc["restart"] == "unless-stopped" and "test" in svc["healthcheck"], name
    assert COMPOSE["services"]["serving"]["deploy"]["replicas"] >= 2
    for infra in ("kafka", "redis", "prometheus", "grafana"):
        assert "healthcheck" in COMPOSE["services"][infra] and COMPOSE["services"][infra]["restart"]


def test_kafka_is_kraft_with_three_partitions_and_redis_persists():
    kafka = COMPOSE["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_NUM_PARTITIONS"] == 3
    assert "--appendonly yes" in " ".join(COMPOSE["services"]["redis"]["command"])


def test_no_secret_is_baked_into_the_compose_file_or_the_image():
    env = COMPOSE["x-pgkd-env"]
    assert "PGKD_TEACHER_API_KEY" not in env, "only mining needs the teacher key"
    assert COMPOSE["services"]["mining"]["environment"]["PGKD_TEACHER_API_KEY"].startswith("${")
    assert env["PGKD_REDIS_URL"].startswith("${PGKD_REDIS_URL")
    assert COMPOSE["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${")
    instructions = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith(("ENV", "ARG"))
    ]
    assert not [line for line in instructions if "KEY" in line or "PASSWORD" in line or "SECRET" in line]


def test_prometheus_scrapes_every_service_and_is_valid():
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = {c["job_name"] for c in config["scrape_configs"]}
    assert {"pgkd-serving", "pgkd-trainer", "pgkd-feedback", "pgkd-mining"} <= jobs
    promtool = shutil.which("promtool")
    if promtool:  # Debian's prometheus package ships it; setup.sh installs it
        result = subprocess.run(
            [promtool, "check", "config", str(ROOT / "deploy/prometheus/prometheus.yml")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_dashboard_and_datasource():
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/pgkd.yml").read_text())
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/pgkd.json").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    targets = [t for p in dashboard["panels"] for t in p.get("targets", [])]
    assert targets and all(t["datasource"]["uid"] == uid for t in targets)
    mounts = COMPOSE["services"]["grafana"]["volumes"]
    assert any(m.startswith("./deploy/grafana/dashboards:") for m in mounts)


def test_dashboard_json_is_what_its_generator_writes():
    module = dashboard_module()
    assert (ROOT / "deploy/grafana/dashboards/pgkd.json").read_text() == module.render(), (
        "run: python deploy/grafana/dashboard.py"
    )
    panels = [p for p in module.dashboard()["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in panels}) == len(panels) >= 20


@pytest.mark.parametrize("forbidden", ["id", "text"])
def test_no_metric_label_can_take_a_request_id_or_a_text(forbidden):
    from streams import metrics

    for collector in vars(metrics).values():
        names = getattr(collector, "_labelnames", None)
        if names is not None:
            assert forbidden not in names
