"""The workload: per-device compute tasks and per-pair messages, built from the channel-flow graph.

This is where the torch side ends (DESIGN section 1). The engine reads only a :class:`Workload`, so a
bandwidth sweep re-runs the engine, never the model. The rules implemented here are DESIGN section 3:

* **Ownership** of every tensor's channels follows from the partition of the partitionable layers.
* **Need**: device ``d`` needs input channel ``c`` of layer ``L`` when it owns a filter of ``L`` with a
  non-zero weight on ``c``; the owner of ``(a + b)[c]`` needs ``b[c]``; the sink needs the model output.
* **Messages**: for each tensor read by a consumer and each ordered pair ``i -> j``, one message with every
  channel ``i`` owns and ``j`` needs for any of its consumers. Its payload is the tensor as consumed,
  viewed as a 2-D matrix: ``batch*channels`` rows by ``H*W`` columns for 4-D tensors, ``batch`` rows by
  the message's features for flattened or vector tensors.

Message sizes come from real encoded buffers of the real activations (:mod:`sim.wire`), per frame.
This module does not import torch: it works on numpy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from sim import wire

if TYPE_CHECKING:
    from sim.flowgraph import FlowGraph

Partition = Mapping[str, np.ndarray]  # layer name -> owning device index of each output channel
FLOAT32_BYTES = 4


@dataclass(frozen=True)
class Task:
    """One device's share of one stage (a conv/linear layer or a residual add) for one frame."""

    frame: int
    layer: str
    device: int
    flops: float
    op: str  # "conv", "linear" or "add"
    final: bool  # produces model outputs on the sink
    bytes_touched: int = 0  # float32 bytes read and written: its inputs, its weights and its outputs


@dataclass(frozen=True)
class Message:
    """Channels of one tensor sent from ``src`` to ``dst`` for one frame, with its size in every format."""

    frame: int
    layer: str  # producing layer label; "input" for the image, "output" for the final gather
    src: int
    dst: int
    channels: int
    elements: int
    nnz: int
    sizes: Mapping[str, int]  # bytes of the encoded buffer per wire format
    format: str  # the format it is sent in
    bytes: int
    after: int | None  # index of the task on src whose end makes it ready; None: the frame's arrival
    needed_by: tuple[int, ...]  # indices of the tasks on dst that wait for it
    final: bool  # part of the gather of model outputs at the sink
    tensor: str = ""  # graph node whose channels it carries
    channel_ids: tuple[int, ...] = ()  # which channels of that tensor; equal (frame, src, tensor,
    # channel_ids) means equal payload, which a multicast medium can send once


@dataclass(frozen=True)
class Workload:
    """Everything the engine needs: devices, tasks and messages in creation order."""

    devices: tuple[str, ...]
    source: int
    sink: int
    frames: int
    tasks: tuple[Task, ...]
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class _MessagePlan:
    """A frame-independent message: which channels of which tensor go from src to dst."""

    tensor: str
    layer: str
    src: int
    dst: int
    channels: np.ndarray  # channel indices of the tensor, ascending
    after: str | None  # stage node on src
    needed_by: tuple[str, ...]  # stage nodes on dst
    final: bool

    @property
    def channel_ids(self) -> tuple[int, ...]:
        """The channel indices as a hashable tuple."""
        return tuple(int(c) for c in self.channels)


class WorkloadPlan:
    """The frame-independent part of a workload: ownership, tasks and message routes for one partition.

    ``ownership[node]`` is the owning device of every channel of every tensor node.
    """

    def __init__(self, graph: FlowGraph, partition: Partition, n_devices: int, source: int, sink: int):
        self.graph = graph
        self.partition = dict(partition)
        self.n_devices = n_devices
        self.source = source
        self.sink = sink
        self.ownership: dict[str, np.ndarray] = {}
        self._producer: dict[str, np.ndarray] = {}  # node -> stage node producing each channel
        self._propagate(partition)
        self.stages = [n for n in graph.order if graph.kind(n) in ("layer", "add")]
        self._rank = {n: i for i, n in enumerate(graph.order)}
        self.messages = self._plan_messages()

    def _propagate(self, partition: Partition) -> None:
        g = self.graph
        for node in g.order:
            kind, args = g.kind(node), g.graph.nodes[node]["args"]
            if kind == "input":
                owner = np.full(g.graph.nodes[node]["channels"], self.source)
                producer = np.full(owner.shape, node, dtype=object)
            elif kind == "layer":
                owner = np.asarray(partition[g.label(node)])
                producer = np.full(owner.shape, node, dtype=object)
            elif kind == "add":
                owner = self.ownership[args[0]]
                producer = np.full(owner.shape, node, dtype=object)
            elif kind == "cat":
                owner = np.concatenate([self.ownership[a] for a in args])
                producer = np.concatenate([self._producer[a] for a in args])
            elif kind == "output":
                continue
            else:  # pointwise, flatten
                owner, producer = self.ownership[args[0]], self._producer[args[0]]
            self.ownership[node], self._producer[node] = owner, producer

    def _needs(self, tensor: str) -> dict[str, np.ndarray]:
        """For each consumer of ``tensor``: a (devices, channels) bool matrix of what each device needs."""
        g, out = self.graph, {}
        channels = g.graph.nodes[tensor]["channels"]
        for consumer in g.consumers(tensor):
            need = np.zeros((self.n_devices, channels), dtype=bool)
            kind = g.kind(consumer)
            if kind == "layer":
                layer = g.graph.nodes[consumer]["layer"]
                owner = self.ownership[consumer]
                for d in range(self.n_devices):
                    need[d] = layer.uses[owner == d].any(axis=0)
            elif kind == "add":
                need[self.ownership[consumer], np.arange(channels)] = True
            elif kind == "output":
                need[self.sink] = True
            else:
                continue  # channel-wise ops run where the channel lives
            out[consumer] = need
        return out

    def _plan_messages(self) -> list[_MessagePlan]:
        g, plans = self.graph, []
        for tensor in g.order:
            if g.kind(tensor) == "output":
                continue
            needs = self._needs(tensor)
            if not needs:
                continue
            owner, producer = self.ownership[tensor], self._producer[tensor]
            total = np.logical_or.reduce(list(needs.values()))
            for src in range(self.n_devices):
                for dst in range(self.n_devices):
                    chans = np.flatnonzero((owner == src) & total[dst]) if src != dst else ()
                    if len(chans) == 0:
                        continue
                    stages = sorted(set(producer[chans]), key=self._rank.__getitem__)
                    users = tuple(c for c, need in needs.items() if need[dst, chans].any())
                    final = any(g.kind(c) == "output" for c in users)
                    is_input = stages == [g.input_node()]
                    layer = "output" if final else "+".join(g.label(s) for s in stages)
                    plans.append(_MessagePlan(
                        tensor, layer, src, dst, chans, None if is_input else stages[-1],
                        tuple(c for c in users if g.kind(c) != "output"), final,
                    ))  # fmt: skip
        return plans

    def tensors(self) -> set[str]:
        """The tensor nodes whose values cross the network (their activations are needed per frame)."""
        return {m.tensor for m in self.messages}

    def tasks(self, batch: int) -> list[tuple[str, int, float, str, bool, int]]:
        """Per-frame task templates ``(stage node, device, flops, op, final, bytes_touched)`` in execution
        order."""
        g, out = self.graph, []
        final_stages = set(self._producer[g.output_tensor()][self.ownership[g.output_tensor()] == self.sink])
        for stage in self.stages:
            owner = self.ownership[stage]
            for d in range(self.n_devices):
                filters = int((owner == d).sum())
                if filters == 0:
                    continue
                final = d == self.sink and stage in final_stages
                if g.kind(stage) == "layer":
                    layer = g.graph.nodes[stage]["layer"]
                    touched = layer.bytes_touched(filters, batch)
                    out.append((stage, d, layer.flops(filters, batch), layer.op, final, touched))
                else:  # an add reads two values and writes one per channel element
                    touched = 3 * FLOAT32_BYTES * batch * filters * g.graph.nodes[stage]["spatial"]
                    out.append((stage, d, 0.0, "add", final, touched))
        return out


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
) -> Workload:
    """Size every message of every frame from its activations and assemble the engine's workload.

    ``frames[f]`` maps each tensor of :meth:`WorkloadPlan.tensors` to its value for frame ``f``.
    """
    g = plan.graph
    batch = next(iter(frames[0].values())).shape[0] if frames and frames[0] else 1
    templates = plan.tasks(batch)
    index_of = {(stage, d): k for k, (stage, d, *_rest) in enumerate(templates)}
    tasks: list[Task] = []
    messages: list[Message] = []
    for f, values in enumerate(frames):
        base = len(tasks)
        tasks.extend(Task(f, g.label(stage), d, *rest) for stage, d, *rest in templates)
        for m in plan.messages:
            node = g.graph.nodes[m.tensor]
            matrix = message_matrix(values[m.tensor], m.channels, node["channels"], node["rank"])
            sizes = wire.encoded_sizes(matrix, spec)
            chosen, nbytes = wire.choose(sizes, fmt)
            messages.append(Message(
                frame=f, layer=m.layer, src=m.src, dst=m.dst, channels=len(m.channels), elements=matrix.size,
                nnz=int(np.count_nonzero(matrix)), sizes=sizes, format=chosen, bytes=nbytes,
                after=None if m.after is None else base + index_of[(m.after, m.src)],
                needed_by=tuple(base + index_of[(c, m.dst)] for c in m.needed_by), final=m.final,
                tensor=m.tensor, channel_ids=m.channel_ids,
            ))  # fmt: skip
    return Workload(tuple(devices), plan.source, plan.sink, len(frames), tuple(tasks), tuple(messages))
