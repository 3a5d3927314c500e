"""``dsim profile SCENARIO --execute``: a runtime profile (:mod:`sim.workload.runtime`) taken from real runs
of the scenario (:func:`sim.testbed.execute.execute`), under the run's own conditions.

From the measured runs' timelines:

* **compute**: every task's wall time, and its CPU time: as the testbed measured it (the ``cpu_s`` of
  measured ``compute.csv``, its thread's CPU seconds), else the wall time with the time it shared a core
  taken off (:func:`cpu_seconds`: all device processes run on this machine's ``cores``; while ``n`` tasks
  ran at once each got ``min(1, cores / n)`` of a core), less the wake-up after the time its device idled
  before it (the profile's ``wake``, timed after the runs). Medians per device and task shape, then the fits.
  The measured CPU time is the better one: a task's wall time also holds the time other processes' message
  handling took from its core, which no task interval shows.
* **send**: a message's CPU time on its sender is the transfers table's ``send_cpu_s`` when the testbed
  measured it, else the time from the message being made (ready) to its bytes going to the socket
  (encoding it), the 10th percentile over frames and repeats of each message class (the higher ones
  waited behind the previous message to the same peer).
* **recv**: a message's CPU time on its receiver is the table's ``recv_cpu_s`` when the testbed measured it
  (reading, decoding, merging), else, when it was the last message a task waited for on an idle device,
  the time from its arrival to that task's start (:func:`wake_gaps`): the median per message class.
* **transit**: what a message's measured transit (first byte to the socket, last byte at the receiver) took beyond
  the time the engine puts it on the wire, replaying the run's sends with their measured start times
  (:func:`sim.engine.replay.wire_end_s`: the wait behind earlier messages on a link is the engine's own; no wire time on
  loopback): the kernel's hand-off to the receiving socket. The median per message class. The
  engine delays the message's arrival by it without holding a core: charged as CPU it kept the host's
  cores from computing, and frame 0 at the profiled configuration was predicted 9-19 % too slow
  (docs/validation.md, "Which model of the runtime").

Each of send, recv and transit is fitted per wire format as ``bytes * s_per_byte + overhead_s``; over
shaped links the transit as ``wire_s * s_per_wire_s + overhead_s`` instead, ``wire_s`` being the message's
time on the wire alone (:func:`sim.engine.simulate.wire_seconds`): what a link takes beyond the engine's
model of it grows with the time on the wire, so a profile taken at one rate predicts another.

Example::

    >>> cpu_seconds([(0.0, 2.0), (0.0, 2.0)], cores=1)   # two 2 s tasks together on one core: 1 s of CPU each
    [1.0, 1.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from sim.analysis.result import RunResult
from sim.config.load import load
from sim.config.schema import Scenario
from sim.engine import assemble
from sim.engine.network import Network
from sim.engine.replay import wire_end_s
from sim.engine.simulate import Timeline, wire_seconds
from sim.pipeline.calibrate import calibrated
from sim.pipeline.prepare import Prepared, prepare
from sim.pipeline.profile import prepared_solo_curves, prepared_wake_curve
from sim.progress import Progress
from sim.testbed.execute import execute
from sim.testbed.measure import TASK_CPU_COLUMN
from sim.testbed.validate import this_machine_cores, zero_latency
from sim.workload.runtime import (
    ComputeEntry,
    CostLine,
    DeviceCompute,
    RuntimeProfile,
    Sharing,
    WakeCurve,
    fit_cost,
    fit_entries,
    pooled_fits,
)
from sim.workload.types import Workload

SEND_QUANTILE = 10  # percentile of a message class's ready-to-socket times taken as its encoding time


def cpu_seconds(intervals: Sequence[tuple[float, float]], cores: int) -> list[float]:
    """Per ``(start_s, end_s)`` interval, its CPU seconds: the integral over it of ``min(1, cores / n(t))``,
    ``n(t)`` the number of intervals running at ``t`` (processor sharing undone)."""
    edges = sorted({x for interval in intervals for x in interval})
    if len(edges) < 2:
        return [0.0 for _ in intervals]
    starts = np.array([s for s, _ in intervals])
    ends = np.array([e for _, e in intervals])
    left, right = np.array(edges[:-1]), np.array(edges[1:])
    active = (starts[:, None] <= left[None, :]) & (ends[:, None] >= right[None, :])  # interval x segment
    share = np.minimum(1.0, cores / np.maximum(active.sum(axis=0), 1))
    return [float(x) for x in (active * (share * (right - left))[None, :]).sum(axis=1)]


def compute_entries(
    workload: Workload, runs: Sequence[RunResult], cores: int, wake: WakeCurve | None = None
) -> dict[int, list[ComputeEntry]]:
    """Per device index, one entry per task shape: median wall and CPU seconds over frames and runs (a task's
    CPU seconds as the testbed measured them, else its wall time with processor sharing undone); with a
    ``wake`` curve, each task's CPU seconds less its wake-up after the time its device idled before it (the
    engine adds it back from the simulated idle time; not below 0)."""
    samples: dict[tuple, list[tuple[float, float]]] = {}
    for run in runs:
        tl = run.timeline
        intervals = list(zip(tl.task_start_s, tl.task_end_s))
        measured = run.compute is not None and TASK_CPU_COLUMN in run.compute
        cpu = run.compute[TASK_CPU_COLUMN].tolist() if measured else cpu_seconds(intervals, cores)
        previous_end_s = previous_task_ends(workload, tl)
        for k, task in enumerate(workload.tasks):
            key = (task.device, task.layer, task.op, task.kind or task.op, task.flops, task.bytes_touched)
            idle_s = intervals[k][0] - previous_end_s[k]
            own_cpu_s = cpu[k] if wake is None else max(0.0, cpu[k] - wake.extra_at(idle_s))
            samples.setdefault(key, []).append((intervals[k][1] - intervals[k][0], own_cpu_s))
    out: dict[int, list[ComputeEntry]] = {}
    for (device, layer, op, kind, flops, touched), values in samples.items():
        wall, cpu = np.median([w for w, _ in values]), np.median([c for _, c in values])
        out.setdefault(device, []).append(
            ComputeEntry(layer, op, kind, float(flops), int(touched), float(cpu), float(wall), len(values))
        )
    return out


def previous_task_ends(workload: Workload, timeline: Timeline) -> list[float]:
    """Per task, when its device's previous task (in workload order) ended; ``-inf`` for a device's first."""
    ends: list[float] = []
    last: dict[int, float] = {}  # device -> its latest task's end so far
    for t, task in enumerate(workload.tasks):
        ends.append(last.get(task.device, -math.inf))
        last[task.device] = timeline.task_end_s[t]
    return ends


def wake_gaps(workload: Workload, run: RunResult) -> dict[int, float]:
    """Per message that was the last one a task waited for while its device was idle (its previous task had
    ended before the message arrived): seconds from the message's arrival to the task's start."""
    tl = run.timeline
    previous_end_s = previous_task_ends(workload, tl)
    needs: dict[int, list[int]] = {}
    for m, msg in enumerate(workload.messages):
        for t in msg.needed_by:
            needs.setdefault(t, []).append(m)
    gaps = {}
    for t, ms in needs.items():
        last = max(ms, key=lambda m: (tl.message_end_s[m], m))
        arrived = tl.message_end_s[last]
        idle_from_s = 0.0 if previous_end_s[t] == -math.inf else previous_end_s[t]  # a first task: from 0
        if idle_from_s <= arrived <= tl.task_start_s[t]:
            gaps[last] = tl.task_start_s[t] - arrived
    return gaps


def message_costs(
    workload: Workload, runs: Sequence[RunResult], network: Network | None, interleave: bool = False
) -> tuple[dict, dict, dict]:
    """Per wire format, the fits of a message's send and receive CPU time and of its transit delay
    (module docstring); ``network`` is the shaped network the runs used (None: loopback, no wire time),
    ``interleave`` its scenario's ``network.interleave``."""
    per_class: dict[str, dict[tuple, list[float]]] = {"send": {}, "recv": {}, "transit": {}}
    for run in runs:
        tl, table = run.timeline, run.transfers
        gaps = wake_gaps(workload, run)
        wire_ends = None if network is None else wire_end_s(workload, network, tl.message_start_s, interleave)
        for m, msg in enumerate(workload.messages):
            key = (msg.layer, msg.src, msg.dst, msg.format, msg.bytes)
            wire_end = tl.message_start_s[m] if wire_ends is None else wire_ends[m]
            beyond_wire = max(0.0, tl.message_end_s[m] - wire_end)
            if "send_cpu_s" in table:  # measured CPU times (encoding; reading, decoding, merging)
                send = float(table["send_cpu_s"].iloc[m])
                recv = float(table["recv_cpu_s"].iloc[m])
            else:
                send = tl.message_start_s[m] - tl.message_ready_s[m]
                recv = gaps.get(m, 0.0)
            per_class["send"].setdefault(key, []).append(max(0.0, send))
            per_class["recv"].setdefault(key, []).append(max(0.0, recv))
            per_class["transit"].setdefault(key, []).append(beyond_wire)
    measured_split = "send_cpu_s" in runs[0].transfers
    names = workload.devices
    fits = {}
    for side, classes in per_class.items():
        by_wire = side == "transit" and network is not None  # shaped: the transit follows the wire time
        by_format: dict[str, tuple[list, list]] = {}
        for (_layer, src, dst, fmt, nbytes), values in classes.items():
            quantile = SEND_QUANTILE if side == "send" and not measured_split else 50
            points, seconds = by_format.setdefault(fmt, ([], []))
            x = wire_seconds(nbytes, network.route(names[src], names[dst])) if network and by_wire else float(nbytes)
            points.append((0.0, x))
            seconds.append(float(np.percentile(values, quantile)))
        lines = {fmt: fit_cost(p, s) for fmt, (p, s) in sorted(by_format.items())}
        if by_wire:  # the fitted slope is per second on the wire, not per byte
            lines = {f: CostLine(0.0, 0.0, x.overhead_s, x.points, x.s_per_byte) for f, x in lines.items()}
        fits[side] = lines
    return fits["send"], fits["recv"], fits["transit"]


def profile_runtime(
    scenario: Scenario | str | Path,
    *,
    shape: bool = False,
    repeats: int = 3,
    timeout_s: float | None = None,
    prepared: Prepared | None = None,
) -> RuntimeProfile:
    """Execute the scenario ``repeats`` times (``shape``: over shaped veths) and return its runtime profile,
    with each layer's solo curve and the wake-up after idling timed after the runs
    (:func:`sim.pipeline.profile.prepared_solo_curves`, :func:`sim.pipeline.profile.prepared_wake_curve`)."""
    sc = calibrated(load(scenario))
    sc = sc.model_copy(update={"deploy": None, "baseline": "none"})
    prep = prepared if prepared is not None else prepare(sc)
    with Progress(3, "profile steps (runs, solo curves, wake-up)", "step") as progress:
        runs = execute(sc, shape=shape, repeats=repeats, timeout_s=timeout_s, prepared=prep)
        progress.step()
        solo = prepared_solo_curves(prep)
        progress.step()
        wake = prepared_wake_curve(prep)
        progress.step()
    return replace(profile_from_runs(sc, prep.workload, runs, shape, wake=wake), solo=solo)


def profile_from_runs(
    sc: Scenario,
    workload: Workload,
    runs: Sequence[RunResult],
    shape: bool,
    cores: int | None = None,
    wake: WakeCurve | None = None,
) -> RuntimeProfile:
    """The runtime profile of measured ``runs`` of ``sc`` (whose workload is ``workload``); every device
    process ran on ``cores`` cores (default: :func:`sim.testbed.validate.this_machine_cores`); ``wake``:
    the wake-up after idling timed on this machine, taken off the tasks' CPU times and kept."""
    cores = this_machine_cores() if cores is None else cores
    execution = runs[0].record.execution or {}
    network = None
    if shape:
        network = assemble.network(sc if execution["latency_applied"] else zero_latency(sc))
    entries = compute_entries(workload, runs, cores, wake)
    devices = tuple(
        DeviceCompute(workload.devices[d], tuple(rows), fit_entries(rows)) for d, rows in sorted(entries.items())
    )
    send, recv, transit = message_costs(workload, runs, network, sc.network.interleave)
    run_info = {
        "repeats": len(runs),
        "frames": workload.frames,
        "interval_s": sc.setup.interval_s,
        "network": execution["network"],
        "shaped": shape,
        "topology": sc.network.topology,
        "bandwidth_mbps": sc.network.bandwidth_mbps,
        "loadavg": execution.get("loadavg"),
        "measured_cpu_split": "send_cpu_s" in runs[0].transfers,
    }
    return RuntimeProfile(
        sc.name,
        sc.model.name,
        sc.inputs.batch_size,
        run_info,
        Sharing(len(workload.devices), cores),
        devices,
        pooled_fits(devices),
        send,
        recv,
        transit,
        wake=wake,
    )
