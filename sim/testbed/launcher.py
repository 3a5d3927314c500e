"""Starting, ordering and always ending the device processes of a real run.

:func:`run_devices` starts one process per program (multiprocessing *spawn*, :func:`sim.testbed.worker.main`),
inside its network namespace when a :class:`sim.testbed.netns.Testbed` is given, connects them, runs the
untimed check pass (frame 0, every value kept) and then ``repeats`` timed runs started together at a common
``t0``, and ends every process (by its own pid) before it returns, also on errors and Ctrl-C.

A failure ends the run in one :class:`sim.errors.RunFailure` line that names its cause: a device process that
ended (killed by a signal), a stopped one, a network link that went down, or the device that waited in
vain; the launcher adds how many processes it ended (the testbed, how many namespaces it removed). Each
timed run may last ``timeout_s`` from its ``t0``; the devices give up waiting then, and the parent a
few seconds later.

Before starting more than :data:`MEASURE_FROM_DEVICES` processes it starts one and measures its memory,
and refuses (:class:`sim.errors.UserError`) a run whose processes would not fit in the memory available.

Example::

    >>> rounds = run_devices(build_programs(prep), None, timeout_s=60.0, repeats=3)   # doctest: +SKIP
    >>> len(rounds), len(rounds[0])                                                  # doctest: +SKIP
    (3, 4)
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import pickle
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, cast

from sim.errors import RunFailure, UserError
from sim.testbed import netns, worker
from sim.testbed.program import DeviceProgram, DeviceReport, Round

# t0 is this long after the parent sends a round: time for every process to read it, short enough that
# they are still warm (the quick-start split on loopback: frame 0 12.8-16.0 ms after 1 s idle, 10.8-12.0 ms
# after 0.1 s; tools/first_frame_margin.py, docs/validation.md "The first frame").
START_MARGIN_S = 0.1
PARENT_GRACE_S = 10.0  # the parent waits this much longer than the devices before it gives up on one
CAUSE_GRACE_S = 1.0  # after a device reports a peer gone, the parent waits this long for the peer's own cause
MEASURE_FROM_DEVICES = 8  # from this many devices on, one process is measured before the others start
MEMORY_HEADROOM = 0.8  # share of the available memory a run may plan to use


@dataclass(frozen=True)
class Needs:
    """What a run's device processes need on this host: ``processes`` of about ``bytes_each`` resident
    memory (measured on the first), against ``available_bytes`` (``MemAvailable``)."""

    processes: int
    bytes_each: int
    available_bytes: int

    @property
    def fits(self) -> bool:
        """Whether the processes fit in :data:`MEMORY_HEADROOM` of the available memory."""
        return self.processes * self.bytes_each <= MEMORY_HEADROOM * self.available_bytes

    def line(self) -> str:
        """One line: ``64 device processes of about 310 MB each (19.8 GB) ...``."""
        total = self.processes * self.bytes_each
        return (
            f"{self.processes} device processes of about {self.bytes_each / 1e6:.0f} MB each "
            f"({total / 1e9:.1f} GB, measured on the first) against {self.available_bytes / 1e9:.1f} GB available"
        )


def setup_timeout_s(devices: int) -> float:
    """Bound on each set-up step (processes started, listening, connected): 60 s plus 5 s per device."""
    return 60.0 + 5.0 * devices


def run_devices(
    programs: Sequence[DeviceProgram], bed: netns.Testbed | None, timeout_s: float, repeats: int = 1
) -> list[list[DeviceReport]]:
    """Start one process per program, connect them, run the check pass and ``repeats`` timed runs; the
    reports of each timed run (by device). The values of the check pass are in the first run's
    ``DeviceReport.inputs``. Every process is ended (by its own pid) before this returns."""
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    conns: list[Connection] = []
    setup = setup_timeout_s(len(programs))
    early: dict[int, Any] = {}  # ports already read
    try:
        try:
            for i, prog in enumerate(programs):
                prog = copy.copy(prog)
                prog.setup_timeout_s = setup
                if bed is not None:
                    prog.netns, prog.listen_host = bed.namespaces[prog.name], bed.addresses[prog.name]
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=worker.main, args=(child,), name=f"dsim-{os.getpid()}-{prog.name}", daemon=True
                )
                proc.start()
                child.close()
                procs.append(proc)
                conns.append(parent)
                parent.send_bytes(pickle.dumps(prog))  # by value: no tensor shared through file descriptors
                if i == 0 and len(programs) >= MEASURE_FROM_DEVICES:
                    early[0] = _check_memory(procs[0], conns[0], len(programs), setup, programs)
            ports = _gather(procs, conns, "listening", time.monotonic() + setup, programs, bed, early)
            hosts = {d: bed.addresses[p.name] if bed else "127.0.0.1" for d, p in enumerate(programs)}
            for prog, conn in zip(programs, conns):
                conn.send(("peers", {d: (hosts[d], ports[d]) for d in hosts if d != prog.index}))
            _gather(procs, conns, "ready", time.monotonic() + setup, programs, bed)
            check = _round(procs, conns, programs, bed, timeout_s, check=True)
            rounds = [_round(procs, conns, programs, bed, timeout_s, check=False) for _ in range(repeats)]
            for conn in conns:
                conn.send(("round", None))
        except (BrokenPipeError, ConnectionResetError):
            raise _diagnose(procs, programs, bed, "a device process ended while being set up") from None
        for first, checked in zip(rounds[0], check):
            first.inputs = checked.inputs
        return rounds
    except RunFailure as exc:
        exc.cleaned.append(f"{_end(procs, conns)} device processes ended")
        raise
    finally:
        _end(procs, conns)


def _round(
    procs: list[Any],
    conns: list[Connection],
    programs: Sequence[DeviceProgram],
    bed: netns.Testbed | None,
    timeout_s: float,
    check: bool,
) -> list[DeviceReport]:
    t0 = time.monotonic() + START_MARGIN_S
    for conn in conns:
        conn.send(("round", Round(t0, timeout_s, check)))
    return _gather(procs, conns, "done", t0 + timeout_s + PARENT_GRACE_S, programs, bed)


def _end(procs: list[Any], conns: list[Connection]) -> int:
    """End every process still alive (by its pid: terminate, then kill); how many were still running."""
    for conn in conns:
        conn.close()
    running = [p for p in procs if p.exitcode is None]
    for proc in running:
        proc.join(timeout=2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5.0)
    procs.clear()
    conns.clear()
    return len(running)


def _check_memory(proc: Any, conn: Connection, devices: int, setup_s: float, programs: Sequence[DeviceProgram]) -> Any:
    """Refuse (one line) when ``devices`` processes like the first would not fit in the available memory;
    else the first process's port (its "listening" report, read here)."""
    if not conn.poll(setup_s):
        raise RunFailure(f"device {programs[0].name} did not start within {setup_s:.0f} s")
    tag, value = conn.recv()
    if tag == "error":
        raise RunFailure(str(value))
    needs = Needs(devices, _resident_bytes(proc.pid), _available_bytes())
    if not needs.fits:
        raise UserError(f"devices: dsim execute needs {needs.line()}; run fewer devices, or simulate with dsim run")
    return value


def _gather(
    procs: list[Any],
    conns: Sequence[Connection],
    tag: str,
    deadline: float,
    programs: Sequence[DeviceProgram],
    bed: netns.Testbed | None,
    known: dict[int, Any] | None = None,
) -> list[Any]:
    """The value each device sends with ``tag`` (``known``: those already read); a device's error, its end,
    or silence past ``deadline`` raise one :class:`RunFailure` line naming the cause. A device that lost a
    peer (``"peer-gone"``) reports a consequence: the parent waits up to :data:`CAUSE_GRACE_S` for the
    cause another device reports (its timeout, its end) and names that, else the consequence."""
    values: dict[int, Any] = dict(known or {})
    consequence: str | None = None
    while len(values) < len(conns):
        pending = [c for i, c in enumerate(conns) if i not in values]
        ready = wait(pending, timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            late = [programs[i].name for i in range(len(conns)) if i not in values]
            seen = consequence or f"device {', '.join(late)} did not report '{tag}' in time"
            raise _diagnose(procs, programs, bed, seen)
        for c in ready:
            i = list(conns).index(cast(Connection, c))
            try:
                got, value = cast(Connection, c).recv()
            except (EOFError, OSError):
                raise _diagnose(procs, programs, bed, f"the process of device {programs[i].name} ended") from None
            if got == "error":
                raise _diagnose(procs, programs, bed, str(value))
            if got == "peer-gone":
                consequence = consequence or str(value)
                deadline = min(deadline, time.monotonic() + CAUSE_GRACE_S)
            values[i] = value
    if consequence is not None:
        raise _diagnose(procs, programs, bed, consequence)
    return [values[i] for i in range(len(conns))]


def _diagnose(procs: list[Any], programs: Sequence[DeviceProgram], bed: netns.Testbed | None, seen: str) -> RunFailure:
    """The root cause of a failed run as one line: a device process that ended or stopped, a link that
    went down, else what a device reported (``seen``)."""
    time.sleep(0.2)  # let a dying process be reaped, so its exit status is known
    for prog, proc in zip(programs, procs):
        code = proc.exitcode
        if code is not None:
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
            return RunFailure(f"dsim execute: the process of device {prog.name} {how} during the run ({seen})")
    for prog, proc in zip(programs, procs):
        if _stopped(proc.pid):
            return RunFailure(f"dsim execute: device {prog.name} stalled (its process is stopped) ({seen})")
    down = bed.links_down() if bed is not None else []
    if down:
        return RunFailure(f"dsim execute: link {', '.join(down)} went down during the run ({seen})")
    return RunFailure(f"dsim execute: {seen}")


def _stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (state T, as after SIGSTOP)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] in ("T", "t")


def _resident_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (Linux ``VmRSS``; 0 when unknown)."""
    return _kib(f"/proc/{pid}/status", "VmRSS:", 0)


def _available_bytes() -> int:
    """Memory available to new processes (Linux ``MemAvailable``; a large number when unknown)."""
    return _kib("/proc/meminfo", "MemAvailable:", 1 << 62)


def _kib(path: str, key: str, unknown: int) -> int:
    """The ``key: N kB`` line of a /proc file, in bytes."""
    try:
        line = next(x for x in Path(path).read_text().splitlines() if x.startswith(key))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration):
        return unknown


@contextmanager
def terminating() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt here, so every ``finally`` (processes, namespaces) runs."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
