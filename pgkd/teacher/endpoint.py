"""One OpenAI-compatible chat endpoint, as a teacher uses it: the official ``openai`` client (its
retries, with backoff honouring ``Retry-After``, absorb timeouts, 5xx and 429), structured output,
errors mapped to :mod:`pgkd.errors`, the API key kept out of every message, and each request
accounted against a :class:`~pgkd.teacher.base.TeacherBudget`.

Structured output: OpenAI's form is ``{"type": "json_schema", "json_schema": {...}}``; llama-cpp-python's
server (0.3.x) refuses it (HTTP 500, a validation ``literal_error``) and takes
``{"type": "json_object", "schema": {...}}`` instead. ``structured_output="auto"`` sends the first
form once without retries and switches to the second for good if the server names
``response_format`` in its refusal.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from pydantic import SecretStr

from pgkd.errors import TeacherError, TeacherRateLimited, TeacherResponseError, TeacherUnavailable
from pgkd.teacher.base import TeacherBudget, TeacherUsage

log = logging.getLogger(__name__)

StructuredOutput = Literal["auto", "json_schema", "json_object"]


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is None:
                continue
            seconds = email.utils.mktime_tz(parsed) - time.time()
        if math.isfinite(seconds):
            return max(0.0, seconds)
    return None


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class ChatEndpoint:
    """Chat completions from ``model`` at ``base_url``, spending from ``usage`` within ``budget``."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | SecretStr,
        timeout: float,
        max_retries: int,
        budget: TeacherBudget,
        usage: TeacherUsage,
        structured_output: StructuredOutput = "auto",
        client: openai.OpenAI | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must not be negative, got {max_retries}")
        if structured_output not in ("auto", "json_schema", "json_object"):
            raise ValueError(
                f"structured_output must be auto, json_schema or json_object, got {structured_output!r}"
            )
        self.name = f"openai:{model}"
        self.model = model
        self.base_url = _without_userinfo(base_url)
        self.timeout, self.max_retries = timeout, max_retries
        self.budget, self.usage = budget, usage
        self._format: StructuredOutput = structured_output
        # The key lives only inside the client: never on the teacher, in names, usage or errors.
        secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        self._secret = secret if len(secret) >= 8 else None
        self._client = client or openai.OpenAI(
            base_url=base_url, api_key=secret, timeout=timeout, max_retries=max_retries
        )
        self._probe_client = self._client.with_options(max_retries=0)

    def chat(
        self,
        messages: list[ChatCompletionMessageParam],
        *,
        schema_name: str,
        schema: dict[str, Any],
        max_tokens: int,
        temperature: float,
        logprobs: bool,
        seed: int | None = None,
    ) -> ChatCompletion:
        """One accounted request: budget checked first, errors mapped, usage recorded."""
        self.budget.check(self.usage)
        self.usage.calls += 1
        params: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if logprobs:
            params.update(logprobs=True, top_logprobs=1)
        if seed is not None:
            params["seed"] = seed
        try:
            response = self._create(params, schema_name, schema)
        except openai.APIError as exc:
            self.usage.failed_calls += 1
            raise self._translate(exc) from None
        self._account(response, messages)
        return response

    def _create(self, params: dict[str, Any], schema_name: str, schema: dict[str, Any]) -> ChatCompletion:
        if self._format == "auto":
            try:
                response = self._probe_client.chat.completions.create(
                    **params, response_format=self._response_format("json_schema", schema_name, schema)
                )
            except openai.APIStatusError as exc:
                if exc.status_code in (400, 422, 500) and "response_format" in str(exc.message):
                    log.info(
                        "%s refuses json_schema response_format; using json_object with a schema", self.name
                    )
                    self._format = "json_object"
            except openai.APIConnectionError:
                pass  # sent again below, with the client's retries
            else:
                self._format = "json_schema"
                return response
        style = "json_schema" if self._format == "auto" else self._format
        return self._client.chat.completions.create(
            **params, response_format=self._response_format(style, schema_name, schema)
        )

    @staticmethod
    def _response_format(style: str, name: str, schema: dict[str, Any]) -> Any:
        if style == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}

    def _translate(self, exc: openai.APIError) -> TeacherError:
        where = f"{self.name} at {self.base_url}"
        body = getattr(exc, "body", None)
        said = body.get("message") if isinstance(body, dict) else None
        detail = self._scrub(str(said or getattr(exc, "message", "") or exc))[:300]
        if isinstance(exc, openai.RateLimitError):
            retry_after = _retry_after(exc.response)
            wait = "" if retry_after is None else f"; retry after {retry_after:g}s"
            return TeacherRateLimited(
                f"{where} is rate limiting (HTTP 429 after {self.max_retries} retries{wait})", retry_after
            )
        if isinstance(exc, openai.APITimeoutError):
            return TeacherUnavailable(
                f"{where} did not answer within {self.timeout:g}s ({self.max_retries} retries)"
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            reason = self._scrub(f"{type(cause).__name__}: {cause}")[:200] if cause is not None else detail
            return TeacherUnavailable(f"cannot reach {where} ({self.max_retries} retries): {reason}")
        if isinstance(exc, openai.InternalServerError):
            return TeacherUnavailable(
                f"{where} answered HTTP {exc.status_code} after {self.max_retries} retries: {detail}"
            )
        if isinstance(exc, openai.APIStatusError):
            return TeacherError(f"{where} refused the request with HTTP {exc.status_code}: {detail}")
        return TeacherResponseError(f"{where} sent an answer the client could not read: {detail}")

    def _scrub(self, message: str) -> str:
        return message if self._secret is None else message.replace(self._secret, "***")

    def _account(self, response: ChatCompletion, messages: list[ChatCompletionMessageParam]) -> None:
        usage = response.usage
        if usage is not None:
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        else:  # a server that reports no usage: estimate 4 characters a token so budgets still bite
            prompt_chars = sum(len(str(m.get("content") or "")) for m in messages)
            completion_chars = sum(len(c.message.content or "") for c in response.choices)
            prompt_tokens, completion_tokens = math.ceil(prompt_chars / 4), math.ceil(completion_chars / 4)
        self.usage.prompt_tokens += prompt_tokens
        self.usage.completion_tokens += completion_tokens
        self.usage.cost += self.budget.cost(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
