"""The model split over devices, on the torch side: weight shards, partial sums, and a device-by-device run.

A workload plan (:class:`sim.workload.WorkloadPlan`) says who owns which channel and which messages flow.
This module turns it into tensors:

* :func:`held_masks` — which entries of which parameter each device holds (its *shard*):

  - conv / linear ``weight`` under ``exchange: inputs``: the rows of the filters it owns;
  - under ``partial_sums``: for every filter ``f`` using one of its input channels, the weights of ``f``
    on the input channels it owns (a linear layer's input feature ``c*S + s`` belongs to channel ``c``);
  - ``bias`` and the per-channel parameters and buffers of channel-wise modules (batch-norm ``weight``,
    ``bias``, ``running_mean``, ``running_var``): the entries of the channels it owns.

* :func:`partial_sums` — the real per-device partial sums of the layers using partial sums, for sizing
  their messages: device ``i``'s value is ``layer(x masked to i's channels)`` without bias, for every
  filter.
* :func:`execute` — runs the model device by device: each device holds only its shard (every other
  parameter entry is zero), computes only from the channels it owns and the messages it receives per the
  plan (input channels, or partial sums that it adds to its own and its bias), and the sink's assembled
  output is returned. Equal to ``model(x)`` when the plan is complete; a device reading a channel nobody
  sent it raises ``RuntimeError``.

Example::

    >>> out = execute(graph, plan, images)           # doctest: +SKIP
    >>> torch.allclose(out, graph.module(images), atol=1e-5)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from sim.model.flowgraph import FlowGraph, layer_module
from sim.workload.plan import MessagePlan, WorkloadPlan


def held_masks(graph: FlowGraph, plan: WorkloadPlan, device: int) -> dict[str, np.ndarray]:
    """Per parameter or buffer name of ``graph.module`` (``"conv1.weight"``): a bool array of its shape,
    true where ``device`` holds the entry (module docstring). Parameters of no channel (such as
    ``num_batches_tracked``) are left out."""
    masks: dict[str, np.ndarray] = {}
    targets = _module_targets(graph)
    for node in graph.order:
        kind = graph.kind(node)
        if kind not in ("layer", "pointwise") or node not in targets:
            continue
        module = graph.module.get_submodule(targets[node])
        owned = plan.ownership[node] == device
        prefix = targets[node] + "."
        if kind == "layer":
            masks[prefix + "weight"] = _weight_mask(graph, plan, node, device)
            if getattr(module, "bias", None) is not None:
                masks[prefix + "bias"] = owned.copy()
            continue
        width = graph.node(node).channels * graph.node(node).features_per_channel
        per_entry = np.repeat(owned, width // len(owned))
        for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if tensor is None or tensor.ndim == 0:
                continue
            if tensor.ndim != 1 or tensor.shape[0] != width:
                raise ValueError(f"{prefix}{name}: a per-channel parameter of {width} entries was expected")
            masks[prefix + name] = per_entry.copy()
    return masks


def _module_targets(graph: FlowGraph) -> dict[str, str]:
    """fx node name -> path of the module it calls, for every call_module node."""
    return {n.name: str(n.target) for n in graph.module.graph.nodes if n.op == "call_module"}


def _module_of(graph: FlowGraph, node: str) -> nn.Conv2d | nn.Linear:
    """The conv or linear module that layer node ``node`` calls."""
    return layer_module(graph.module, _module_targets(graph)[node])


def _weight_mask(graph: FlowGraph, plan: WorkloadPlan, layer: str, device: int) -> np.ndarray:
    """Which weights of conv/linear ``layer`` ``device`` holds, in the weight's shape."""
    spec = graph.layer(layer)
    weight = _module_of(graph, layer).weight
    if plan.exchange[layer] == "inputs":
        rows = plan.ownership[layer] == device
        return np.broadcast_to(rows.reshape(-1, *[1] * (weight.ndim - 1)), weight.shape).copy()
    owned_in = plan.ownership[plan.layer_input(layer)] == device
    users = np.asarray(spec.uses[:, owned_in].any(axis=1))
    if spec.op == "linear":  # (out, C*S): feature c*S + s belongs to channel c
        cols = np.repeat(owned_in, spec.in_spatial)
        return users[:, None] & cols[None, :]
    per_in, per_out = spec.in_channels // spec.groups, spec.out_channels // spec.groups
    group = np.arange(spec.out_channels) // per_out
    channel = group[:, None] * per_in + np.arange(per_in)[None, :]  # (out, in/groups): input channel
    held = users[:, None] & owned_in[channel]
    return np.broadcast_to(held[:, :, None, None], weight.shape).copy()


def shard_state(graph: FlowGraph, plan: WorkloadPlan, device: int) -> fx.GraphModule:
    """A copy of the traced model in which every parameter entry ``device`` does not hold is zero."""
    module = copy.deepcopy(graph.module)
    state = dict(module.named_parameters()) | dict(module.named_buffers())
    with torch.no_grad():
        for name, mask in held_masks(graph, plan, device).items():
            state[name].mul_(torch.from_numpy(mask).to(state[name].dtype))
    return module


def _layer_call(module: nn.Conv2d | nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """A conv or linear module applied without its bias."""
    if isinstance(module, nn.Linear):
        return F.linear(x, module.weight)
    return module._conv_forward(x, module.weight, None)  # the module's own stride, padding (and mode), groups


def _channel_mask(value: torch.Tensor, keep: np.ndarray) -> torch.Tensor:
    """``value`` (B, C, ...) or flattened (B, C*S) with channels outside ``keep`` (C bools) set to 0."""
    shape = value.shape
    per = value.reshape(shape[0], len(keep), -1)
    return (per * torch.from_numpy(keep).to(value.dtype)[None, :, None]).reshape(shape)


def partial_sums(
    graph: FlowGraph, plan: WorkloadPlan, values: Mapping[str, np.ndarray]
) -> dict[tuple[str, int], np.ndarray]:
    """Device ``i``'s partial sums of every filter of each layer using partial sums, without bias:
    ``{(layer node, i): array shaped like the layer's output}`` for each device that sends some.

    ``values`` holds the input tensor of each such layer (as :meth:`FlowGraph.activations` returns it).
    """
    out: dict[tuple[str, int], np.ndarray] = {}
    senders = {(m.tensor, m.src) for m in plan.messages if m.partial}
    with torch.no_grad():
        for layer, device in sorted(senders):
            module = _module_of(graph, layer)
            tensor = plan.layer_input(layer)
            x, owned = torch.from_numpy(values[tensor]), plan.ownership[tensor] == device
            if getattr(module, "groups", 1) == 1:  # only the owned channels: cost in proportion to them
                out[(layer, device)] = _owned_call(module, x, owned).numpy()
            else:
                out[(layer, device)] = _layer_call(module, _channel_mask(x, owned)).numpy()
    return out


def device_layer_call(
    module: nn.Conv2d | nn.Linear,
    x: torch.Tensor,
    channels: np.ndarray,
    filters: np.ndarray,
    bias: bool,
    groups: int,
) -> Callable[[], torch.Tensor]:
    """One device's part of a conv or linear layer, as a call: the filters ``filters`` (bool per output
    channel) of ``module`` applied to the input channels ``channels`` (bool per input channel) of ``x``
    alone, with the bias when ``bias``; a linear input is (B, C*S), feature ``c*S + s`` belonging to channel
    ``c``. The weights are sliced once, when the call is made. For a grouped conv (``groups``) the device
    computes the groups holding its filters when it has as many filters in each (depthwise does), else the
    whole layer with the other filters zeroed.

    Example::

        >>> conv = nn.Conv2d(4, 6, 3)
        >>> mine = device_layer_call(conv, torch.zeros(1, 4, 8, 8), np.ones(4, bool), np.arange(6) < 2, True, 1)
        >>> tuple(mine().shape)
        (1, 2, 6, 6)
    """
    cin, fout = torch.from_numpy(np.flatnonzero(channels)), torch.from_numpy(np.flatnonzero(filters))
    weight = module.weight.detach()
    b = module.bias.detach()[fout] if bias and module.bias is not None else None
    if isinstance(module, nn.Linear):
        n_channels = len(channels)
        w = weight[fout].reshape(len(fout), n_channels, -1)[:, cin].reshape(len(fout), -1).contiguous()
        per = x.reshape(x.shape[0], n_channels, -1)
        return lambda: F.linear(per.index_select(1, cin).reshape(x.shape[0], -1), w, b)
    assert isinstance(module, nn.Conv2d)
    stride, padding, dilation = module.stride, module.padding, module.dilation
    if groups == 1:
        w = weight[fout][:, cin].contiguous()
        return lambda: F.conv2d(x.index_select(1, cin), w, b, stride, padding, dilation)
    # grouped: the groups holding the filters, if the device has as many filters in each (depthwise does)
    per_in, per_out = module.in_channels // groups, module.out_channels // groups
    held = np.flatnonzero(filters) // per_out
    kept, counts = np.unique(held, return_counts=True)
    if len(set(counts.tolist())) == 1:
        cin = torch.from_numpy(channel_features(kept, per_in))
        w = weight[fout].contiguous()
        return lambda: F.conv2d(x.index_select(1, cin), w, b, stride, padding, dilation, len(kept))
    w = weight * torch.from_numpy(filters).to(weight.dtype)[:, None, None, None]  # uneven: the whole layer
    return lambda: F.conv2d(x, w, b, stride, padding, dilation, groups)


def _owned_call(module: nn.Conv2d | nn.Linear, x: torch.Tensor, owned: np.ndarray) -> torch.Tensor:
    """An ungrouped conv or linear module, without bias, on the input channels ``owned`` (C bools) alone."""
    every_filter = np.ones(module.weight.shape[0], dtype=bool)
    return device_layer_call(module, x, owned, every_filter, bias=False, groups=1)()


def execute(graph: FlowGraph, plan: WorkloadPlan, images: torch.Tensor) -> torch.Tensor:
    """Run the model device by device as the plan splits it, and return the sink's assembled output.

    Raises ``RuntimeError`` when a device must read a channel (or partial sum) it neither owns nor
    received: the message plan is incomplete.
    """
    n = plan.n_devices
    shards = [shard_state(graph, plan, d) for d in range(n)]
    env: list[dict[str, Any]] = [{} for _ in range(n)]  # fx values: tensors, or ints such as x.size(0)
    known: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    deliveries: dict[tuple[str, bool], list[MessagePlan]] = defaultdict(list)  # (tensor, partial) -> messages
    for m in plan.messages:
        deliveries[(m.tensor, m.partial)].append(m)
    with torch.no_grad():
        for node in graph.module.graph.nodes:
            name = node.name
            if name not in graph.graph:  # a non-tensor helper such as x.size(0): every device evaluates it
                for d in range(n):
                    env[d][name] = _evaluate(node, env[d], shards[d])
                continue
            kind = graph.kind(name)
            if kind == "output":
                tensor = graph.output_tensor()
                if not known[plan.sink][tensor].all():
                    raise RuntimeError("the sink does not hold every model output")
                return env[plan.sink][tensor]
            if kind == "layer" and plan.exchange[name] == "partial_sums":
                _run_partial(graph, plan, name, shards, env, known, deliveries[(name, True)])
            else:
                for d in range(n):
                    value, mask = _run_node(graph, plan, node, d, images, env[d], known[d], shards[d])
                    env[d][name], known[d][name] = _channel_mask(value, mask), mask
            for m in deliveries[(name, False)]:
                _deliver(env, known, name, m.src, m.dst, m.channels)
    raise RuntimeError("the traced graph has no output")


def execute_rows(graph: FlowGraph, plan: WorkloadPlan, images: torch.Tensor) -> torch.Tensor:
    """:func:`execute` for a plan with rows-split layers (docs/design.md §3b), element by element: each device holds
    the elements it owns or received (every other element is zero), computes at each stage exactly the
    elements the plan says (:attr:`sim.workload.spatial.SpatialPlacement.computes`) from the full layer
    weights, sends exactly the plan's messages, and the sink's output is returned.

    Raises ``RuntimeError`` when a device must read an element it neither computed nor received, or sends
    one it does not hold.
    """
    sp, n = plan.spatial, plan.n_devices
    if sp is None:
        raise ValueError("not a rows plan; use execute")
    env: list[dict[str, Any]] = [{} for _ in range(n)]
    known: list[dict[str, np.ndarray]] = [{} for _ in range(n)]  # bool (C, S) per tensor
    deliveries: dict[str, list[MessagePlan]] = defaultdict(list)
    for m in plan.messages:
        deliveries[m.tensor].append(m)
    stages = set(sp.stages)
    with torch.no_grad():
        for node in graph.module.graph.nodes:
            name = node.name
            if name not in graph.graph:  # a non-tensor helper such as x.size(0)
                for d in range(n):
                    env[d][name] = _evaluate(node, env[d], graph.module)
                continue
            kind, args = graph.kind(name), graph.args(name)
            if kind == "output":
                tensor = graph.output_tensor()
                if not known[plan.sink][tensor].all():
                    raise RuntimeError("the sink does not hold every model output")
                return env[plan.sink][tensor]
            for d in range(n):
                if kind == "input":
                    mask = sp.owner[name] == d
                    value = images.clone()
                elif name in stages:
                    for a in dict.fromkeys(args):
                        lacking = sp.needs[a][name][d] & ~known[d][a]
                        if lacking.any():
                            raise RuntimeError(f"device {d} lacks {int(lacking.sum())} elements of {a} for {name}")
                    mask = sp.computes[name][d]
                    value = _evaluate(node, env[d], graph.module)
                elif kind == "cat":
                    mask = np.concatenate([known[d][a] for a in args])
                    value = _evaluate(node, env[d], graph.module)
                else:  # channel-wise ops (a pool of whole channels: a channel it holds whole), flatten
                    held = known[d][args[0]]
                    spatial = graph.node(name).spatial
                    mask = held if held.shape[1] == spatial else np.repeat(held.all(1, keepdims=True), spatial, 1)
                    value = _evaluate(node, env[d], graph.module)
                env[d][name], known[d][name] = _element_mask(value, mask), mask
            for m in deliveries[name]:
                positions = np.arange(graph.node(name).spatial) if m.positions is None else m.positions
                block = np.zeros_like(known[m.src][name])
                block[np.ix_(m.channels, positions)] = True
                if (block & ~known[m.src][name]).any():
                    raise RuntimeError(f"device {m.src} sends elements of {name} it does not hold")
                keep = torch.from_numpy(block)
                shape = env[m.dst][name].shape
                dst = env[m.dst][name].reshape(shape[0], *block.shape)
                src = env[m.src][name].reshape(shape[0], *block.shape)
                env[m.dst][name] = torch.where(keep, src, dst).reshape(shape)
                known[m.dst][name] = known[m.dst][name] | block
    raise RuntimeError("the traced graph has no output")


def _element_mask(value: torch.Tensor, keep: np.ndarray) -> torch.Tensor:
    """``value`` (B, C, ...) with the elements outside ``keep`` (bool (C, S)) set to 0."""
    shape = value.shape
    per = value.reshape(shape[0], *keep.shape)
    return (per * torch.from_numpy(keep).to(value.dtype)).reshape(shape)


def _evaluate(node: fx.Node, env: dict[str, Any], module: fx.GraphModule) -> Any:
    """One fx node on one device's values."""
    args = fx.node.map_arg(node.args, lambda a: env[a.name])
    kwargs = fx.node.map_arg(node.kwargs, lambda a: env[a.name])
    target = node.target
    if node.op == "call_module":
        return module.get_submodule(str(target))(*args, **kwargs)
    if node.op == "call_function" and callable(target):
        return target(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], str(target))(*args[1:], **kwargs)
    if node.op == "get_attr":
        return module.get_parameter(str(target))
    raise RuntimeError(f"cannot run fx node {node.name} ({node.op})")


def _run_node(
    graph: FlowGraph,
    plan: WorkloadPlan,
    node: fx.Node,
    d: int,
    images: torch.Tensor,
    env: dict[str, Any],
    known: dict[str, np.ndarray],
    module: fx.GraphModule,
) -> tuple[torch.Tensor, np.ndarray]:
    """Device ``d``'s value of one tensor node and the channels of it that it holds."""
    name, kind = node.name, graph.kind(node.name)
    args = graph.args(name)
    own = plan.ownership[name] == d
    if kind == "input":  # each device holds the image channels it owns (all on the source by default)
        return images.clone(), own
    if kind == "layer":
        spec = graph.layer(name)
        missing = spec.uses[own].any(axis=0) & ~known[args[0]]
        if missing.any():
            raise RuntimeError(f"device {d} lacks input channels {np.flatnonzero(missing).tolist()} of {name}")
        return _evaluate(node, env, module), own
    if kind == "add":
        for a in args:
            if (own & ~known[a]).any():
                raise RuntimeError(f"device {d} lacks operand {a} of {name} on channels it owns")
        return _evaluate(node, env, module), own
    if kind == "cat":
        return _evaluate(node, env, module), np.concatenate([known[a] for a in args])
    return _evaluate(node, env, module), known[args[0]]  # pointwise, flatten


def _run_partial(
    graph: FlowGraph,
    plan: WorkloadPlan,
    layer: str,
    shards: list[fx.GraphModule],
    env: list[dict[str, Any]],
    known: list[dict[str, np.ndarray]],
    messages: list[MessagePlan],
) -> None:
    """A layer using partial sums: every device convolves the channels it owns with the weights it holds,
    sends the partial sums of other devices' filters, and adds what it receives to its own and its bias."""
    tensor = plan.layer_input(layer)
    target = _module_targets(graph)[layer]
    spec = graph.layer(layer)
    parts = []
    for d, shard in enumerate(shards):
        own_in = (plan.ownership[tensor] == d) & spec.uses.any(axis=0)
        if (own_in & ~known[d][tensor]).any():
            raise RuntimeError(f"device {d} does not hold its own input channels of {layer}")
        x = _channel_mask(env[d][tensor], own_in)
        parts.append(_layer_call(layer_module(shard, target), x))
    for d, shard in enumerate(shards):
        own = plan.ownership[layer] == d
        total = _channel_mask(parts[d], own)  # its own partial sums of its own filters
        for m in messages:
            if m.dst == d:
                keep = np.zeros(len(own), dtype=bool)
                keep[m.channels] = True
                total = total + _channel_mask(parts[m.src], keep)
        bias = layer_module(shard, target).bias
        if bias is not None:
            total = total + bias.reshape(1, -1, *[1] * (total.ndim - 2))
        env[d][layer], known[d][layer] = _channel_mask(total, own), own


def _deliver(
    env: list[dict[str, Any]],
    known: list[dict[str, np.ndarray]],
    tensor: str,
    src: int,
    dst: int,
    channels: np.ndarray,
) -> None:
    """Copy ``channels`` of ``tensor`` from device ``src`` to device ``dst``."""
    if not known[src][tensor][channels].all():
        raise RuntimeError(f"device {src} sends channels of {tensor} it does not hold")
    value = env[dst][tensor].clone()
    shape = value.shape
    per = value.reshape(shape[0], len(known[dst][tensor]), -1)
    per[:, channels] = env[src][tensor].reshape(per.shape)[:, channels]
    env[dst][tensor] = per.reshape(shape)
    mask = known[dst][tensor].copy()
    mask[channels] = True
    known[dst][tensor] = mask


def frame_values(
    graph: FlowGraph,
    plan: WorkloadPlan,
    images: Sequence[torch.Tensor],
    every_layer_input: bool = False,
    cache: Sequence[dict[str, np.ndarray]] | None = None,
) -> tuple[list[dict[str, np.ndarray]], list[dict[tuple[str, int], np.ndarray]]]:
    """Per frame: the values of the tensors that cross the network (plus every layer's input when
    ``every_layer_input``, as :func:`sim.workload.choose_exchange` needs) and the plan's partial sums.

    ``cache`` (one dict per frame, tensor -> value of the unsplit model) is read first and filled with
    what it lacks, so sizing many partitions of one model (``dsim optimize``) runs the model once per
    frame for each tensor."""
    tensors = plan.tensors() | {plan.layer_input(n) for n in plan.partial_layers()}
    if every_layer_input:
        tensors |= {plan.layer_input(n) for n in plan.exchange}
    if cache is not None:
        for x, held in zip(images, cache):
            missing = tensors - held.keys()
            if missing:
                held.update(graph.activations(x, missing))
        frames = [{t: held[t] for t in tensors} for held in cache]
    else:
        frames = [graph.activations(x, tensors) if tensors else {} for x in images]  # one device: nothing crosses
    return frames, [partial_sums(graph, plan, values) for values in frames]


# -- the per-device layer kernel ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerShard:
    """A conv or linear layer as one device computes it (``exchange: inputs``): its ``filters`` (output
    channels it owns, ascending) from the input channels ``inputs`` (ascending).

    ``needed`` are the input channels the kept filters use (non-zero weights): what the device must hold.
    ``inputs`` is what the call reads, ``needed`` itself for an ungrouped layer; for a grouped conv it is
    every channel of the groups holding the filters (zeros are fine where not ``needed``: their weights
    are zero), or every input channel when the filters are spread unevenly over groups, in which case the
    call computes all filters and ``outputs`` (positions in its output) keeps the owned ones. A linear
    layer's input is flattened: channel ``c`` is features ``c*in_spatial ... (c+1)*in_spatial - 1``.

    Example: filters 0 and 1 of a 3x3 conv with 4 input channels, all used::

        >>> conv = nn.Conv2d(4, 8, 3, padding=1)
        >>> shard = layer_shard(conv, np.ones((8, 4), dtype=bool), np.array([0, 1]))
        >>> tuple(run_shard(shard, torch.ones(1, 4, 5, 5)).shape)
        (1, 2, 5, 5)
    """

    op: str  # "conv" or "linear"
    filters: np.ndarray
    needed: np.ndarray
    inputs: np.ndarray
    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: tuple[int, ...] = (1, 1)
    padding: Any = (0, 0)
    dilation: tuple[int, ...] = (1, 1)
    groups: int = 1
    outputs: torch.Tensor | None = None  # uneven grouped conv: positions of the filters in the call's output


def layer_shard(
    module: nn.Conv2d | nn.Linear, uses: np.ndarray, filters: np.ndarray, in_spatial: int = 1, bias: bool = True
) -> LayerShard:
    """The shard of ``module`` that computes ``filters`` (indices, ascending); ``uses[f, c]`` (bool, filters x
    input channels) says which input channels each filter reads (:class:`sim.workload.graph.Layer`).
    ``bias``: add the filters' bias (false for partial sums)."""
    filters = np.asarray(filters, dtype=np.int64)
    rows = torch.from_numpy(filters)
    needed = np.flatnonzero(uses[filters].any(axis=0)) if len(filters) else np.zeros(0, dtype=np.int64)
    weight = module.weight.detach()
    b = module.bias.detach()[rows].clone() if bias and module.bias is not None else None
    if isinstance(module, nn.Linear):
        cols = torch.from_numpy(channel_features(needed, in_spatial))
        return LayerShard("linear", filters, needed, needed, weight[rows][:, cols].contiguous(), b)
    conv = dict(stride=tuple(module.stride), padding=module.padding, dilation=tuple(module.dilation))
    if module.groups == 1 or not len(filters):
        w = weight[rows][:, torch.from_numpy(needed)].contiguous()
        return LayerShard("conv", filters, needed, needed, w, b, **conv)  # type: ignore[arg-type]
    per_in, per_out = module.in_channels // module.groups, module.out_channels // module.groups
    kept, counts = np.unique(filters // per_out, return_counts=True)
    if len(set(counts.tolist())) <= 1:  # as many filters in every group it touches (depthwise does)
        inputs = (kept[:, None] * per_in + np.arange(per_in)[None, :]).ravel()
        return LayerShard(
            "conv",
            filters,
            needed,
            inputs,
            weight[rows].contiguous(),
            b,
            groups=len(kept),
            **conv,  # type: ignore[arg-type]
        )
    full_bias = module.bias.detach().clone() if bias and module.bias is not None else None
    return LayerShard(
        "conv", filters, needed, np.arange(module.in_channels), weight.clone(), full_bias,
        groups=module.groups, outputs=rows, **conv,  # type: ignore[arg-type]
    )  # fmt: skip


def run_shard(shard: LayerShard, x: torch.Tensor, pad: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """The shard's output, ``(B, filters, H, W)`` or ``(B, filters)``, from ``x`` holding the channels
    ``shard.inputs`` in order (``(B, inputs, H, W)``, or flattened ``(B, inputs * in_spatial)``).

    With ``pad`` (a rows split, docs/design.md §3b), ``x`` is the block of input rows and columns that a
    block of output positions reads and ``pad`` the zero padding ``(left, right, top, bottom)`` it gets at
    the image border (:func:`sim.workload.spatial.window_crop`); the output is that block alone:

    >>> conv = nn.Conv2d(1, 1, 3, padding=1)
    >>> x = torch.randn(1, 1, 4, 4)
    >>> shard = layer_shard(conv, np.ones((1, 1), dtype=bool), np.array([0]))
    >>> top = run_shard(shard, x[:, :, :3], (1, 1, 1, 0))   # output rows 0-1 read input rows 0-2
    >>> torch.allclose(top, conv(x)[:, :, :2])
    True
    """
    if shard.op == "linear":
        return F.linear(x, shard.weight, shard.bias)
    if pad is not None:
        x = F.pad(x, pad)
    padding = 0 if pad is not None else shard.padding
    out = F.conv2d(x, shard.weight, shard.bias, shard.stride, padding, shard.dilation, shard.groups)
    return out if shard.outputs is None else out.index_select(1, shard.outputs)


def channel_features(channels: np.ndarray, per_channel: int) -> np.ndarray:
    """The features of ``channels`` of a flattened tensor with ``per_channel`` features per channel.

    >>> channel_features(np.array([0, 2]), 3).tolist()
    [0, 1, 2, 6, 7, 8]
    """
    return (np.asarray(channels)[:, None] * per_channel + np.arange(per_channel)[None, :]).ravel()
