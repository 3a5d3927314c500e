"""The cost model: each device's per-frame tasks with their FLOPs and float32 bytes touched (DESIGN 3).

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
    per_group_in, per_group_out = spec.in_channels // spec.groups, spec.out_channels // spec.groups
    channels_in_group = np.bincount(np.flatnonzero(mine) // per_group_in, minlength=spec.groups)
    pairs = int(channels_in_group[np.flatnonzero(users) // per_group_out].sum())
    per_pair = spec.in_spatial if spec.op == "linear" else spec.kernel_elems * spec.out_spatial
    return 2.0 * pairs * per_pair * batch


def task_templates(plan: WorkloadPlan, batch: int) -> tuple[TaskTemplate, ...]:
    """Per-frame tasks in execution order: for each stage, a layer's partial sums on every device owning
    some of its used input channels (when it uses partial sums), then the stage on every device owning
    some of its channels. A sum of partial sums reads its own and each received partial sum."""
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
