"""One dependency direction: library (pgkd) <- streams <- services (consumers, producers) <- CLI.

The contract is in pyproject.toml ([tool.importlinter]); import-linter follows every import,
including the ones inside functions, so a lazy import across the layers fails here too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_import_crosses_the_layers():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout
