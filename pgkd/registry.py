"""The model registry: every promoted student as a versioned directory, with its lineage.

Storage is a local folder or any fsspec URI (``s3://bucket/models``, ``memory://models`` ...): each
version is ``<root>/<version>/`` holding the student (safetensors, tokenizer, ``pgkd.json``) and
``record.json`` (:class:`~pgkd.model_record.ModelRecord`: metrics, parent, data fingerprint,
teacher cost since the parent). Storage is the source of truth. Redis, when given, holds the shared
index, the version sequence and the *current* pointer, so several trainers and tools agree on them;
if Redis lost its data, :meth:`ModelRegistry.rebuild_index` restores the index from storage.
Loading a version's files is :func:`pgkd.model_fetch.fetch_model`.

>>> registry = ModelRegistry("runs/registry", redis=None)                       # doctest: +SKIP
>>> record = registry.publish(student, metrics={"validation": report.summary()})  # doctest: +SKIP
>>> registry.set_current(record.version); registry.current().version            # doctest: +SKIP
'v0001'
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec

from pgkd.errors import ModelError
from pgkd.fingerprint import file_digest
from pgkd.model_fetch import fetch_model, is_uri
from pgkd.model_files import METADATA_FILE, WEIGHTS_FILE
from pgkd.model_record import ModelRecord
from pgkd.student import Student

RECORD_FILE = "record.json"
GUIDANCE_FILE = "guidance.json"
CURRENT_FILE = "CURRENT"
HOLD_FILE = "HOLD"


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts]) if is_uri(root) else str(Path(root, *parts))


class ModelRegistry:
    """Versioned students under ``root``; index and current pointer shared through ``redis``.

    ``namespace`` separates deployments that share a Redis. ``cache_dir`` is where versions stored
    at a remote URI are downloaded before loading.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        redis: Any | None = None,
        namespace: str = "pgkd",
        cache_dir: str | Path | None = None,
    ) -> None:
        self.root = str(root)
        self.redis = redis
        self._keys = {
            k: f"{namespace}:registry:{k}" for k in ("records", "current", "seq", "decisions", "hold")
        }
        self._fs, self._base = fsspec.core.url_to_fs(self.root)
        self._fs.makedirs(self._base, exist_ok=True)
        self.cache_dir = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "pgkd-model-cache"
        self._local_lock = threading.Lock()

    # -- writing ----------------------------------------------------------------------------------

    def publish(
        self, student: Student, *, note: str = "", guidance: dict[str, Any] | None = None, **lineage: Any
    ) -> ModelRecord:
        """Store ``student`` as the next version (not yet current) and return its record.

        ``lineage`` fills the other :class:`ModelRecord` fields (``metrics``, ``train_size``,
        ``teacher_cost_since_parent`` ...); parent and fingerprint come from the student's metadata.
        ``guidance`` (:meth:`pgkd.continual.Guidance.to_dict`) is what the teacher is shown about
        this model's mistakes; it is stored beside the model.
        """
        version = self._next_version()
        student.metadata.version = version
        # The model's own record (pgkd.json, and the model card written from it) carries its scores.
        student.metadata.metrics = {**student.metadata.metrics, **lineage.get("metrics", {})}
        uri = _join(self.root, version)
        with tempfile.TemporaryDirectory(prefix="pgkd-publish-") as tmp:
            local = student.save(Path(tmp) / version)
            sha256 = file_digest(local / WEIGHTS_FILE)
            record = ModelRecord(
                version=version,
                uri=uri,
                sha256=sha256,
                created_at=time.time(),
                parent_version=student.metadata.parent_version,
                data_fingerprint=student.metadata.data_fingerprint,
                note=note,
                labels=list(student.labels),
                **lineage,
            )
            (local / RECORD_FILE).write_text(record.to_json())
            if guidance is not None:
                (local / GUIDANCE_FILE).write_text(json.dumps(guidance))
            # Files first, record last: a version whose record exists is complete.
            target = _join(self._base, version)
            self._fs.makedirs(target, exist_ok=True)
            for file in sorted(local.iterdir(), key=lambda p: p.name == RECORD_FILE):
                self._fs.put_file(str(file), _join(target, file.name))
        if self.redis is not None:
            self.redis.hset(self._keys["records"], version, record.to_json())
        return record

    def set_current(self, version: str) -> ModelRecord:
        """Make ``version`` the one to serve. Raises ModelError for an unknown version."""
        record = self.get(version)
        self._write_pointer(version)
        return record

    def hold(self, reason: str, version: str | None = None) -> ModelRecord | None:
        """Stop automatic promotions until :meth:`release`: after an operator's rollback, the trainer
        must not promote a model trained on the same data seconds later. With ``version``, that
        version is made current under the same lock (:meth:`set_current_unless_held` takes it too),
        so no promotion can land between the two."""
        value = json.dumps({"reason": reason, "ts": time.time()})
        with self._pointer_lock():
            record = self.get(version) if version is not None else None
            with self._fs.open(_join(self._base, HOLD_FILE), "w") as f:
                f.write(value)
            if self.redis is not None:
                self.redis.set(self._keys["hold"], value)
            if version is not None:
                self._write_pointer(version)
        return record

    def set_current_unless_held(self, version: str) -> dict[str, Any] | None:
        """Make ``version`` current unless an operator holds promotions; the hold is checked and the
        pointer moved under one lock. Returns the hold that stopped it, or None."""
        self.get(version)  # an unknown version is an error, held or not
        with self._pointer_lock():
            hold = self.held()
            if hold is None:
                self._write_pointer(version)
            return hold

    def release(self) -> None:
        """Let the trainer promote again."""
        path = _join(self._base, HOLD_FILE)
        if self._fs.exists(path):
            self._fs.rm_file(path)
        if self.redis is not None:
            self.redis.delete(self._keys["hold"])

    def held(self) -> dict[str, Any] | None:
        """The hold on promotions (``reason``, ``ts``), or None when the trainer may promote."""
        if self.redis is not None:
            value = self.redis.get(self._keys["hold"])
            if value:
                return dict(json.loads(value))
        path = _join(self._base, HOLD_FILE)
        if not self._fs.exists(path):
            return None
        hold = dict(json.loads(self._fs.cat_file(path)))
        if self.redis is not None:  # Redis lost it (a restart without persistence): storage rules
            self.redis.set(self._keys["hold"], json.dumps(hold))
        return hold

    def record_decision(self, decision: dict[str, Any], keep: int = 1000) -> None:
        """Append a promotion decision (promoted or not, and why) to the shared history."""
        if self.redis is None:
            return
        pipe = self.redis.pipeline()
        pipe.lpush(self._keys["decisions"], json.dumps(decision, sort_keys=True))
        pipe.ltrim(self._keys["decisions"], 0, keep - 1)
        pipe.execute()

    # -- reading ----------------------------------------------------------------------------------

    def get(self, version: str) -> ModelRecord:
        if self.redis is not None:
            cached = self.redis.hget(self._keys["records"], version)
            if cached is not None:
                return ModelRecord.from_json(cached)
        path = _join(self._base, version, RECORD_FILE)
        if not self._fs.exists(path):
            raise ModelError(f"no model version {version!r} in {self.root}")
        return ModelRecord.from_json(self._fs.cat_file(path))

    def versions(self) -> list[ModelRecord]:
        """Every stored version, oldest first."""
        if self.redis is not None:
            records = [ModelRecord.from_json(v) for v in self.redis.hvals(self._keys["records"])]
            if records:
                return sorted(records, key=lambda r: _sequence(r.version))
        return self._stored()

    def guidance(self, version: str) -> dict[str, Any] | None:
        """The guidance stored with ``version``, or None if it has none."""
        path = _join(self._base, version, GUIDANCE_FILE)
        if not self._fs.exists(path):
            return None
        return dict(json.loads(self._fs.cat_file(path)))

    def current(self) -> ModelRecord | None:
        version = self._read_pointer()
        return self.get(version) if version else None

    def labels(self, record: ModelRecord) -> tuple[str, ...]:
        """The taxonomy of ``record``'s model: from the record, or (a record written before records
        carried it) from the model's own ``pgkd.json``, without loading the weights."""
        if record.labels:
            return tuple(record.labels)
        path = _join(self._base, record.version, METADATA_FILE)
        return tuple(json.loads(self._fs.cat_file(path))["labels"])

    def decisions(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest promotion decisions, newest first."""
        if self.redis is None:
            return []
        return [json.loads(d) for d in self.redis.lrange(self._keys["decisions"], 0, limit - 1)]

    def load(self, version: str) -> Student:
        record = self.get(version)
        return fetch_model(record.uri, record.sha256, self.cache_dir)

    def rebuild_index(self) -> int:
        """Refill the Redis index and pointer from storage (after Redis lost its data)."""
        stored = self._stored()
        if self.redis is None or not stored:
            return len(stored)
        pipe = self.redis.pipeline()
        for record in stored:
            pipe.hset(self._keys["records"], record.version, record.to_json())
        pipe.set(self._keys["seq"], max(_sequence(r.version) for r in stored), nx=True)
        pointer = self._file_pointer()
        if pointer:
            pipe.set(self._keys["current"], pointer, nx=True)
        pipe.execute()
        return len(stored)

    # -- internals --------------------------------------------------------------------------------

    @contextmanager
    def _pointer_lock(self) -> Iterator[None]:
        """One writer of the current pointer and the hold at a time, across processes (Redis), or
        within this one (no Redis)."""
        if self.redis is None:
            with self._local_lock:
                yield
            return
        with self.redis.lock(self._keys["current"] + ":lock", timeout=30, blocking_timeout=60):
            yield

    def _stored(self) -> list[ModelRecord]:
        records = []
        for path in self._fs.glob(_join(self._base, "v*", RECORD_FILE)):
            records.append(ModelRecord.from_json(self._fs.cat_file(path)))
        return sorted(records, key=lambda r: _sequence(r.version))

    def _next_version(self) -> str:
        if self.redis is not None:
            if not self.redis.exists(self._keys["seq"]):
                self.rebuild_index()
            return f"v{int(self.redis.incr(self._keys['seq'])):04d}"
        stored = [_sequence(r.version) for r in self._stored()]
        return f"v{max(stored, default=0) + 1:04d}"

    def _write_pointer(self, version: str) -> None:
        with self._fs.open(_join(self._base, CURRENT_FILE), "w") as f:
            f.write(version)
        if self.redis is not None:
            self.redis.set(self._keys["current"], version)

    def _read_pointer(self) -> str | None:
        if self.redis is not None:
            value = self.redis.get(self._keys["current"])
            if value:
                return value.decode() if isinstance(value, bytes) else str(value)
        return self._file_pointer()

    def _file_pointer(self) -> str | None:
        path = _join(self._base, CURRENT_FILE)
        if not self._fs.exists(path):
            return None
        return self._fs.cat_file(path).decode().strip() or None


def _sequence(version: str) -> int:
    try:
        return int(version.lstrip("v"))
    except ValueError:
        return 0
