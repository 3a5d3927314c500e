"""A save killed midway (SIGKILL: no ``finally`` runs) leaves its temporary file or staging folder behind;
the next save of the same name removes it, but never one that a running process is still writing."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sim import fileio

# Starts a save of OUT, reports the temporary name it writes, then waits to be killed inside the save.
_SAVER = """
import sys, time
from sim import fileio
kind, out = sys.argv[1], sys.argv[2]
if kind == "staged":
    with fileio.staged_directory(out) as stage:
        (stage / "a.csv").write_text("x\\n")
        print(stage, flush=True)
        time.sleep(120)
else:
    with fileio.atomic_path(out) as tmp:
        tmp.write_text("half")
        print(tmp, flush=True)
        time.sleep(120)
"""


def _start_saver(kind: str, out: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, kind, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, "the saver ended before it reported its temporary name"
    return proc, Path(line)


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.parametrize("kind", ["staged", "atomic"])
def test_a_killed_save_is_cleaned_by_the_next_one_but_a_running_one_is_kept(tmp_path: Path, kind: str) -> None:
    out = tmp_path / ("run" if kind == "staged" else "table.csv")
    proc, temporary = _start_saver(kind, out)
    try:
        assert temporary.exists() and temporary.parent == tmp_path
        # a concurrent save of the same name while the first still runs: it must not delete the other's files
        with fileio.atomic_path(out if kind == "atomic" else out / "b.csv") as tmp:
            tmp.write_text("mine")
        if kind == "staged":
            with fileio.staged_directory(out) as stage:
                (stage / "c.csv").write_text("y\n")
        assert temporary.exists()
    finally:
        _kill(proc)
    assert temporary.exists()  # SIGKILL: the save could not clean up after itself
    if kind == "staged":
        with fileio.staged_directory(out) as stage:
            (stage / "d.csv").write_text("z\n")
        assert sorted(p.name for p in out.iterdir()) == ["b.csv", "c.csv", "d.csv"]  # not the killed a.csv
    else:
        fileio.write_text(out, "whole")
        assert out.read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_remove_stale_leaves_other_names_and_foreign_files(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has ended
    stale = tmp_path / f".run.{pid}.abc123_x.staging"
    other_name = tmp_path / f".run2.{pid}.abc123_x.staging"
    not_ours = tmp_path / ".run.notes.txt"
    for folder in (stale, other_name):
        folder.mkdir()
        (folder / "a.csv").write_text("x\n")
    not_ours.write_text("keep")
    assert fileio.remove_stale(tmp_path, "run") == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other_name.name, not_ours.name])


_TERMINATED = """
import sys, time
from sim import cli, fileio

def slow_save(args):
    with fileio.staged_directory(sys.argv[1]) as stage:
        (stage / "a.csv").write_text("x\\n")
        print(stage, flush=True)
        time.sleep(120)
    return 0

cli._cmd_schema = slow_save  # a command that is saving when the signal comes
sys.exit(cli.main(["schema"]))
"""


def test_sigterm_ends_dsim_like_ctrl_c_and_removes_its_staging_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", _TERMINATED, str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    stage = Path(proc.stdout.readline().strip())
    assert stage.is_dir()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "dsim: interrupted", err
    assert list(tmp_path.iterdir()) == []  # neither the staging folder nor a half-made out
