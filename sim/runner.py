"""The pipeline of one run: scenario -> model -> graph -> partition -> workload -> engine -> results.

:func:`build` does the torch side (model, trace, activations) and returns a :class:`Built`, whose
workload the engine can run any number of times; :func:`simulate` runs the engine for a scenario's
devices and network; :func:`run` does both.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sim import counters, data, deploy, partition, prune, split, surgery, train, wire, zoo
from sim.engine import DeviceRate, simulate as run_engine
from sim.errors import UserError
from sim.flowgraph import FlowGraph
from sim.network import Network, read_graphml
from sim.results import RunResult, compute_table, summarize, transfers_table
from sim.scenario import LinkSpec, ModelSpec, Scenario, load_scenario, parse_scenario
from sim.workload import Workload, WorkloadPlan, build_workload, choose_exchange


@dataclass
class Built:
    """The torch side of a run: the traced graph, the partition and the workload."""

    scenario: Scenario
    model: nn.Module
    graph: FlowGraph
    plan: WorkloadPlan
    workload: Workload


def as_scenario(scenario: Scenario | str | Path | dict[str, Any]) -> Scenario:
    """Accept a Scenario, a path to a YAML file, or a dict of scenario data."""
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, dict):
        return parse_scenario(scenario)
    return load_scenario(scenario)


def input_shape(spec: ModelSpec) -> tuple[int, int, int]:
    """The image shape (C, H, W): the scenario's, else the zoo default, else CIFAR's 3x32x32."""
    if spec.input_shape is not None:
        return tuple(spec.input_shape)  # type: ignore[return-value]
    return zoo.INPUT_SHAPES.get(spec.name, (3, 32, 32))


def load_model(spec: ModelSpec, seed: int) -> nn.Module:
    """Build the model with weights initialised from ``seed`` (the global RNG is left untouched),
    then load ``spec.checkpoint`` if given. Returned in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = zoo.build_model(spec.name, num_classes=spec.num_classes)
    if spec.checkpoint is not None:
        path = Path(spec.checkpoint)
        if not path.is_file():
            what = f"{path} is a folder, not a file" if path.is_dir() else f"no such file {path}"
            raise UserError(f"model.checkpoint: {what}; train one with `dsim train`")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # torch raises UnpicklingError/RuntimeError/EOFError for files it cannot read
            raise UserError(f"model.checkpoint: {path} is not a state_dict saved by torch.save or "
                            "`dsim train`") from None  # fmt: skip
        try:
            model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        except Exception as exc:  # RuntimeError (missing/unexpected keys, shapes), TypeError, AttributeError
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            lines = [line for line in lines if not line.startswith("Error(s) in loading")] or [type(exc).__name__]
            reason = lines[0] if len(lines[0]) <= 120 else lines[0][:117] + "..."
            raise UserError(f"model.checkpoint: {path} does not fit model '{spec.name}' ({reason})") from None
    return model.eval()


def choose_partition(scenario: Scenario, graph: FlowGraph) -> partition.Partition:
    """The scenario's partition: read from its file, or made by its strategy."""
    spec, names = scenario.partition, scenario.device_names
    if spec.file is not None:
        return partition.load_partition(spec.file, graph, scenario.model.name, names)
    seed = scenario.seed if spec.seed is None else spec.seed
    rates = [d.flops_per_s for d in scenario.devices]
    return partition.make_partition(graph, spec.strategy, len(names), seed=seed, rates=rates)


def trace_model(scenario: Scenario) -> FlowGraph:
    """The scenario's model (unpruned), traced on one batch of its inputs."""
    shape = input_shape(scenario.model)
    model = load_model(scenario.model, scenario.seed)
    inputs = scenario.inputs
    batch = data.frame_batches(inputs.dataset, shape, 1, inputs.batch_size, scenario.seed, inputs.path)[0]
    return FlowGraph.trace(model, batch.images)


def hop_counts(scenario: Scenario) -> prune.Hops:
    """Links on the fewest-hop route between two devices (by index) of the scenario's network."""
    names, network = scenario.device_names, build_network(scenario)
    return lambda src, dst: len(network.route(names[src], names[dst]))


def make_plan(scenario: Scenario, graph: FlowGraph, parts: partition.Partition,
              exchange: str | dict[str, str] = "inputs") -> WorkloadPlan:  # fmt: skip
    """The scenario's workload plan: its devices, source, sink and image channel owners (``inputs.owners``)."""
    names, owners = scenario.device_names, scenario.inputs.owners
    if owners is not None and len(owners) != graph.graph.nodes[graph.input_node()]["channels"]:
        channels = graph.graph.nodes[graph.input_node()]["channels"]
        raise UserError(f"inputs.owners: has {len(owners)} entries; the model input has {channels} channels "
                        "(give one device per channel)")  # fmt: skip
    return WorkloadPlan(
        graph, parts, len(names), names.index(scenario.source), names.index(scenario.sink), exchange=exchange,
        input_owner=None if owners is None else [names.index(o) for o in owners],
    )  # fmt: skip


def prune_model(scenario: Scenario, model: nn.Module, graph: FlowGraph, parts: partition.Partition,
                example: torch.Tensor, splits: tuple[data.Split, data.Split] | None,
                ) -> tuple[nn.Module, FlowGraph, partition.Partition]:  # fmt: skip
    """Prune ``model`` (traced as ``graph``, partitioned as ``parts`` on its original channels): masks,
    fine-tuning with the masks held fixed, then physical removal of the pruned channels.

    Returns the smaller model, its graph traced on ``example``, and ``parts`` sliced by the kept channels.
    """
    spec = scenario.prune
    plan, hops = None, None
    if spec.method == "comm_structured":
        plan = make_plan(scenario, graph, parts)
        hops = hop_counts(scenario)
    keep = prune.apply(model, graph, spec, scenario.seed, plan, hops)
    if spec.finetune_epochs and splits is not None:
        train.fit(model, splits[0], spec.finetune_epochs, spec.lr, scenario.seed, desc="finetune")
    prune.remove_masks(model)
    if keep:
        model = surgery.shrink(model, graph, keep)
        parts = surgery.slice_partition(parts, keep)
    return model.eval(), FlowGraph.trace(model, example), parts


def build(scenario: Scenario) -> Built:
    """Load (and train) the model, trace it, partition it on its original channels, prune it (masks,
    fine-tuning, physical removal), trace the smaller model, run the frames through it, size every message
    and measure its test accuracy when the dataset has labels."""
    shape, inputs = input_shape(scenario.model), scenario.inputs
    splits = data.labelled(inputs.dataset, shape, scenario.seed, inputs.path)
    batches = data.frame_batches(inputs.dataset, shape, inputs.frames, inputs.batch_size, scenario.seed, inputs.path,
                                 test=None if splits is None else splits[1])  # fmt: skip
    model = load_model(scenario.model, scenario.seed)
    prune.check_layer_names(scenario.prune, prune.layer_names(model))
    if scenario.model.train_epochs and splits is not None:
        train.fit(model, splits[0], scenario.model.train_epochs, scenario.model.lr, scenario.seed)
    graph = FlowGraph.trace(model, batches[0].images)
    names = scenario.device_names
    parts = choose_partition(scenario, graph)
    if scenario.prune.method != "none":
        model, graph, parts = prune_model(scenario, model, graph, parts, batches[0].images, splits)
    transfer, images = scenario.transfer, [b.images for b in batches]
    spec = wire.WireSpec(transfer.dtype, transfer.index_bits)
    if transfer.exchange == "auto":  # size both schemes of every layer, then keep the cheapest choice
        both = make_plan(scenario, graph, parts, exchange="partial_sums")
        frames, partials = split.frame_values(graph, both, images, every_layer_input=True)
        exchange = choose_exchange(both, frames, partials, spec, transfer.format, transfer.channel_header)
        plan = make_plan(scenario, graph, parts, exchange=exchange)
    else:
        plan = make_plan(scenario, graph, parts, exchange=transfer.exchange)
        frames, partials = split.frame_values(graph, plan, images)
    workload = build_workload(
        plan, frames, names, spec, transfer.format, batch=inputs.batch_size, partials=partials,
        channel_header=transfer.channel_header,
    )  # fmt: skip
    if scenario.deploy is not None:
        shards = deploy.deployment_workload(
            graph, plan, names, names.index(scenario.deploy.from_), wire.WireSpec("float32", transfer.index_bits),
            scenario.deploy.format,
        )  # fmt: skip
        workload = replace(workload, deploy=shards)
    if splits is not None:
        workload = replace(workload, accuracy=train.accuracy(model, splits[1]))
    return Built(scenario, model, graph, plan, workload)


def workload_key(scenario: Scenario) -> str:
    """The settings :func:`build` reads, as a JSON string: scenarios with equal keys share a workload.

    Sweeps use it to build each distinct workload once. Whatever ``build`` starts to read must be added.
    """
    data = scenario.resolved()
    devices = [d["name"] for d in data["devices"]]
    if scenario.partition.strategy == "balanced" and scenario.partition.file is None:
        devices = [(d["name"], d["gflops"]) for d in data["devices"]]
    inputs = {k: v for k, v in data["inputs"].items() if k not in ("interval_ms", "fps")}
    key = {k: data[k] for k in ("seed", "model", "source", "sink", "partition", "prune", "transfer", "deploy")}
    key.update(devices=devices, inputs=inputs)
    if scenario.prune.method == "comm_structured":  # ranks channels by hop-weighted bytes on this network
        key["network"] = data["network"]
    return json.dumps(key, sort_keys=True, default=str)


def build_network(scenario: Scenario) -> Network:
    """The scenario's network: its topology, with per-link overrides and, for ``custom``, its edges."""
    net, names = scenario.network, scenario.device_names
    overrides = {(link.a, link.b): net.link_params(link) for link in net.links}
    edges: list[tuple[str, str]] = []
    if net.graphml is not None:
        for a, b, attrs in read_graphml(str(net.graphml)):
            overrides.setdefault((a, b), net.link_params(LinkSpec(a=a, b=b, **attrs)))
            edges.append((a, b))
    if net.topology == "custom":
        edges += [(link.a, link.b) for link in net.links]
    return Network.build(names, net.topology, net.bandwidth_bps, net.latency_s, overrides,
                         list(dict.fromkeys(edges)), net.duplex, net.access_overhead_s)  # fmt: skip


def device_rates(scenario: Scenario) -> list[DeviceRate]:
    """Each device's compute rate, overhead and memory bandwidth, in scenario order."""
    return [DeviceRate(d.flops_per_s, d.overhead_s, d.mem_bandwidth_Bps) for d in scenario.devices]


def baseline_scenario(scenario: Scenario) -> Scenario:
    """The scenario of ``baseline: single``: the whole model on the source device alone (same frames,
    arrivals, pruning and wire settings; no network)."""
    data = scenario.resolved()
    data.update(
        name=f"{scenario.name}-single", devices=[d for d in data["devices"] if d["name"] == scenario.source],
        sink=scenario.source, network={}, partition={"strategy": "contiguous"}, baseline="none", deploy=None,
    )  # fmt: skip
    return parse_scenario(data, origin="baseline")


def single_device_baseline(scenario: Scenario, workload: Workload | None = None) -> dict[str, Any]:
    """Latency and throughput of :func:`baseline_scenario`, for ``baseline: single``. ``workload`` is its
    built workload (built here when not given; sweeps build it once per distinct workload key)."""
    single = baseline_scenario(scenario)
    summary = simulate(single, build(single).workload if workload is None else workload).summary
    return {"device": scenario.source, "latency_s": summary["latency_s"], "throughput_fps": summary["throughput_fps"]}


def simulate(scenario: Scenario, workload: Workload, baseline: Workload | None = None) -> RunResult:
    """Run the engine on ``workload`` with the scenario's devices, network and frame arrivals.

    For ``baseline: single``, ``baseline`` is the built workload of :func:`baseline_scenario` (built here
    when not given). A pair of devices that must talk but has no route is refused (one line naming it)
    before the run.
    """
    rates = device_rates(scenario)
    net = scenario.network
    network = build_network(scenario)
    names = workload.devices
    network.check_pairs(dict.fromkeys((names[m.src], names[m.dst]) for m in workload.messages))
    arrivals = [f * scenario.inputs.interval_s for f in range(workload.frames)]
    engine = functools.partial(run_engine, chunk_bytes=net.chunk_bytes, multicast=net.multicast)
    timeline = engine(workload, rates, network, arrivals)
    transfers = transfers_table(workload, timeline)
    compute = compute_table(workload, timeline)
    summary = summarize(scenario.name, scenario.resolved(), transfers, compute, timeline)
    summary["exchange"] = dict(workload.exchange)
    if workload.accuracy is not None:
        summary["accuracy"] = workload.accuracy
    links, devices = counters.link_table(network, timeline), counters.device_table(workload, rates, timeline)
    summary["links"], summary["devices"] = counters.records(links), counters.records(devices)
    summary["critical_path"] = counters.critical_path_summary(workload, timeline)
    if scenario.baseline == "single":
        base = single_device_baseline(scenario, baseline)
        summary["baseline"] = {**base, "speedup": base["latency_s"] / summary["latency_s"]}
    if workload.deploy is not None:  # on the same network, before inference; not part of its latency
        summary.update(deploy.deployment_summary(workload.deploy, engine(workload.deploy, rates, network, [0.0])))
    return RunResult(transfers, compute, summary, workload, timeline, links, devices)


def run(scenario: Scenario | str | Path | dict[str, Any]) -> RunResult:
    """Run a scenario end to end and return its tables (nothing is written; see ``RunResult.save``).

    Example::

        >>> import sim
        >>> result = sim.run("scenarios/quickstart.yaml")
        >>> result.summary["latency_s"]  # doctest: +SKIP
    """
    sc = as_scenario(scenario)
    return simulate(sc, build(sc).workload)
