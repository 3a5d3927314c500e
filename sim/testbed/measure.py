"""What the device processes measured, as a run: a :class:`sim.engine.simulate.Timeline` aligned with the
workload, ``dsim run``'s tables and summary, and the check of every value against the unsplit model.

A task's time runs from the start of its layer (or add) to the end of the channel-wise ops that follow it
on that device, less the time the device spent handing messages to sockets meanwhile; a message's from
the moment its encoded bytes go to the socket (or, if later, the moment the message before it on the same
connection arrived: :func:`link_free_starts`) to the moment its last byte reached the receiver (the kernel's
receive timestamp: :class:`sim.testbed.transport.Receiver`). Measured ``transfers.csv`` has two more columns: ``send_cpu_s``, the sender
thread's CPU time to encode the message and hand it to the socket, and ``recv_cpu_s``, the receiver's CPU
time to read its body, decode it and merge it into its tensor (``time.thread_time``; seconds). When every
device computed on one thread (``threads`` 1, the default), measured ``compute.csv`` has ``cpu_s``: the
CPU seconds of each task's thread, its time sharing the machine's cores with other devices left out.

Example::

    >>> result = measured_result(prep, rounds[0])           # doctest: +SKIP
    >>> result.summary["execution"]["check"]["ok"]         # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from sim.analysis.critical_path import critical_path_summary, latency_breakdown
from sim.analysis.result import RunResult
from sim.analysis.summary import summarize
from sim.analysis.tables import compute_table, transfers_table
from sim.engine import assemble
from sim.engine.replay import link_free_starts, route_delays
from sim.engine.simulate import Timeline
from sim.pipeline.prepare import Prepared
from sim.testbed import netns, transport
from sim.testbed.program import DeviceReport, TaskTime
from sim.workload.plan import TaskKey

LOSSLESS_TOLERANCE = 1e-4  # float32 on the wire: largest |split - unsplit| / max(1, max |unsplit|) accepted
CPU_COLUMNS = ["send_cpu_s", "recv_cpu_s"]  # added to a measured transfers table
TASK_CPU_COLUMN = "cpu_s"  # added to a measured compute table when every device computed on one thread


@dataclass(frozen=True)
class Check:
    """How far the values a split run used are from the unsplit model: the largest relative error
    (``|split - unsplit| / max(1, max|unsplit|)``) over every device's layer inputs and over the outputs."""

    inputs_error: float
    output_error: float
    values_checked: int
    tolerance: float | None  # None: a lossy wire dtype, reported but not enforced

    @property
    def ok(self) -> bool:
        """Within tolerance (always true for a lossy wire dtype)."""
        return self.tolerance is None or max(self.inputs_error, self.output_error) <= self.tolerance


def _timed_tasks(prep: Prepared, reports: Sequence[DeviceReport]) -> Iterator[tuple[int, TaskTime]]:
    """Every timed task of the devices' reports, with its index in the workload's ``tasks``."""
    plan = prep.plan
    index = {(t.frame, t.layer, t.device): k for k, t in enumerate(prep.workload.tasks)}
    for r in reports:
        for t in r.tasks:
            yield index[(t.frame, plan.task_label(TaskKey(t.stage)), r.index)], t


def measured_timeline(prep: Prepared, reports: Sequence[DeviceReport], latency_applied: bool = False) -> Timeline:
    """The measured times as a Timeline aligned with the workload's tasks and messages (seconds from t0)."""
    workload = prep.workload
    start, end = [float("nan")] * len(workload.tasks), [float("nan")] * len(workload.tasks)
    for k, t in _timed_tasks(prep, reports):
        start[k], end[k] = t.start_s, t.end_s
    n = len(workload.messages)
    sent = {k: v for r in reports for k, v in r.sent.items()}
    received = {k: v.end_s for r in reports for k, v in r.received.items()}
    if len(sent) != n or len(received) != n or any(np.isnan(start)):
        raise RuntimeError("dsim execute: some tasks or messages were not timed")
    names = workload.devices
    network = assemble.network(prep.scenario)
    sink = next(r for r in reports if r.index == workload.sink)
    interval = prep.scenario.setup.interval_s
    delays = route_delays(workload, network) if latency_applied else None
    ends = [received[k] for k in range(n)]
    return Timeline(
        task_start_s=start,
        task_end_s=end,
        message_start_s=link_free_starts(workload, [sent[k].start_s for k in range(n)], ends, delays),
        message_end_s=ends,
        message_hops=[len(network.route(names[m.src], names[m.dst])) for m in workload.messages],
        frame_arrival_s=[f * interval for f in range(workload.frames)],
        frame_done_s=list(sink.done_s),
        message_ready_s=[sent[k].ready_s for k in range(n)],
        carried_by=list(range(n)),
    )


def check_values(prep: Prepared, reports: Sequence[DeviceReport]) -> Check:
    """Compare every layer input (and add operand) each device used in the check pass, and the sink's
    outputs, with the unsplit model's values on the same images."""
    graph, images = prep.graph, prep.images or []
    args = {n: graph.args(n) for n in graph.order}
    wanted = {a for n in graph.order if graph.kind(n) in ("layer", "add") for a in args[n]}
    used = [u for r in reports for u in r.inputs]
    refs = {f: graph.activations(images[f], wanted) for f in sorted({u.frame for u in used})}
    worst_in, count = 0.0, 0
    for u in used:
        add = graph.kind(u.stage) == "add"
        for i, a in enumerate(args[u.stage] if add else args[u.stage][:1]):
            ref = _channels_of(refs[u.frame][a], u.channels, graph.node(a).channels)
            if u.positions is not None:  # rows form: those positions only
                ref = ref.reshape(*ref.shape[:2], -1)[:, :, u.positions]
            got = u.value[i] if add else u.value
            worst_in = max(worst_in, _relative(got.reshape(ref.shape), ref))
            count += ref.size
    worst_out = 0.0
    sink = next(r for r in reports if r.index == prep.workload.sink)
    with torch.no_grad():
        for x, out in zip(images, sink.outputs):
            ref = graph.module(x).numpy()
            worst_out = max(worst_out, _relative(out.reshape(ref.shape), ref))
            count += ref.size
    lossless = prep.scenario.transfer.dtype == "float32"
    return Check(worst_in, worst_out, count, LOSSLESS_TOLERANCE if lossless else None)


def _channels_of(value: np.ndarray, chans: np.ndarray, channels: int) -> np.ndarray:
    """The channels ``chans`` of an unsplit value: (B, k, H, W), or (B, k, S) for a flattened one."""
    if value.ndim == 4:
        return value[:, chans]
    return value.reshape(value.shape[0], channels, -1)[:, chans]


def _relative(got: np.ndarray, ref: np.ndarray) -> float:
    if ref.size == 0:
        return 0.0
    return float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))


def measured_result(prep: Prepared, reports: Sequence[DeviceReport], bed: netns.Testbed | None = None) -> RunResult:
    """The run's tables and summary with ``dsim run``'s columns (and :data:`CPU_COLUMNS`), plus
    ``summary["execution"]``. Raises RuntimeError when a value differs from the unsplit model beyond
    tolerance."""
    sc, workload = prep.scenario, prep.workload
    timeline = measured_timeline(prep, reports, bed is not None and bed.latency_applied)
    check = check_values(prep, reports)
    if not check.ok:
        raise RuntimeError(
            f"dsim execute: the split run differs from the unsplit model (relative error inputs "
            f"{check.inputs_error:.3g}, output {check.output_error:.3g} > {check.tolerance})"
        )
    transfers, compute = transfers_table(workload, timeline), compute_table(workload, timeline)
    built = prep.built
    summary = summarize(
        sc.name,
        sc.resolved(),
        workload,
        timeline,
        accuracy=built.accuracy,
        kept_kernels=built.kept_kernels,
        kept_kernel_fraction=built.kept_kernel_fraction,
    )
    sent = {k: v.cpu_s for r in reports for k, v in r.sent.items()}
    received = {k: v.cpu_s for r in reports for k, v in r.received.items()}
    transfers["send_cpu_s"] = [sent[k] for k in range(len(workload.messages))]
    transfers["recv_cpu_s"] = [received[k] for k in range(len(workload.messages))]
    if all((d.threads or 1) == 1 for d in sc.devices):  # one thread: its CPU time is all the task's
        cpu = [float("nan")] * len(workload.tasks)
        for k, t in _timed_tasks(prep, reports):
            cpu[k] = t.cpu_s
        compute[TASK_CPU_COLUMN] = cpu
    execution = {
        "measured": True,
        "network": "shaped veths in network namespaces" if bed else "loopback (127.0.0.1), unshaped",
        "tbf_burst_bytes": bed.burst_bytes if bed else None,
        "latency_applied": bed.latency_applied if bed else False,
        "app_header_bytes_per_message": transport.APP_HEADER.size,
        "threads": [d.threads or 1 for d in sc.devices],
        "loadavg": _loadavg(),
        "late_start_s": max(r.late_s for r in reports),
        "check": {
            "ok": check.ok,
            "inputs_max_relative_error": check.inputs_error,
            "output_max_relative_error": check.output_error,
            "values_checked": check.values_checked,
            "tolerance": check.tolerance,
        },
    }
    summary = replace(
        summary,
        critical_path=critical_path_summary(workload, timeline),
        latency_breakdown=latency_breakdown(workload, timeline),
        execution=execution,
    )
    return RunResult(transfers, compute, summary, workload, timeline)


def _loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (Linux), or None."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None
