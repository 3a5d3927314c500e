"""Pruning on top of :mod:`torch.nn.utils.prune`: structured (whole filters, dim 0) and unstructured.

Methods (``prune.method`` in a scenario):

``ln_structured``
    per layer, remove the ``amount`` of filters with the smallest Ln norm (``prune.ln_structured``, dim 0).
``random_structured``
    per layer, remove ``amount`` of the filters at random (``prune.random_structured``, dim 0, seeded).
``comm_structured``
    communication-aware: rank every filter of every prunable layer together by
    ``norm / mean norm of its layer - lambda_comm * bytes saved / mean bytes saved`` and remove the lowest
    ``amount`` of all filters (at most ``max_layer_amount`` of any layer). *Bytes saved* are the dense
    bytes per image of every message that carries the channel under the scenario's partition, each
    weighted by the hop count of its route (:func:`bytes_saved`): a removed channel is never computed or
    sent.
``l1_unstructured`` / ``random_unstructured``
    per layer, zero the ``amount`` of weights with the smallest magnitude / at random.
``global_unstructured``
    zero the ``amount`` of all conv and linear weights with the smallest magnitude, ranked together.

Structured pruning works on **channel groups**: layers whose output channels are one channel space
(the layers of a residual stream, found with :func:`sim.workload.graph.residual_groups`, and a depthwise
conv with the layer that feeds it) are pruned together, keeping the same channels. Groups that hold the
model's output, feed a ``cat`` or a grouped (non-depthwise) conv, or touch the input image are not pruned.

``torch.nn.utils.prune`` masks only the weight, so a masked filter would still emit its bias or its
batch-norm shift. Here the bias and the following batch-norm's weight and bias of every pruned channel
are masked too (``prune.custom_from_mask``), so the masked model computes exactly the function of the
physically smaller one (:mod:`sim.prune.surgery`) in eval and in train mode. Call :func:`remove_masks` before
saving or surgery.

Example::

    >>> from sim.model.flowgraph import FlowGraph
    >>> from sim.config.schema import PruneSpec
    >>> from sim.model.zoo import build_model
    >>> model = build_model("lenet5")
    >>> graph = FlowGraph.trace(model, torch.zeros(1, 1, 32, 32))
    >>> keep = apply(model, graph, PruneSpec(method="ln_structured", amount=0.5), seed=0)
    >>> len(keep["conv2"])
    8
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch
import torch.nn.utils.prune as tprune
from torch import nn

from sim.config.schema import PruneSpec
from sim.config.vocab import STRUCTURED, UNSTRUCTURED
from sim.errors import UserError
from sim.model.flowgraph import FlowGraph, layer_module
from sim.workload.graph import residual_groups, stage_of
from sim.workload.plan import WorkloadPlan
from sim.workload.types import FLOAT32_BYTES  # bytes saved are counted as dense float32 values

Hops = Callable[[int, int], int]  # (src device, dst device) -> links on the route


@dataclass(frozen=True)
class ChannelGroup:
    """Output channels shared by ``layers``: pruning channel ``c`` removes filter ``c`` of every one.

    ``stages`` are the graph nodes producing these channels (the layers and any residual adds);
    ``prunable`` is false when the channels cannot be removed (model output, image, cat, grouped conv).
    """

    layers: tuple[str, ...]
    stages: tuple[str, ...]
    channels: int
    prunable: bool


def is_depthwise(layer_groups: int, in_channels: int, out_channels: int) -> bool:
    """A conv whose every filter reads exactly its own input channel."""
    return layer_groups > 1 and layer_groups == in_channels == out_channels


def channel_groups(graph: FlowGraph) -> list[ChannelGroup]:
    """The channel groups of a traced model, in topological order of their first layer."""
    node_of = {graph.label(n): n for n in graph.order if graph.kind(n) == "layer"}
    ties: nx.Graph[str] = nx.Graph()
    ties.add_nodes_from(node_of.values())
    blocked = {graph.input_node(), stage_of(graph, graph.output_tensor())}
    for names in residual_groups(graph):
        nx.add_path(ties, [node_of[name] for name in names])
    for node in graph.order:
        kind, args = graph.kind(node), graph.args(node)
        if kind == "add":
            ties.add_edge(node, stage_of(graph, args[0]))
        elif kind == "cat":
            blocked.update(stage_of(graph, a) for a in args)
        elif kind == "layer":
            layer = graph.layer(node)
            if is_depthwise(layer.groups, layer.in_channels, layer.out_channels):
                ties.add_edge(node, stage_of(graph, args[0]))
            elif layer.groups > 1:
                blocked.update((node, stage_of(graph, args[0])))
    rank = {n: i for i, n in enumerate(graph.order)}
    groups = []
    for component in nx.connected_components(ties):
        stages = sorted((n for n in component if graph.kind(n) in ("layer", "add")), key=rank.__getitem__)
        layers = tuple(graph.label(n) for n in stages if graph.kind(n) == "layer")
        if layers:
            channels = graph.node(stages[0]).channels
            groups.append(ChannelGroup(layers, tuple(stages), channels, not (component & blocked)))
    return sorted(groups, key=lambda g: rank[g.stages[0]])


def layer_names(model: nn.Module) -> list[str]:
    """Module paths of the model's conv and linear layers (the layer names used in scenarios)."""
    return [name for name, mod in model.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]


def check_layer_names(spec: PruneSpec, names: list[str]) -> None:
    """Refuse ``prune.layers`` / ``prune.ignored_layers`` entries that name no layer of the model."""
    for field, given in (("prune.layers", list(spec.layers)), ("prune.ignored_layers", spec.ignored_layers)):
        unknown = [n for n in given if n not in names]
        if unknown:
            raise UserError(f"{field}: unknown layer '{unknown[0]}'; layers are {', '.join(names)}")


def batchnorms(graph: FlowGraph, stages: tuple[str, ...]) -> list[tuple[str, int]]:
    """Batch-norm modules applied to the channels of ``stages``: ``(module path, features per channel)``.

    Found by walking from each stage through the channel-wise ops (and flattens) that follow it.
    """
    fx_nodes = {n.name: n for n in graph.module.graph.nodes}
    modules = dict(graph.module.named_modules())
    out, seen = [], set()
    todo = list(stages)
    while todo:
        node = todo.pop(0)
        for nxt in graph.consumers(node):
            if graph.kind(nxt) not in ("pointwise", "flatten") or nxt in seen:
                continue
            seen.add(nxt)
            todo.append(nxt)
            fx_node = fx_nodes[nxt]
            if fx_node.op == "call_module" and isinstance(modules[fx_node.target], nn.modules.batchnorm._BatchNorm):
                out.append((str(fx_node.target), graph.node(nxt).features_per_channel))
    return out


def bytes_saved(plan: WorkloadPlan, group: ChannelGroup, hops: Hops) -> np.ndarray:
    """Hop-weighted dense bytes per image that removing each channel of ``group`` saves under ``plan``.

    Every message of the plan carrying channel ``c`` of a tensor produced by the group's stages (through
    channel-wise ops and flattens) contributes ``spatial * 4 bytes * hops(src, dst)``.
    """
    g, stages = plan.graph, set(group.stages)
    saved = np.zeros(group.channels)
    for m in plan.messages:
        if stage_of(g, m.tensor) in stages:
            np.add.at(saved, m.channels, g.node(m.tensor).spatial * FLOAT32_BYTES * hops(m.src, m.dst))
    return saved


def _row_mask(param: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """A mask shaped like ``param`` that keeps the rows (dim 0) where ``keep`` is true."""
    return keep.to(param.dtype).view(-1, *([1] * (param.dim() - 1))).expand_as(param).clone()


def _mask(module: nn.Module, name: str, keep: torch.Tensor) -> None:
    """Mask rows of ``module.<name>`` with ``prune.custom_from_mask`` unless the library already did."""
    if getattr(module, name, None) is not None and not hasattr(module, f"{name}_mask"):
        tprune.custom_from_mask(module, name, _row_mask(getattr(module, name), keep))


def _mask_group(model: nn.Module, graph: FlowGraph, group: ChannelGroup, keep: torch.Tensor) -> None:
    """Mask the group's filters, their biases and the batch-norm entries of the removed channels."""
    for name in group.layers:
        module = model.get_submodule(name)
        _mask(module, "weight", keep)
        _mask(module, "bias", keep)
    for path, per_channel in batchnorms(graph, group.stages):
        bn = model.get_submodule(path)
        if not bn.affine:
            raise UserError(
                f"prune.method: batch-norm '{path}' has no affine weight, so its pruned channels "
                f"cannot be zeroed; add '{group.layers[0]}' to prune.ignored_layers"
            )
        expanded = keep.repeat_interleave(per_channel)
        _mask(bn, "weight", expanded)
        _mask(bn, "bias", expanded)


def _group_amount(spec: PruneSpec, group: ChannelGroup) -> float:
    """The amount of a group: a per-layer amount given for its layers, else ``spec.amount``."""
    given = {spec.layers[n] for n in group.layers if n in spec.layers}
    if len(given) > 1:
        raise UserError(
            f"prune.layers: {', '.join(group.layers)} share their channels (residual stream or "
            "depthwise conv); give them one amount"
        )
    return given.pop() if given else spec.amount


def _count(amount: float, channels: int) -> int:
    """Filters to remove: ``round(amount * channels)`` (as torch rounds), keeping at least one."""
    return max(0, min(round(amount * channels), channels - 1))


def _group_norms(model: nn.Module, group: ChannelGroup, n: float) -> torch.Tensor:
    """Ln norm of each channel's filters over all layers of the group (one long row per channel)."""
    total = torch.zeros(group.channels)
    for name in group.layers:
        weight = layer_module(model, name).weight.detach()
        total += weight.flatten(1).abs().pow(n).sum(1)
    return total.pow(1.0 / n)


def _structured(
    model: nn.Module,
    graph: FlowGraph,
    spec: PruneSpec,
    groups: list[ChannelGroup],
    plan: WorkloadPlan | None,
    hops: Hops | None,
) -> dict[str, np.ndarray]:
    """Mask whole channels of ``groups``; return the kept channel indices of every pruned layer."""
    if spec.method == "comm_structured":
        removed = _comm_choice(model, spec, groups, plan, hops)
    else:
        removed = {}
        for gi, group in enumerate(groups):
            k = _count(_group_amount(spec, group), group.channels)
            if k == 0:
                continue
            leader = layer_module(model, group.layers[0])
            if spec.method == "random_structured":
                tprune.random_structured(leader, "weight", amount=k, dim=0)
            elif len(group.layers) == 1:
                tprune.ln_structured(leader, "weight", amount=k, n=spec.norm, dim=0)
            else:  # the group's joint norm, broadcast over the leader's rows, ranks its channels
                scores = _group_norms(model, group, spec.norm).view(-1, *([1] * (leader.weight.dim() - 1)))
                tprune.ln_structured(
                    leader, "weight", amount=k, n=1, dim=0, importance_scores=scores.expand_as(leader.weight)
                )
            mask = leader.get_buffer("weight_mask")  # added by torch.nn.utils.prune
            removed[gi] = np.flatnonzero(mask.flatten(1).sum(1).numpy() == 0)
    keep: dict[str, np.ndarray] = {}
    for gi, gone in removed.items():
        group = groups[gi]
        kept = torch.ones(group.channels, dtype=torch.bool)
        kept[torch.as_tensor(gone, dtype=torch.long)] = False
        _mask_group(model, graph, group, kept)
        keep.update({name: np.flatnonzero(kept.numpy()) for name in group.layers})
    return keep


def _comm_choice(
    model: nn.Module, spec: PruneSpec, groups: list[ChannelGroup], plan: WorkloadPlan | None, hops: Hops | None
) -> dict[int, np.ndarray]:
    """The channels comm_structured removes from each group (see the module docstring)."""
    if plan is None or hops is None:
        raise ValueError("comm_structured needs the workload plan of the unpruned model and hop counts")
    norms = [_group_norms(model, g, spec.norm).numpy() for g in groups]
    saved = [bytes_saved(plan, g, hops) for g in groups]
    mean_saved = float(np.concatenate(saved).mean()) if groups else 0.0
    rows = []  # (score, group, channel)
    for gi, (norm, cost) in enumerate(zip(norms, saved)):
        importance = norm / norm.mean() if norm.mean() > 0 else norm
        traffic = cost / mean_saved if mean_saved > 0 else cost * 0
        rows += [(float(s), gi, c) for c, s in enumerate(importance - spec.lambda_comm * traffic)]
    total = round(spec.amount * sum(g.channels for g in groups))
    caps = [_count(spec.max_layer_amount, g.channels) for g in groups]
    chosen: dict[int, list[int]] = {}
    for _score, gi, c in sorted(rows):
        if total == 0:
            break
        if len(chosen.get(gi, [])) < caps[gi]:
            chosen.setdefault(gi, []).append(c)
            total -= 1
    return {gi: np.array(sorted(cs)) for gi, cs in chosen.items()}


def _unstructured(model: nn.Module, spec: PruneSpec, names: list[str]) -> None:
    """Zero single weights of the layers ``names`` with the scenario's method."""
    if spec.method == "global_unstructured":
        params = [(model.get_submodule(n), "weight") for n in names]
        if params and spec.amount > 0:
            tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=spec.amount)
        return
    for name in names:
        amount = spec.layers.get(name, spec.amount)
        if amount <= 0:
            continue
        if spec.method == "l1_unstructured":
            tprune.l1_unstructured(model.get_submodule(name), "weight", amount=amount)
        else:
            tprune.random_unstructured(model.get_submodule(name), "weight", amount=amount)


def apply(
    model: nn.Module,
    graph: FlowGraph,
    spec: PruneSpec,
    seed: int,
    plan: WorkloadPlan | None = None,
    hops: Hops | None = None,
) -> dict[str, np.ndarray]:
    """Install the pruning masks of ``spec`` on ``model`` (traced as ``graph``), in place.

    Returns, for structured methods, the kept output-channel indices of every pruned layer (empty for
    unstructured ones). ``plan`` (the unpruned model's workload plan) and ``hops`` are needed by
    ``comm_structured``. Random methods draw from torch's RNG seeded with ``seed`` inside
    ``torch.random.fork_rng``, so the global random state is left untouched.
    """
    names = layer_names(model)
    check_layer_names(spec, names)
    ignored = set(spec.ignored_layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.method in STRUCTURED:
            groups = [g for g in channel_groups(graph) if g.prunable and not ignored & set(g.layers)]
            prunable = {name for g in groups for name in g.layers}
            stuck = [name for name, amount in spec.layers.items() if amount > 0 and name not in prunable]
            if stuck:
                raise UserError(
                    f"prune.layers: the filters of '{stuck[0]}' cannot be removed (it is ignored, "
                    "produces the model output, or feeds a cat or grouped conv); drop it from layers"
                )
            return _structured(model, graph, spec, groups, plan, hops)
        if spec.method in UNSTRUCTURED:
            _unstructured(model, spec, [n for n in names if n not in ignored])
            return {}
    return {}  # method "none" (the scenario schema accepts only sim.config.vocab.PRUNE_METHODS)


def remove_masks(model: nn.Module) -> nn.Module:
    """Bake every pruning mask into its parameter (``prune.remove``), leaving plain parameters."""
    for module in model.modules():
        for name in ("weight", "bias"):
            if hasattr(module, f"{name}_mask"):
                tprune.remove(module, name)
    return model
