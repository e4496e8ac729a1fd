"""Content fingerprints: how pgkd hashes a file, a JSON value or a stream of records, in one place.

Every fingerprint is a sha256 hex digest (``length`` keeps a prefix where a short key will do: a
cache key, a sample id). Weights, datasets, training sets, teacher prompts and samples are all
identified through these functions, so "the same content" means one thing everywhere.

>>> digest("abc") == digest(b"abc") == digest_chunks(["a", "bc"])
True
>>> json_digest({"a": [2], "b": 1}) == json_digest({"b": 1, "a": [2]})
True
>>> len(json_digest({"b": 1}, length=32))
32
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CHUNK_BYTES = 1 << 20


def digest_chunks(chunks: Iterable[str | bytes], *, length: int = 64) -> str:
    """The sha256 of ``chunks`` concatenated (text as UTF-8)."""
    hasher = hashlib.sha256()
    for chunk in chunks:
        hasher.update(chunk.encode() if isinstance(chunk, str) else chunk)
    return hasher.hexdigest()[:length]


def digest(content: str | bytes, *, length: int = 64) -> str:
    """The sha256 of one string or byte string."""
    return digest_chunks([content], length=length)


def json_digest(value: Any, *, length: int = 64) -> str:
    """The sha256 of ``value`` as canonical JSON (sorted keys): equal values, equal digests."""
    return digest(json.dumps(value, sort_keys=True), length=length)


def file_digest(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks (model weights run to gigabytes)."""
    with Path(path).open("rb") as f:
        return digest_chunks(iter(lambda: f.read(CHUNK_BYTES), b""))
