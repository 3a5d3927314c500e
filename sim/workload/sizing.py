"""Sizing a workload: every message of every frame in every wire format, channel headers, and the
byte-minimal exchange scheme per layer (``transfer.exchange: auto``; see :mod:`sim.workload.plan`).

Every format's encoded length follows from the payload's rows, columns and non-zeros
(:func:`sim.workload.wire.sizes_from_counts`, checked against the real encoders in the tests), so a
message is sized from the non-zeros of its channels: they are counted once per (frame, tensor) (per
(frame, layer, device) for partial sums) and reused by every message, format and exchange scheme tried.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sim.workload import wire
from sim.workload.cost import redundant_flops, task_templates, weights_bytes
from sim.workload.plan import (
    MAX_AUTO_CONSUMERS,
    MessagePlan,
    WorkloadPlan,
    channel_messages,
    needs,
    partial_messages,
)
from sim.workload.types import Message, Task, Workload

Partials = Mapping[tuple[str, int], np.ndarray]  # (layer node, device) -> its partial sums of every filter


def message_matrix(value: np.ndarray, channels: np.ndarray, n_channels: int, rank: int) -> np.ndarray:
    """The payload of a message: ``channels`` of a tensor value as the 2-D matrix that goes on the wire.

    ``value`` is ``(B, C, H, W)`` or ``(B, C*S)`` with ``C = n_channels``; the result is ``(B*k, H*W)`` or
    ``(B, k*S)`` for ``k = len(channels)``.
    """
    batch = value.shape[0]
    if rank == 4:
        return value[:, channels].reshape(batch * len(channels), -1)
    return value.reshape(batch, n_channels, -1)[:, channels].reshape(batch, -1)


@dataclass(frozen=True)
class Payload:
    """A message's 2-D payload (:func:`message_matrix`) as the wire formats see it."""

    rows: int
    cols: int
    nnz: int

    @property
    def elements(self) -> int:
        """Entries of the matrix."""
        return self.rows * self.cols


class _Payloads:
    """Payloads of a plan's messages for given frame values, with the non-zeros of every channel counted
    once per (frame, tensor) or (frame, layer, sending device) and shared by all messages."""

    def __init__(self, plan: WorkloadPlan, frames: Sequence[Mapping[str, np.ndarray]], partials: Sequence[Partials]):
        self.graph, self.frames, self.partials = plan.graph, frames, partials
        self._counts: dict[tuple[int, str, int | None], tuple[int, np.ndarray]] = {}

    def _per_channel(self, frame: int, m: MessagePlan) -> tuple[int, np.ndarray]:
        """``(batch, non-zeros of each channel)`` of the tensor (or partial sums) ``m`` carries."""
        key = (frame, m.tensor, m.src if m.partial else None)
        if key not in self._counts:
            value = self.partials[frame][(m.tensor, m.src)] if m.partial else self.frames[frame][m.tensor]
            value = np.asarray(value, dtype=np.float32)  # what the encoders see
            per = value.reshape(value.shape[0], self.graph.node(m.tensor).channels, -1)
            self._counts[key] = (value.shape[0], np.count_nonzero(per, axis=(0, 2)))
        return self._counts[key]

    def __call__(self, frame: int, m: MessagePlan) -> Payload:
        node, k = self.graph.node(m.tensor), len(m.channels)
        if m.positions is not None:  # rows form: those channels at those positions only
            value = np.asarray(self.frames[frame][m.tensor], dtype=np.float32)
            block = value.reshape(value.shape[0], node.channels, -1)[:, m.channels][:, :, m.positions]
            batch, nnz, width = value.shape[0], int(np.count_nonzero(block)), len(m.positions)
        else:
            batch, counts = self._per_channel(frame, m)
            nnz, width = int(counts[m.channels].sum()), node.spatial
        rows, cols = (batch * k, width) if node.rank == 4 else (batch, k * width)
        return Payload(rows, cols, nnz)


def build_workload(
    plan: WorkloadPlan,
    frames: Sequence[Mapping[str, np.ndarray]],
    devices: Sequence[str],
    spec: wire.WireSpec,
    fmt: str,
    *,
    batch: int,
    partials: Sequence[Partials] = (),
    channel_header: str = "none",
) -> Workload:
    """Size every message of every frame from its activations and assemble the engine's workload.

    ``batch`` is the number of images per frame (it scales every task's FLOPs and bytes touched).
    ``frames[f]`` maps each tensor of :meth:`WorkloadPlan.tensors` to its value for frame ``f``;
    ``partials[f]`` maps ``(layer node, device)`` to that device's partial sums of every filter of a layer
    using partial sums (:func:`sim.model.shards.partial_sums`). ``channel_header`` is one of
    :data:`sim.config.vocab.CHANNEL_HEADERS` (module docstring; the scenario schema refuses any other).
    """
    g = plan.graph
    templates = task_templates(plan, batch)
    index_of = {(t.key, t.device): k for k, t in enumerate(templates)}
    labels = [plan.task_label(t.key) for t in templates]
    payloads = _Payloads(plan, frames, partials)
    headers = [_header(plan, m, spec, channel_header) for m in plan.messages]
    tasks: list[Task] = []
    messages: list[Message] = []
    for f in range(len(frames)):
        base = len(tasks)
        tasks.extend(
            Task(f, label, t.device, t.flops, t.op, t.final, t.bytes_touched, t.kind)
            for label, t in zip(labels, templates)
        )
        for m, header in zip(plan.messages, headers):
            payload = payloads(f, m)
            sizes = wire.sizes_from_counts(payload.rows, payload.cols, payload.nnz, spec)
            chosen, nbytes = wire.choose(sizes, fmt)
            messages.append(
                Message(
                    frame=f,
                    layer=m.layer,
                    src=m.src,
                    dst=m.dst,
                    channels=len(m.channels),
                    elements=payload.elements,
                    nnz=payload.nnz,
                    sizes=sizes,
                    format=chosen,
                    bytes=nbytes + header,
                    after=None if m.after is None else base + index_of[(m.after, m.src)],
                    needed_by=tuple(base + index_of[(c, m.dst)] for c in m.needed_by),
                    final=m.final,
                    tensor=m.tensor,
                    channel_ids=m.channel_ids,
                    header_bytes=header,
                    partial=m.partial,
                    position_ids=m.position_ids,
                )
            )
    exchange = tuple((g.label(n), scheme) for n, scheme in plan.exchange.items())
    return Workload(
        tuple(devices),
        plan.source,
        plan.sink,
        len(frames),
        tuple(tasks),
        tuple(messages),
        exchange=exchange,
        weights_bytes=weights_bytes(plan),
        redundant_flops=None if plan.spatial is None else redundant_flops(plan, batch) * len(frames),
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


def _header(plan: WorkloadPlan, m: MessagePlan, spec: wire.WireSpec, channel_header: str) -> int:
    """Channel-header bytes of message ``m`` (for partial sums: out of the filters of its layer)."""
    return header_bytes(channel_header, len(m.channels), plan.graph.node(m.tensor).channels, spec.index_bits)


def choose_exchange(
    plan: WorkloadPlan,
    frames: Sequence[Mapping[str, np.ndarray]],
    partials: Sequence[Partials],
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
    Only ``plan.placement`` is read. A consumer's needs and a layer's partial-sum messages are worked out
    once per tensor, and every payload is sized from channel non-zeros counted once per frame.
    """
    g, placement, chosen = plan.graph, plan.placement, {}
    payloads = _Payloads(plan, frames, partials)

    def total(messages: Sequence[MessagePlan]) -> int:
        out = 0
        for m in messages:
            header = _header(plan, m, spec, channel_header)
            for f in range(len(frames)):
                p = payloads(f, m)
                out += wire.choose(wire.sizes_from_counts(p.rows, p.cols, p.nnz, spec), fmt)[1] + header
        return out

    def cost(tensor: str, need: Mapping[str, np.ndarray], partial_bytes: Mapping[str, int], sub: set[str]) -> int:
        """Bytes for ``tensor`` when exactly the layers ``sub`` use partial sums."""
        kept = {c: n for c, n in need.items() if c not in sub}
        return total(channel_messages(placement, tensor, kept)) + sum(partial_bytes[layer] for layer in sub)

    for tensor in g.order:
        layers = [c for c in g.consumers(tensor) if g.kind(c) == "layer"]
        if not layers:
            continue  # no scheme to choose
        if len(layers) > MAX_AUTO_CONSUMERS:
            raise ValueError(f"exchange auto: {tensor} feeds {len(layers)} layers, more than {MAX_AUTO_CONSUMERS}")
        need = needs(placement, tensor, frozenset())
        partial_bytes = {layer: total(partial_messages(placement, layer)) for layer in layers}
        subsets = [{layer for k, layer in enumerate(layers) if mask >> k & 1} for mask in range(2 ** len(layers))]
        sent = [cost(tensor, need, partial_bytes, sub) for sub in subsets]
        best = subsets[min(range(len(subsets)), key=lambda k: (sent[k], len(subsets[k])))]
        chosen.update({g.label(layer): "partial_sums" if layer in best else "inputs" for layer in layers})
    return chosen
