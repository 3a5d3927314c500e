"""The workload: per-device compute tasks and per-pair messages, built from the channel-flow graph.

This is where the torch side ends (docs/design.md §1). The engine reads only a :class:`Workload`, so a
bandwidth sweep re-runs the engine, never the model. The rules implemented here are docs/design.md §3.2-§3.4:

* **Ownership** of every tensor's channels follows from the partition of the partitionable layers.
* **Need**: device ``d`` needs input channel ``c`` of layer ``L`` when it owns a filter of ``L`` with a
  non-zero weight on ``c``; the owner of ``(a + b)[c]`` needs ``b[c]``; the sink needs the model output.
* **Messages**: for each tensor read by a consumer and each ordered pair ``i -> j``, one message with every
  channel ``i`` owns and ``j`` needs for any of its consumers. Its payload is the tensor as consumed,
  viewed as a 2-D matrix: ``batch*channels`` rows by ``H*W`` columns for 4-D tensors, ``batch`` rows by
  the message's features for flattened or vector tensors.

Message sizes come from real encoded buffers of the real activations (:mod:`sim.workload.sizing`).
This module does not import torch: it works on numpy arrays.

**Exchange schemes** (``transfer.exchange``), chosen per conv/linear layer ``L`` reading tensor ``T``:

* ``inputs`` (docs/design.md §3.4): the input channels of ``T`` a device needs travel to it, as above.
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
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sim.config.vocab import EXCHANGES
from sim.errors import UserError
from sim.workload.graph import ChannelGraph
from sim.workload.spatial import SpatialPlacement, place_elements
from sim.workload.types import Partition, Split

MAX_AUTO_CONSUMERS = 10  # exchange auto tries every subset of the layers reading one tensor

Part = Literal["stage", "partial"]


@dataclass(frozen=True)
class TaskKey:
    """Which per-frame task on a device: ``part="stage"`` is stage node ``stage`` itself (a layer, an add,
    or for a layer using partial sums the zero-FLOP sum of its partial sums); ``part="partial"`` is a
    device's partial sums of layer ``stage``.

    >>> TaskKey("conv1"), TaskKey("conv1", "partial") == TaskKey("conv1", "partial")
    (TaskKey(stage='conv1', part='stage'), True)
    """

    stage: str
    part: Part = "stage"


@dataclass(frozen=True)
class MessagePlan:
    """A frame-independent message: which channels of which tensor go from ``src`` to ``dst``.

    With ``partial`` it carries partial sums of the filters ``channels`` of layer node ``tensor`` (computed
    on ``src``), otherwise channels of tensor node ``tensor``."""

    tensor: str
    layer: str  # label in result tables
    src: int
    dst: int
    channels: np.ndarray  # channel (or filter) indices, ascending
    after: TaskKey | None  # task on src whose end makes it ready; None: the frame's arrival
    needed_by: tuple[TaskKey, ...]  # tasks on dst that wait for it
    final: bool
    partial: bool = False
    positions: np.ndarray | None = None  # rows form: positions (y*W + x, ascending) of those channels

    @property
    def channel_ids(self) -> tuple[int, ...]:
        """The channel indices as a hashable tuple."""
        return tuple(int(c) for c in self.channels)

    @property
    def position_ids(self) -> tuple[int, ...]:
        """The positions as a hashable tuple (empty: every position)."""
        return () if self.positions is None else tuple(int(p) for p in self.positions)


@dataclass(frozen=True)
class Placement:
    """Where every channel lives for one partition: ``owner[node]`` is the owning device of each channel
    of each tensor node, ``producer[node]`` the stage node that produced it (through channel-wise ops and
    cats). Made by :func:`place`."""

    graph: ChannelGraph
    partition: Mapping[str, np.ndarray]  # layer label -> owner of each filter
    n_devices: int
    source: int
    sink: int
    owner: Mapping[str, np.ndarray]
    producer: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class WorkloadPlan:
    """The frame-independent part of a workload: where channels live, each layer's exchange scheme
    (``exchange``: layer node -> ``inputs`` or ``partial_sums``) and the messages, in creation order.
    Made by :func:`plan_workload`; a frozen record (``dataclasses.replace`` gives a variant)."""

    placement: Placement
    exchange: Mapping[str, str]
    messages: tuple[MessagePlan, ...]
    spatial: SpatialPlacement | None = None  # set when some layer is split by rows (docs/design.md §3b)
    split: Split | None = None  # the partition in its three forms, when given as one

    @property
    def graph(self) -> ChannelGraph:
        return self.placement.graph

    @property
    def partition(self) -> Mapping[str, np.ndarray]:
        return self.placement.partition

    @property
    def ownership(self) -> Mapping[str, np.ndarray]:
        return self.placement.owner

    @property
    def n_devices(self) -> int:
        return self.placement.n_devices

    @property
    def source(self) -> int:
        return self.placement.source

    @property
    def sink(self) -> int:
        return self.placement.sink

    def layer_input(self, layer: str) -> str:
        """The tensor node that layer node ``layer`` reads."""
        return self.graph.args(layer)[0]

    def partial_layers(self) -> set[str]:
        """The layer nodes using partial sums."""
        return partial_layers(self.exchange)

    def tensors(self) -> set[str]:
        """The tensor nodes whose values cross the network (their activations are needed per frame)."""
        return {m.tensor for m in self.messages if not m.partial}

    def task_label(self, key: TaskKey) -> str:
        """The ``layer`` label of a task: the stage's label, ``<L>.sum`` for the sum of partial sums."""
        label = self.graph.label(key.stage)
        if key.part == "stage" and self.exchange.get(key.stage) == "partial_sums":
            return label + ".sum"
        return label


def plan_workload(
    graph: ChannelGraph,
    partition: Partition | Split,
    n_devices: int,
    source: int,
    sink: int,
    *,
    exchange: str | Mapping[str, str] = "inputs",
    input_owner: Sequence[int] | None = None,
) -> WorkloadPlan:
    """The workload plan of ``partition`` (layer label -> owner of each filter, or a :class:`Split`)
    over ``n_devices``.

    ``exchange`` is ``"inputs"``, ``"partial_sums"``, or a mapping from layer label to one of them (layers
    it leaves out use ``inputs``). The image's channels are on ``source`` unless ``input_owner`` gives
    each one's device. A split with rows-split layers is planned element by element
    (:mod:`sim.workload.spatial`), with ``exchange`` ``inputs`` only.
    """
    split = partition if isinstance(partition, Split) else None
    filters = partition.filters if isinstance(partition, Split) else partition
    placement = place(graph, filters, n_devices, source, sink, input_owner)
    schemes = resolve_exchange(graph, exchange)
    if split is None or not split.spatial:
        return WorkloadPlan(placement, schemes, plan_messages(placement, schemes), split=split)
    if partial_layers(schemes):
        raise UserError("transfer.exchange: partial_sums is defined for filters; a rows partition needs inputs")
    sp = place_elements(graph, filters, split.rows, n_devices, source, sink, fused=split.fused, input_owner=input_owner)
    return WorkloadPlan(placement, schemes, spatial_messages(graph, sp, n_devices), sp, split)


def spatial_messages(graph: ChannelGraph, sp: SpatialPlacement, n_devices: int) -> tuple[MessagePlan, ...]:
    """Every message of a rows plan (:mod:`sim.workload.spatial`), tensor by tensor in topological order,
    each pair ``src -> dst`` in ascending order."""
    plans, image = [], graph.input_node()
    for tensor in graph.order:
        need = sp.needs.get(tensor, {})
        if tensor in sp.internal or not need:
            continue
        total = np.logical_or.reduce(list(need.values()))
        for src in range(n_devices):
            mine = sp.owner[tensor] == src
            for dst in range(n_devices):
                block = mine & total[dst]
                if src == dst or not block.any():
                    continue
                chans, positions = np.flatnonzero(block.any(axis=1)), np.flatnonzero(block.any(axis=0))
                if not mine[np.ix_(chans, positions)].all():
                    raise UserError(
                        f"partition: '{graph.label(tensor)}' mixes forms across a cat; give its inputs one form"
                    )
                stages = sorted(set(sp.producer[tensor][chans]), key=graph.rank)
                users = [s for s, m in need.items() if m[dst][np.ix_(chans, positions)].any()]
                final = "output" in users
                layer = "output" if final else "+".join(graph.label(s) for s in stages)
                after = None if stages == [image] else TaskKey(stages[-1])
                needed_by = tuple(TaskKey(s) for s in users if s != "output")
                every = None if len(positions) == graph.node(tensor).spatial else positions
                plans.append(MessagePlan(tensor, layer, src, dst, chans, after, needed_by, final, False, every))
    return tuple(plans)


def place(
    graph: ChannelGraph,
    partition: Partition,
    n_devices: int,
    source: int,
    sink: int,
    input_owner: Sequence[int] | None = None,
) -> Placement:
    """Ownership of every tensor's channels, propagated from the partition (module docstring)."""
    owners: dict[str, np.ndarray] = {}
    producers: dict[str, np.ndarray] = {}
    for node in graph.order:
        kind, args = graph.kind(node), graph.args(node)
        if kind == "input":  # the image's channels: on the source, unless the scenario spreads them
            if input_owner is None:
                owner = np.full(graph.node(node).channels, source)
            else:
                owner = np.asarray(input_owner, dtype=np.int64)
            producer = np.full(owner.shape, node, dtype=object)
        elif kind == "layer":
            owner = np.asarray(partition[graph.label(node)])
            producer = np.full(owner.shape, node, dtype=object)
        elif kind == "add":
            owner = owners[args[0]]
            producer = np.full(owner.shape, node, dtype=object)
        elif kind == "cat":
            owner = np.concatenate([owners[a] for a in args])
            producer = np.concatenate([producers[a] for a in args])
        elif kind == "output":
            continue
        else:  # pointwise, flatten
            owner, producer = owners[args[0]], producers[args[0]]
        owners[node], producers[node] = owner, producer
    return Placement(graph, dict(partition), n_devices, source, sink, owners, producers)


def resolve_exchange(graph: ChannelGraph, exchange: str | Mapping[str, str]) -> dict[str, str]:
    """Every layer node's scheme from ``"inputs"``, ``"partial_sums"`` or a label -> scheme mapping."""
    layers = [n for n in graph.order if graph.kind(n) == "layer"]
    if isinstance(exchange, str):
        if exchange not in EXCHANGES:
            raise ValueError(f"exchange must be one of {EXCHANGES} or a mapping (resolve 'auto' first)")
        return {n: exchange for n in layers}
    by_label = {graph.label(n): n for n in layers}
    for label, scheme in exchange.items():
        if label not in by_label or scheme not in EXCHANGES:
            raise ValueError(f"exchange: {label!r} -> {scheme!r} is not a layer and a scheme of {EXCHANGES}")
    return {n: exchange.get(graph.label(n), "inputs") for n in layers}


def partial_layers(exchange: Mapping[str, str]) -> set[str]:
    """The layer nodes whose scheme is ``partial_sums``."""
    return {n for n, scheme in exchange.items() if scheme == "partial_sums"}


def partial_users(placement: Placement, layer: str, device: int) -> tuple[np.ndarray, np.ndarray]:
    """``(channels, filters)``: the input channels of ``layer`` that ``device`` owns and some filter uses,
    and the filters (of any owner) with a non-zero weight on one of them, both as bool masks."""
    uses = placement.graph.layer(layer).uses
    mine = (placement.owner[placement.graph.args(layer)[0]] == device) & uses.any(axis=0)
    return np.asarray(mine), np.asarray(uses[:, mine].any(axis=1))


def needs(placement: Placement, tensor: str, partial: AbstractSet[str]) -> dict[str, np.ndarray]:
    """For each consumer of ``tensor``: a (devices, channels) bool matrix of what each device needs.

    Layers in ``partial`` (using partial sums) need nothing of their input: it is combined where it lives.
    """
    g, out = placement.graph, {}
    channels = g.node(tensor).channels
    for consumer in g.consumers(tensor):
        if consumer in partial:
            continue
        need = np.zeros((placement.n_devices, channels), dtype=bool)
        kind = g.kind(consumer)
        if kind == "layer":  # device d needs what some filter it owns uses (devices owning none: nothing)
            need = _any_by(placement.owner[consumer], g.layer(consumer).uses, placement.n_devices)
        elif kind == "add":
            need[placement.owner[consumer], np.arange(channels)] = True
        elif kind == "output":
            need[placement.sink] = True
        else:
            continue  # channel-wise ops run where the channel lives
        out[consumer] = need
    return out


def plan_messages(placement: Placement, exchange: Mapping[str, str]) -> tuple[MessagePlan, ...]:
    """Every message, tensor by tensor in topological order: a layer's partial sums (if it uses them),
    then the tensor's channels, each pair ``src -> dst`` in ascending order."""
    g, partial, plans = placement.graph, partial_layers(exchange), []
    for tensor in g.order:
        if g.kind(tensor) == "output":
            continue
        if tensor in partial:
            plans += partial_messages(placement, tensor)
        plans += channel_messages(placement, tensor, needs(placement, tensor, partial))
    return tuple(plans)


def partial_messages(placement: Placement, layer: str) -> list[MessagePlan]:
    """The partial sums of ``layer`` each device sends to the owners of the filters it feeds."""
    g, owner, plans = placement.graph, placement.owner[layer], []
    label = g.label(layer) + ".partial"
    for src in range(placement.n_devices):
        _, users = partial_users(placement, layer, src)
        for dst in range(placement.n_devices):
            filters = np.flatnonzero(users & (owner == dst))
            if src != dst and len(filters):
                after = TaskKey(layer, "partial")
                plans.append(MessagePlan(layer, label, src, dst, filters, after, (TaskKey(layer),), False, True))
    return plans


def channel_messages(placement: Placement, tensor: str, need: Mapping[str, np.ndarray]) -> list[MessagePlan]:
    """One message per ordered device pair with the channels of ``tensor`` that ``need`` (per consumer, as
    :func:`needs` returns) asks for.

    Which consumers a pair's message serves is found for every pair at once (:func:`_any_by`), not by
    indexing each pair's channels per consumer; pairs alike share their other fields.
    """
    if not need:
        return []
    g, n, plans = placement.graph, placement.n_devices, []
    owner, producer = placement.owner[tensor], placement.producer[tensor]
    consumers = list(need)
    total = np.logical_or.reduce(list(need.values()))
    # serves[dst][src][k]: consumer k on dst needs a channel src owns (what src sends dst is all it owns
    # of what dst needs, so that is: the message src -> dst serves consumer k)
    serves = np.stack([_any_by(owner, need[c].T, n) for c in consumers], axis=-1).transpose(1, 0, 2).tolist()
    names, codes = np.unique(producer, return_inverse=True)  # the stages that produced the tensor's channels
    image = g.input_node()
    fields: dict[tuple[bool, ...], tuple[bool, tuple[TaskKey, ...]]] = {}  # consumers served -> final, needed_by
    heads: dict[tuple[str, ...], tuple[str, TaskKey | None]] = {}  # producing stages -> label, after
    wanted = [_by_owner(np.flatnonzero(total[dst]), owner) for dst in range(n)]
    for src in range(n):
        for dst, by_src in enumerate(wanted):
            chans = by_src.get(src)
            if src == dst or chans is None:
                continue
            pattern = tuple(serves[dst][src])
            if pattern not in fields:
                users = tuple(c for c, used in zip(consumers, pattern) if used)
                final = any(g.kind(c) == "output" for c in users)
                fields[pattern] = final, tuple(TaskKey(c) for c in users if g.kind(c) != "output")
            final, needed_by = fields[pattern]
            made = (names[0],) if len(names) == 1 else tuple(names[np.unique(codes[chans])])  # several: a cat
            if made not in heads:
                stages = sorted(made, key=g.rank)
                label = "+".join(g.label(s) for s in stages)
                heads[made] = label, None if stages == [image] else TaskKey(stages[-1])
            label, after = heads[made]
            plans.append(MessagePlan(tensor, "output" if final else label, src, dst, chans, after, needed_by, final))
    return plans


def _any_by(owner: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """``(n, columns)`` bool: row ``d`` is whether any row of ``rows`` with ``owner == d`` is true there
    (``owner``: an integer from ``0`` to ``n - 1`` per row of ``rows``), as one matrix product.

    >>> _any_by(np.array([1, 0, 1]), np.array([[1, 0], [0, 0], [0, 1]], dtype=bool), 3).astype(int).tolist()
    [[0, 0], [1, 1], [0, 0]]
    """
    owned = np.zeros((n, len(owner)), dtype=np.float32)
    owned[owner, np.arange(len(owner))] = 1.0
    return owned @ rows.astype(np.float32) > 0  # counts of at most len(owner) < 2**24: exact in float32


def _by_owner(idx: np.ndarray, owner: np.ndarray) -> dict[int, np.ndarray]:
    """The channels ``idx`` (ascending) grouped by their owner, each group ascending; one sort, so a tensor's
    messages cost the channels wanted once, not once per sending device.

    >>> _by_owner(np.array([0, 1, 2, 5]), np.array([1, 0, 1, 0, 0, 0]))
    {0: array([1, 5]), 1: array([0, 2])}
    """
    if not len(idx):
        return {}
    srcs = owner[idx]
    order = np.argsort(srcs, kind="stable")
    srcs, idx = srcs[order], idx[order]
    starts = [0, *(np.flatnonzero(np.diff(srcs)) + 1).tolist()]
    ends = [*starts[1:], len(idx)]
    return {int(srcs[a]): idx[a:b] for a, b in zip(starts, ends)}
