"""The channel-flow graph as the workload sees it: stages and tensors with their shapes, no torch.

:class:`ChannelGraph` is a networkx DiGraph over node names in topological ``order``;
:class:`sim.model.flowgraph.FlowGraph` traces one from a torch model. Each node has a *kind*: ``input``
(the image), ``layer`` (a partitionable Conv2d or Linear), ``pointwise`` (channel-wise ops), ``flatten``,
``add`` (residual add), ``cat`` or ``output``. ``layer``, ``add`` and ``input`` nodes are *stages*: the
points where a device produces channels.

Example::

    >>> import networkx as nx
    >>> g = nx.DiGraph()
    >>> g.add_node("x", kind="input", label="input", args=[])
    >>> g.add_node("out", kind="output", label="output", args=["x"])
    >>> g.add_edge("x", "out")
    >>> ChannelGraph(g, ["x", "out"]).output_tensor()
    'x'
"""

from __future__ import annotations

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

    def flops(self, filters: int, batch: int) -> float:
        """FLOPs (multiply and add counted as 2) for ``filters`` of this layer on a batch (DESIGN 3)."""
        per_filter = (
            self.in_channels * self.in_spatial
            if self.op == "linear"
            else (self.in_channels * self.kernel_elems / self.groups * self.out_spatial)
        )
        return 2.0 * filters * per_filter * batch

    def bytes_touched(self, filters: int, batch: int) -> int:
        """float32 bytes that ``filters`` of this layer read and write on a batch: the whole input, their
        weights and their outputs (for a roofline model)."""
        inputs = batch * self.in_channels * self.in_spatial
        weights = filters * (self.in_channels // self.groups) * self.kernel_elems
        outputs = batch * filters * self.out_spatial
        return FLOAT32_BYTES * (inputs + weights + outputs)


class ChannelGraph:
    """A channel-flow graph: a networkx DiGraph over node names (fx names when traced), in topological ``order``.

    Node attributes: ``kind`` (see module docstring), ``label`` (readable name: module path for layers,
    ``<block>.add`` for adds), ``shape`` (per sample, without the batch), ``channels``, ``spatial``
    (elements per channel per sample), ``rank`` (tensor rank, 4 or 2), ``args`` (tensor inputs in order)
    and ``layer`` (:class:`Layer`, layers only).
    """

    def __init__(self, graph: nx.DiGraph, order: list[str]):
        self.graph = graph
        self.order = order

    def kind(self, node: str) -> str:
        """The node's kind: input, layer, pointwise, flatten, add, cat or output."""
        return self.graph.nodes[node]["kind"]

    def label(self, node: str) -> str:
        """Readable name used in result tables (module path for layers)."""
        return self.graph.nodes[node]["label"]

    def layers(self) -> list[Layer]:
        """Partitionable layers in topological order."""
        return [self.graph.nodes[n]["layer"] for n in self.order if self.kind(n) == "layer"]

    def input_node(self) -> str:
        """The image placeholder (exactly one is supported)."""
        inputs = [n for n in self.order if self.kind(n) == "input"]
        if len(inputs) != 1:
            raise UserError(f"model.name: the model takes {len(inputs)} inputs; exactly one image is supported")
        return inputs[0]

    def output_tensor(self) -> str:
        """The tensor the model returns."""
        out = self.order[-1]
        return self.graph.nodes[out]["args"][0]

    def consumers(self, node: str) -> list[str]:
        """Nodes reading tensor ``node``, in topological order."""
        return sorted(self.graph.successors(node), key=self.order.index)


def residual_groups(graph: ChannelGraph) -> list[list[str]]:
    """Layers whose output channels are tied together by residual adds, as lists of layer labels.

    ``y = F(x) + x`` makes channel ``c`` of F's last layer and of whatever produced ``x`` one stream; the
    groups are the connected components of those ties (networkx), each in topological order. Layers in
    no residual stream are left out.
    """
    ties: nx.Graph[str] = nx.Graph()
    for node in graph.order:
        if graph.kind(node) == "add":
            for arg in graph.graph.nodes[node]["args"]:
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
        tensor = graph.graph.nodes[tensor]["args"][0]
    return tensor
