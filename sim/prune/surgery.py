"""Physical channel removal: the smaller model that structured pruning describes.

Given the kept output channels of the pruned layers (from :func:`sim.prune.structured.apply`, after
:func:`sim.prune.structured.remove_masks`), :func:`shrink` returns a copy of the model in which

* every pruned conv / linear layer keeps only those filters (weights and bias),
* the batch-norms that follow them keep only those entries (weight, bias, running statistics),
* every consumer keeps only the matching input channels (a linear after a flatten keeps the features
  ``c*H*W .. (c+1)*H*W-1`` of each kept channel ``c``), and a depthwise conv keeps its channels and groups.

The channels of a tensor follow from the flow graph of the *original* model: a layer's output carries its
kept channels; batch-norm, activations, pooling and flattens keep them; a residual add carries those of its
operands (a residual stream is pruned as one group, so both agree). With every removed channel's filter,
bias and batch-norm entries masked to zero, the smaller model computes the same function as the masked one.

Example::

    >>> keep = prune.apply(model, graph, spec, seed=0)          # doctest: +SKIP
    >>> small = shrink(prune.remove_masks(model), graph, keep)   # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from sim.errors import UserError
from sim.model.flowgraph import FlowGraph
from sim.model.shards import channel_features
from sim.prune.structured import is_depthwise


def kept_channels(graph: FlowGraph, keep: Mapping[str, np.ndarray]) -> dict[str, np.ndarray | None]:
    """For every tensor node: the kept channel indices of the original tensor, or None when all are kept."""
    kept: dict[str, np.ndarray | None] = {}
    for node in graph.order:
        kind, args = graph.kind(node), graph.args(node)
        if kind in ("input", "cat", "output"):
            kept[node] = None
            if kind == "cat" and any(kept[a] is not None for a in args):
                raise UserError(
                    f"prune: '{graph.label(node)}' concatenates pruned channels; add the layers "
                    "feeding it to prune.ignored_layers"
                )
        elif kind == "layer":
            chosen = keep.get(graph.label(node))
            kept[node] = None if chosen is None else np.asarray(chosen, dtype=np.int64)
        elif kind == "add":
            a, b = kept[args[0]], kept[args[1]]
            if (a is None) != (b is None) or (a is not None and b is not None and not np.array_equal(a, b)):
                raise UserError(
                    f"prune: the operands of '{graph.label(node)}' keep different channels; "
                    "prune a residual stream as one group"
                )
            kept[node] = a
        else:  # pointwise, flatten
            kept[node] = kept[args[0]]
    return kept


def _set(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Replace a parameter (keeping ``requires_grad``) or a buffer with ``value``."""
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(value.detach().clone(), requires_grad=old.requires_grad))
    else:
        setattr(module, name, value.detach().clone())


def prune_conv_out_channels(conv: nn.Conv2d, idx: torch.Tensor) -> None:
    """Keep filters ``idx`` of ``conv`` (weight rows and bias); a depthwise conv keeps those channels."""
    depthwise = is_depthwise(conv.groups, conv.in_channels, conv.out_channels)
    _set(conv, "weight", conv.weight[idx])
    if conv.bias is not None:
        _set(conv, "bias", conv.bias[idx])
    conv.out_channels = len(idx)
    if depthwise:
        conv.in_channels = conv.groups = len(idx)


def prune_conv_in_channels(conv: nn.Conv2d, idx: torch.Tensor) -> None:
    """Keep input channels ``idx`` of an ungrouped ``conv`` (depthwise convs follow their filters)."""
    if conv.groups == 1:
        _set(conv, "weight", conv.weight[:, idx])
        conv.in_channels = len(idx)


def prune_linear_out_channels(linear: nn.Linear, idx: torch.Tensor) -> None:
    """Keep neurons ``idx`` of ``linear``."""
    _set(linear, "weight", linear.weight[idx])
    if linear.bias is not None:
        _set(linear, "bias", linear.bias[idx])
    linear.out_features = len(idx)


def prune_linear_in_channels(linear: nn.Linear, idx: torch.Tensor) -> None:
    """Keep input features ``idx`` of ``linear``."""
    _set(linear, "weight", linear.weight[:, idx])
    linear.in_features = len(idx)


def prune_batchnorm(bn: nn.modules.batchnorm._BatchNorm, idx: torch.Tensor) -> None:
    """Keep entries ``idx`` of a batch-norm: weight, bias and running statistics."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        if getattr(bn, name, None) is not None:
            _set(bn, name, getattr(bn, name)[idx])
    bn.num_features = len(idx)


def shrink(model: nn.Module, graph: FlowGraph, keep: Mapping[str, np.ndarray]) -> nn.Module:
    """A copy of ``model`` (traced as ``graph``, masks removed) without the channels ``keep`` drops.

    ``keep`` maps layer names to kept output-channel indices; layers not named keep all filters.
    """
    kept = kept_channels(graph, keep)
    small = copy.deepcopy(model)
    fx_nodes = {n.name: n for n in graph.module.graph.nodes}
    done: set[str] = set()
    for node in graph.order:
        fx_node = fx_nodes[node]
        if fx_node.op != "call_module" or fx_node.target in done:
            continue
        kind = graph.kind(node)
        module = small.get_submodule(str(fx_node.target))
        source = graph.args(node)[0]
        per_channel = graph.node(source).features_per_channel
        if kind == "layer":
            out_idx, in_idx = kept[node], kept[source]
            if isinstance(module, nn.Conv2d):
                if in_idx is not None:
                    prune_conv_in_channels(module, torch.as_tensor(in_idx))
                if out_idx is not None:
                    prune_conv_out_channels(module, torch.as_tensor(out_idx))
            elif isinstance(module, nn.Linear):
                if in_idx is not None:
                    prune_linear_in_channels(
                        module, torch.as_tensor(channel_features(in_idx, per_channel), dtype=torch.long)
                    )
                if out_idx is not None:
                    prune_linear_out_channels(module, torch.as_tensor(out_idx))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and (idx := kept[node]) is not None:
            prune_batchnorm(module, torch.as_tensor(channel_features(idx, per_channel), dtype=torch.long))
        done.add(str(fx_node.target))
    return small


def slice_partition(parts: Mapping[str, np.ndarray], keep: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The partition of the smaller model: each pruned layer's owner array indexed by its kept channels."""
    return {name: np.asarray(owner)[keep[name]] if name in keep else np.asarray(owner) for name, owner in parts.items()}
