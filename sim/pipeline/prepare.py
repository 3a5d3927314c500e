"""The torch side of one run: scenario -> model -> graph -> partition -> prune -> workload.

:func:`prepare` loads (and trains) the model, traces it, partitions and prunes it, runs the frames through
it and sizes every message; it returns a :class:`Prepared`, whose workload the engine
(:func:`sim.pipeline.evaluate.evaluate`) can run any number of times.
"""

from __future__ import annotations

import io
import signal
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sim.config.schema import ModelSpec, Scenario
from sim.engine import assemble
from sim.errors import UserError
from sim.model import data, deploy, partition, shards, train, zoo
from sim.model.flowgraph import FlowGraph
from sim.pipeline.evaluate import BuiltWorkload
from sim.pipeline.store import Store, weights_digest
from sim.prune import admm, surgery
from sim.prune import structured as prune
from sim.workload import wire
from sim.workload.plan import WorkloadPlan, place, plan_workload
from sim.workload.sizing import build_workload, choose_exchange
from sim.workload.types import Split, Workload

__all__ = ["Prepared", "input_shape", "load_model", "prepare"]


@dataclass
class Prepared:
    """The torch side of a run: the model, its traced graph, the workload plan and the built workload."""

    scenario: Scenario
    model: nn.Module
    graph: FlowGraph
    plan: WorkloadPlan
    built: BuiltWorkload
    images: list[torch.Tensor] | None = None  # the frames' image batches, in frame order
    weights: str = ""  # trained weights: "cached" (from the build cache), "trained", or "" (no training)

    @property
    def workload(self) -> Workload:
        """The built workload (``built.workload``)."""
        return self.built.workload


def input_shape(spec: ModelSpec) -> tuple[int, int, int]:
    """The image shape (C, H, W): the scenario's, else the zoo default, else CIFAR's 3x32x32."""
    if spec.input_shape is not None:
        return tuple(spec.input_shape)  # type: ignore[return-value]
    return zoo.INPUT_SHAPES.get(spec.name, (3, 32, 32))


MAX_CHECKPOINT_BYTES = 4 * 2**30  # a state_dict larger than this is not one of a model that fits here


def load_model(spec: ModelSpec, seed: int, checkpoint: Path | None = None) -> nn.Module:
    """Build the model with weights initialised from ``seed`` (the global RNG is left untouched), then
    load ``checkpoint`` (a scenario's resolved ``setup.paths.checkpoint``; default ``spec.checkpoint`` as
    given) if there is one. Returned in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = zoo.build_model(spec.name, spec.num_classes, spec.width, in_channels=input_shape(spec)[0])
    path = checkpoint if checkpoint is not None else spec.checkpoint
    if path is not None:
        if not path.is_file():
            what = f"{path} is a folder, not a file" if path.is_dir() else f"no such file {path}"
            what = what if path.is_dir() or not path.exists() else f"{path} is not a regular file"
            raise UserError(f"model.checkpoint: {what}; train one with `dsim train`")
        if path.stat().st_size > MAX_CHECKPOINT_BYTES:
            raise UserError(f"model.checkpoint: {path} is larger than {MAX_CHECKPOINT_BYTES} bytes; not a checkpoint")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # torch raises UnpicklingError/RuntimeError/EOFError for files it cannot read
            raise UserError(
                f"model.checkpoint: {path} is not a state_dict saved by torch.save or `dsim train`"
            ) from None
        try:
            model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        except Exception as exc:  # RuntimeError (missing/unexpected keys, shapes), TypeError, AttributeError
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            lines = [line for line in lines if not line.startswith("Error(s) in loading")] or [type(exc).__name__]
            reason = lines[0] if len(lines[0]) <= 120 else lines[0][:117] + "..."
            raise UserError(f"model.checkpoint: {path} does not fit model '{spec.name}' ({reason})") from None
        bad = next((n for n, t in model.state_dict().items() if t.is_floating_point() and not t.isfinite().all()), None)
        if bad is not None:
            raise UserError(f"model.checkpoint: {path} holds NaN or infinite values (in '{bad}'); not a trained model")
    return model.eval()


def checked_graph(
    model: nn.Module, example: torch.Tensor, splits: tuple[data.DataSplit, data.DataSplit] | None, name: str
) -> FlowGraph:
    """``model`` traced on ``example`` (refusing an input shape it cannot take, naming ``model.input_shape``)
    and, for a labelled dataset, checked by :func:`check_outputs`: the checks that must pass before training."""
    graph = FlowGraph.trace(model, example)
    if splits is not None:
        check_outputs(graph, splits, name)
    return graph


def check_outputs(graph: FlowGraph, splits: tuple[data.DataSplit, data.DataSplit], name: str) -> None:
    """Refuse a model whose output is not one score per class for every label of the dataset (training
    and accuracy need it), naming ``model.num_classes``."""
    out = graph.node(graph.order[-1])  # the output node: its shape is the returned tensor's
    labels = max(int(s.labels.max()) for s in splits if s.labels is not None and len(s.labels)) + 1
    if out.rank != 2:
        raise UserError(
            f"model.name: '{name}' outputs shape {list(out.shape)} per image; training and accuracy need "
            "one score per class"
        )
    if out.shape[0] < labels:
        raise UserError(
            f"model.num_classes: the model gives {out.shape[0]} class scores but the dataset has {labels} "
            f"labels; set num_classes: {labels}"
        )


def choose_partition(scenario: Scenario, graph: FlowGraph) -> Split:
    """The scenario's partition in its three forms: read from its file, or made by its strategy."""
    spec, names, file = scenario.partition, scenario.device_names, scenario.setup.paths.partition
    if file is not None:
        return partition.load_partition(file, graph, scenario.model.name, names)
    seed = scenario.seed if spec.seed is None else spec.seed
    rates = assemble.compute_rates(scenario)
    strategy = "balanced" if spec.strategy == "comm_aware" else spec.strategy  # ADMM reassigns comm_aware's
    return partition.make_split(
        graph,
        strategy,
        len(names),
        seed=seed,
        rates=rates,
        sink=names.index(scenario.sink),
        fused=spec.fused,
        tiles=spec.tiles,
    )


def trace_model(scenario: Scenario) -> FlowGraph:
    """The scenario's model (unpruned), traced on one batch of its inputs."""
    shape = input_shape(scenario.model)
    model = load_model(scenario.model, scenario.seed, scenario.setup.paths.checkpoint)
    inputs, folder = scenario.inputs, scenario.setup.paths.dataset
    batch = data.frame_batches(inputs.dataset, shape, 1, inputs.batch_size, scenario.seed, folder)[0]
    return FlowGraph.trace(model, batch.images)


def start_forked_worker() -> None:
    """Pool initializer of a worker forked from a process that has run torch: one torch thread (a forked
    child cannot use its parent's OpenMP threads and would hang; torch's own DataLoader workers do the
    same), Ctrl-C left to the parent (which stops the pool) and the default SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)


def image_owners(scenario: Scenario, graph: FlowGraph) -> list[int] | None:
    """The device index of each image channel (``inputs.owners``), or ``None`` for the source's; refused
    in one line when the list does not match the model input's channels."""
    names, owners = scenario.device_names, scenario.inputs.owners
    channels = graph.node(graph.input_node()).channels
    if owners is None:
        return None
    if len(owners) != channels:
        raise UserError(
            f"inputs.owners: has {len(owners)} entries; the model input has {channels} channels "
            "(give one device per channel)"
        )
    return [names.index(o) for o in owners]


def make_plan(
    scenario: Scenario,
    graph: FlowGraph,
    parts: partition.Partition | Split,
    exchange: str | dict[str, str] = "inputs",
) -> WorkloadPlan:
    """The scenario's workload plan: its devices, source, sink and image channel owners (``inputs.owners``)."""
    names = scenario.device_names
    return plan_workload(
        graph,
        parts,
        len(names),
        names.index(scenario.source),
        names.index(scenario.sink),
        exchange=exchange,
        input_owner=image_owners(scenario, graph),
    )


def prune_model(
    scenario: Scenario,
    model: nn.Module,
    graph: FlowGraph,
    parts: partition.Partition,
    example: torch.Tensor,
    splits: tuple[data.DataSplit, data.DataSplit] | None,
) -> tuple[nn.Module, FlowGraph, partition.Partition]:
    """Prune ``model`` (traced as ``graph``, partitioned as ``parts`` on its original channels): masks,
    fine-tuning with the masks held fixed, then physical removal of the pruned channels.

    Returns the smaller model, its graph traced on ``example``, and ``parts`` sliced by the kept channels.
    """
    spec = scenario.prune
    if spec.method in admm.METHODS:
        return _admm_prune(scenario, model, graph, parts, example, splits)
    plan, hops = None, None
    if spec.method == "comm_structured":
        plan = make_plan(scenario, graph, parts)
        hops = assemble.hop_counts(scenario)
    keep = prune.apply(model, graph, spec, scenario.seed, plan, hops)
    if spec.finetune_epochs and splits is not None:
        train.fit(model, splits[0], spec.finetune_epochs, spec.lr, scenario.seed, desc="finetune", section="prune")
    prune.remove_masks(model)
    if keep:
        model = surgery.shrink(model, graph, keep)
        parts = surgery.slice_partition(parts, keep)
    return model.eval(), FlowGraph.trace(model, example), parts


def _admm_prune(
    scenario: Scenario,
    model: nn.Module,
    graph: FlowGraph,
    parts: partition.Partition,
    example: torch.Tensor,
    splits: tuple[data.DataSplit, data.DataSplit] | None,
) -> tuple[nn.Module, FlowGraph, partition.Partition]:
    """:func:`prune_model` for the kernel and ADMM methods of :mod:`sim.prune.admm`; a ``comm_aware``
    partition is co-optimised and written to ``partition.save_to`` when given."""
    spec = scenario.prune
    co_partition = scenario.partition.strategy == "comm_aware" and scenario.partition.file is None

    names, image = scenario.device_names, image_owners(scenario, graph)  # checked before any training
    source, sink = names.index(scenario.source), names.index(scenario.sink)

    def input_owners(p: partition.Partition) -> dict[str, Any]:
        placement = place(graph, p, len(names), source, sink, image)
        return {n: placement.owner[graph.args(n)[0]] for n in graph.order if graph.kind(n) == "layer"}

    cost = assemble.device_cost(scenario) if spec.method == "admm_comm" else None
    result = admm.apply(
        model,
        graph,
        spec,
        scenario.seed,
        parts,
        input_owners,
        None if splits is None else splits[0],
        cost,
        co_partition,
    )
    parts = result.partition
    if co_partition and scenario.setup.paths.save_to is not None:
        partition.save_partition(scenario.setup.paths.save_to, scenario.model.name, scenario.device_names, parts)
    if spec.finetune_epochs and splits is not None:
        train.fit(model, splits[0], spec.finetune_epochs, spec.lr, scenario.seed, desc="finetune")
    prune.remove_masks(model)
    if result.keep:
        model = surgery.shrink(model, graph, result.keep)
        parts = surgery.slice_partition(parts, result.keep)
    return model.eval(), FlowGraph.trace(model, example), parts


def train_model(
    scenario: Scenario, model: nn.Module, splits: tuple[data.DataSplit, data.DataSplit], store: Store | None = None
) -> str:
    """Train ``model`` for ``model.train_epochs``, or load the weights ``store`` holds for the same model,
    seed, dataset and code (:func:`sim.pipeline.store.weights_digest`). Returns ``"cached"`` or ``"trained"``."""
    key = weights_digest(scenario) if store is not None else None
    if store is not None and key is not None:
        saved = store.get("weights", key)
        if saved is not None:
            try:
                model.load_state_dict(torch.load(io.BytesIO(saved), map_location="cpu", weights_only=True))
                return "cached"
            except Exception:  # a damaged entry (any unpickling or shape error): train again
                pass
    train.fit(model, splits[0], scenario.model.train_epochs, scenario.model.lr, scenario.seed)
    if store is not None and key is not None:
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        store.put("weights", key, buffer.getvalue())
    return "trained"


def sized_workload(
    scenario: Scenario,
    graph: FlowGraph,
    parts: partition.Partition | Split,
    images: Sequence[torch.Tensor],
    cache: Sequence[dict[str, np.ndarray]] | None = None,
) -> tuple[WorkloadPlan, Workload]:
    """The plan and the sized workload of ``parts`` on the traced ``graph``: the frames (``images``, one batch
    each) run through the split model and every message sized in the scenario's wire format (with
    ``exchange: auto``, both schemes of every layer are sized and the cheaper kept). ``cache``: the unsplit
    model's tensor values per frame, read and filled (:func:`sim.model.shards.frame_values`)."""
    transfer, names = scenario.transfer, scenario.device_names
    spec = wire.WireSpec(transfer.dtype, transfer.index_bits)
    if isinstance(parts, Split) and parts.spatial and transfer.exchange != "inputs":
        raise UserError("transfer.exchange: partial sums are defined for filters; a rows partition needs inputs")
    if transfer.exchange == "auto":  # size both schemes of every layer, then keep the cheapest choice
        both = make_plan(scenario, graph, parts, exchange="partial_sums")
        frames, partials = shards.frame_values(graph, both, images, True, cache)
        exchange = choose_exchange(both, frames, partials, spec, transfer.format, transfer.channel_header)
        # planned again: the chosen per-layer schemes change the messages, which only a new plan lists
        plan = make_plan(scenario, graph, parts, exchange=exchange)
    else:
        plan = make_plan(scenario, graph, parts, exchange=transfer.exchange)
        frames, partials = shards.frame_values(graph, plan, images, cache=cache)
    workload = build_workload(
        plan,
        frames,
        names,
        spec,
        transfer.format,
        batch=scenario.inputs.batch_size,
        partials=partials,
        channel_header=transfer.channel_header,
    )
    return plan, workload


def prepare(scenario: Scenario, store: Store | None = None) -> Prepared:
    """Load (and train) the model, trace it, partition it on its original channels, prune it (masks,
    fine-tuning, physical removal), trace the smaller model, run the frames through it, size every message
    and measure its test accuracy when the dataset has labels. With ``store``, trained weights are read
    from / written to the build cache."""
    shape, inputs, folder = input_shape(scenario.model), scenario.inputs, scenario.setup.paths.dataset
    splits = data.labelled(inputs.dataset, shape, scenario.seed, folder)
    batches = data.frame_batches(
        inputs.dataset,
        shape,
        inputs.frames,
        inputs.batch_size,
        scenario.seed,
        folder,
        test=None if splits is None else splits[1],
    )
    model = load_model(scenario.model, scenario.seed, scenario.setup.paths.checkpoint)
    prune.check_layer_names(scenario.prune, prune.layer_names(model))
    graph = checked_graph(model, batches[0].images, splits, scenario.model.name)  # before any training
    trained = ""
    if scenario.model.train_epochs and splits is not None:
        trained = train_model(scenario, model, splits, store)
        graph = FlowGraph.trace(model, batches[0].images)
    names = scenario.device_names
    split = choose_partition(scenario, graph)
    kept, kept_all = None, None
    if scenario.prune.method != "none":
        if (split.rows or split.whole) and scenario.prune.method in ("admm_comm", "comm_structured"):
            raise UserError(
                f"prune.method: {scenario.prune.method} prices filters on devices; the partition has rows or "
                "whole layers (use ln_structured)"
            )
        dense = {l.name: l.out_channels * l.in_channels // l.groups for l in graph.layers() if l.op == "conv"}
        model, graph, pruned = prune_model(scenario, model, graph, split.filters, batches[0].images, splits)
        split = replace(split, filters=pruned)
        kept = kept_kernels(model, dense)
        kept_all = sum(kept[n] * dense[n] for n in dense) / max(1, sum(dense.values()))
    transfer, images = scenario.transfer, [b.images for b in batches]
    plan, workload = sized_workload(scenario, graph, split, images)
    weights = None
    if scenario.deploy is not None and split.spatial:
        raise UserError("deploy: shipping weights is modelled for filters and whole layers; remove deploy")
    if scenario.deploy is not None:
        weights = deploy.deployment_workload(
            graph,
            plan,
            names,
            names.index(scenario.deploy.from_),
            wire.WireSpec("float32", transfer.index_bits),
            scenario.deploy.format,
        )
    accuracy = None if splits is None else train.accuracy(model, splits[1])
    built = BuiltWorkload(workload, weights, accuracy, kept, kept_all)
    return Prepared(scenario, model, graph, plan, built, images, trained)


def kept_kernels(model: nn.Module, dense: dict[str, int]) -> dict[str, float]:
    """Per conv: its non-zero k x k kernels over ``dense[name]``, the kernels it had before pruning."""
    out = {}
    for name, total in dense.items():
        weight = admm.weight_of(model, name).detach()
        out[name] = int((weight.flatten(2).abs().sum(2) != 0).sum()) / total
    return out
