"""From a scenario to what the engine runs on: its network, its device rates and its frame arrivals.

The scenario's network settings are read here once (the GraphML file included) and handed to
:class:`sim.engine.network.Network`; ``calibrate: true`` devices are measured here, once, in the process
that prepares a run, so every sweep point sees the same rate.

Example::

    >>> from sim.config.load import parse_scenario
    >>> sc = parse_scenario({"name": "x", "model": {"name": "lenet5"}, "devices": [{"name": "a", "gflops": 1},
    ...                      {"name": "b", "gflops": 1}], "source": "a", "sink": "a",
    ...                      "network": {"topology": "line"}})
    >>> [link.name for link in network(sc).route("a", "b")]
    ['a->b']
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sim.config.schema import LinkSpec, NetworkSpec, Scenario
from sim.engine.devices import DeviceRate
from sim.engine.network import LinkParams, Network
from sim.topology import read_graphml

HopCount = Callable[[int, int], int]  # (src device index, dst device index) -> links on its route


def link_params(net: NetworkSpec, link: LinkSpec) -> LinkParams:
    """The engine's :class:`LinkParams` of one link entry, the network's defaults filled in (SI units)."""
    both = (link.bandwidth_mbps or net.bandwidth_mbps) * 1e6
    up = link.up_mbps * 1e6 if link.up_mbps is not None else both
    down = link.down_mbps * 1e6 if link.down_mbps is not None else both
    latency = net.latency_s if link.latency_ms is None else link.latency_ms / 1e3
    return LinkParams(up, down, latency, link.duplex or net.duplex)


def network(scenario: Scenario) -> Network:
    """The scenario's network: its topology, with per-link overrides and, for ``custom``, its edges."""
    net, names = scenario.network, scenario.device_names
    overrides = {(link.a, link.b): link_params(net, link) for link in net.links}
    edges: list[tuple[str, str]] = []
    if net.graphml is not None:
        for a, b, attrs in read_graphml(str(net.graphml)):
            overrides.setdefault((a, b), link_params(net, LinkSpec(a=a, b=b, **attrs)))
            edges.append((a, b))
    if net.topology == "custom":
        edges += [(link.a, link.b) for link in net.links]
    return Network.build(
        names,
        net.topology,
        net.bandwidth_bps,
        net.latency_s,
        overrides,
        list(dict.fromkeys(edges)),
        net.duplex,
        net.access_overhead_s,
    )


def hop_counts(scenario: Scenario) -> HopCount:
    """Links on the fewest-hop route between two devices (by index) of the scenario's network."""
    names, net = scenario.device_names, network(scenario)
    return lambda src, dst: len(net.route(names[src], names[dst]))


VALUE_BITS = 32  # prune.cost: seconds prices one float32 value


def device_cost(scenario: Scenario) -> np.ndarray:
    """The device-by-device cost matrix of ``admm_comm`` (scenario order, zero diagonal).

    ``prune.cost_matrix`` when given; else ``prune.cost: hops`` (links on the fewest-hop route) or
    ``seconds`` (time one float32 value takes over the route: the sum of 32 bit / rate of its links).
    """
    spec, names = scenario.prune, scenario.device_names
    if spec.cost_matrix is not None:
        return np.asarray(spec.cost_matrix, dtype=np.float64)
    net = network(scenario)
    out = np.zeros((len(names), len(names)))
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                route = net.route(a, b)
                out[i, j] = (
                    len(route) if spec.cost == "hops" else sum(VALUE_BITS / link.bandwidth_bps for link in route)
                )
    return out


def device_rates(scenario: Scenario) -> list[DeviceRate]:
    """Each device's compute rate, overhead and memory bandwidth, in scenario order."""
    return [DeviceRate(d.flops_per_s, d.overhead_s, d.mem_bandwidth_Bps) for d in scenario.devices]


def arrivals_s(scenario: Scenario, frames: int) -> list[float]:
    """When each frame enters at the source, in seconds from the start."""
    return [f * scenario.inputs.interval_s for f in range(frames)]


def calibrated(scenario: Scenario) -> Scenario:
    """The scenario with every ``calibrate: true`` device's ``gflops`` measured on this machine (once per
    process, :func:`sim.model.calibrate.calibrated_flops_per_s`); unchanged when no device asks."""
    if not any(d.calibrate for d in scenario.devices):
        return scenario
    from sim.model.calibrate import calibrated_flops_per_s  # torch: only when a device asks for it

    gflops = calibrated_flops_per_s() / 1e9
    devices = [
        d.model_copy(update={"gflops": gflops, "calibrate": False}) if d.calibrate else d for d in scenario.devices
    ]
    return scenario.model_copy(update={"devices": devices})
