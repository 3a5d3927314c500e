"""Real split runs (``dsim execute``): the scenario's split model run by one OS process per device, the
workload's messages encoded in the chosen wire format and sent over TCP, every compute and message timed.

The torch side is :func:`sim.pipeline.prepare.prepare` as for ``dsim run``; each device gets a
:class:`sim.testbed.worker.DeviceProgram` (its weight shards, the messages it sends and receives) and runs
in its own process (multiprocessing *spawn*; ``torch.set_num_threads`` is the device's ``threads``, default 1).
By default the devices talk over loopback (127.0.0.1); with ``shape`` every device runs in a network
namespace of :func:`sim.testbed.netns.testbed`, over veth links shaped to the scenario's rates.

All processes time on ``time.monotonic`` (CLOCK_MONOTONIC, one clock for every process of a host), from a
common start ``t0``. A task's time runs from the start of its layer (or add) to the end of the channel-wise
ops that follow it on that device; a message's from the moment its encoded bytes go to the socket (or, if
later, the moment the message before it on the same connection arrived: :func:`link_free_starts`) to the
moment its receiver has read its last byte. The measured times fill a :class:`sim.engine.simulate.Timeline`
aligned with the workload, so ``transfers.csv``, ``compute.csv`` and ``summary.json`` have ``dsim run``'s
columns and keys, and every layer input each device used, and the sink's output, are checked against the
unsplit model (``summary["execution"]["check"]``).

Only ``transfer.exchange: inputs`` is executed (partial sums are refused with one line).

Example::

    >>> runs = execute("scenarios/quickstart.yaml")          # doctest: +SKIP
    >>> runs[0].summary["execution"]["check"]["ok"]          # doctest: +SKIP
    True
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from sim.analysis.critical_path import critical_path_summary, latency_breakdown
from sim.analysis.result import RunResult
from sim.analysis.summary import summarize
from sim.analysis.tables import compute_table, transfers_table
from sim.config.load import load
from sim.config.schema import Scenario
from sim.engine import assemble
from sim.engine.simulate import Timeline
from sim.errors import UserError
from sim.pipeline.calibrate import calibrated
from sim.pipeline.prepare import Prepared, prepare
from sim.testbed import netns, worker
from sim.workload import wire
from sim.workload.plan import TaskKey

LOSSLESS_TOLERANCE = 1e-4  # float32 on the wire: largest |split - unsplit| / max(1, max |unsplit|) accepted
START_MARGIN_S = 1.0  # t0 is this long after the parent sends "start" (time to wake every process)


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


def execute(
    scenario: Scenario | str | Path,
    *,
    shape: bool = False,
    repeats: int = 1,
    timeout_s: float | None = None,
    prepared: Prepared | None = None,
) -> list[RunResult]:
    """Run the scenario's split model for real ``repeats`` times; one :class:`RunResult` per run.

    ``shape``: over shaped veths in network namespaces (Linux, root), built once for all repeats and
    always removed. Raises RuntimeError when a value differs from the unsplit model beyond tolerance.
    """
    sc = load(scenario)
    if repeats < 1:
        raise UserError(f"--repeats: must be >= 1 (got {repeats})")
    if shape:
        netns.check_available()
    if sc.deploy is not None or sc.baseline != "none":
        sc = sc.model_copy(update={"deploy": None, "baseline": "none"})  # inference only is executed
    prep = prepared if prepared is not None else prepare(calibrated(sc))
    if prep.plan.partial_layers():
        raise UserError("transfer.exchange: dsim execute runs exchange: inputs only; set transfer.exchange: inputs")
    programs = build_programs(prep)
    limit = timeout_s if timeout_s is not None else default_timeout_s(sc, prep)
    runs = []
    with _terminating():
        bed_context = netns.testbed(sc, _burst_bytes(sc)) if shape else nullcontext(None)
        with bed_context as bed:
            for reports in run_devices(programs, bed, limit, repeats):
                runs.append(measured_result(prep, reports, bed))
    return runs


def _burst_bytes(sc: Scenario) -> int:
    """The tbf burst: the scenario's ``network.shaper.burst_bytes`` when it has one, else the default."""
    shaper = sc.network.shaper
    return shaper.burst_bytes if shaper is not None else netns.DEFAULT_BURST_BYTES


def default_timeout_s(sc: Scenario, prep: Prepared) -> float:
    """A generous bound for one run: 60 s, plus 20 times every byte at the slowest link rate."""
    rates = [link.bandwidth_bps for link in assemble.network(sc).links()] or [1e9]
    total = sum(m.bytes for m in prep.workload.messages)
    return 60.0 + 20 * total * 8 / min(rates) + sc.inputs.frames * sc.setup.interval_s


@contextmanager
def _terminating() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt here, so every ``finally`` (processes, namespaces) runs."""
    import signal  # only the real-run commands install a handler

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


# -- programs ----------------------------------------------------------------------------------------------
def build_programs(prep: Prepared) -> list[worker.DeviceProgram]:
    """One program per device: its steps, weight shards, owned channels and messages."""
    sc, graph, plan, workload = prep.scenario, prep.graph, prep.plan, prep.workload
    gm: fx.GraphModule = graph.module
    targets = {n.name: str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    steps, modules = [], {}
    for node in gm.graph.nodes:
        name = node.name
        args = fx.node.map_arg(node.args, lambda a: cast(Any, worker.Ref(a.name)))
        kwargs = fx.node.map_arg(node.kwargs, lambda a: cast(Any, worker.Ref(a.name)))
        if node.op == "get_attr":
            raise UserError(f"model.name: dsim execute cannot run fx node {name} (a get_attr); use a zoo model")
        if name not in graph.nodes:
            target = node.target if node.op != "call_function" else _function_name(node.target)
            steps.append(worker.Step(name, "helper", node.op, target, args, kwargs))
            continue
        rec = graph.node(name)
        kind = rec.kind
        if node.op == "call_module" and kind != "layer":
            modules[str(node.target)] = copy.deepcopy(gm.get_submodule(str(node.target))).eval()
        target = _function_name(node.target) if node.op == "call_function" else str(node.target)
        steps.append(
            worker.Step(
                name,
                kind,
                node.op,
                target,
                args,
                kwargs,
                rec.rank,
                tuple(rec.shape),
                rec.channels,
                rec.spatial,
            )
        )
    per_plan = len(plan.messages)
    if len(workload.messages) != per_plan * workload.frames:
        raise RuntimeError("the workload's messages do not follow its plan")
    threads = [d.threads or 1 for d in sc.devices]
    spec = wire.WireSpec(sc.transfer.dtype, sc.transfer.index_bits)
    images = prep.images or []
    programs = []
    for d in range(plan.n_devices):
        shards = {
            n: _shard(gm.get_submodule(targets[n]), graph.layer(n), plan.ownership[n] == d)
            for n in graph.order
            if graph.kind(n) == "layer"
        }
        owned = {n: np.flatnonzero(plan.ownership[n] == d) for n in graph.order if graph.kind(n) in ("add", "input")}
        messages = []
        for k, wm in enumerate(workload.messages):
            pm = plan.messages[k % per_plan]
            if d not in (pm.src, pm.dst):
                continue
            if (pm.src, pm.dst, pm.tensor) != (wm.src, wm.dst, wm.tensor):
                raise RuntimeError("the workload's messages do not follow its plan")
            node = graph.node(pm.tensor)
            per_channel = tuple(node.shape[1:]) if node.rank == 4 else (node.spatial,)
            waiters = tuple(t.stage for t in pm.needed_by) + (("output",) if pm.final else ())
            messages.append(
                worker.MessageSpec(
                    k,
                    wm.frame,
                    pm.src,
                    pm.dst,
                    pm.tensor,
                    np.asarray(pm.channels),
                    node.channels,
                    node.rank,
                    per_channel,
                    wm.format,
                    wm.header_bytes,
                    waiters,
                )
            )
        has_input = len(owned[graph.input_node()]) > 0
        programs.append(
            worker.DeviceProgram(
                index=d,
                name=workload.devices[d],
                frames=workload.frames,
                batch=sc.inputs.batch_size,
                interval_s=sc.setup.interval_s,
                steps=steps,
                shards=shards,
                modules=modules,
                owned=owned,
                messages=messages,
                images=list(images) if has_input else [],
                spec=spec,
                index_bits=sc.transfer.index_bits,
                channel_header=sc.transfer.channel_header,
                sink=d == plan.sink,
                output=graph.output_tensor(),
                threads=threads[d],
            )
        )
    return programs


def _function_name(fn: Any) -> worker.FunctionName:
    """A picklable name for an fx call_function target (some torch functions are local closures)."""
    import operator  # the home of the add functions fx records

    for module in (torch.nn.functional, torch, operator):
        for attr in dir(module):
            if getattr(module, attr, None) is fn:
                return worker.FunctionName(module.__name__, attr)
    raise UserError(f"model.name: dsim execute cannot run the function {getattr(fn, '__name__', fn)}; use a zoo model")


def _shard(module: Any, spec: Any, owned_mask: np.ndarray) -> worker.LayerShard:
    """The part of a conv or linear layer a device computes (:class:`worker.LayerShard`)."""
    owned = np.flatnonzero(owned_mask)
    needed = np.flatnonzero(spec.uses[owned].any(axis=0)) if len(owned) else np.zeros(0, dtype=np.int64)
    w = module.weight.detach()
    b = None if module.bias is None else module.bias.detach()
    rows = torch.from_numpy(owned)
    if isinstance(module, nn.Linear):
        cols = torch.from_numpy(worker._features(needed, spec.in_spatial))
        weight = w[rows][:, cols].contiguous()
        return worker.LayerShard(
            "linear", owned, needed, weight, None if b is None else b[rows].clone(), spec.in_channels
        )
    conv: dict[str, Any] = dict(
        stride=module.stride, padding=module.padding, dilation=module.dilation, groups=module.groups
    )
    if module.groups != 1:  # grouped: run on every input channel (zeros where not held), keep the owned outputs
        return worker.LayerShard("conv", owned, needed, w.clone(), None if b is None else b.clone(),
                                 spec.in_channels, full=True, **conv)  # fmt: skip
    weight = w[rows][:, torch.from_numpy(needed)].contiguous()
    conv["groups"] = 1
    return worker.LayerShard(
        "conv", owned, needed, weight, None if b is None else b[rows].clone(), spec.in_channels, **conv
    )


# -- processes ---------------------------------------------------------------------------------------------
def run_devices(
    programs: Sequence[worker.DeviceProgram], bed: netns.Testbed | None, timeout_s: float, repeats: int = 1
) -> list[list[worker.DeviceReport]]:
    """Start one process per program, connect them, then ``repeats`` times start them together and collect
    their reports (one list per repeat).

    Every process is ended (by its own pid) before this returns, also on errors and Ctrl-C."""
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    conns: list[Connection] = []
    try:
        for prog in programs:
            prog = copy.copy(prog)
            prog.timeout_s = timeout_s
            if bed is not None:
                prog.netns, prog.listen_host = bed.namespaces[prog.name], bed.addresses[prog.name]
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker.main, args=(child,), name=f"dsim-{os.getpid()}-{prog.name}", daemon=True)
            proc.start()
            child.close()
            parent.send(prog)
            procs.append(proc)
            conns.append(parent)
        deadline = time.monotonic() + 120.0 + timeout_s
        ports = _gather(conns, "listening", deadline, programs)
        for prog, conn in zip(programs, conns):
            hosts = {d: bed.addresses[programs[d].name] if bed else "127.0.0.1" for d in range(len(programs))}
            conn.send(("peers", {d: (hosts[d], ports[d]) for d in range(len(programs)) if d != prog.index}))
        _gather(conns, "ready", deadline, programs)
        rounds = []
        for _ in range(repeats):
            t0 = time.monotonic() + START_MARGIN_S
            for conn in conns:
                conn.send(("start", t0))
            rounds.append(_gather(conns, "done", time.monotonic() + timeout_s + 30.0, programs))
        for conn in conns:
            conn.send(("start", None))
        return rounds
    finally:
        for conn in conns:
            conn.close()
        for proc in procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5.0)


def _gather(
    conns: Sequence[Connection], tag: str, deadline: float, programs: Sequence[worker.DeviceProgram]
) -> list[Any]:
    """The value each device sends with ``tag``; a device's error (or silence past ``deadline``) raises."""
    values: dict[int, Any] = {}
    while len(values) < len(conns):
        left = deadline - time.monotonic()
        pending = [c for i, c in enumerate(conns) if i not in values]
        ready = wait(pending, timeout=max(0.0, left))
        if not ready:
            late = [programs[i].name for i in range(len(conns)) if i not in values]
            raise RuntimeError(f"dsim execute: devices {', '.join(late)} did not report '{tag}' in time")
        for c in ready:
            i = list(conns).index(cast(Connection, c))
            try:
                got, value = cast(Connection, c).recv()
            except EOFError:
                raise RuntimeError(f"dsim execute: the process of device {programs[i].name} ended early") from None
            if got == "error":
                raise RuntimeError(f"dsim execute: device {programs[i].name} failed: {value}")
            values[i] = value
    return [values[i] for i in range(len(conns))]


# -- results -----------------------------------------------------------------------------------------------
def measured_timeline(
    prep: Prepared, reports: Sequence[worker.DeviceReport], latency_applied: bool = False
) -> Timeline:
    """The measured times as a Timeline aligned with the workload's tasks and messages (seconds from t0)."""
    workload, plan = prep.workload, prep.plan
    index = {(t.frame, t.layer, t.device): k for k, t in enumerate(workload.tasks)}
    start, end = [float("nan")] * len(workload.tasks), [float("nan")] * len(workload.tasks)
    for r in reports:
        for f, stage, s, e in r.tasks:
            k = index[(f, plan.task_label(TaskKey(stage)), r.index)]
            start[k], end[k] = s, e
    n = len(workload.messages)
    sent = {k: v for r in reports for k, v in r.sent.items()}
    received = {k: v for r in reports for k, v in r.received.items()}
    if len(sent) != n or len(received) != n or any(np.isnan(start)):
        raise RuntimeError("dsim execute: some tasks or messages were not timed")
    names = workload.devices
    network = assemble.network(prep.scenario)
    sink = next(r for r in reports if r.index == workload.sink)
    interval = prep.scenario.setup.interval_s
    delays = {
        (m.src, m.dst): sum(link.latency_s for link in network.route(names[m.src], names[m.dst])) * latency_applied
        for m in workload.messages
    }
    return Timeline(
        task_start_s=start,
        task_end_s=end,
        message_start_s=link_free_starts(workload, sent, received, delays),
        message_end_s=[received[k] for k in range(n)],
        message_hops=[len(network.route(names[m.src], names[m.dst])) for m in workload.messages],
        frame_arrival_s=[f * interval for f in range(workload.frames)],
        frame_done_s=list(sink.done_s),
        message_ready_s=[sent[k][0] for k in range(n)],
        carried_by=list(range(n)),
    )


def link_free_starts(
    workload: Any,
    sent: dict[int, tuple[float, float]],
    received: dict[int, float],
    latency_s: dict[tuple[int, int], float] | None = None,
) -> list[float]:
    """Each message's start: when its bytes were handed to the socket, or, if later, when the message
    before it on the same connection had arrived (one TCP connection per device pair is FIFO, so its first
    byte cannot leave before the previous message's last one; the kernel's send buffer would otherwise
    count that wait as transit); ``latency_s[(src, dst)]``, the route's added delay, is taken off that arrival.
    This is the simulator's start on a pair's own link."""
    starts = [sent[k][1] for k in range(len(workload.messages))]
    previous: dict[tuple[int, int], int] = {}
    for k in sorted(range(len(starts)), key=lambda k: sent[k][1]):
        m = workload.messages[k]
        before = previous.get((m.src, m.dst))
        if before is not None:
            lag = (latency_s or {}).get((m.src, m.dst), 0.0)
            starts[k] = max(starts[k], min(received[before] - lag, received[k]))
        previous[(m.src, m.dst)] = k
    return starts


def check_values(prep: Prepared, reports: Sequence[worker.DeviceReport]) -> Check:
    """Compare every layer input (and add operand) each device used, and the sink's outputs, with the
    unsplit model's values on the same images."""
    graph, images = prep.graph, prep.images or []
    args = {n: graph.args(n) for n in graph.order}
    wanted = {a for n in graph.order if graph.kind(n) in ("layer", "add") for a in args[n]}
    refs = [graph.activations(x, wanted) for x in images]
    worst_in, count = 0.0, 0
    for r in reports:
        for f, stage, chans, value in r.inputs:
            sources = args[stage] if graph.kind(stage) == "add" else args[stage][:1]
            for i, a in enumerate(sources):
                ref = _channels_of(refs[f][a], chans, graph.node(a).channels)
                got = value[i] if graph.kind(stage) == "add" else value
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


def measured_result(
    prep: Prepared, reports: Sequence[worker.DeviceReport], bed: netns.Testbed | None = None
) -> RunResult:
    """The run's tables and summary with ``dsim run``'s columns, plus ``summary["execution"]``."""
    sc, workload = prep.scenario, prep.workload
    timeline = measured_timeline(prep, reports, bed is not None and bed.latency_applied)
    check = check_values(prep, reports)
    if not check.ok:
        raise RuntimeError(
            f"dsim execute: the split run differs from the unsplit model (relative error inputs "
            f"{check.inputs_error:.3g}, output {check.output_error:.3g} > {check.tolerance})"
        )
    transfers, compute = transfers_table(workload, timeline), compute_table(workload, timeline)
    summary = summarize(sc.name, sc.resolved(), workload, timeline)
    summary["exchange"] = dict(workload.exchange)
    if prep.built.accuracy is not None:
        summary["accuracy"] = prep.built.accuracy
    summary["critical_path"] = critical_path_summary(workload, timeline)
    summary["latency_breakdown"] = latency_breakdown(workload, timeline)
    summary["execution"] = {
        "measured": True,
        "network": "shaped veths in network namespaces" if bed else "loopback (127.0.0.1), unshaped",
        "tbf_burst_bytes": bed.burst_bytes if bed else None,
        "latency_applied": bed.latency_applied if bed else False,
        "app_header_bytes_per_message": worker.APP_HEADER.size,
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
    return RunResult(transfers, compute, summary, workload, timeline)


def _loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (Linux), or None."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None
