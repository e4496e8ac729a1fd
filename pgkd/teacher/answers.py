"""Reading the OpenAI-compatible teacher's answers: JSON objects (tolerating code fences and chatter),
generated samples (also from an answer cut off part-way) and a label's confidence from token logprobs.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from openai.types.chat.chat_completion import ChoiceLogprobs

_FENCE = re.compile(r"^\s*```(?:json)?\s*|\s*```\s*$", re.IGNORECASE)


def loads_object(content: str) -> Any:
    """Parse an answer that should be a JSON object; tolerate code fences and chatter around it."""
    stripped = _FENCE.sub("", content).strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        start, end = stripped.find("{"), stripped.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(stripped[start : end + 1])
            except json.JSONDecodeError:
                return None
        return None


def parse_samples(content: str) -> tuple[list[Any], bool]:
    """The sample items of a generation answer and whether part of it was unusable.

    A complete answer gives its ``samples`` list. An answer cut off by ``max_tokens`` (or otherwise
    broken) still yields every complete ``{...}`` item before the break.
    """
    data = loads_object(content)
    if isinstance(data, dict) and isinstance(data.get("samples"), list):
        return list(data["samples"]), False
    items: list[Any] = []
    decoder = json.JSONDecoder()
    position = content.find("[")
    while position >= 0:
        start = content.find("{", position + 1)
        if start < 0:
            break
        try:
            item, position = decoder.raw_decode(content, start)
        except json.JSONDecodeError:
            break
        items.append(item)
    return items, True


def label_confidence(logprobs: ChoiceLogprobs | None, answer: str) -> float | None:
    """Probability the model gave the tokens that spell ``answer`` as the label value, or None if
    the server returned no token logprobs.

    llama.cpp computes logprobs from the raw logits, before the grammar masks them, so this is the
    model's own belief (e.g. 0.96 for ``sport`` when 3% went to ``sports``), not the constrained one.
    """
    if logprobs is None or not logprobs.content:
        return None
    tokens = logprobs.content
    joined = "".join(t.token for t in tokens)
    value = json.dumps(answer, ensure_ascii=False)[1:-1]
    match = re.search(r'"label"\s*:\s*"(' + re.escape(value) + ')"', joined)
    if match is None:
        return None
    start, end = match.span(1)
    total, position = 0.0, 0
    for token in tokens:
        token_start, position = position, position + len(token.token)
        if token_start < end and position > start:
            total += token.logprob
    return min(1.0, max(0.0, math.exp(total)))
