"""The settings hand-off: the one file a child service reads its :class:`StreamSettings` from.

:func:`write_settings` writes it; the service reads it back through ``PGKD_CONFIG``
(:func:`consumers.runtime.service_settings`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import SecretStr

from streams.settings import StreamSettings


def write_settings(settings: StreamSettings, path: Path) -> Path:
    """``settings`` as a TOML file only its owner can read (secrets included): what every child
    service is handed (``PGKD_CONFIG``), instead of one environment variable per field that any
    process it starts would inherit."""
    values: dict[str, Any] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        values[name] = str(value) if isinstance(value, Path) else value
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        tomli_w.dump(values, f)
    os.chmod(path, 0o600)  # also when the file was there before, with a wider mode
    return path
