"""The channel-flow graph: a traced CNN as a networkx graph of stages and tensors.

The model is traced with :func:`torch.fx.symbolic_trace` and run once on an example batch to learn every
tensor's shape. Each fx node becomes a graph node of one *kind*:

``input``
    the image; its channels are owned by the scenario's source device.
``layer``
    a partitionable layer (``Conv2d``, also grouped and depthwise, or ``Linear``): its output channels
    (filters, neurons) are split over devices.
``pointwise``
    a channel-wise op (batch-norm, activation, pooling, dropout): keeps ownership.
``flatten``
    ``(B, C, H, W) -> (B, C*H*W)``: feature ``c*H*W + s`` stays with channel ``c``.
``add``
    residual add ``a + b``: channel ``c`` belongs to the owner of ``a[c]``.
``cat``
    concatenation along channels: concatenates ownership.
``output``
    the model's result, gathered at the sink.

``layer``, ``add`` and ``input`` nodes are *stages*: the points where a device produces channels.
Every op the graph does not understand stops the run with a :class:`~sim.errors.UserError` naming it.

Example::

    >>> from sim.model.zoo import build_model
    >>> g = FlowGraph.trace(build_model("lenet5"), torch.zeros(1, 1, 32, 32))
    >>> [n for n in g.order if g.kind(n) == "layer"]
    ['conv1', 'conv2', 'fc1', 'fc2', 'fc3']
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from sim.errors import UserError, first_line
from sim.workload.graph import ChannelGraph, Layer, Node, Window

_POINTWISE_MODULES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_POINTWISE_FUNCTIONS = {
    F.relu,
    torch.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.gelu,
    F.silu,
    torch.sigmoid,
    F.sigmoid,
    torch.tanh,
    F.tanh,
    F.hardswish,
    F.hardsigmoid,
    F.dropout,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
}
_POINTWISE_METHODS = {"relu", "sigmoid", "tanh", "contiguous"}
_FLATTEN_METHODS = {"view", "reshape", "flatten"}
_ADD_FUNCTIONS = {operator.add, torch.add, operator.iadd}
SUPPORTED = "conv, linear, batch-norm, activations, pooling, dropout, flatten/view, residual add, cat"


class FlowGraph(ChannelGraph):
    """A :class:`~sim.workload.graph.ChannelGraph` traced from a torch model, which it keeps as ``module``."""

    def __init__(self, module: fx.GraphModule, nodes: Mapping[str, Node], order: list[str]):
        super().__init__(nodes, order)
        self.module = module

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def trace(cls, model: nn.Module, example: torch.Tensor) -> FlowGraph:
        """Trace ``model`` and run it on ``example`` (a batch) to build its channel-flow graph."""
        model = model.eval()
        try:
            gm = fx.symbolic_trace(model)
        except (
            Exception,
            SystemExit,
            KeyboardInterrupt,
        ) as exc:  # a user model's code may call sys.exit()  # fx raises many types; the message is what matters to the user
            raise UserError(f"model.name: torch.fx cannot trace this model ({first_line(exc)})") from None
        try:
            values = _record(gm, example)
        except (
            Exception,
            SystemExit,
            KeyboardInterrupt,
        ) as exc:  # shape mismatches surface as RuntimeError deep inside torch
            given = list(example.shape[1:])
            wanted = _input_channels(gm)
            if wanted is not None and wanted != given[0]:
                raise UserError(
                    f"model.input_shape: {given} gives {given[0]} channel(s) but the model's first layer takes "
                    f"{wanted}; set model.input_shape: {[wanted, *given[1:]]} (and a dataset with {wanted} channels)"
                ) from None
            raise UserError(
                f"model.input_shape: the model fails on input of shape {given} ({first_line(exc)})"
            ) from None
        shapes = {name: tuple(t.shape) for name, t in values.items() if torch.is_tensor(t)}
        modules = dict(gm.named_modules())
        nodes: dict[str, Node] = {}
        order: list[str] = []
        labels: set[str] = set()
        for node in gm.graph.nodes:
            if node.op != "output" and node.name not in shapes:
                continue  # non-tensor helpers such as x.size(0), consumed by a view
            if node.op == "output" and len(_tensor_args(node)) != 1:
                raise UserError("model.name: the model must return one tensor (the logits)")
            kind = _classify(node, modules, shapes)
            args = tuple(a.name for a in _tensor_args(node) if a.name in shapes)
            shape = shapes[args[0] if node.op == "output" else node.name]
            spatial = int(np.prod(shape[2:])) if len(shape) > 2 else 1
            rec = Node(kind, _label(node, kind, labels), shape[1:], shape[1], spatial, len(shape), args)
            rec = replace(rec, window=_window(node, modules))
            if kind == "flatten":
                src = nodes[args[0]]
                if shape[1] != src.channels * src.spatial:
                    raise UserError(f"model.name: '{node.name}' reshapes to {shape}; only flatten(x, 1) is supported")
                rec = replace(rec, channels=src.channels, spatial=src.spatial)
            elif kind in ("pointwise", "output"):
                src = nodes[args[0]]
                width = src.channels * src.features_per_channel
                if kind == "pointwise" and (len(shape) != src.rank or shape[1] != width):
                    raise UserError(f"model.name: '{node.name}' changes the channel count; not a channel-wise op")
                if kind == "output" or src.rank == 2:
                    rec = replace(rec, channels=src.channels, spatial=src.spatial, rank=src.rank)
            elif kind == "cat":
                srcs = [nodes[a] for a in args]
                if len({(s.spatial, s.rank) for s in srcs}) != 1:
                    raise UserError(f"model.name: '{node.name}' concatenates tensors of different spatial sizes")
                rec = replace(rec, channels=sum(s.channels for s in srcs), spatial=srcs[0].spatial)
            elif kind == "add":
                if len(args) != 2 or len({nodes[x].channels for x in args}) != 1:
                    raise UserError(f"model.name: '{node.name}' must add two tensors of equal channel count")
            elif kind == "layer":
                target = str(node.target)
                rec = replace(rec, layer=_layer(target, layer_module(gm, target), nodes[args[0]], rec.spatial))
            nodes[node.name] = rec
            order.append(node.name)
        return cls(gm, nodes, order)

    def activations(self, batch: torch.Tensor, nodes: set[str]) -> dict[str, np.ndarray]:
        """Run the model on ``batch`` and return the values of ``nodes`` as float32 numpy arrays."""
        values = _record(self.module, batch, keep=nodes)
        return {n: values[n].detach().numpy().astype(np.float32, copy=False) for n in nodes}


def layer_module(root: nn.Module, target: str) -> nn.Conv2d | nn.Linear:
    """The ``Conv2d`` or ``Linear`` submodule of ``root`` at path ``target`` (a partitionable layer)."""
    module = root.get_submodule(target)
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        raise TypeError(f"{target} is a {type(module).__name__}, not a Conv2d or Linear")
    return module


def _record(gm: fx.GraphModule, batch: torch.Tensor, keep: set[str] | None = None) -> dict[str, Any]:
    """Run ``gm`` under no_grad, returning every node's value (or only those in ``keep``)."""

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            value = super().run_node(n)
            if keep is None:
                seen[n.name] = value
            elif n.name in keep:
                seen[n.name] = value.clone()  # a later in-place op (ReLU(inplace=True)) must not change it
            return value

    seen: dict[str, Any] = {}
    with torch.no_grad():
        Recorder(gm).run(batch)
    return seen


def _pair(value: Any) -> tuple[int, int]:
    """An int or a pair of ints as ``(rows, columns)``."""
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


_ADAPTIVE = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_WINDOW_FUNCTIONS: dict[Any, tuple[str, ...]] = {
    F.max_pool2d: ("kernel_size", "stride", "padding", "dilation"),
    F.avg_pool2d: ("kernel_size", "stride", "padding"),
}


def _window(node: fx.Node, modules: dict[str, nn.Module]) -> Window | None:
    """The sliding window of a Conv2d or a 2-D pooling op (module or function), else ``None``."""
    if node.op == "call_module":
        mod = modules[str(node.target)]
        if isinstance(mod, _ADAPTIVE):
            return Window(adaptive=True)
        if isinstance(mod, nn.Conv2d):
            kernel, dilation = _pair(mod.kernel_size), _pair(mod.dilation)
            if isinstance(mod.padding, str):  # "valid", or "same": PyTorch pads d*(k-1)//2 before
                pad = (0, 0) if mod.padding == "valid" else tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
                return Window(kernel, _pair(mod.stride), (pad[0], pad[1]), dilation)
            return Window(kernel, _pair(mod.stride), _pair(mod.padding), dilation)
        if isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
            dilation = _pair(getattr(mod, "dilation", 1))
            kernel = _pair(mod.kernel_size)
            stride = kernel if mod.stride is None else _pair(mod.stride)
            return Window(kernel, stride, _pair(mod.padding), dilation)
        return None
    if node.op == "call_function":
        if node.target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
            return Window(adaptive=True)
        names = _WINDOW_FUNCTIONS.get(node.target)
        if names is None:
            return None
        given = dict(zip(names, node.args[1:])) | {k: v for k, v in node.kwargs.items() if k in names}
        kernel = _pair(given["kernel_size"])
        stride = kernel if given.get("stride") in (None, []) else _pair(given["stride"])
        return Window(kernel, stride, _pair(given.get("padding", 0)), _pair(given.get("dilation", 1)))
    return None


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    """fx nodes among ``node``'s positional args, flattening a list argument (torch.cat)."""
    out: list[fx.Node] = []
    for a in node.args:
        if isinstance(a, fx.Node):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, fx.Node))
    return out


def _classify(node: fx.Node, modules: dict[str, nn.Module], shapes: dict[str, tuple[int, ...]]) -> str:
    """The kind of one fx node, or a UserError naming the unsupported op."""
    where = f"at '{node.name}'"
    if node.op == "placeholder":
        return "input"
    if node.op == "output":
        return "output"
    if node.op == "call_module":
        mod = modules[str(node.target)]
        where = f"at '{node.target}'"
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            return "layer"
        if isinstance(mod, _POINTWISE_MODULES):
            return "pointwise"
        if isinstance(mod, nn.Flatten) and mod.start_dim == 1 and mod.end_dim == -1:
            return "flatten"
        what = type(mod).__name__
    elif node.op == "call_function":
        fn = node.target
        if fn in _POINTWISE_FUNCTIONS:
            return "pointwise"
        if fn in _ADD_FUNCTIONS:
            return "add"
        if fn is torch.flatten and (node.args[1:2] == (1,) or node.kwargs.get("start_dim") == 1):
            return "flatten"
        if fn is torch.cat and (node.args[1:2] == (1,) or node.kwargs.get("dim") == 1):
            return "cat"
        what = getattr(fn, "__name__", str(fn))
    elif node.op == "call_method":
        if node.target in _POINTWISE_METHODS:
            return "pointwise"
        if node.target == "add":
            return "add"
        if node.target in _FLATTEN_METHODS and len(shapes[node.name]) == 2:
            return "flatten"
        what = f"Tensor.{node.target}"
    else:
        what = f"{node.op} {node.target}"
    raise UserError(f"model.name: unsupported operation {what} {where}; supported: {SUPPORTED}")


def _label(node: fx.Node, kind: str, taken: set[str]) -> str:
    """A readable, unique name: the module path, or ``<enclosing module>.<op>`` for functions."""
    if node.op == "call_module":
        base = str(node.target)
    elif kind == "input":
        base = "input"
    elif kind == "output":
        base = "output"
    else:
        stack = list(node.meta.get("nn_module_stack", {}).keys())
        op = {"add": "add", "cat": "cat"}.get(kind, node.name.rstrip("_0123456789") or node.name)
        base = f"{stack[-1]}.{op}" if stack else op
    label, k = base, 1
    while label in taken:
        label, k = f"{base}_{k}", k + 1
    taken.add(label)
    return label


def _layer(name: str, mod: nn.Conv2d | nn.Linear, src: Node, out_spatial: int) -> Layer:
    """Describe a Conv2d or Linear module reading a tensor with attributes ``src``."""
    weight = mod.weight.detach()
    channels, spatial = src.channels, src.spatial
    if isinstance(mod, nn.Conv2d):
        if src.rank != 4:
            raise UserError(f"model.name: conv '{name}' reads a flattened tensor; only 4-D inputs are supported")
        out_c, per_group = weight.shape[:2]
        groups = mod.groups
        local = (weight != 0).flatten(2).any(-1).numpy()  # (out, in/groups)
        uses = np.zeros((out_c, channels), dtype=bool)  # filter f of group g reads channels g*per_group + j
        first = (np.arange(out_c) // (out_c // groups)) * per_group  # first input channel of each filter's group
        uses[np.arange(out_c)[:, None], first[:, None] + np.arange(per_group)] = local
        kernel = int(np.prod(weight.shape[2:]))
        return Layer(name, "conv", channels, out_c, spatial, out_spatial, kernel, groups, uses, mod.bias is not None)
    if src.rank != 2:
        raise UserError(f"model.name: linear '{name}' reads a 4-D tensor; flatten it first")
    uses = (weight != 0).reshape(weight.shape[0], channels, spatial).any(-1).numpy()
    return Layer(name, "linear", channels, weight.shape[0], spatial, 1, 1, 1, uses, mod.bias is not None)


def _input_channels(gm: fx.GraphModule) -> int | None:
    """The input channels of the first conv the traced model runs (None when it starts with another op):
    what ``model.input_shape``'s first number must be."""
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op == "call_module":
            module = modules[str(node.target)]
            return module.in_channels if isinstance(module, nn.Conv2d) else None
    return None
