"""Kernel pruning, ADMM pruning and CaP's communication-aware ADMM pruning (CaP, INFOCOM 2023).

CaP ("Communication-Aware DNN Pruning", INFOCOM 2023) splits each conv's filters over devices; device ``i``
needs input channel ``c`` from its owner ``j`` as soon as one of ``i``'s filters has a non-zero k x k kernel
``W[f, c]``. Zeroing the cross-device kernels therefore removes channels from messages (the workload's
*Need* rule counts this). The methods (``prune.method``):

``kernel_magnitude``
    one shot: in every conv, keep the ``ceil((1 - amount) * C_out * C_in)`` kernels with the largest L2
    norm (:func:`project_kernels`); ``prune.finetune_epochs`` of masked retraining follow.
``block_diagonal``
    one shot: keep exactly the kernels whose filter and input channel live on the same device (zero
    communication, except the image and the classifier); then ``finetune_epochs``.
``admm``
    ADMM towards the same per-conv kernel budget: SGD on ``CE + sum rho/2 ||W - Z + U||^2`` for
    ``prune.admm.epochs`` epochs, and after each epoch ``Z <- project(W + U)``, ``U <- U + W - Z``,
    ``rho <- min(rho * rho_growth, rho_max)`` (:func:`admm_update`); then the hard projection and
    ``prune.admm.retrain_epochs`` of masked retraining (Adam, ``prune.lr``).
``admm_comm``
    CaP: ``admm`` plus ``lambda_comm * P(W) / P(W_0)`` in the loss, where
    ``P(W) = sum over convs of sum_{f, c} M[f, c] * ||W[f, c]||_1`` and the cost map
    ``M[f, c] = cost(owner(f), owner(c)) * H_in * W_in`` (:func:`cost_maps`). ``cost`` is a device-by-device
    matrix: fewest-hop counts of the scenario's network (``prune.cost: hops``), the time one float32 value
    takes over the route (``seconds``: sum of ``32 bit / rate`` over its links), or ``prune.cost_matrix``.
    Dividing by the value at the start (``W_0``) makes ``lambda_comm`` scale-free.

With ``prune.granularity: filter`` the ADMM methods project onto whole filters instead (the joint L2 norm of
a channel group, so residual streams keep the same channels) and the pruned filters are physically removed.
``partition.strategy: comm_aware`` reassigns channels to devices after every ADMM epoch but the first
(:func:`reassign`), so the partition and the weights are optimised together.

Everything is seeded: batches are drawn from a generator made from the seed, and anything else random runs
inside ``torch.random.fork_rng``, so torch's global random state is untouched.

Example::

    >>> w = torch.tensor([[[[3.0]], [[0.1]]], [[[0.2]], [[-2.0]]]])  # 2 filters x 2 input channels, 1x1
    >>> project_kernels(w, keep=2).tolist()
    [[True, False], [False, True]]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torch.nn.utils.prune as tprune
from scipy.optimize import linear_sum_assignment
from torch import nn

from sim.config.schema import PruneSpec
from sim.model import train
from sim.model.data import DataSplit
from sim.model.flowgraph import FlowGraph
from sim.prune import structured as prune
from sim.workload.graph import stage_of
from sim.workload.types import Partition

METHODS = ("kernel_magnitude", "block_diagonal", "admm", "admm_comm")
ADMM_METHODS = ("admm", "admm_comm")
MOMENTUM = 0.9  # SGD of the ADMM epochs, as CaP
WEIGHT_DECAY = 5e-4
InputOwners = Callable[[Partition], Mapping[str, np.ndarray]]  # partition -> owner of each conv's input channels


@dataclass(frozen=True)
class Site:
    """A conv that kernel/ADMM pruning acts on: module path ``name``, graph ``node``, input ``in_spatial``."""

    name: str
    node: str
    in_spatial: int


@dataclass(frozen=True)
class AdmmState:
    """ADMM variables: ``z`` (projected copies) and ``u`` (scaled duals) per conv, and the penalty ``rho``."""

    z: dict[str, torch.Tensor]
    u: dict[str, torch.Tensor]
    rho: float


@dataclass(frozen=True)
class PruneResult:
    """What :func:`apply` did: kept filters per layer (filter granularity, for surgery; else empty), the
    final partition, the penalty ``P(W)`` after every ADMM epoch and the reassignment count (comm_aware)."""

    keep: dict[str, np.ndarray]
    partition: Partition
    penalties: tuple[float, ...] = ()
    moved_channels: int = 0


def weight_of(model: nn.Module, name: str) -> torch.Tensor:
    """The ``weight`` of submodule ``name`` (a conv or linear layer)."""
    weight = model.get_submodule(name).weight
    assert isinstance(weight, torch.Tensor)
    return weight


@dataclass
class _Reassigned:
    """The comm_aware partition as the ADMM epochs change it, and how many channels moved in total."""

    parts: Partition
    moved: int = 0


def sites(model: nn.Module, graph: FlowGraph, ignored: set[str]) -> list[Site]:
    """The plain (groups = 1) convs of the traced model not in ``ignored``, in topological order."""
    out = []
    for node in graph.order:
        if graph.kind(node) != "layer":
            continue
        layer = graph.layer(node)
        if layer.op == "conv" and layer.groups == 1 and layer.name not in ignored:
            out.append(Site(layer.name, node, layer.in_spatial))
    return out


def kernel_budget(c_out: int, c_in: int, amount: float) -> int:
    """Kernels a conv keeps: ``ceil((1 - amount) * c_out * c_in)``, at least 1 (``kernel_budget(8, 8, 0.75) == 16``)."""
    return max(1, math.ceil(round((1.0 - amount) * c_out * c_in, 9)))


def project_kernels(weight: torch.Tensor, keep: int) -> torch.Tensor:
    """Bool ``(C_out, C_in)``: the ``keep`` kernels ``W[f, c]`` of largest L2 norm (ties: lower index first)."""
    norms = weight.detach().flatten(2).norm(dim=2).flatten().numpy()
    order = np.argsort(-norms, kind="stable")[:keep]
    mask = np.zeros(norms.size, dtype=bool)
    mask[order] = True
    return torch.from_numpy(mask.reshape(weight.shape[:2]))


def expand(mask: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A kernel mask ``(C_out, C_in)`` (or a row mask ``(C_out,)``) broadcast to ``weight``'s shape, as floats."""
    shape = mask.shape + (1,) * (weight.dim() - mask.dim())
    return mask.to(weight.dtype).view(shape).expand_as(weight).clone()


class Projector:
    """The projection onto the sparsity set: per conv (kernel granularity) or per channel group (filter)."""

    def __init__(self, model: nn.Module, graph: FlowGraph, site_list: list[Site], spec: PruneSpec):
        self.granularity, self.amount = spec.granularity, spec.amount
        self.names = [s.name for s in site_list]
        self.groups: list[prune.ChannelGroup] = []
        if spec.granularity == "filter":
            names = set(self.names)
            self.groups = [g for g in prune.channel_groups(graph) if g.prunable and set(g.layers) <= names]

    def rows(self, values: Mapping[str, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Filter granularity: the kept channels (bool) of every prunable group, by joint L2 norm."""
        out = {}
        for gi, group in enumerate(self.groups):
            norms = sum(values[n].detach().flatten(1).pow(2).sum(1) for n in group.layers)
            keep = max(1, math.ceil(round((1.0 - self.amount) * group.channels, 9)))
            order = np.argsort(-np.asarray(norms), kind="stable")[:keep]
            mask = torch.zeros(group.channels, dtype=torch.bool)
            mask[torch.as_tensor(order, dtype=torch.long)] = True
            out[gi] = mask
        return out

    def masks(self, values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Float masks shaped like each conv's weight: 1 where :meth:`project` keeps the value."""
        if self.granularity == "kernel":
            out = {}
            for n in self.names:
                c_out, c_in = values[n].shape[:2]
                out[n] = expand(project_kernels(values[n], kernel_budget(c_out, c_in, self.amount)), values[n])
            return out
        out = {n: torch.ones_like(values[n]) for n in self.names}
        for gi, keep in self.rows(values).items():
            out.update({n: expand(keep, values[n]) for n in self.groups[gi].layers})
        return out

    def project(self, values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The Euclidean projection of ``values`` onto the sparsity set (zero everything not kept)."""
        masks = self.masks(values)
        return {n: values[n].detach() * masks[n] for n in self.names}


def admm_update(
    weights: Mapping[str, torch.Tensor], state: AdmmState, projector: Projector, growth: float, rho_max: float
) -> AdmmState:
    """One ADMM step after a period: ``Z = project(W + U)``, ``U = U + W - Z``, ``rho = min(rho*growth, max)``."""
    z = projector.project({n: weights[n].detach() + state.u[n] for n in state.u})
    u = {n: state.u[n] + weights[n].detach() - z[n] for n in state.u}
    return AdmmState(z, u, min(state.rho * growth, rho_max))


def cost_maps(
    site_list: list[Site], parts: Partition, inputs: Mapping[str, np.ndarray], device_cost: np.ndarray
) -> dict[str, np.ndarray]:
    """``M[f, c] = device_cost[owner(f), owner_in(c)] * H_in * W_in`` for every conv (float64, ``(C_out, C_in)``).

    ``inputs[node]`` is the owner of every input channel of the conv at graph node ``node``.
    """
    out = {}
    for s in site_list:
        f_owner, c_owner = np.asarray(parts[s.name]), np.asarray(inputs[s.node])
        out[s.name] = device_cost[np.ix_(f_owner, c_owner)] * float(s.in_spatial)
    return out


def kernel_l1(weight: torch.Tensor) -> torch.Tensor:
    """``||W[f, c]||_1`` for every kernel, ``(C_out, C_in)``."""
    return weight.abs().flatten(2).sum(2)


def penalty(weights: Mapping[str, torch.Tensor], maps: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``P(W) = sum over convs of sum_{f, c} M[f, c] * ||W[f, c]||_1`` (differentiable)."""
    total = torch.zeros(())
    for name, m in maps.items():
        total = total + (m * kernel_l1(weights[name])).sum()
    return total


def _block_masks(
    model: nn.Module, site_list: list[Site], parts: Partition, inputs: Mapping[str, np.ndarray]
) -> dict[str, torch.Tensor]:
    """Masks keeping only the kernels whose filter and input channel share a device."""
    out = {}
    for s in site_list:
        weight = weight_of(model, s.name)
        same = np.asarray(parts[s.name])[:, None] == np.asarray(inputs[s.node])[None, :]
        out[s.name] = expand(torch.from_numpy(same), weight)
    return out


def install(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the masked weights and hold them at zero (``prune.custom_from_mask``)."""
    for name, mask in masks.items():
        tprune.custom_from_mask(model.get_submodule(name), "weight", mask)


# -- comm_aware partition -------------------------------------------------------------------------------------
def partition_penalty(
    site_list: list[Site], norms: Mapping[str, np.ndarray], parts: Partition, inputs: Mapping[str, np.ndarray],
    device_cost: np.ndarray,
) -> float:  # fmt: skip
    """``sum over convs of sum_{f, c} cost(owner(f), owner_in(c)) * H_in*W_in * ||W[f, c]||_1`` under ``parts``."""
    maps = cost_maps(site_list, parts, inputs, device_cost)
    return float(sum((maps[s.name] * norms[s.name]).sum() for s in site_list))


def reassign(
    graph: FlowGraph,
    site_list: list[Site],
    norms: Mapping[str, np.ndarray],
    parts: Partition,
    input_owners: InputOwners,
    device_cost: np.ndarray,
) -> tuple[Partition, int]:
    """One sweep of balanced reassignment over the channel groups, in topological order.

    For each group of convs tied by residual adds (moved together), the cost of putting channel ``f`` on
    device ``d`` is its filters' kernels into their inputs plus its consumers' kernels reading it, each
    ``||W||_1 * H_in*W_in * device_cost``; ``linear_sum_assignment`` over per-device slots (as many as the
    device holds now) gives the cheapest balanced assignment with everything else fixed. A move is kept only
    if the penalty does not rise, so the sweep never raises it. The image's owners are never moved.
    Returns the new partition and how many channels changed device.
    """
    parts = {k: np.asarray(v).copy() for k, v in parts.items()}
    by_node = {s.node: s for s in site_list}
    reads = {s.node: stage_of(graph, graph.args(s.node)[0]) for s in site_list}
    moved = 0
    for group in prune.channel_groups(graph):
        if not set(group.layers) <= {s.name for s in site_list}:
            continue
        stages = set(group.stages)
        members = [n for n in group.stages if n in by_node]
        consumers = [n for n, src in reads.items() if src in stages]
        if set(members) & set(consumers):
            continue  # a conv reading its own channel space: the cost is not linear in the assignment
        inputs = input_owners(parts)
        n_dev = device_cost.shape[0]
        cost = np.zeros((group.channels, n_dev))
        for node in members:
            s = by_node[node]
            a = norms[s.name] * s.in_spatial
            cost += a @ device_cost[:, np.asarray(inputs[node])].T  # filter f on d reads channel c from owner_in(c)
        for node in consumers:
            s = by_node[node]
            a = norms[s.name] * s.in_spatial
            cost += a.T @ device_cost[np.asarray(parts[s.name]), :]  # consumer filter g on owner(g) reads f from d
        current = np.asarray(parts[group.layers[0]])
        slots = np.repeat(np.arange(n_dev), np.bincount(current, minlength=n_dev))
        rows, cols = linear_sum_assignment(cost[:, slots])
        proposal = current.copy()
        proposal[rows] = slots[cols]
        if np.array_equal(proposal, current):
            continue
        before = partition_penalty(site_list, norms, parts, inputs, device_cost)
        trial = {**parts, **{name: proposal for name in group.layers}}
        after = partition_penalty(site_list, norms, trial, input_owners(trial), device_cost)
        if after <= before:
            moved += int((proposal != current).sum())
            parts = trial
    return parts, moved


# -- the pruning itself ---------------------------------------------------------------------------------------
def _batches(n: int, gen: torch.Generator, batch_size: int) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=gen)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def admm_train(
    model: nn.Module,
    split: DataSplit,
    projector: Projector,
    spec: PruneSpec,
    seed: int,
    maps: dict[str, torch.Tensor] | None,
    on_epoch: Callable[[int, dict[str, torch.Tensor]], dict[str, torch.Tensor] | None] | None = None,
) -> list[float]:
    """The ADMM epochs (module docstring); returns ``P(W)`` after every epoch (0 without a penalty).

    ``maps`` are the cost maps (None: no communication term, plain ADMM). ``on_epoch(epoch, weights)`` runs
    after every epoch's ADMM update and may return new maps (comm_aware reassignment).
    """
    assert split.labels is not None
    cfg = spec.admm
    with train.reproducible(model):  # float64, one thread: the same weights on every x86 CPU
        weights = {n: weight_of(model, n) for n in projector.names}
        state = AdmmState(projector.project(weights), {n: torch.zeros_like(w) for n, w in weights.items()}, cfg.rho)
        scale = 0.0
        if maps is not None and spec.lambda_comm > 0:
            start = float(penalty(weights, maps).detach())
            scale = spec.lambda_comm / start if start > 0 else 0.0
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
        gen = torch.Generator().manual_seed(seed)
        history = []
        for epoch in range(cfg.epochs):
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
            model.train()
            for idx in _batches(len(split.labels), gen, train.BATCH_SIZE):
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(split.images[idx].to(train.TRAIN_DTYPE)), split.labels[idx])
                admm_term = sum(state.rho / 2 * (w - state.z[n] + state.u[n]).pow(2).sum() for n, w in weights.items())
                loss = loss + admm_term
                if scale > 0 and maps is not None:
                    loss = loss + scale * penalty(weights, maps)
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                state = admm_update(weights, state, projector, cfg.rho_growth, cfg.rho_max)
                if on_epoch is not None:
                    new = on_epoch(epoch, {n: w.detach() for n, w in weights.items()})
                    maps = new if new is not None else maps
                history.append(float(penalty(weights, maps)) if maps is not None else 0.0)
    model.eval()
    return history


def apply(
    model: nn.Module,
    graph: FlowGraph,
    spec: PruneSpec,
    seed: int,
    parts: Partition,
    input_owners: InputOwners,
    split: DataSplit | None,
    device_cost: np.ndarray | None = None,
    co_partition: bool = False,
) -> PruneResult:
    """Prune ``model`` (traced as ``graph``) in place with a method of :data:`METHODS`; masks stay installed.

    ``parts`` is the partition on the model's channels and ``input_owners(parts)`` the owner of every
    conv's input channels (by graph node). ``device_cost`` (n x n) is needed by ``admm_comm``; ``split``
    (train) by the ADMM methods. With ``co_partition`` (``partition.strategy: comm_aware``) channels are
    reassigned after every ADMM epoch but the first and the final partition is returned.
    """
    site_list = sites(model, graph, set(spec.ignored_layers))
    projector = Projector(model, graph, site_list, spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.method == "block_diagonal":
            install(model, _block_masks(model, site_list, parts, input_owners(parts)))
            return PruneResult({}, parts)
        if spec.method == "kernel_magnitude":
            install(model, projector.masks({s.name: weight_of(model, s.name) for s in site_list}))
            return PruneResult({}, parts)
        if split is None or split.labels is None:
            raise ValueError(f"{spec.method} trains: give the labelled train split")
        maps = None
        current = _Reassigned(parts)
        if spec.method == "admm_comm":
            if device_cost is None:
                raise ValueError("admm_comm needs the device cost matrix")
            maps = _torch_maps(cost_maps(site_list, parts, input_owners(parts), device_cost))
        on_epoch = None
        if co_partition and maps is not None and device_cost is not None:
            cost = device_cost

            def on_epoch(epoch: int, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
                if epoch == 0:
                    return None  # the first period creates the structure the reassignment exploits
                norms = {n: kernel_l1(w).numpy().astype(np.float64) for n, w in weights.items()}
                new, moved = reassign(graph, site_list, norms, current.parts, input_owners, cost)
                current.parts, current.moved = new, current.moved + moved
                return _torch_maps(cost_maps(site_list, new, input_owners(new), cost))

        history = admm_train(model, split, projector, spec, seed, maps, on_epoch)
        parts = current.parts
        weights = {s.name: weight_of(model, s.name) for s in site_list}
        keep: dict[str, np.ndarray] = {}
        if spec.granularity == "filter":
            for gi, kept in projector.rows(weights).items():
                group = projector.groups[gi]
                prune._mask_group(model, graph, group, kept)
                keep.update({name: np.flatnonzero(kept.numpy()) for name in group.layers})
        else:
            install(model, projector.masks(weights))
        if spec.admm.retrain_epochs:
            train.fit(model, split, spec.admm.retrain_epochs, spec.lr, seed, desc="retrain")
        return PruneResult(keep, parts, tuple(history), current.moved)


def _torch_maps(maps: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {n: torch.from_numpy(m.astype(np.float32)) for n, m in maps.items()}
