"""The pipeline of one run: scenario -> model -> graph -> partition -> workload -> engine -> results.

:func:`build` does the torch side (model, trace, activations) and returns a :class:`Built`, whose
workload the engine can run any number of times; :func:`simulate` runs the engine for a scenario's
devices and network; :func:`run` does both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sim import data, partition, wire, zoo
from sim.engine import DeviceRate, simulate as run_engine
from sim.errors import UserError
from sim.flowgraph import FlowGraph
from sim.network import Network
from sim.results import RunResult, compute_table, summarize, transfers_table
from sim.scenario import ModelSpec, Scenario, load_scenario, parse_scenario
from sim.workload import Workload, WorkloadPlan, build_workload


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
            raise UserError(f"model.checkpoint: no such file {path}; train one with `dsim train`")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("state_dict", state))
        except Exception as exc:  # torch raises RuntimeError/UnpicklingError/KeyError for bad files
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
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
    batch = data.frame_batches(scenario.inputs.dataset, shape, 1, scenario.inputs.batch_size, scenario.seed)[0]
    return FlowGraph.trace(model, batch.images)


def build(scenario: Scenario) -> Built:
    """Trace the model, partition it, run the frames through it and size every message."""
    shape = input_shape(scenario.model)
    model = load_model(scenario.model, scenario.seed)
    batches = data.frame_batches(
        scenario.inputs.dataset, shape, scenario.inputs.frames, scenario.inputs.batch_size, scenario.seed
    )
    graph = FlowGraph.trace(model, batches[0].images)
    names = scenario.device_names
    parts = choose_partition(scenario, graph)
    plan = WorkloadPlan(graph, parts, len(names), names.index(scenario.source), names.index(scenario.sink))
    tensors = plan.tensors()
    frames = [graph.activations(b.images, tensors) for b in batches]
    spec = wire.WireSpec(scenario.transfer.dtype, scenario.transfer.index_bits)
    workload = build_workload(plan, frames, names, spec, scenario.transfer.format)
    return Built(scenario, model, graph, plan, workload)


def workload_key(scenario: Scenario) -> str:
    """The settings :func:`build` reads, as a JSON string: scenarios with equal keys share a workload.

    Sweeps use it to build each distinct workload once. Whatever ``build`` starts to read must be added.
    """
    data = scenario.resolved()
    devices = [d["name"] for d in data["devices"]]
    if scenario.partition.strategy == "balanced" and scenario.partition.file is None:
        devices = [(d["name"], d["gflops"]) for d in data["devices"]]
    inputs = {k: v for k, v in data["inputs"].items() if k != "interval_ms"}
    key = {k: data[k] for k in ("seed", "model", "source", "sink", "partition", "prune", "transfer")}
    key.update(devices=devices, inputs=inputs)
    return json.dumps(key, sort_keys=True, default=str)


def simulate(scenario: Scenario, workload: Workload) -> RunResult:
    """Run the engine on ``workload`` with the scenario's devices, network and frame arrivals."""
    rates = [DeviceRate(d.flops_per_s, d.overhead_s) for d in scenario.devices]
    net = scenario.network
    network = Network.mesh(scenario.device_names, net.bandwidth_bps, net.latency_s)
    arrivals = [f * scenario.inputs.interval_s for f in range(workload.frames)]
    timeline = run_engine(workload, rates, network, arrivals)
    transfers = transfers_table(workload, timeline)
    compute = compute_table(workload, timeline)
    summary = summarize(scenario.name, scenario.resolved(), transfers, compute, timeline)
    return RunResult(transfers, compute, summary, workload, timeline)


def run(scenario: Scenario | str | Path | dict[str, Any]) -> RunResult:
    """Run a scenario end to end and return its tables (nothing is written; see ``RunResult.save``).

    Example::

        >>> import sim
        >>> result = sim.run("scenarios/quickstart.yaml")
        >>> result.summary["latency_s"]  # doctest: +SKIP
    """
    sc = as_scenario(scenario)
    return simulate(sc, build(sc).workload)
