"""Sizing a workload: every message of every frame encoded in every wire format, channel headers, and
the byte-minimal exchange scheme per layer (``transfer.exchange: auto``; see :mod:`sim.workload.plan`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sim.workload import wire
from sim.workload.plan import CHANNEL_HEADERS, MAX_AUTO_CONSUMERS, PARTIAL, WorkloadPlan, _MessagePlan
from sim.workload.types import Message, Task, Workload


def message_matrix(value: np.ndarray, channels: np.ndarray, n_channels: int, rank: int) -> np.ndarray:
    """The payload of a message: ``channels`` of a tensor value as the 2-D matrix that goes on the wire.

    ``value`` is ``(B, C, H, W)`` or ``(B, C*S)`` with ``C = n_channels``; the result is ``(B*k, H*W)`` or
    ``(B, k*S)`` for ``k = len(channels)``.
    """
    batch = value.shape[0]
    if rank == 4:
        return value[:, channels].reshape(batch * len(channels), -1)
    return value.reshape(batch, n_channels, -1)[:, channels].reshape(batch, -1)


def build_workload(
    plan: WorkloadPlan,
    frames: Sequence[Mapping[str, np.ndarray]],
    devices: Sequence[str],
    spec: wire.WireSpec,
    fmt: str,
    *,
    batch: int,
    partials: Sequence[Mapping[tuple[str, int], np.ndarray]] = (),
    channel_header: str = "none",
) -> Workload:
    """Size every message of every frame from its activations and assemble the engine's workload.

    ``batch`` is the number of images per frame (it scales every task's FLOPs and bytes touched).
    ``frames[f]`` maps each tensor of :meth:`WorkloadPlan.tensors` to its value for frame ``f``;
    ``partials[f]`` maps ``(layer node, device)`` to that device's partial sums of every filter of a layer
    using partial sums (:func:`sim.model.shards.partial_sums`). ``channel_header`` is one of
    :data:`CHANNEL_HEADERS` (module docstring).
    """
    if channel_header not in CHANNEL_HEADERS:
        raise ValueError(f"channel_header must be one of {CHANNEL_HEADERS}, got {channel_header!r}")
    g = plan.graph
    templates = plan.tasks(batch)
    index_of = {(stage, d): k for k, (stage, d, *_rest) in enumerate(templates)}
    tasks: list[Task] = []
    messages: list[Message] = []
    for f, values in enumerate(frames):
        base = len(tasks)
        tasks.extend(
            Task(f, plan.task_label(stage), d, flops, op, final, touched)
            for stage, d, flops, op, final, touched in templates
        )
        for m in plan.messages:
            matrix, sizes, chosen, nbytes, header = _encode(plan, m, f, values, partials, spec, fmt, channel_header)
            messages.append(
                Message(
                    frame=f,
                    layer=m.layer,
                    src=m.src,
                    dst=m.dst,
                    channels=len(m.channels),
                    elements=matrix.size,
                    nnz=int(np.count_nonzero(matrix)),
                    sizes=sizes,
                    format=chosen,
                    bytes=nbytes + header,
                    after=None if m.after is None else base + index_of[(m.after, m.src)],
                    needed_by=tuple(base + index_of[(c, m.dst)] for c in m.needed_by),
                    final=m.final,
                    tensor=m.tensor,
                    channel_ids=m.channel_ids,
                    header_bytes=header,
                )
            )
    exchange = tuple((g.label(n), scheme) for n, scheme in plan.exchange.items())
    return Workload(
        tuple(devices), plan.source, plan.sink, len(frames), tuple(tasks), tuple(messages), exchange=exchange
    )


def header_bytes(kind: str, channels: int, tensor_channels: int, index_bits: int) -> int:
    """Bytes of a message's channel-identity header: none 0, ``index_list`` ``channels * index_bits/8``,
    ``bitmap`` ``ceil(tensor_channels / 8)``.

    >>> header_bytes("index_list", 3, 16, 32), header_bytes("bitmap", 3, 16, 32)
    (12, 2)
    """
    if kind == "index_list":
        return channels * index_bits // 8
    if kind == "bitmap":
        return -(-tensor_channels // 8)
    return 0


def _encode(
    plan: WorkloadPlan,
    m: _MessagePlan,
    frame: int,
    values: Mapping[str, np.ndarray],
    partials: Sequence[Mapping[tuple[str, int], np.ndarray]],
    spec: wire.WireSpec,
    fmt: str,
    channel_header: str,
) -> tuple[np.ndarray, dict[str, int], str, int, int]:
    """Message ``m`` of ``frame`` (tensor ``values``, ``partials`` of every frame) on the wire: its 2-D
    payload, its encoded bytes per format, the format it is sent in (``fmt``, or the smallest for
    ``auto``), its payload bytes in that format and its channel-header bytes."""
    if m.partial:
        layer = m.tensor[: -len(PARTIAL)]
        node = plan.graph.graph.nodes[layer]
        value = partials[frame][(layer, m.src)]
    else:
        node = plan.graph.graph.nodes[m.tensor]
        value = values[m.tensor]
    matrix = message_matrix(value, m.channels, node["channels"], node["rank"])
    sizes = wire.encoded_sizes(matrix, spec)
    chosen, nbytes = wire.choose(sizes, fmt)
    header = header_bytes(channel_header, len(m.channels), node["channels"], spec.index_bits)
    return matrix, sizes, chosen, nbytes, header


def choose_exchange(
    plan: WorkloadPlan,
    frames: Sequence[Mapping[str, np.ndarray]],
    partials: Sequence[Mapping[tuple[str, int], np.ndarray]],
    spec: wire.WireSpec,
    fmt: str,
    channel_header: str = "none",
) -> dict[str, str]:
    """``exchange: auto``: the scheme of every layer (by label) that minimises the bytes sent over all
    frames in format ``fmt``, headers included.

    Every layer reads one tensor, so the total splits by tensor: the messages of tensor ``T`` plus the
    partial sums of the layers reading it. For each tensor every subset of its consumer layers is tried
    as the set using partial sums (``T``'s channels still travel for the others, and for adds); the
    cheapest wins, ties going to fewer partial-sum layers. ``frames[f]`` must hold every layer's input
    tensor and ``partials[f]`` every device's partial sums of every layer (a plan with
    ``exchange="partial_sums"`` and :func:`sim.model.shards.frame_values` with ``every_layer_input``).
    """
    g, chosen = plan.graph, {}
    for tensor in g.order:
        layers = [c for c in g.consumers(tensor) if g.kind(c) == "layer"]
        if len(layers) > MAX_AUTO_CONSUMERS:
            raise ValueError(f"exchange auto: {tensor} feeds {len(layers)} layers, more than {MAX_AUTO_CONSUMERS}")
        subsets = [{layer for k, layer in enumerate(layers) if mask >> k & 1} for mask in range(2 ** len(layers))]
        best = min(
            subsets,
            key=lambda sub: (
                _bytes(plan, plan.tensor_messages(tensor, sub), frames, partials, spec, fmt, channel_header),
                len(sub),
            ),
        )
        chosen.update({g.label(layer): "partial_sums" if layer in best else "inputs" for layer in layers})
    return chosen


def _bytes(
    plan: WorkloadPlan,
    messages: Sequence[_MessagePlan],
    frames: Sequence[Mapping[str, np.ndarray]],
    partials: Sequence[Mapping[tuple[str, int], np.ndarray]],
    spec: wire.WireSpec,
    fmt: str,
    channel_header: str,
) -> int:
    """Bytes of ``messages`` over all frames, as :func:`build_workload` sizes them."""
    total = 0
    for f, values in enumerate(frames):
        for m in messages:
            *_, nbytes, header = _encode(plan, m, f, values, partials, spec, fmt, channel_header)
            total += nbytes + header
    return total
