"""A scripted OpenAI-compatible server for fault-injection tests: a real HTTP server on loopback
that answers each chat completion with the next scripted behaviour (a good answer, an error status,
a 429 with Retry-After, a hang, a dropped connection, broken or enormous JSON).

It is a test double of an LLM endpoint, named as such: the teacher under test talks to it through
the real ``openai`` client over real sockets, so retries, timeouts and parsing are exercised for real.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Behaviour = tuple[Any, ...]


def completion(content: str, model: str = "scripted") -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


@dataclass
class ScriptedTeacherServer:
    """Serves ``script`` in order, then ``default`` for every further request. Behaviours:

    * ``("ok", content)`` - 200 with ``content`` as the assistant message (``content`` may be a
      callable of the request body, to echo parts of the prompt back);
    * ``("status", code)`` - an error status with an OpenAI-style error body;
    * ``("rate_limited", seconds)`` - 429 with ``Retry-After: seconds``;
    * ``("hang", seconds)`` - answer nothing for ``seconds``, then a 200;
    * ``("close",)`` - drop the connection without an answer;
    * ``("broken_body",)`` - 200 whose JSON body is cut off half-way.
    """

    script: list[Behaviour] = field(default_factory=list)
    default: Behaviour = ("ok", '{"label": "sport"}')
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._json(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    outer.requests.append(body)
                    behaviour = outer.script.pop(0) if outer.script else outer.default
                outer._answer(self, behaviour, body)

            def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        self._handler = Handler
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    def __enter__(self) -> ScriptedTeacherServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, handler: Any, behaviour: Behaviour, body: dict[str, Any]) -> None:
        kind = behaviour[0]
        if kind == "ok":
            content = behaviour[1](body) if isinstance(behaviour[1], Callable) else behaviour[1]  # type: ignore[arg-type]
            handler._json(200, completion(content))
        elif kind == "status":
            handler._json(
                behaviour[1], {"error": {"message": f"scripted {behaviour[1]}", "type": "server_error"}}
            )
        elif kind == "rate_limited":
            handler._json(
                429,
                {"error": {"message": "scripted rate limit", "type": "rate_limit_error"}},
                {"Retry-After": str(behaviour[1])},
            )
        elif kind == "hang":
            time.sleep(behaviour[1])
            handler._json(200, completion('{"label": "sport"}'))
        elif kind == "close":
            handler.close_connection = True
            handler.connection.shutdown(2)
        elif kind == "broken_body":
            raw = json.dumps(completion('{"label": "sport"}')).encode()
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(raw)))
            handler.end_headers()
            handler.wfile.write(raw[: len(raw) // 2])
            handler.close_connection = True
            handler.connection.shutdown(2)
        else:
            raise ValueError(f"unknown behaviour {behaviour!r}")
