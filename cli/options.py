"""The options every live command shares (``--config``, ``--teacher``) and the settings they load."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pgkd.cli import Opt, settings_from

ConfigOpt = Annotated[Path | None, Opt("--config", help="TOML file with any PGKD_* setting")]
TeacherOpt = Annotated[str | None, Opt(help="local (embedded LLM server), openai or simulated")]


def stream_settings(config: Path | None, **flags: Any) -> Any:
    from streams.settings import StreamSettings  # imported when a live command runs, not for --help

    return settings_from(config, StreamSettings, **flags)
