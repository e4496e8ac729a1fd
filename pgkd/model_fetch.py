"""Fetching a model version: its files onto this machine, then the student loaded checksum-verified.

A version lives in a local folder or at any fsspec URI; a remote one is downloaded to a cache
folder first. Both the registry (:meth:`pgkd.registry.ModelRegistry.load`) and the serving side,
which is handed a bare ``uri`` and ``sha256``, load through :func:`fetch_model`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec

from pgkd.errors import ModelError
from pgkd.fingerprint import file_digest
from pgkd.model_files import WEIGHTS_FILE
from pgkd.student import Student


def is_uri(location: str) -> bool:
    """Whether ``location`` is an fsspec URI (``s3://...``, ``memory://...``) rather than a path.

    >>> is_uri("memory://models/v0001"), is_uri("runs/registry/v0001")
    (True, False)
    """
    return "://" in location


def fetch_model(uri: str, sha256: str, cache_dir: str | Path) -> Student:
    """Load the student at ``uri`` after checking its weights against ``sha256``.

    A remote version is downloaded to ``cache_dir`` first. Raises ModelError on a checksum mismatch
    or anything but safetensors weights, so a corrupted artifact is never served.
    """
    with _local_copy(uri, Path(cache_dir)) as directory:
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            raise ModelError(f"{uri} has no {WEIGHTS_FILE}")
        actual = file_digest(weights)
        if actual != sha256:
            raise ModelError(f"checksum mismatch for {uri}: expected {sha256[:12]}..., got {actual[:12]}...")
        return Student.load(directory)


@contextmanager
def _local_copy(uri: str, cache_dir: Path) -> Iterator[Path]:
    """A local folder holding the version's files: the folder itself, or a download that is
    removed again once loaded (the loaded student no longer needs the files)."""
    if not is_uri(uri):
        yield Path(uri)
        return
    fs, path = fsspec.core.url_to_fs(uri)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix="model-", dir=cache_dir))
    try:
        for remote in fs.ls(path, detail=False):
            fs.get_file(remote, str(target / Path(remote).name))
        yield target
    finally:
        shutil.rmtree(target, ignore_errors=True)
