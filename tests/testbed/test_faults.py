"""Real runs that fail end in one line naming the device or link, after a bounded wait, with every process
(and namespace) they created removed: a device process killed or stopped during the run, a link taken down,
a run past ``--timeout``, and more device processes than this host's memory holds."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim.cli import main
from sim.errors import UserError
from sim.testbed import launcher
from sim.testbed.execute import execute
from tests.helpers import scenario_dict

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _scenario_file(tmp_path: Path, devices: int = 2, **network: Any) -> Path:
    data = scenario_dict(devices, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 20, "interval_ms": 100})
    data["network"] = {"topology": "mesh", "bandwidth_mbps": 20, "latency_ms": 0, **network}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _during_timed_run(monkeypatch: pytest.MonkeyPatch, act: Any, after_s: float = 0.5) -> None:
    """Call ``act(bed)`` ``after_s`` into the first timed run (the parent's side of the launcher)."""
    original = launcher._round

    def round_then_act(procs, conns, programs, bed, timeout_s, check):  # type: ignore[no-untyped-def]
        if not check:
            threading.Timer(launcher.START_MARGIN_S + after_s, act, args=(bed,)).start()
        return original(procs, conns, programs, bed, timeout_s, check)

    monkeypatch.setattr(launcher, "_round", round_then_act)


def _device_pid(name: str) -> int:
    return next(p.pid for p in mp.active_children() if p.name.endswith(f"-{name}"))  # type: ignore[return-value]


def _our_namespaces() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith(f"dsim{os.getpid()}-")]


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert mp.active_children() == []  # every device process ended
    return err


@pytest.mark.parametrize(
    "shape",
    [False, pytest.param(True, marks=[pytest.mark.slow, pytest.mark.skipif(not IS_ROOT, reason="--shape needs root")])],
)
def test_a_killed_device_ends_the_run_in_one_line(tmp_path, monkeypatch, capsys, shape: bool) -> None:
    _during_timed_run(monkeypatch, lambda bed: os.kill(_device_pid("d1"), signal.SIGKILL))
    args = ["execute", str(_scenario_file(tmp_path)), "--timeout", "5", "--out", str(tmp_path / "out")]
    start = time.monotonic()
    assert main(args + (["--shape"] if shape else [])) == 1
    assert time.monotonic() - start < 60
    err = _one_line_error(capsys)
    assert "device d1 was killed by SIGKILL" in err and "device processes ended" in err
    if shape:
        assert "2 network namespaces removed" in err and _our_namespaces() == []
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.slow
def test_a_stalled_device_ends_the_run_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    _during_timed_run(monkeypatch, lambda bed: os.kill(_device_pid("d1"), signal.SIGSTOP))
    start = time.monotonic()
    assert main(["execute", str(_scenario_file(tmp_path)), "--timeout", "3", "--out", str(tmp_path / "o")]) == 1
    assert time.monotonic() - start < 60
    err = _one_line_error(capsys)
    assert "device d1 stalled" in err and "waited 3 s for a message from device d1" in err


@pytest.mark.slow
@pytest.mark.skipif(not IS_ROOT, reason="--shape needs root (network namespaces and tc)")
def test_a_link_taken_down_ends_the_run_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    def down(bed: Any) -> None:
        (ns, dev), _ = bed.interfaces["d0-d1"]
        subprocess.run(["ip", "-n", ns, "link", "set", "dev", dev, "down"], check=True, timeout=10)

    _during_timed_run(monkeypatch, down)
    assert main(["execute", str(_scenario_file(tmp_path)), "--shape", "--timeout", "3"]) == 1
    err = _one_line_error(capsys)
    assert "link d0-d1 went down" in err and "2 network namespaces removed" in err
    assert _our_namespaces() == []


def test_a_run_past_its_timeout_ends_in_one_line(tmp_path, capsys) -> None:
    assert main(["execute", str(_scenario_file(tmp_path)), "--timeout", "0.01", "--out", str(tmp_path / "o")]) == 1
    err = _one_line_error(capsys)
    assert "waited 0.01 s for a message from device" in err and "device processes ended" in err
    assert main(["execute", str(_scenario_file(tmp_path)), "--timeout", "0"]) == 2
    assert "--timeout: must be > 0" in capsys.readouterr().err


@pytest.mark.slow
def test_more_processes_than_memory_holds_are_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(launcher, "_available_bytes", lambda: 1 << 20)  # 1 MiB free
    sc = _scenario_file(tmp_path, devices=launcher.MEASURE_FROM_DEVICES)
    with pytest.raises(UserError, match=r"needs 8 device processes of about \d+ MB each"):
        execute(str(sc))
    assert mp.active_children() == []


def test_needs_against_memory() -> None:
    # 64 processes of 300 MB: 19.2 GB, which fits in 80 % of 24 GB (19.2 GB) but not of 23 GB
    assert launcher.Needs(64, 300_000_000, 24_000_000_000).fits
    assert not launcher.Needs(64, 300_000_000, 23_000_000_000).fits
    assert "64 device processes of about 300 MB each (19.2 GB" in launcher.Needs(64, 300_000_000, 1).line()


@pytest.mark.skipif(not IS_ROOT, reason="needs root (network namespaces)")
def test_namespaces_left_by_a_killed_run_are_removed_and_no_other() -> None:
    """A run killed with SIGKILL cannot tear down; the next testbed deletes its ``dsim<pid>-*`` namespaces
    (pid no longer running), never a live run's or a name dsim did not give."""
    from sim.testbed.netns import remove_stale

    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid now names no process
    dead, live, foreign = f"dsim{gone.pid}-0", f"dsim{os.getpid()}-7", f"other{gone.pid}-0"
    try:
        for name in (dead, live, foreign):
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        removed = remove_stale()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        assert dead in removed and live not in removed and foreign not in removed
        assert dead not in listed and live in listed and foreign in listed
    finally:
        for name in (dead, live, foreign):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_a_lost_peer_is_reported_as_the_cause_its_peer_gives() -> None:
    """A device whose peer closed its connection reports a consequence; when the peer's own cause comes
    within the grace (here its timeout, after the consequence), the one line names that cause."""
    from types import SimpleNamespace

    from sim.errors import RunFailure

    ends = [mp.Pipe() for _ in range(2)]
    programs = [SimpleNamespace(name="d0"), SimpleNamespace(name="d1")]
    procs = [SimpleNamespace(exitcode=None, pid=os.getpid()) for _ in programs]  # alive, running
    ends[0][1].send(("peer-gone", "device d0 could not send to device d1: ConnectionResetError"))
    threading.Timer(0.2, ends[1][1].send, [("error", "device d1 waited 0.01 s for a message from device d0")]).start()
    with pytest.raises(RunFailure, match=r"^dsim execute: device d1 waited 0\.01 s for a message from device d0$"):
        launcher._gather(procs, [a for a, _ in ends], "done", time.monotonic() + 5, programs, None)  # type: ignore[arg-type]
    ends[0][1].send(("peer-gone", "device d0 could not send to device d1: ConnectionResetError"))
    ends[1][1].send(("done", None))  # no cause comes: the consequence is the line
    with pytest.raises(RunFailure, match=r"could not send to device d1: ConnectionResetError$"):
        launcher._gather(procs, [a for a, _ in ends], "done", time.monotonic() + 5, programs, None)  # type: ignore[arg-type]
