"""The cost model: each device's per-frame tasks with their FLOPs and float32 bytes touched (docs/design.md §3.6).

* a layer's share on a device: :meth:`~sim.workload.graph.Layer.flops` and
  :meth:`~sim.workload.graph.Layer.bytes_touched` of the filters it owns;
* a device's partial sums of a layer using partial sums (:func:`partial_flops`): ``2 * kh*kw * H_out*W_out
  * batch`` per (filter, own input channel in the filter's group) pair, touching its own used input
  channels, those weights and the outputs of every filter they feed;
* residual adds and sums of partial sums: no FLOPs, :func:`elementwise_bytes` of their operands and result.

Example::

    >>> elementwise_bytes(operands=2, elements=10)  # read two values and write one, float32
    120
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from sim.workload.graph import Layer
from sim.workload.plan import Placement, TaskKey, WorkloadPlan, partial_users
from sim.workload.runtime import op_kind
from sim.workload.types import FLOAT32_BYTES


@dataclass(frozen=True)
class TaskTemplate:
    """One device's task of one stage, the same every frame."""

    key: TaskKey
    device: int
    flops: float
    op: str  # "conv", "linear" or "add"
    final: bool  # produces model outputs on the sink
    bytes_touched: int
    kind: str = ""  # sim.workload.runtime.op_kind of its layer ("" for adds: the op)


def elementwise_bytes(operands: int, elements: int) -> int:
    """float32 bytes an element-wise op touches: ``operands`` read and one result written per element."""
    return (operands + 1) * FLOAT32_BYTES * elements


def partial_flops(placement: Placement, layer: str, device: int, batch: int) -> float:
    """FLOPs of ``device``'s partial sums for ``layer`` (module docstring of :mod:`sim.workload.plan`)."""
    spec = placement.graph.layer(layer)
    mine, users = partial_users(placement, layer, device)
    pairs = _pairs(spec, mine, users)
    per_pair = spec.in_spatial if spec.op == "linear" else spec.kernel_elems * spec.out_spatial
    return 2.0 * pairs * per_pair * batch


def task_templates(plan: WorkloadPlan, batch: int) -> tuple[TaskTemplate, ...]:
    """Per-frame tasks in execution order: for each stage, a layer's partial sums on every device owning
    some of its used input channels (when it uses partial sums), then the stage on every device owning
    some of its channels. A sum of partial sums reads its own and each received partial sum. A rows plan
    has its own tasks (:func:`spatial_tasks`)."""
    if plan.spatial is not None:
        return spatial_tasks(plan, batch)
    g, out = plan.graph, []
    output = g.output_tensor()
    producer = plan.placement.producer[output]
    final_stages = set(producer[plan.ownership[output] == plan.sink])
    received = Counter((m.tensor, m.dst) for m in plan.messages if m.partial)
    for stage in (n for n in g.order if g.kind(n) in ("layer", "add")):
        owner = plan.ownership[stage]
        partial = plan.exchange.get(stage) == "partial_sums"
        if partial:
            out += _partial_tasks(plan, stage, batch)
        for d in range(plan.n_devices):
            filters = int((owner == d).sum())
            if filters == 0:
                continue
            final = d == plan.sink and stage in final_stages
            elements = batch * filters * g.node(stage).spatial
            if partial:
                touched = elementwise_bytes(1 + received[(stage, d)], elements)
                out.append(TaskTemplate(TaskKey(stage), d, 0.0, "add", final, touched))
            elif g.kind(stage) == "layer":
                layer = g.layer(stage)
                flops, touched = layer.flops(filters, batch), layer.bytes_touched(filters, batch)
                kind = op_kind(layer.op, layer.kernel_elems, layer.groups, layer.in_channels)
                out.append(TaskTemplate(TaskKey(stage), d, flops, layer.op, final, touched, kind))
            else:  # a residual add of two tensors
                out.append(TaskTemplate(TaskKey(stage), d, 0.0, "add", final, elementwise_bytes(2, elements)))
    return tuple(out)


def _partial_tasks(plan: WorkloadPlan, layer: str, batch: int) -> list[TaskTemplate]:
    """The partial-sum tasks of ``layer``: one per device owning some of its used input channels."""
    spec, out = plan.graph.layer(layer), []
    for d in range(plan.n_devices):
        mine, users = partial_users(plan.placement, layer, d)
        if not mine.any():
            continue
        touched = spec.bytes_touched(
            int(users.sum()), batch, channels_read=int(mine.sum()), weight_pairs=int(spec.uses[users][:, mine].sum())
        )
        flops = partial_flops(plan.placement, layer, d, batch)
        kind = op_kind(spec.op, spec.kernel_elems, spec.groups, spec.in_channels)
        out.append(TaskTemplate(TaskKey(layer, "partial"), d, flops, spec.op, False, touched, kind))
    return out


def element_flops(layer: Layer, elements: int, batch: int) -> float:
    """FLOPs of ``elements`` output elements (filters x positions) of a conv or linear ``layer`` on a batch:
    the formula of docs/design.md §3.6 with ``filters * H_out*W_out`` replaced by the elements computed (3b, compute).

    >>> conv = Layer("c", "conv", 3, 8, 16, 16, 9, 1, np.ones((8, 3), dtype=bool))
    >>> element_flops(conv, elements=8 * 4, batch=1) == 2 * 8 * 3 * 9 * 4
    True
    """
    per_element = (
        layer.in_channels * layer.in_spatial
        if layer.op == "linear"
        else layer.in_channels * layer.kernel_elems / layer.groups
    )
    return 2.0 * elements * per_element * batch


def spatial_tasks(plan: WorkloadPlan, batch: int) -> tuple[TaskTemplate, ...]:
    """Per-frame tasks of a rows plan (:mod:`sim.workload.spatial`): for each stage in order, one task on
    every device computing some of its elements. Convs and linear layers cost :func:`element_flops` and
    touch the inputs they read, the weights of the filters they compute and their outputs; banded pools
    (``op`` ``pool``) and adds cost no FLOPs and touch their inputs and outputs."""
    g, sp = plan.graph, plan.spatial
    assert sp is not None
    output = g.output_tensor()
    final_stages = set(sp.producer[output][(sp.owner[output] == plan.sink).any(axis=1)])
    out = []
    for stage in sp.stages:
        if g.kind(stage) == "input":
            continue
        computes = sp.computes[stage]
        reads = sp.reads(g, stage)
        for d in range(plan.n_devices):
            elements = int(computes[d].sum())
            if elements == 0:
                continue
            final = d == plan.sink and stage in final_stages
            read = batch * int(reads[d].sum())
            written = batch * elements
            if g.kind(stage) == "layer":
                layer = g.layer(stage)
                filters = int(computes[d].any(axis=1).sum())
                touched = FLOAT32_BYTES * (read + filters * layer.weights_per_filter + written)
                out.append(
                    TaskTemplate(TaskKey(stage), d, element_flops(layer, elements, batch), layer.op, final, touched)
                )
            elif g.kind(stage) == "add":
                out.append(TaskTemplate(TaskKey(stage), d, 0.0, "add", final, elementwise_bytes(2, written)))
            else:
                out.append(TaskTemplate(TaskKey(stage), d, 0.0, "pool", final, FLOAT32_BYTES * (read + written)))
    return tuple(out)


def redundant_flops(plan: WorkloadPlan, batch: int) -> float:
    """FLOPs per frame computed more than once: for every conv of a fused run, the elements computed by
    several devices (the sum over devices minus their union), at :func:`element_flops` each; 0 without
    fused runs."""
    g, sp, total = plan.graph, plan.spatial, 0.0
    if sp is None:
        return 0.0
    for stage in sp.stages:
        if g.kind(stage) == "layer" and stage in sp.internal:
            computes = sp.computes[stage]
            extra = int(computes.sum()) - int(computes.any(axis=0).sum())
            total += element_flops(g.layer(stage), extra, batch)
    return total


def weights_bytes(plan: WorkloadPlan) -> tuple[int, ...]:
    """float32 bytes of conv and linear weights and biases each device holds: the filters it owns (its
    filters and their bias), under partial sums the weights of every filter on the input channels it owns
    (as :func:`sim.model.shards.held_masks`), and a layer in full when it computes any of it by rows or
    whole (docs/design.md §3b)."""
    g, sp = plan.graph, plan.spatial
    held = [0] * plan.n_devices
    for node in (n for n in g.order if g.kind(n) == "layer"):
        layer = g.layer(node)
        per_filter = layer.weights_per_filter + int(layer.bias)
        full = layer.out_channels * per_filter
        for d in range(plan.n_devices):
            if sp is not None and g.label(node) in (plan.split.rows if plan.split else {}):
                held[d] += full if sp.computes[node][d].any() else 0
            elif plan.exchange.get(node) == "partial_sums":
                mine, users = partial_users(plan.placement, node, d)
                pairs = _pairs(layer, mine, users)
                held[d] += pairs * (layer.in_spatial if layer.op == "linear" else layer.kernel_elems)
                held[d] += int(layer.bias) * int((plan.ownership[node] == d).sum())
            else:
                held[d] += per_filter * int((plan.ownership[node] == d).sum())
    return tuple(FLOAT32_BYTES * h for h in held)


def _pairs(layer: Layer, mine: np.ndarray, users: np.ndarray) -> int:
    """(filter, input channel in its group) pairs of filters ``users`` on channels ``mine``."""
    per_group_in, per_group_out = layer.in_channels // layer.groups, layer.out_channels // layer.groups
    channels_in_group = np.bincount(np.flatnonzero(mine) // per_group_in, minlength=layer.groups)
    return int(channels_in_group[np.flatnonzero(users) // per_group_out].sum())
