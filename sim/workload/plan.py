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

Message sizes come from real encoded buffers of the real activations (:mod:`sim.workload.sizing`).
This module does not import torch: it works on numpy arrays.

**Exchange schemes** (issue 5; ``transfer.exchange``), chosen per conv/linear layer ``L`` reading tensor ``T``:

* ``inputs`` (DESIGN): the input channels of ``T`` a device needs travel to it, as above.
* ``partial_sums``: ``T``'s channels stay where they are for ``L``. Device ``i`` convolves the channels of
  ``T`` it owns (those some filter uses) with every filter of ``L`` that uses them, and sends the partial
  output sums of the filters owned by ``j`` to ``j`` (a message labelled ``<L>.partial``: ``batch*filters``
  rows by ``H_out*W_out`` columns, or ``batch`` by ``filters`` for a linear layer), who adds them to its
  own partial sums and the bias in a zero-FLOP task labelled ``<L>.sum``. The values are real per-device
  partial sums computed by :func:`sim.model.shards.partial_sums`. ``T``'s channels still travel for its other
  consumers (a residual add, or a layer using ``inputs``). Device ``i``'s partial task costs
  ``2 * kh*kw * H_out*W_out * batch * sum over filters f using i's channels of (i's channels in f's
  group)`` FLOPs (``kh*kw*H_out*W_out`` is ``in_features per channel`` for a linear layer). With
  ``groups = 1`` that is ``2 * (filters using i's channels) * (i's used input channels) * kh*kw *
  H_out*W_out * batch``.
* ``auto``: :func:`choose_exchange` picks the scheme of every layer so that the total bytes over all
  frames, in the configured ``transfer.format`` (``auto`` format: the smallest format per message) and
  with headers, is smallest, ties going to ``inputs``. It is exact: the total splits by tensor, and for
  each tensor every subset of the layers reading it is tried (a block input read by a conv and a
  shortcut conv stops crossing only if both use partial sums).

**Channel headers** (``transfer.channel_header``): by default the receiver learns which channels a message
holds from the partition plan shipped once at deployment, at no per-message cost. ``index_list`` prefixes
every message with its channel indices, ``channels * index_bits/8`` bytes; ``bitmap`` with a presence bit
per channel of the whole tensor, ``ceil(tensor channels / 8)`` bytes (for partial sums: filters of ``L``).
Header bytes are on the wire, so they count in a message's ``bytes``; its ``sizes`` (``dense_bytes`` ...)
stay payload-only, and ``header_bytes`` holds the header.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sim.workload.graph import ChannelGraph
from sim.workload.types import FLOAT32_BYTES, Partition

EXCHANGES = ("inputs", "partial_sums")  # concrete exchange schemes; "auto" resolves to one per layer
CHANNEL_HEADERS = ("none", "index_list", "bitmap")
PARTIAL = "#partial"  # suffix of the task key (and message tensor) of a layer's partial sums
MAX_AUTO_CONSUMERS = 10  # exchange auto tries every subset of the layers reading one tensor


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
    partial: bool = False  # partial sums of the filters ``channels`` of layer ``tensor[:-len(PARTIAL)]``

    @property
    def channel_ids(self) -> tuple[int, ...]:
        """The channel indices as a hashable tuple."""
        return tuple(int(c) for c in self.channels)


class WorkloadPlan:
    """The frame-independent part of a workload: ownership, tasks and message routes for one partition.

    ``ownership[node]`` is the owning device of every channel of every tensor node. ``exchange`` is
    ``"inputs"``, ``"partial_sums"``, or a mapping from layer label to one of them (layers it leaves out
    use ``inputs``); ``self.exchange`` maps every layer node to its scheme.
    """

    def __init__(
        self,
        graph: ChannelGraph,
        partition: Partition,
        n_devices: int,
        source: int,
        sink: int,
        *,
        exchange: str | Mapping[str, str] = "inputs",
        input_owner: Sequence[int] | None = None,
    ):
        self.graph = graph
        self.partition = dict(partition)
        self.n_devices = n_devices
        self.source = source
        self.sink = sink
        self.input_owner = None if input_owner is None else np.asarray(input_owner, dtype=np.int64)
        self.ownership: dict[str, np.ndarray] = {}
        self._producer: dict[str, np.ndarray] = {}  # node -> stage node producing each channel
        self._propagate(partition)
        self.exchange = self._resolve_exchange(exchange)
        self.stages = [n for n in graph.order if graph.kind(n) in ("layer", "add")]
        self._rank = {n: i for i, n in enumerate(graph.order)}
        self.messages = self._plan_messages()

    def _propagate(self, partition: Partition) -> None:
        g = self.graph
        for node in g.order:
            kind, args = g.kind(node), g.graph.nodes[node]["args"]
            if kind == "input":
                owner = (
                    self.input_owner
                    if self.input_owner is not None
                    else np.full(g.graph.nodes[node]["channels"], self.source)
                )  # the image's channels: on the source, unless the scenario spreads them
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

    def _resolve_exchange(self, exchange: str | Mapping[str, str]) -> dict[str, str]:
        g = self.graph
        layers = [n for n in g.order if g.kind(n) == "layer"]
        if isinstance(exchange, str):
            if exchange not in EXCHANGES:
                raise ValueError(f"exchange must be one of {EXCHANGES} or a mapping (resolve 'auto' first)")
            return {n: exchange for n in layers}
        by_label = {g.label(n): n for n in layers}
        for label, scheme in exchange.items():
            if label not in by_label or scheme not in EXCHANGES:
                raise ValueError(f"exchange: {label!r} -> {scheme!r} is not a layer and a scheme of {EXCHANGES}")
        return {n: exchange.get(g.label(n), "inputs") for n in layers}

    def layer_input(self, layer: str) -> str:
        """The tensor node that layer node ``layer`` reads."""
        return self.graph.graph.nodes[layer]["args"][0]

    def _partial_users(self, layer: str, device: int) -> tuple[np.ndarray, np.ndarray]:
        """``(channels, filters)``: the input channels of ``layer`` that ``device`` owns and some filter
        uses, and the filters (of any owner) with a non-zero weight on one of them, both as bool masks."""
        uses = self.graph.graph.nodes[layer]["layer"].uses
        mine = (self.ownership[self.layer_input(layer)] == device) & uses.any(axis=0)
        return mine, uses[:, mine].any(axis=1)

    def partial_flops(self, layer: str, device: int, batch: int) -> float:
        """FLOPs of ``device``'s partial sums for ``layer`` (module docstring: exchange schemes)."""
        spec = self.graph.graph.nodes[layer]["layer"]
        mine, users = self._partial_users(layer, device)
        per_group_in, per_group_out = spec.in_channels // spec.groups, spec.out_channels // spec.groups
        channels_in_group = np.bincount(np.flatnonzero(mine) // per_group_in, minlength=spec.groups)
        pairs = int(channels_in_group[np.flatnonzero(users) // per_group_out].sum())
        per_pair = spec.in_spatial if spec.op == "linear" else spec.kernel_elems * spec.out_spatial
        return 2.0 * pairs * per_pair * batch

    def tensor_messages(self, tensor: str, partial: set[str]) -> list[_MessagePlan]:
        """The messages of ``tensor`` and the partial sums of its consumer layers had exactly the layers
        in ``partial`` used partial sums (whatever ``self.exchange`` says)."""
        layers = [c for c in self.graph.consumers(tensor) if self.graph.kind(c) == "layer"]
        plans = [m for layer in layers if layer in partial for m in self._partial_messages(layer)]
        return plans + self._tensor_messages(tensor, self._needs(tensor, partial))

    def _partial_messages(self, layer: str) -> list[_MessagePlan]:
        g, owner, plans = self.graph, self.ownership[layer], []
        for src in range(self.n_devices):
            _, users = self._partial_users(layer, src)
            for dst in range(self.n_devices):
                filters = np.flatnonzero(users & (owner == dst))
                if src != dst and len(filters):
                    plans.append(
                        _MessagePlan(
                            layer + PARTIAL,
                            g.label(layer) + ".partial",
                            src,
                            dst,
                            filters,
                            layer + PARTIAL,
                            (layer,),
                            False,
                            partial=True,
                        )
                    )
        return plans

    def _needs(self, tensor: str, partial: set[str] | None = None) -> dict[str, np.ndarray]:
        """For each consumer of ``tensor``: a (devices, channels) bool matrix of what each device needs.

        Layers using partial sums (those in ``partial``; default: per ``self.exchange``) need nothing of
        their input: it is combined where it lives."""
        g, out = self.graph, {}
        channels = g.graph.nodes[tensor]["channels"]
        partial = self.partial_layers() if partial is None else partial
        for consumer in g.consumers(tensor):
            if consumer in partial:
                continue
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
            if g.kind(tensor) == "layer" and self.exchange[tensor] == "partial_sums":
                plans += self._partial_messages(tensor)
            plans += self._tensor_messages(tensor, self._needs(tensor))
        return plans

    def _tensor_messages(self, tensor: str, needs: dict[str, np.ndarray]) -> list[_MessagePlan]:
        """One message per ordered device pair with the channels of ``tensor`` that ``needs`` ask for."""
        g, plans = self.graph, []
        if needs:
            owner, producer = self.ownership[tensor], self._producer[tensor]
            total = np.logical_or.reduce(list(needs.values()))
            for src in range(self.n_devices):
                for dst in range(self.n_devices):
                    if src == dst:
                        continue
                    chans = np.flatnonzero((owner == src) & total[dst])
                    if len(chans) == 0:
                        continue
                    stages = sorted(set(producer[chans]), key=self._rank.__getitem__)
                    users = tuple(c for c, need in needs.items() if need[dst, chans].any())
                    final = any(g.kind(c) == "output" for c in users)
                    is_input = stages == [g.input_node()]
                    layer = "output" if final else "+".join(g.label(s) for s in stages)
                    plans.append(
                        _MessagePlan(
                            tensor,
                            layer,
                            src,
                            dst,
                            chans,
                            None if is_input else stages[-1],
                            tuple(c for c in users if g.kind(c) != "output"),
                            final,
                        )
                    )
        return plans

    def tensors(self) -> set[str]:
        """The tensor nodes whose values cross the network (their activations are needed per frame)."""
        return {m.tensor for m in self.messages if not m.partial}

    def partial_layers(self) -> set[str]:
        """The layer nodes using partial sums."""
        return {n for n, scheme in self.exchange.items() if scheme == "partial_sums"}

    def task_label(self, key: str) -> str:
        """The ``layer`` label of a task: the stage's label, ``<L>.sum`` for the sum of partial sums."""
        if key.endswith(PARTIAL):
            return self.graph.label(key[: -len(PARTIAL)])
        partial = self.graph.kind(key) == "layer" and self.exchange[key] == "partial_sums"
        return self.graph.label(key) + (".sum" if partial else "")

    def tasks(self, batch: int) -> list[tuple[str, int, float, str, bool, int]]:
        """Per-frame task templates ``(key, device, flops, op, final, bytes_touched)`` in execution order.

        ``key`` is the stage node, or ``<L>#partial`` for the partial sums of a layer ``L`` using partial
        sums; then the stage ``L`` itself is the zero-FLOP sum on each owner of filters of ``L``, reading
        its own and each received partial sum and writing the result."""
        g, out = self.graph, []
        final_stages = set(self._producer[g.output_tensor()][self.ownership[g.output_tensor()] == self.sink])
        for stage in self.stages:
            owner = self.ownership[stage]
            if g.kind(stage) == "layer" and self.exchange[stage] == "partial_sums":
                out += self._partial_tasks(stage, batch)
            for d in range(self.n_devices):
                filters = int((owner == d).sum())
                if filters == 0:
                    continue
                final = d == self.sink and stage in final_stages
                if g.kind(stage) == "layer" and self.exchange[stage] == "partial_sums":
                    parts = 1 + sum(m.dst == d for m in self.messages if m.partial and m.tensor == stage + PARTIAL)
                    touched = (parts + 1) * FLOAT32_BYTES * batch * filters * g.graph.nodes[stage]["spatial"]
                    out.append((stage, d, 0.0, "add", final, touched))
                elif g.kind(stage) == "layer":
                    layer = g.graph.nodes[stage]["layer"]
                    touched = layer.bytes_touched(filters, batch)
                    out.append((stage, d, layer.flops(filters, batch), layer.op, final, touched))
                else:  # an add reads two values and writes one per channel element
                    touched = 3 * FLOAT32_BYTES * batch * filters * g.graph.nodes[stage]["spatial"]
                    out.append((stage, d, 0.0, "add", final, touched))
        return out

    def _partial_tasks(self, layer: str, batch: int) -> list[tuple[str, int, float, str, bool, int]]:
        """The partial-sum tasks of ``layer``: one per device owning some of its used input channels."""
        spec, out = self.graph.graph.nodes[layer]["layer"], []
        for d in range(self.n_devices):
            mine, users = self._partial_users(layer, d)
            if not mine.any():
                continue
            inputs = batch * int(mine.sum()) * spec.in_spatial
            weights = int(spec.uses[users][:, mine].sum()) * spec.kernel_elems
            outputs = batch * int(users.sum()) * spec.out_spatial
            touched = FLOAT32_BYTES * (inputs + weights + outputs)
            out.append((layer + PARTIAL, d, self.partial_flops(layer, d, batch), spec.op, False, touched))
        return out
