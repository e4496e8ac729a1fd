"""The examples in the docstrings are run: a ``>>>`` line that no longer holds fails here."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("pgkd", "streams", "consumers", "producers", "cli")


def modules() -> list[str]:
    found = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        found += [m.name for m in pkgutil.walk_packages(package.__path__, prefix=f"{name}.")]
    return sorted(found)


@pytest.mark.filterwarnings("ignore:.*duplicate text:UserWarning")
@pytest.mark.parametrize("name", modules())
def test_docstring_examples_hold(name):
    result = doctest.testmod(
        importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
