"""Atomic file output, and bounded reads of user files.

Every output file is written under a temporary name, then renamed into place: a crash or an error never
leaves a half-written result file behind; :func:`staged_directory` extends this to a set of files that is
built completely before any of them replaces what ``out`` held. :func:`read_limited` reads a user's text
file only if it is a regular file of at most a given size, in UTF-8.

Temporary names carry the writing process's id and a random suffix (``.NAME.PID.<random>.tmp.csv``,
``.NAME.PID.<random>.staging``).
A process killed mid-save (SIGKILL, a power cut) cannot delete its own; the next save of the same ``NAME``
does (:func:`remove_stale`), once that process is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sim.errors import UserError

if TYPE_CHECKING:  # pandas only for the type: importing it costs what `dsim schema` may take in all
    import pandas as pd


def read_limited(path: str | Path, limit_bytes: int, field: str) -> str:
    """The UTF-8 text of the regular file ``path``, refused with a one-line :class:`UserError` naming
    ``field`` if it is missing, not a regular file (a folder, ``/dev/zero``, a pipe), larger than
    ``limit_bytes`` or not UTF-8. At most ``limit_bytes + 1`` bytes are ever read.

    Example::

        text = read_limited("scenarios/quickstart.yaml", 2**20, "scenario")
    """
    path = Path(path)
    try:
        if path.exists() and not path.is_dir() and not path.is_file():  # opening a FIFO would block
            raise UserError(f"{field}: {path} is not a regular file")
        with path.open("rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise UserError(f"{field}: {path} is not a regular file")
            raw = fh.read(limit_bytes + 1)
    except FileNotFoundError:
        raise UserError(f"{field}: no such file {path}") from None
    except IsADirectoryError:
        raise UserError(f"{field}: {path} is a folder, not a file") from None
    except OSError as exc:
        raise UserError(f"{field}: cannot read {path} ({exc.strerror})") from None
    if len(raw) > limit_bytes:
        raise UserError(f"{field}: {path} is larger than {limit_bytes} bytes; is it the right file?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{field}: {path} is not UTF-8 text (byte {exc.start})") from None


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(parent: str | Path, name: str) -> list[Path]:
    """Delete the temporary files and staging folders that a killed save of ``parent/name`` left behind:
    those named by this module for ``name`` whose process no longer runs and which this user owns. A save
    still running (in this or another process) keeps its own. Returns what was removed.

    Example::

        >>> remove_stale("results", "quickstart")  # doctest: +SKIP
        [PosixPath('results/.quickstart.4242.k3j2h1g0.staging')]
    """
    parent = Path(parent)
    pattern = re.compile(re.escape(f".{name}.") + r"(\d+)\.[a-z0-9_]+\.(staging|tmp.*)")
    removed = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _alive(int(match.group(1))):
            continue
        try:
            if entry.lstat().st_uid != os.getuid():
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue  # removed meanwhile by another save, or not ours to remove
        removed.append(entry)
    return removed


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error delete it.

    Example::

        with atomic_path("out/summary.json") as tmp:
            tmp.write_text("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, path.name)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp creates 0600; results are ordinary readable files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def staged_directory(out: str | Path, owned: Iterable[str] = ()) -> Iterator[Path]:
    """Yield an empty staging folder beside ``out``; on success move every file in it into ``out`` (each
    by an atomic rename), on error delete it, so a save that fails midway leaves ``out`` as it was.

    ``owned`` names the files this kind of save may write (all its outputs): those of them it did not write
    this time are removed from ``out`` on success, so an earlier save's files (a simulated run's
    ``links.csv`` beside a measured run's tables) cannot pass for this one's. Other files are never touched.

    Example::

        with staged_directory("results/run", owned={"a.csv", "b.json", "c.png"}) as stage:
            (stage / "a.csv").write_text("x\n")
            (stage / "b.json").write_text("{}")   # an old results/run/c.png is removed
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out.parent, out.name)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".staging", dir=out.parent))
    except OSError as exc:  # report the folder the caller asked for, not the staging name
        raise OSError(exc.errno, exc.strerror, str(out)) from exc
    try:
        yield stage
        out.mkdir(exist_ok=True)
        written = set()
        for path in sorted(stage.iterdir()):
            path.chmod(0o644)
            os.replace(path, out / path.name)
            written.add(path.name)
        for name in sorted(set(owned) - written):
            if (out / name).is_file():
                (out / name).unlink()
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """Write a result table atomically, without its index, floats to 9 significant digits."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.9g")
