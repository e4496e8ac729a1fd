"""A real Prometheus scrapes the embedded stack during a short replay; every PromQL expression of
the Grafana dashboard must be valid and return data."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from pgkd.processes import free_port, tail, wait_port
from pgkd.runner import load_splits
from producers.replay import Replayer
from streams import connect
from streams.children import Child
from streams.stack import EmbeddedStack
from streams.topics import Topics
from tests.integration.live import live_settings, metric

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def dashboard_expressions() -> list[str]:
    spec = importlib.util.spec_from_file_location("dashboard", ROOT / "deploy/grafana/dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.expressions()


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if not found:  # a failure, not a skip: setup.sh installs Debian's prometheus package
        raise AssertionError(
            "no prometheus binary on PATH: apt-get install prometheus (scripts/setup.sh does)"
        )
    return found


def wait_ready(port: int, proc, seconds: float) -> bool:
    """Prometheus opens its port before its storage is up and answers 503 until then."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as r:
                if r.status == 200:
                    return True
        except OSError:  # refused, or 503 (HTTPError) while the TSDB loads
            pass
        time.sleep(0.5)
    return False


def query_range(port: int, expr: str, start: float, end: float) -> dict:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": "2s"})
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/query_range?{params}", timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as exc:  # a bad expression answers 400 with the parser's message
        return json.loads(exc.read())


def test_every_dashboard_expression_returns_data(broker, redis_url, namespace, tmp_path, kafka):
    settings = live_settings(
        broker,
        redis_url,
        namespace,
        tmp_path,
        low_confidence=0.3,
        min_hard=2,
        generate_every_seconds=10.0,
        samples_per_step=4,
        retrain_every_samples=3,
        retrain_every_seconds=10.0,
        teacher_calls_per_hour=100_000,
    )
    with EmbeddedStack(settings, tmp_path / "stack", supervise=True) as stack:
        stack.wait_healthy(timeout=600)
        assert stack.supervisor is not None
        ports = {key: child.metrics_port for key, child in stack.services.items()}
        ports["supervisor"] = stack.supervisor.metrics_port
        jobs = [
            {
                "job_name": f"pgkd-{key}",
                "scrape_interval": "2s",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
            }
            for key, port in ports.items()
        ]
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({"global": {"scrape_interval": "2s"}, "scrape_configs": jobs}))
        port = free_port()
        prometheus = Child(
            "prometheus",
            [
                prometheus_binary(),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            tmp_path / "prometheus.log",
        ).start()
        try:
            assert wait_port("127.0.0.1", port, 60, prometheus.proc), tail(prometheus.log)
            assert wait_ready(port, prometheus.proc, 60), tail(prometheus.log)
            started = time.time()
            # Every target scraped once before any traffic, so that rates see every increase.
            deadline = time.monotonic() + 60
            while True:
                up = query_range(port, "sum(up)", started - 5, time.time())["data"]["result"]
                if up and float(up[0]["values"][-1][1]) == len(jobs):
                    break
                assert time.monotonic() < deadline, "Prometheus did not scrape every service"
                time.sleep(1)
            traffic = load_splits(settings).traffic[:240]
            Replayer(
                kafka.producer(stack.settings),
                Topics(namespace),
                rate=20,
                feedback_fraction=0.5,
                feedback_delay=1.0,
            ).run(traffic)
            registry = connect.registry(stack.settings)
            mining = stack.services["mining"].metrics_port
            deadline = time.monotonic() + 300
            # A promotion (for the annotation) and teacher work (for its panels) during the scrapes.
            while (
                len(registry.versions()) < 2 or metric(mining, "pgkd_teacher_calls_total", outcome="ok") < 1
            ):
                assert time.monotonic() < deadline, "no promotion or no teacher call during the replay"
                time.sleep(2)
            time.sleep(12)  # a few more scrapes after the last events
            failures = {}
            for expr in dashboard_expressions():
                answer = query_range(port, expr, started, time.time())
                if answer.get("status") != "success":
                    failures[expr] = answer.get("error", answer)
                    continue
                values = [float(v) for series in answer["data"]["result"] for _, v in series["values"]]
                if not any(not math.isnan(v) for v in values):
                    failures[expr] = f"no data ({len(values)} values, all NaN)" if values else "no data"
            assert not failures, json.dumps(failures, indent=2)
        finally:
            prometheus.stop(grace=5)
