"""Measuring compute on this machine: every layer shard of a scenario's model, as each device runs it.

``dsim profile`` (and ``calibrate: true``) builds the scenario's workload plan, then for every device and
every task it runs per frame (:meth:`sim.workload.plan.WorkloadPlan.tasks`), times a torch call that does
what the device does for that task, with the device's thread count (``threads``, default 1):

* a conv/linear layer under ``exchange: inputs``: gather the input channels its filters use from the
  assembled input (``index_select``), apply its filters (rows of the weight, bias included), then the
  channel-wise ops that follow the layer alone in the graph (batch-norm on its channels, activation,
  pooling, dropout);
* a layer's partial sums (``partial_sums``): its own used input channels with every filter using them;
* the sum of partial sums (``<L>.sum``) and a residual add: adding its operands on its channels, then the
  channel-wise ops that follow.

Each call is run ``warmup`` times, then timed ``repeats`` times (``time.perf_counter``), optionally after an
idle gap (``idle_gap_s``: a device that waited for the network starts with cold caches); the median, 10th and
90th percentiles are kept. Results are written in the format of :mod:`sim.workload.profiles`.

Not reproducible across machines (or across loads of one machine), by nature.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sim.config.schema import DeviceSpec
from sim.errors import UserError
from sim.model.flowgraph import FlowGraph, layer_module
from sim.model.shards import device_layer_call
from sim.pipeline.prepare import Prepared
from sim.workload.cost import elementwise_bytes, task_templates
from sim.workload.plan import TaskKey, WorkloadPlan, partial_users
from sim.workload.profiles import DeviceProfile, ProfileEntry, ProfileFile, fit_line, fit_ops
from sim.workload.runtime import SoloCurve, WakeCurve

Call = Callable[[], torch.Tensor]


@dataclass(frozen=True)
class ProfileSettings:
    """How each shard is timed: ``warmup`` untimed calls, then ``repeats`` timed ones, each after an idle
    gap of ``idle_gap_s`` seconds (0: back to back)."""

    warmup: int = 3
    repeats: int = 20
    idle_gap_s: float = 0.0

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise UserError(f"--warmup: must be >= 0 (got {self.warmup})")
        if self.repeats < 1:
            raise UserError(f"--repeats: must be >= 1 (got {self.repeats})")
        if not self.idle_gap_s >= 0 or self.idle_gap_s == float("inf"):
            raise UserError(f"--idle-gap-ms: must be a finite number >= 0 (got {self.idle_gap_s * 1e3})")


CALIBRATE_SETTINGS = ProfileSettings(warmup=2, repeats=7)  # calibrate: true, every run: kept short


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch threads, then restore the number before it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _targets(graph: FlowGraph) -> dict[str, str]:
    return {n.name: str(n.target) for n in graph.module.graph.nodes if n.op == "call_module"}


def _fx_nodes(graph: FlowGraph) -> dict[str, torch.fx.Node]:
    return {n.name: n for n in graph.module.graph.nodes}


def _channel_ops(graph: FlowGraph, stage: str, own: np.ndarray) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """The channel-wise ops that follow ``stage`` alone (each the only reader of the one before), as calls on
    the device's channels ``own`` (bool per channel); stops at anything else (a stage, a flatten, a fork)."""
    fx_nodes = _fx_nodes(graph)
    ops: list[Callable[[torch.Tensor], torch.Tensor]] = []
    index = torch.from_numpy(np.flatnonzero(own))
    current = stage
    while True:
        users = list(graph.graph.successors(current))
        if len(users) != 1 or graph.kind(users[0]) != "pointwise":
            return ops
        node = fx_nodes[users[0]]
        if [a.name for a in node.all_input_nodes] != [current]:
            return ops
        op = _channel_op(graph, node, index)
        if op is None:
            return ops
        ops.append(op)
        current = node.name


def _channel_op(
    graph: FlowGraph, node: torch.fx.Node, index: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """One channel-wise fx node as a call on the owned channels ``index``, or None if it cannot be one."""
    rest, kwargs = node.args[1:], dict(node.kwargs)
    if node.op == "call_module":
        module = graph.module.get_submodule(str(node.target))
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            mean, var = module.running_mean, module.running_var
            if mean is None or var is None:
                return None
            weight = None if module.weight is None else module.weight.detach()[index]
            bias = None if module.bias is None else module.bias.detach()[index]
            m, v, eps = mean[index], var[index], module.eps
            return lambda y: F.batch_norm(y, m, v, weight, bias, False, 0.0, eps)
        if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
            return None
        return lambda y: module(y)
    if node.op == "call_function":
        fn = node.target
        return lambda y: fn(y, *rest, **kwargs)  # type: ignore[operator]
    if node.op == "call_method":
        name = str(node.target)
        return lambda y: getattr(y, name)(*rest, **kwargs)
    return None


def _then(first: Call, ops: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> Call:
    def call() -> torch.Tensor:
        y = first()
        for op in ops:
            y = op(y)
        return y

    return call


def shard_calls(
    graph: FlowGraph, plan: WorkloadPlan, values: dict[str, torch.Tensor], batch: int, device: int
) -> list[tuple[tuple[str, str, float, int], Call]]:
    """Per task of ``device`` in one frame: its key ``(layer label, op, flops, bytes touched)`` and a call
    doing its work (module docstring). ``values`` holds every layer input and add operand of one frame."""
    targets, out = _targets(graph), []
    for template in task_templates(plan, batch):
        if template.device != device:
            continue
        key, d = template.key, device
        stage = key.stage
        if key.part == "partial":  # a layer's partial sums: own used input channels, filters using them
            module = layer_module(graph.module, targets[stage])
            mine, users = partial_users(plan.placement, stage, d)
            call = device_layer_call(
                module, values[plan.layer_input(stage)], mine, users, False, graph.layer(stage).groups
            )
        else:
            call = stage_call(graph, plan, values, batch, stage, plan.ownership[stage] == d, d)
        out.append(((plan.task_label(key), template.op, template.flops, template.bytes_touched), call))
    return out


def stage_call(
    graph: FlowGraph,
    plan: WorkloadPlan,
    values: dict[str, torch.Tensor],
    batch: int,
    stage: str,
    own: np.ndarray,
    device: int,
) -> Call:
    """A call doing ``device``'s share ``own`` (bool per channel) of ``stage`` (a layer or a residual add),
    then the channel-wise ops that follow it (module docstring)."""
    shape = (batch, int(own.sum()), *graph.node(stage).shape[1:])
    if graph.kind(stage) == "layer" and plan.exchange[stage] == "inputs":
        spec = graph.layer(stage)
        module = layer_module(graph.module, _targets(graph)[stage])
        needed = spec.uses[own].any(axis=0)
        first = device_layer_call(module, values[plan.layer_input(stage)], needed, own, True, spec.groups)
    elif graph.kind(stage) == "layer":  # the sum of partial sums: its own and each received, plus bias
        parts = 1 + sum(m.dst == device for m in plan.messages if m.partial and m.tensor == stage)
        terms = [torch.rand(shape) for _ in range(parts + 1)]
        first = _sum(terms)
    else:  # a residual add on its channels
        index = torch.from_numpy(np.flatnonzero(own))
        terms = [values[a].index_select(1, index) for a in graph.args(stage)]
        first = _sum(terms)
    return _then(first, _channel_ops(graph, stage, own))


SOLO_SPLITS = (8, 4, 2, 1)  # a layer's solo curve: timed at 1/8, 1/4, 1/2 and all of its channels


def solo_curves(
    graph: FlowGraph, plan: WorkloadPlan, values: dict[str, torch.Tensor], batch: int, settings: ProfileSettings
) -> tuple[SoloCurve, ...]:
    """Per layer and residual add whose inputs are exchanged (not partial sums), its cost alone at
    :data:`SOLO_SPLITS` shares of its channels (the first ones; whole groups of a grouped conv; a share whose
    filters read no input, pruned, is left out): FLOPs (bytes touched for adds) and the
    median seconds of :func:`stage_call` on one thread, made non-decreasing (a larger share that timed
    faster than a smaller one takes the smaller one's time) (:class:`sim.workload.runtime.SoloCurve`)."""
    curves = []
    with torch_threads(1):
        for stage in (n for n in graph.order if graph.kind(n) in ("layer", "add")):
            if plan.exchange.get(stage, "inputs") != "inputs":
                continue
            channels = graph.node(stage).shape[0]
            layer = graph.layer(stage) if graph.kind(stage) == "layer" else None
            step = channels // layer.groups if layer is not None and layer.groups > 1 else 1  # whole groups
            op = "add" if layer is None else layer.op
            points: dict[float, float] = {}
            for share in sorted({max(step, channels // k // step * step) for k in SOLO_SPLITS}):
                own = np.arange(channels) < share
                if layer is not None and not layer.uses[own].any():
                    continue  # pruned filters that read nothing: no work to time
                if layer is not None:
                    units = layer.flops(share, batch)
                else:
                    units = float(elementwise_bytes(2, batch * share * graph.node(stage).spatial))
                call = stage_call(graph, plan, values, batch, stage, own, 0)
                points[units] = float(np.median(time_call(call, settings)))
            if not points:
                continue
            seconds = np.maximum.accumulate(list(points.values()))  # a larger share never takes less: noise
            curves.append(SoloCurve(plan.task_label(TaskKey(stage)), op, tuple(points), tuple(map(float, seconds))))
    return tuple(curves)


def _sum(terms: list[torch.Tensor]) -> Call:
    def call() -> torch.Tensor:
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return total

    return call


def time_call(call: Call, settings: ProfileSettings, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds of each of ``settings.repeats`` timed calls, after ``settings.warmup`` untimed ones, by
    ``clock`` (wall time; ``time.thread_time``: the thread's CPU time)."""
    samples = []
    with torch.no_grad():
        for _ in range(settings.warmup):
            call()
        for _ in range(settings.repeats):
            if settings.idle_gap_s > 0:
                time.sleep(settings.idle_gap_s)
            start = clock()
            call()
            samples.append(clock() - start)
    return samples


def profile_device(
    graph: FlowGraph,
    plan: WorkloadPlan,
    values: dict[str, torch.Tensor],
    batch: int,
    device: int,
    name: str,
    threads: int,
    settings: ProfileSettings,
) -> DeviceProfile:
    """Time every task of ``device`` with ``threads`` torch threads; the fits are made from the medians."""
    entries = []
    with torch_threads(threads):
        for (label, op, flops, touched), call in shard_calls(graph, plan, values, batch, device):
            samples = np.array(time_call(call, settings))
            p10, median, p90 = (float(v) for v in np.percentile(samples, [10, 50, 90]))
            entries.append(ProfileEntry(label, op, float(flops), int(touched), median, p10, p90, len(samples)))
    return DeviceProfile(name, threads, tuple(entries), fit_ops(entries))


SOLO_SETTINGS = ProfileSettings(warmup=3, repeats=15)  # dsim profile --execute: after the measured runs


def prepared_solo_curves(prepared: Prepared, settings: ProfileSettings = SOLO_SETTINGS) -> tuple[SoloCurve, ...]:
    """:func:`solo_curves` of a prepared scenario, on its first frame's images; none for a rows split (its
    tasks are not shares of channels)."""
    plan = prepared.plan
    if plan.spatial is not None or not prepared.images:
        return ()
    values = layer_inputs(prepared.graph, plan, prepared.images[0])
    return solo_curves(prepared.graph, plan, values, prepared.scenario.inputs.batch_size, settings)


WAKE_GAPS_S = (0.002, 0.01, 0.03, 0.1, 0.3)  # idle gaps a task is timed after (s)
WAKE_TASKS = 6  # tasks of the source device timed after each gap, spread over its frame
WAKE_REPEATS = 4  # timings per task and gap


def wake_curve(calls: Sequence[Call], gaps_s: Sequence[float] = WAKE_GAPS_S, repeats: int = WAKE_REPEATS) -> WakeCurve:
    """How much more CPU time a task takes after idling: per gap in ``gaps_s`` (seconds, increasing), the
    median over ``calls`` of (the median of ``repeats`` timings, each after sleeping that long) minus (its
    median back to back), at least 0 and made non-decreasing (:class:`sim.workload.runtime.WakeCurve`).
    Timed as the thread's CPU time, as a real run's tasks are (a preemption after waking is not counted).
    On this project's machine the extra time hardly depends on the task's size (docs/validation.md,
    "Compute after idling"), so a few tasks stand for all."""
    back = [float(np.median(time_call(call, ProfileSettings(3, 10), time.thread_time))) for call in calls]
    extra = []
    for gap in gaps_s:
        after = [
            float(np.median(time_call(call, ProfileSettings(0, repeats, gap), time.thread_time))) for call in calls
        ]
        extra.append(max(0.0, float(np.median([a - b for a, b in zip(after, back)]))))
    return WakeCurve(tuple(map(float, gaps_s)), tuple(map(float, np.maximum.accumulate(extra))))


def prepared_wake_curve(prepared: Prepared) -> WakeCurve | None:
    """:func:`wake_curve` of a prepared scenario: up to :data:`WAKE_TASKS` of its source device's tasks,
    evenly spread over its frame, on one thread (as the solo curves); None for a rows split (as
    :func:`prepared_solo_curves`) or a source without tasks."""
    plan = prepared.plan
    if plan.spatial is not None or not prepared.images:
        return None
    graph, source = prepared.graph, prepared.workload.source
    values = layer_inputs(graph, plan, prepared.images[0])
    calls = [call for _, call in shard_calls(graph, plan, values, prepared.scenario.inputs.batch_size, source)]
    if not calls:
        return None
    picked = [calls[int(i)] for i in np.unique(np.linspace(0, len(calls) - 1, min(WAKE_TASKS, len(calls))).round())]
    with torch_threads(1):
        return wake_curve(picked, WAKE_GAPS_S, WAKE_REPEATS)


def layer_inputs(graph: FlowGraph, plan: WorkloadPlan, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The value of every tensor a task reads (layer inputs, add operands) for one batch of images."""
    nodes = {plan.layer_input(n) for n in plan.exchange}
    nodes |= {a for n in graph.order if graph.kind(n) == "add" for a in graph.args(n)}
    return {k: torch.from_numpy(v) for k, v in graph.activations(images, nodes).items()}


def machine() -> dict[str, object]:
    """What the numbers were measured on (for the reader; not used by the engine)."""
    return {
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def calibrated_devices(profile: ProfileFile, devices: Sequence[DeviceSpec]) -> list[DeviceSpec]:
    """``devices`` with every ``calibrate: true`` one's ``gflops`` and ``overhead_ms`` from the fit of
    ``seconds = flops / rate + overhead`` through its conv and linear medians; prints each device's spread."""
    out = list(devices)
    for i, d in enumerate(devices):
        if not d.calibrate:
            continue
        prof = profile.for_device(d.name)
        rows = [e for e in prof.entries if e.op in ("conv", "linear") and e.flops > 0]
        if not rows:
            raise UserError(f"devices[{i}].calibrate: device '{d.name}' computes no conv or linear layer to time")
        s_per_flop, overhead_s = fit_line([e.flops for e in rows], [e.median_s for e in rows])
        if s_per_flop <= 0:
            s_per_flop, overhead_s = sum(e.median_s for e in rows) / sum(e.flops for e in rows), 0.0
        spread = max((e.p90_s - e.p10_s) / e.median_s for e in rows if e.median_s > 0)
        print(
            f"calibrate: {d.name}: {len(rows)} layer shards, {1e-9 / s_per_flop:.2f} GFLOP/s + "
            f"{overhead_s * 1e3:.3f} ms per layer; largest p10-p90 spread {spread * 100:.0f}% of the median",
            file=sys.stderr,
        )
        out[i] = d.model_copy(update={"gflops": 1e-9 / s_per_flop, "overhead_ms": overhead_s * 1e3, "calibrate": False})
    return out
