"""The channel-flow graph as the workload sees it: stages and tensors with their shapes, no torch.

:class:`ChannelGraph` is a networkx DiGraph over node names in topological ``order``;
:class:`sim.model.flowgraph.FlowGraph` traces one from a torch model. Each node has a *kind*: ``input``
(the image), ``layer`` (a partitionable Conv2d or Linear), ``pointwise`` (channel-wise ops), ``flatten``,
``add`` (residual add), ``cat`` or ``output``. ``layer``, ``add`` and ``input`` nodes are *stages*: the
points where a device produces channels.

Every node is a frozen :class:`Node` record; :meth:`ChannelGraph.node` is the one way to read it.

Example::

    >>> x = Node("input", "input", (1, 4, 4), channels=1, spatial=16, rank=4, args=())
    >>> out = Node("output", "output", (1, 4, 4), channels=1, spatial=16, rank=4, args=("x",))
    >>> g = ChannelGraph({"x": x, "out": out}, ["x", "out"])
    >>> g.output_tensor(), g.node("x").features_per_channel
    ('x', 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import networkx as nx
import numpy as np

from sim.errors import UserError
from sim.workload.types import FLOAT32_BYTES


@dataclass(frozen=True)
class Layer:
    """A partitionable layer, with what the workload needs to know about it.

    ``uses[f, c]`` is true when filter (or neuron) ``f`` has a non-zero weight on input channel ``c``.
    """

    name: str
    op: str  # "conv" or "linear"
    in_channels: int
    out_channels: int
    in_spatial: int  # elements per input channel per sample (1 for a vector input)
    out_spatial: int  # H_out * W_out (1 for linear)
    kernel_elems: int  # kh * kw (1 for linear)
    groups: int
    uses: np.ndarray  # bool, (out_channels, in_channels)
    bias: bool = False  # the layer adds a bias per output channel

    @property
    def weights_per_filter(self) -> int:
        """Weights of one filter (or neuron): ``in_channels/groups * kh*kw``, ``in_channels * in_spatial``
        for a linear layer; the bias not included."""
        if self.op == "linear":
            return self.in_channels * self.in_spatial
        return self.in_channels // self.groups * self.kernel_elems

    def flops(self, filters: int, batch: int) -> float:
        """FLOPs (multiply and add counted as 2) for ``filters`` of this layer on a batch (docs/design.md §3.6)."""
        per_filter = (
            self.in_channels * self.in_spatial
            if self.op == "linear"
            else (self.in_channels * self.kernel_elems / self.groups * self.out_spatial)
        )
        return 2.0 * filters * per_filter * batch

    def bytes_touched(
        self, filters: int, batch: int, *, channels_read: int | None = None, weight_pairs: int | None = None
    ) -> int:
        """float32 bytes that ``filters`` of this layer read and write on a batch (for a roofline model):
        ``4 * (batch * channels_read * in_spatial + weight_pairs * kernel_elems + batch * filters *
        out_spatial)``, its inputs, its weights and its outputs.

        ``channels_read`` defaults to every input channel and ``weight_pairs`` (the (filter, input channel)
        pairs whose weights are read) to ``filters * in_channels / groups``; a device's partial sums read
        fewer of both.

        >>> conv = Layer("c", "conv", 2, 4, 16, 9, 9, 1, np.ones((4, 2), dtype=bool))
        >>> conv.bytes_touched(1, 1)  # 4 * (2*16 input + 1*2*9 weights + 1*9 output)
        236
        """
        channels = self.in_channels if channels_read is None else channels_read
        pairs = filters * (self.in_channels // self.groups) if weight_pairs is None else weight_pairs
        inputs = batch * channels * self.in_spatial
        outputs = batch * filters * self.out_spatial
        return FLOAT32_BYTES * (inputs + pairs * self.kernel_elems + outputs)


@dataclass(frozen=True)
class Window:
    """The sliding window of a conv or pooling op: ``(rows, columns)`` pairs of kernel size, stride,
    padding and dilation, or an adaptive pool (``adaptive``: output ``i`` of ``n`` reads inputs
    ``floor(i*N/n)`` to ``ceil((i+1)*N/n) - 1`` of ``N``). ``ceil_mode`` only changes the output size,
    which :meth:`reads` takes as given.

    >>> Window((3, 3), (2, 2), (1, 1), (1, 1)).reads(0, out_size=2, in_size=4).astype(int).tolist()
    [[1, 1, 0, 0], [0, 1, 1, 1]]
    """

    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    adaptive: bool = False

    def reads(self, axis: int, out_size: int, in_size: int) -> np.ndarray:
        """Bool ``(out_size, in_size)``: output index ``o`` along ``axis`` (0 rows, 1 columns) reads input
        index ``i`` (docs/design.md §3b, receptive rows: ``o*s - p + d*t`` for taps ``t < k``, padding dropped)."""
        out = np.zeros((out_size, in_size), dtype=bool)
        o = np.arange(out_size)
        if self.adaptive:
            start, stop = (o * in_size) // out_size, -((-(o + 1) * in_size) // out_size)
            i = np.arange(in_size)
            return (i[None, :] >= start[:, None]) & (i[None, :] < stop[:, None])
        k, s, p, d = self.kernel[axis], self.stride[axis], self.padding[axis], self.dilation[axis]
        for t in range(k):
            i = o * s - p + d * t
            ok = (i >= 0) & (i < in_size)
            out[o[ok], i[ok]] = True
        return out


@dataclass(frozen=True)
class Node:
    """One node of a :class:`ChannelGraph`: a tensor and the op that produced it.

    ``shape`` is per sample (without the batch); ``channels`` and ``spatial`` (elements per channel per
    sample) describe it as channels even when flattened (``rank`` 2): a flattened ``(C*S,)`` tensor keeps
    ``channels = C`` and ``spatial = S``. ``args`` are its tensor inputs in order; ``layer`` is set for
    ``layer`` nodes only, ``window`` for convs and pooling ops.
    """

    kind: str  # input, layer, pointwise, flatten, add, cat or output
    label: str  # readable name: module path for layers, <block>.add for adds
    shape: tuple[int, ...]
    channels: int
    spatial: int
    rank: int  # 4, or 2 for a vector
    args: tuple[str, ...]
    layer: Layer | None = None
    window: Window | None = None  # convs and pooling ops: their sliding window (docs/design.md §3b)

    @property
    def features_per_channel(self) -> int:
        """Entries per channel of a 1-D per-channel parameter (batch-norm) or feature block: ``spatial``
        for a flattened tensor (feature ``c*S + s`` belongs to channel ``c``), 1 for a 4-D tensor."""
        return self.spatial if self.rank == 2 else 1


class ChannelGraph:
    """A channel-flow graph: :class:`Node` records by name (fx names when traced), in topological ``order``,
    with their edges (``args`` -> node) as a networkx DiGraph in ``graph``."""

    def __init__(self, nodes: Mapping[str, Node], order: list[str]):
        self.nodes = dict(nodes)
        self.order = order
        self.graph: nx.DiGraph[str] = nx.DiGraph()
        self.graph.add_nodes_from(order)
        self.graph.add_edges_from((a, n) for n in order for a in self.nodes[n].args)
        self._rank = {n: i for i, n in enumerate(order)}

    def node(self, name: str) -> Node:
        """The record of node ``name``."""
        return self.nodes[name]

    def kind(self, node: str) -> str:
        """The node's kind: input, layer, pointwise, flatten, add, cat or output."""
        return self.nodes[node].kind

    def label(self, node: str) -> str:
        """Readable name used in result tables (module path for layers)."""
        return self.nodes[node].label

    def layer(self, node: str) -> Layer:
        """The :class:`Layer` of layer node ``node``."""
        layer = self.nodes[node].layer
        if layer is None:
            raise KeyError(f"{node} is a {self.kind(node)} node, not a layer")
        return layer

    def args(self, node: str) -> tuple[str, ...]:
        """The tensor inputs of ``node``, in order."""
        return self.nodes[node].args

    def layers(self) -> list[Layer]:
        """Partitionable layers in topological order."""
        return [self.layer(n) for n in self.order if self.kind(n) == "layer"]

    def input_node(self) -> str:
        """The image placeholder (exactly one is supported)."""
        inputs = [n for n in self.order if self.kind(n) == "input"]
        if len(inputs) != 1:
            raise UserError(f"model.name: the model takes {len(inputs)} inputs; exactly one image is supported")
        return inputs[0]

    def output_tensor(self) -> str:
        """The tensor the model returns."""
        return self.nodes[self.order[-1]].args[0]

    def rank(self, node: str) -> int:
        """Position of ``node`` in the topological order."""
        return self._rank[node]

    def consumers(self, node: str) -> list[str]:
        """Nodes reading tensor ``node``, in topological order."""
        return sorted(self.graph.successors(node), key=self._rank.__getitem__)


def residual_groups(graph: ChannelGraph) -> list[list[str]]:
    """Layers whose output channels are tied together by residual adds, as lists of layer labels.

    ``y = F(x) + x`` makes channel ``c`` of F's last layer and of whatever produced ``x`` one stream; the
    groups are the connected components of those ties (networkx), each in topological order. Layers in
    no residual stream are left out.
    """
    ties: nx.Graph[str] = nx.Graph()
    for node in graph.order:
        if graph.kind(node) == "add":
            for arg in graph.args(node):
                ties.add_edge(node, stage_of(graph, arg))
    groups = []
    for component in nx.connected_components(ties):
        layers = [n for n in graph.order if n in component and graph.kind(n) == "layer"]
        if layers:
            groups.append([graph.label(n) for n in layers])
    return sorted(groups, key=lambda g: [graph.label(n) for n in graph.order].index(g[0]))


def stage_of(graph: ChannelGraph, tensor: str) -> str:
    """The stage (layer, add or input) whose channels ``tensor`` carries, through channel-wise ops."""
    while graph.kind(tensor) in ("pointwise", "flatten"):
        tensor = graph.args(tensor)[0]
    return tensor
