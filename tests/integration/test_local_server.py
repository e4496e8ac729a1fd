"""The embedded teacher end to end: a real llama.cpp server answering through the openai client."""

from __future__ import annotations

import json
import os

import openai
import pytest

from pgkd.teacher.local import LocalTeacherServer
from pgkd.teacher.models import DEFAULT_LOCAL_MODEL

LABELS = ["sport", "politics", "technology"]
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": LABELS}},
    "required": ["label"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def client(local_teacher_url: str) -> openai.OpenAI:
    # No retries: a refused request should fail the test at once, not three times slower.
    return openai.OpenAI(base_url=local_teacher_url, api_key="unused", max_retries=0, timeout=300)


def test_models_lists_the_served_model(client: openai.OpenAI, local_teacher_model: str):
    assert local_teacher_model in [m.id for m in client.models.list().data]


def test_schema_constrained_label(client: openai.OpenAI, local_teacher_model: str):
    reply = client.chat.completions.create(
        model=local_teacher_model,
        messages=[
            {
                "role": "user",
                "content": "Classify the headline as sport, politics or technology. Answer as JSON "
                '{"label": ...}.\nHeadline: Federer wins fifth Wimbledon title in straight sets',
            }
        ],
        # llama-cpp-python's form: a grammar from the schema. See the test below for OpenAI's form.
        response_format={"type": "json_object", "schema": SCHEMA},  # type: ignore[call-overload,typeddict-item]
        temperature=0.0,
        max_tokens=24,
    )

    answer = json.loads(reply.choices[0].message.content or "")
    assert answer["label"] in LABELS
    assert set(answer) == {"label"}


@pytest.mark.embedded_teacher
def test_openai_json_schema_form_is_refused(
    client: openai.OpenAI, local_teacher_server: object, local_teacher_model: str
):
    """Pins llama-cpp-python 0.3.x behaviour that the teacher client relies on: only ``json_object``."""
    assert isinstance(local_teacher_server, LocalTeacherServer)
    with pytest.raises(openai.APIStatusError, match="json_object"):
        client.chat.completions.create(
            model=local_teacher_model,
            messages=[{"role": "user", "content": "Say sport."}],
            response_format={"type": "json_schema", "json_schema": {"name": "label", "schema": SCHEMA}},
            max_tokens=8,
        )


def test_server_process_is_gone_after_the_block(tmp_path):
    with LocalTeacherServer(DEFAULT_LOCAL_MODEL, port=0, log_path=tmp_path / "server.log") as server:
        pid = server.pid
        assert pid is not None
        assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
        assert server.model == DEFAULT_LOCAL_MODEL

    assert not server.running
    with pytest.raises(ProcessLookupError, match=r"No such process"):
        os.kill(pid, 0)
