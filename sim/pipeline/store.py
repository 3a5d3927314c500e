"""The build cache on disk: a plain content-addressed folder of trained checkpoints and built workloads.

An entry is named by the SHA-256 of everything it depends on (:func:`digest`): the settings that made it,
the content of every input file it read, this package's source code and the versions of torch and numpy.
It is ``ROOT/KIND/ab/abcdef....bin``; a writer puts the bytes in a temporary file beside it and renames
it into place (atomic on POSIX), so readers never see half an entry and concurrent writers of the same
key simply replace equal bytes. Nothing is ever updated in place; delete the folder to empty the cache.

A workload's key (:func:`workload_digest`) covers everything :func:`sim.pipeline.prepare.prepare` reads:
the scenario's model, weights source, data, training, pruning, partition and wire settings
(:func:`sim.pipeline.evaluate.workload_key`), the files they name (checkpoint, partition file,
GraphML, dataset folder) and the code version; trained weights (:func:`weights_digest`) the model section,
seed, dataset and files. A model given as ``package.module:factory`` is never cached (:func:`cacheable`:
its code is not ours to fingerprint).

The folder is ``$DSIM_CACHE``, else ``$XDG_CACHE_HOME/dsim``, else ``~/.cache/dsim``; ``dsim run``,
``compare`` and ``sweep`` take ``--cache-dir DIR`` and ``--no-cache``. This module does not import torch.

Example::

    >>> import tempfile
    >>> store = Store(Path(tempfile.mkdtemp()))
    >>> key = digest("example", {"answer": 42})
    >>> store.get("workload", key) is None
    True
    >>> store.put("workload", key, b"bytes")
    >>> store.get("workload", key)
    b'bytes'
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from sim.config.schema import Scenario
from sim.pipeline.evaluate import workload_key

SIM_ROOT = Path(__file__).resolve().parents[1]  # the sim package


def default_root() -> Path:
    """``$DSIM_CACHE``, else ``$XDG_CACHE_HOME/dsim``, else ``~/.cache/dsim``."""
    if os.environ.get("DSIM_CACHE"):
        return Path(os.environ["DSIM_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "dsim"
    return Path.home() / ".cache" / "dsim"


@cache
def code_version() -> str:
    """SHA-256 of every ``.py`` file of the package (path and content) and of the torch and numpy versions:
    any change to the code, or another torch, makes every earlier entry unreachable."""
    h = hashlib.sha256()
    for path in sorted(SIM_ROOT.rglob("*.py")):
        h.update(str(path.relative_to(SIM_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    for package in ("torch", "numpy"):
        try:
            h.update(f"{package}=={metadata.version(package)}\0".encode())
        except metadata.PackageNotFoundError:  # an uninstalled dependency cannot have built anything
            h.update(f"{package} missing\0".encode())
    return h.hexdigest()


def file_fingerprint(path: str | Path | None) -> Any:
    """What an input path contributes to a key: a file's SHA-256; a folder's file names, sizes and
    modification times (datasets are large; a changed file changes its size or time); ``None`` if missing."""
    if path is None:
        return None
    p = Path(path)
    if p.is_file():
        return hashlib.sha256(p.read_bytes()).hexdigest()
    if p.is_dir():
        return [
            [str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(p.rglob("*")) if f.is_file()
        ]
    return None


def digest(kind: str, settings: Any) -> str:
    """The key of an entry: SHA-256 of its kind, its settings (JSON) and :func:`code_version`."""
    text = json.dumps([kind, settings, code_version()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Store:
    """A content-addressed folder at ``root`` (created on first write)."""

    root: Path

    def path(self, kind: str, key: str) -> Path:
        """Where the entry ``key`` of ``kind`` lives."""
        return self.root / kind / key[:2] / f"{key}.bin"

    def get(self, kind: str, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None``."""
        try:
            return self.path(kind, key).read_bytes()
        except OSError:  # missing, or unreadable: a miss either way
            return None

    def put(self, kind: str, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically (temporary file in the same folder, then rename). A
        cache that cannot be written (read-only, full disk) is skipped silently: it only saves time."""
        target = self.path(kind, key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".bin")
        except OSError:
            return
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except OSError:
            Path(tmp).unlink(missing_ok=True)


def cacheable(scenario: Scenario) -> bool:
    """Whether the scenario's builds may be cached: not for a user model (``package.module:factory``)."""
    return ":" not in scenario.model.name


def _files(scenario: Scenario) -> dict[str, Any]:
    """Fingerprints of the input files a build reads."""
    paths = scenario.setup.paths  # resolved against the scenario file's folder
    return {
        "checkpoint": file_fingerprint(paths.checkpoint),
        "inputs.path": file_fingerprint(paths.dataset),
        "partition.file": file_fingerprint(paths.partition),
        "network.graphml": file_fingerprint(paths.graphml),
    }


def workload_digest(scenario: Scenario) -> str:
    """The cache key of the scenario's built workload."""
    return digest("workload", {"settings": workload_key(scenario), "files": _files(scenario)})


def weights_digest(scenario: Scenario) -> str:
    """The cache key of the scenario's trained weights (``model.train_epochs``): the model section, the
    seed, the dataset and the files they read."""
    data = scenario.resolved()
    settings = {"model": data["model"], "seed": scenario.seed, "dataset": scenario.inputs.dataset}
    files = {k: v for k, v in _files(scenario).items() if k in ("checkpoint", "inputs.path")}
    return digest("weights", {"settings": settings, "files": files})
