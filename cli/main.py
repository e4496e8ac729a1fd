"""The ``pgkd`` command line: the library's offline commands (:mod:`pgkd.cli`) and the live system's.

The live commands drive streams/, consumers/ and producers/ (Kafka and Redis), so they live here, at
the top of the dependency direction (library <- streams <- services <- CLI), not in the library.
:mod:`cli.running` starts the system, :mod:`cli.operations` operates and inspects it; both add their
commands to the library's app. Every option can also come from the environment (``PGKD_<OPTION>``)
or a TOML file (``--config``).
"""

from __future__ import annotations

# Importing a module adds its commands to the app, and `pgkd --help` lists them in import order.
import cli.running  # noqa: F401

# isort: split
import cli.operations  # noqa: F401
from pgkd.cli import app

if __name__ == "__main__":
    app()
