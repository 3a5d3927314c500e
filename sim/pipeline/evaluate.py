"""The torch-free half of a run: what a built workload is, which settings it depends on, and running the
engine on it for a scenario's devices and network.

:mod:`sim.pipeline.prepare` builds a :class:`BuiltWorkload` with torch; everything here runs without
torch, so a workload read back from the build cache (:mod:`sim.pipeline.cache`) is simulated and
analysed without importing it.

Example::

    >>> from sim.config.load import parse_scenario
    >>> sc = parse_scenario({"name": "x", "model": {"name": "lenet5"}, "devices": [{"name": "a", "gflops": 1}],
    ...                      "source": "a", "sink": "a"})
    >>> baseline_scenario(sc).name
    'x-single'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from sim.analysis import counters
from sim.analysis.critical_path import critical_path_summary
from sim.analysis.energy import energy_table
from sim.analysis.result import RunResult
from sim.analysis.service import service_latency_s
from sim.analysis.summary import Baseline, RunSummary, deployment_summary, summarize
from sim.analysis.tables import compute_table, transfers_table
from sim.config.load import parse_scenario
from sim.config.schema import Scenario
from sim.engine import assemble
from sim.engine.devices import DeviceRate, Host
from sim.engine.network import Network
from sim.engine.simulate import Timeline, simulate
from sim.workload.types import Workload


@dataclass(frozen=True)
class BuiltWorkload:
    """What the torch side hands on (picklable, torch-free): the workload, the deployment phase's workload
    when the scenario deploys, and the test accuracy of the model it came from (labelled datasets)."""

    workload: Workload
    deploy: Workload | None = None
    accuracy: float | None = None
    kept_kernels: dict[str, float] | None = None  # pruned runs: non-zero kernels / original kernels, per conv
    kept_kernel_fraction: float | None = None  # the same over all convs together


def workload_key(scenario: Scenario) -> str:
    """The settings :func:`sim.pipeline.prepare.prepare` reads, as a JSON string: scenarios with equal
    keys share a workload.

    Sweeps use it to build each distinct workload once, and the build cache to name it on disk. Whatever
    ``prepare`` starts to read must be added. Of the network, pruning reads only the hop counts
    (``comm_structured``) or the scaled cost matrix (``admm_comm``): a bandwidth sweep builds them once.
    """
    data = scenario.resolved()
    devices = [d["name"] for d in data["devices"]]
    if scenario.partition.strategy in ("balanced", "pipeline") and scenario.partition.file is None:  # by rate
        devices = [(d["name"], d["gflops"]) for d in data["devices"]]
    inputs = {k: v for k, v in data["inputs"].items() if k not in ("interval_ms", "fps")}
    key = {k: data[k] for k in ("seed", "model", "source", "sink", "partition", "prune", "transfer", "deploy")}
    key.update(devices=devices, inputs=inputs)
    if scenario.prune.method == "comm_structured":  # ranks channels by bytes times hops on this network
        key["hops"] = assemble.hop_matrix(scenario).tolist()
    if scenario.prune.method == "admm_comm":  # the network's costs, scaled (only their ratios count)
        key["device_cost"] = assemble.device_cost(scenario).tolist()
    return json.dumps(key, sort_keys=True, default=str)


def baseline_scenario(scenario: Scenario) -> Scenario:
    """The scenario of ``baseline: single``: the whole model on the source device alone (same frames,
    arrivals, pruning and wire settings; no network)."""
    data = scenario.resolved()
    data.update(
        name=f"{scenario.name}-single",
        devices=[d for d in data["devices"] if d["name"] == scenario.source],
        sink=scenario.source,
        network={},
        partition={"strategy": "contiguous"},
        baseline="none",
        deploy=None,
    )
    return parse_scenario(data, origin="baseline", base_dir=scenario.setup.base_dir)


@dataclass(frozen=True)
class EngineRun:
    """One engine run of a scenario's workload: its timeline and the engine objects it ran on."""

    timeline: Timeline
    rates: list[DeviceRate]
    network: Network
    hosts: list[Host | None]


def run_engine(scenario: Scenario, workload: Workload) -> EngineRun:
    """Run the engine on ``workload`` with the scenario's devices, network and frame arrivals. A pair of
    devices that must talk but has no route is refused (one line naming it) before the run."""
    net = scenario.setup.network
    rates, network, hosts = assemble.device_rates(scenario), assemble.network(scenario), assemble.hosts(scenario)
    names = workload.devices
    network.check_pairs(dict.fromkeys((names[m.src], names[m.dst]) for m in workload.messages))
    arrivals = assemble.arrivals_s(scenario, workload.frames)
    timeline = simulate(
        workload, rates, network, arrivals, net.chunk_bytes, net.multicast, hosts, scenario.seed, net.interleave
    )
    return EngineRun(timeline, list(rates), network, list(hosts))


def single_device_baseline(scenario: Scenario, built: BuiltWorkload) -> dict[str, Any]:
    """Latency and throughput of :func:`baseline_scenario` (whose built workload is ``built``), for
    ``baseline: single``: ``device``, ``latency_s``, ``service_latency_s`` and ``throughput_fps``."""
    single = baseline_scenario(scenario)
    summary = point_summary(single, built, None, run_engine(single, built.workload))
    return {
        "device": scenario.source,
        "latency_s": summary.latency_s,
        "service_latency_s": summary.latency_s if summary.service_latency_s is None else summary.service_latency_s,
        "throughput_fps": summary.throughput_fps,
    }


def speedups(split: RunSummary, single: dict[str, Any]) -> dict[str, float]:
    """What the split buys over the single device (``single``: :func:`single_device_baseline`).

    * ``speedup``: single-device mean latency / split mean latency, both under the scenario's frame
      arrivals, so for a stream that one device cannot keep up with it includes the single device's queue.
    * ``service_speedup``: the same ratio of service latencies (each frame alone, no queueing,
      :func:`sim.analysis.service.service_latency_s`): what the split does to one frame's latency.
    * ``throughput_speedup``: split sustained throughput / single-device sustained throughput.

    Example::

        >>> from types import SimpleNamespace
        >>> split = SimpleNamespace(latency_s=2.0, service_latency_s=None, throughput_fps=10.0)
        >>> speedups(split, {"latency_s": 4.0, "service_latency_s": 4.0, "throughput_fps": 5.0})
        {'speedup': 2.0, 'service_speedup': 2.0, 'throughput_speedup': 2.0}
    """
    service = split.latency_s if split.service_latency_s is None else split.service_latency_s
    return {
        "speedup": single["latency_s"] / split.latency_s,
        "service_speedup": single["service_latency_s"] / service,
        "throughput_speedup": split.throughput_fps / single["throughput_fps"],
    }


def energy_of(scenario: Scenario, workload: Workload, timeline: Timeline) -> pd.DataFrame | None:
    """Each device's joules (:func:`sim.analysis.energy.energy_table`), or None when no device has power."""
    powers = [d.power for d in scenario.devices]
    if all(p is None for p in powers):
        return None
    return energy_table(workload, timeline, powers)


def point_summary(
    scenario: Scenario,
    built: BuiltWorkload,
    baseline: BuiltWorkload | None,
    run: EngineRun,
    joules: pd.DataFrame | None = None,
) -> RunSummary:
    """The summary of a run without its tables: the headline figures straight from the timeline
    (:func:`sim.analysis.summary.summarize`), the exchange schemes, accuracy and kept kernels, the energy
    (when some device has power), a stream's service latency, and the single-device baseline
    (``baseline`` is the built workload of :func:`baseline_scenario`; required for ``baseline: single``).
    A sweep point needs nothing more; :func:`evaluate` adds the tables and the per-link, per-device and
    critical-path records. ``joules``: the run's :func:`energy_of`, when the caller has it already (else
    computed here)."""
    workload, timeline, net = built.workload, run.timeline, scenario.setup.network
    deadline_s = None if scenario.inputs.deadline_ms is None else scenario.inputs.deadline_ms / 1e3
    summary = summarize(
        scenario.name,
        scenario.resolved(),
        workload,
        timeline,
        deadline_s,
        accuracy=built.accuracy,
        kept_kernels=built.kept_kernels,
        kept_kernel_fraction=built.kept_kernel_fraction,
    )
    if joules is None:
        joules = energy_of(scenario, workload, timeline)
    if joules is not None:  # only when some device has power, so other runs' summaries stay as they were
        energy_j = float(joules["energy_j"].sum())
        summary = replace(summary, energy_j=energy_j, energy_j_per_frame=energy_j / summary.frames)
    if timeline.cpu_spans:  # per-message software time charged (seconds of CPU, all messages)
        cpu_s = {side: sum(span.cpu_s for span in timeline.cpu_spans if span.side == side) for side in ("send", "recv")}
        summary = replace(summary, message_cpu_s=cpu_s)
    if workload.frames > 1:  # a stream: also each frame's latency alone, without queueing behind others
        service = service_latency_s(
            workload, run.rates, run.network, net.chunk_bytes, net.multicast, run.hosts, scenario.seed, net.interleave
        )
        summary = replace(summary, service_latency_s=service)
    if scenario.baseline == "single":
        if baseline is None:
            raise ValueError("evaluate: baseline: single needs the built workload of baseline_scenario(scenario)")
        single = single_device_baseline(scenario, baseline)
        gains = speedups(summary, single)
        summary = replace(
            summary,
            baseline=Baseline(
                device=single["device"],
                latency_s=single["latency_s"],
                service_latency_s=single["service_latency_s"],
                throughput_fps=single["throughput_fps"],
                speedup=gains["speedup"],
                service_speedup=gains["service_speedup"],
                throughput_speedup=gains["throughput_speedup"],
            ),
        )
    return summary


def evaluate(scenario: Scenario, built: BuiltWorkload, baseline: BuiltWorkload | None = None) -> RunResult:
    """Run the engine on ``built.workload`` with the scenario's devices, network and frame arrivals, and
    analyse the timeline into the run's tables and summary (:func:`point_summary`, then the per-link,
    per-device (with their joules when some device has power) and critical-path records, the compute-time
    sources and the deployment phase).

    For ``baseline: single``, ``baseline`` is the built workload of :func:`baseline_scenario` (required;
    :func:`sim.pipeline.prepare.evaluate` builds it when missing). A pair of devices that must talk but has
    no route is refused (one line naming it) before the run.
    """
    workload, net = built.workload, scenario.setup.network
    run = run_engine(scenario, workload)
    timeline, rates, network, hosts = run.timeline, run.rates, run.network, run.hosts
    joules = energy_of(scenario, workload, timeline)
    summary = point_summary(scenario, built, baseline, run, joules)
    links, devices = counters.link_table(network, timeline), counters.device_table(workload, rates, timeline)
    if joules is not None:  # devices.csv gains the energy columns
        devices = pd.concat([devices, joules], axis=1)
    summary = replace(
        summary,
        links=counters.records(links),
        devices=counters.records(devices),
        critical_path=critical_path_summary(workload, timeline),
        compute_times=assemble.time_sources(workload, rates)
        if scenario.profile is not None or any(d.profile is not None for d in scenario.devices)
        else None,
    )
    if built.deploy is not None:  # on the same network, before inference; not part of its latency
        shipped = simulate(
            built.deploy, rates, network, [0.0], net.chunk_bytes, net.multicast, hosts, scenario.seed, net.interleave
        )
        summary = replace(summary, deployment=deployment_summary(built.deploy, shipped))
    return RunResult(
        transfers_table(workload, timeline),
        compute_table(workload, timeline),
        summary,
        workload,
        timeline,
        links,
        devices,
    )
