"""The deployment phase: the ``deploy.from`` device ships every other device its weight shard.

Optional (scenario key ``deploy: {from: DEVICE, format: dense|csr|coo|bitmap|auto}``). It runs on the
same network before inference, through the same engine, and is reported apart from inference latency:
``summary.json`` gets ``deploy_s`` (when the last shard arrives), ``deploy_bytes``,
``deploy_bytes_by_format`` and ``deploy_messages``.

**Shard layout.** A device's shard is what :func:`sim.model.shards.held_masks` says it holds. Per module and
device there is one message, a float32 matrix sized with :mod:`sim.workload.wire` (``transfer.index_bits``
indices, the ``deploy.format`` format): one row per held output channel (filter, neuron, batch-norm
channel), and as columns

* conv / linear under ``exchange: inputs``: the filter's weights, ``fan_in = in_channels/groups * kh*kw``
  columns (``in_features`` for a linear layer), then its bias when the layer has one: a
  ``(filters, fan_in + 1)`` matrix;
* under ``partial_sums``: rows are the filters using the device's input channels, columns the weights on
  those channels (the bounding sub-matrix of what it holds); the bias of its own filters goes in a second
  ``(own filters, 1)`` message;
* batch-norm: ``weight, bias, running_mean, running_var`` as four columns.

So LeNet-5's ``conv1`` shard on a device owning 2 filters is a ``2 x 26`` matrix, whose csr encoding with
32-bit indices is ``(2+1)*4 + nnz*8`` bytes. Unstructured zeros shrink only the packed formats. The
partition plan (which channel is where), which receivers use to read messages without channel headers, is
part of deployment too; it is not counted (a few bytes per layer).

Example::

    >>> dw = deployment_workload(graph, plan, ["a", "b"], 0, WireSpec(), "csr")  # doctest: +SKIP
    >>> sum(m.bytes for m in dw.messages)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sim.model.flowgraph import FlowGraph
from sim.model.shards import held_masks
from sim.workload import wire
from sim.workload.plan import WorkloadPlan
from sim.workload.types import Message, Workload


def shard_matrices(graph: FlowGraph, plan: WorkloadPlan, device: int) -> list[tuple[str, np.ndarray]]:
    """``(module path, float32 matrix)`` of every message of ``device``'s shard (module docstring), in
    module order; parameters of one module held on the same rows share a matrix, in parameter order."""
    state = graph.module.state_dict()
    pieces: dict[tuple[str, tuple[int, ...]], list[np.ndarray]] = {}
    for name, mask in held_masks(graph, plan, device).items():
        module = name.rsplit(".", 1)[0]
        flat = mask.reshape(mask.shape[0], -1)
        rows, cols = np.flatnonzero(flat.any(axis=1)), np.flatnonzero(flat.any(axis=0))
        if rows.size == 0:
            continue
        value = state[name].detach().numpy().reshape(mask.shape[0], -1)
        pieces.setdefault((module, tuple(rows)), []).append(value[np.ix_(rows, cols)])
    return [(module, np.hstack(parts).astype(np.float32)) for (module, _), parts in pieces.items()]


def deployment_workload(
    graph: FlowGraph, plan: WorkloadPlan, devices: Sequence[str], source: int, spec: wire.WireSpec, fmt: str
) -> Workload:
    """A message-only workload: ``source`` sends each other device its shard matrices at time 0, module by
    module in model order, destinations in device order."""
    shards = [shard_matrices(graph, plan, d) if d != source else [] for d in range(len(devices))]
    order = list(dict.fromkeys(module for shard in shards for module, _ in shard))
    messages = []
    for module in order:
        for dst, shard in enumerate(shards):
            for name, matrix in shard:
                if name != module:
                    continue
                sizes = wire.encoded_sizes(matrix, spec)
                chosen, nbytes = wire.choose(sizes, fmt)
                messages.append(
                    Message(
                        frame=0,
                        layer=module,
                        src=source,
                        dst=dst,
                        channels=matrix.shape[0],
                        elements=matrix.size,
                        nnz=int(np.count_nonzero(matrix)),
                        sizes=sizes,
                        format=chosen,
                        bytes=nbytes,
                        after=None,
                        needed_by=(),
                        final=False,
                    )
                )
    return Workload(tuple(devices), source, source, 1, (), tuple(messages))
