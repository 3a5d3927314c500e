"""From a scenario to what the engine runs on: its network, its device rates and its frame arrivals.

The scenario's network settings are read here once (the GraphML file included) and handed to
:class:`sim.engine.network.Network`; device rates include a ``profile:`` device's measured table (read
here, torch-free) and hosts and per-message software costs; ``calibrate: true`` devices are profiled by
:func:`sim.experiment.pipeline.calibrated`, once, in the process that prepares a run.

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
from pathlib import Path

import numpy as np

from sim.config.schema import DeviceSpec, LinkSpec, NetworkSpec, ProtocolSetting, Scenario, ShaperSpec
from sim.engine.devices import DeviceRate, Host, LayerTimes, task_shape
from sim.engine.network import PROTOCOLS, LinkParams, Network, Protocol
from sim.errors import UserError
from sim.topology import read_graphml
from sim.workload.profiles import DeviceProfile, read_profile
from sim.workload.types import Workload

HopCount = Callable[[int, int], int]  # (src device index, dst device index) -> links on its route


def protocol(setting: ProtocolSetting) -> Protocol | None:
    """The engine's :class:`Protocol` of a ``protocol:`` setting (``None`` and ``none``: no packets)."""
    if setting is None or setting == "none":
        return None
    if isinstance(setting, str):
        return PROTOCOLS[setting]
    return Protocol(setting.mtu_bytes, setting.packet_header_bytes, setting.message_header_bytes)


def burst_bytes(shaper: ShaperSpec | None) -> int | None:
    """The token bucket size of a ``shaper:`` setting, or None (no shaper)."""
    return None if shaper is None else shaper.burst_bytes


def link_params(net: NetworkSpec, link: LinkSpec) -> LinkParams:
    """The engine's :class:`LinkParams` of one link entry, the network's defaults filled in (SI units)."""
    both = (link.bandwidth_mbps or net.bandwidth_mbps) * 1e6
    up = link.up_mbps * 1e6 if link.up_mbps is not None else both
    down = link.down_mbps * 1e6 if link.down_mbps is not None else both
    latency = net.latency_s if link.latency_ms is None else link.latency_ms / 1e3
    proto = protocol(net.protocol if link.protocol is None else link.protocol)
    shaper = net.shaper if link.shaper is None else (None if link.shaper == "none" else link.shaper)
    return LinkParams(up, down, latency, link.duplex or net.duplex, proto, burst_bytes(shaper))


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
        protocol(net.protocol),
        burst_bytes(net.shaper),
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


def layer_times(profile: DeviceProfile) -> LayerTimes:
    """The engine's table of one device profile: median seconds per task shape, and the per-op fits."""
    seconds = {task_shape(e.layer, e.op, e.flops, e.bytes_touched): e.median_s for e in profile.entries}
    return LayerTimes(seconds, {op: (f.s_per_unit, f.overhead_s) for op, f in profile.fit.items()})


def device_profile(device: DeviceSpec) -> DeviceProfile | None:
    """The profile a device names (``profile:``), read from its file, or None."""
    if device.profile is None:
        return None
    return read_profile(device.profile).for_device(device.name, device.profile)


def flops_per_s(device: DeviceSpec) -> float:
    """A device's compute rate in FLOP/s: its ``gflops``, else its profile's conv rate."""
    if device.gflops is None and device.profile is not None:
        return profiled_gflops(device_profile(device), device.profile) * 1e9  # type: ignore[arg-type]
    return device.flops_per_s


def device_rates(scenario: Scenario) -> list[DeviceRate]:
    """Each device's compute rate, overhead, memory bandwidth, measured table (``profile:``) and
    per-message software costs, in scenario order."""
    rates = []
    for d in scenario.devices:
        profile = device_profile(d)
        rates.append(
            DeviceRate(
                flops_per_s(d),
                d.overhead_s,
                d.mem_bandwidth_Bps,
                None if profile is None else layer_times(profile),
                d.send_overhead_us / 1e6,
                d.recv_overhead_us / 1e6,
            )
        )
    return rates


def hosts(scenario: Scenario) -> list[Host | None]:
    """The host each device shares (``devices[i].host``), in scenario order; None: a machine of its own."""
    cores = {h.name: h.cores for h in scenario.hosts}
    return [None if d.host is None else Host(d.host, cores[d.host]) for d in scenario.devices]


def arrivals_s(scenario: Scenario, frames: int) -> list[float]:
    """When each frame enters at the source, in seconds from the start."""
    return [f * scenario.inputs.interval_s for f in range(frames)]


def profiled_gflops(profile: DeviceProfile, path: Path | str) -> float:
    """A device's ``gflops`` from its profile, for the partitioner and for tasks it has no fit for: the conv
    fit's rate (else linear's); when neither grows with FLOPs, total FLOPs over total median time."""
    for op in ("conv", "linear"):
        fit = profile.fit.get(op)
        if fit is not None and fit.s_per_unit > 0:
            return 1e-9 / fit.s_per_unit
    rows = [e for e in profile.entries if e.op in ("conv", "linear") and e.flops > 0 and e.median_s > 0]
    if not rows:
        raise UserError(f"{path}: has no conv or linear timing for device '{profile.device}'; give gflops as well")
    return sum(e.flops for e in rows) / sum(e.median_s for e in rows) / 1e9


def calibrated(scenario: Scenario) -> Scenario:
    """The scenario with every ``profile:`` device without ``gflops`` given its profile's rate
    (:func:`profiled_gflops`); ``calibrate: true`` devices are profiled by
    :func:`sim.experiment.pipeline.calibrated`. Unchanged when no device needs it."""
    devices = list(scenario.devices)
    for i, d in enumerate(devices):
        if d.profile is not None and d.gflops is None:
            gflops = profiled_gflops(device_profile(d), d.profile)  # type: ignore[arg-type]
            devices[i] = d.model_copy(update={"gflops": gflops})
    if devices == list(scenario.devices):
        return scenario
    return scenario.model_copy(update={"devices": devices})


def time_sources(workload: Workload, rates: list[DeviceRate]) -> dict[str, dict[str, int]]:
    """Per device, how many of its tasks take their time from its profile's ``table``, from a ``fit`` of
    the op kind (shape not measured), or from its ``rate`` (no profile, or no fit for the op)."""
    counts = {name: {"table": 0, "fit": 0, "rate": 0} for name in workload.devices}
    for task in workload.tasks:
        source = rates[task.device].time_source(task.flops, task.bytes_touched, task.op, task.layer)
        counts[workload.devices[task.device]][source] += 1
    return counts
