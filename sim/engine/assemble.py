"""From a scenario to what the engine runs on: its network, its device rates and its frame arrivals.

The scenario's network comes from its :class:`~sim.config.records.Setup` (SI units, the GraphML edges read
once when the scenario was loaded) and is handed to :class:`sim.engine.network.Network`; device rates include a ``profile:`` device's measured table (read
here, torch-free) and hosts and per-message software costs; ``calibrate: true`` devices are profiled by
:func:`sim.pipeline.calibrate.calibrated`, once, in the process that prepares a run.

Example::

    >>> from sim.config.load import parse_scenario
    >>> sc = parse_scenario({"name": "x", "model": {"name": "lenet5"}, "devices": [{"name": "a", "gflops": 1},
    ...                      {"name": "b", "gflops": 1}], "source": "a", "sink": "a",
    ...                      "network": {"topology": "line"}})
    >>> [link.name for link in network(sc).route("a", "b")]
    ['a->b']
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.config.records import LinkSetup
from sim.config.schema import DeviceSpec, JitterSpec, LossSpec, ProtocolSetting, Scenario, ShaperSpec
from sim.engine.devices import (
    DeviceRate,
    Host,
    LayerLine,
    LayerTimes,
    MessageCpu,
    RuntimeTimes,
    fit_units,
    layer_scale,
    task_shape,
)
from sim.engine.loss import Bernoulli, GilbertElliott, Impairment, Jitter, LossModel
from sim.engine.network import PROTOCOLS, LinkParams, Network, Protocol
from sim.errors import UserError
from sim.workload.profiles import DeviceProfile, read_profile
from sim.workload.runtime import ANY_OP, ComputeEntry, RuntimeProfile, SoloCurve, fit_cost, read_runtime_profile
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


def loss_model(spec: LossSpec | None) -> LossModel | None:
    """The engine's loss process of a ``loss:`` setting; ``None`` when it can never lose a packet (``p: 0``),
    so such a run is the run without loss, file for file."""
    if spec is None:
        return None
    if spec.model == "bernoulli":
        return Bernoulli(spec.p) if spec.p else None
    model = GilbertElliott(
        spec.p_good_bad,  # type: ignore[arg-type]
        spec.p_bad_good,  # type: ignore[arg-type]
        0.0 if spec.loss_good is None else spec.loss_good,
        1.0 if spec.loss_bad is None else spec.loss_bad,
    )
    return model if model.loss_good or model.loss_bad else None


def jitter(spec: JitterSpec | None) -> Jitter | None:
    """The engine's :class:`Jitter` (seconds) of a ``jitter_ms:`` setting (milliseconds); ``None``: none, or
    a uniform range of a single 0."""
    if spec is None or (spec.distribution == "uniform" and spec.high == 0):
        return None
    c = spec.correlation
    if spec.distribution == "normal":
        return Jitter("normal", (spec.mean or 0.0) / 1e3, spec.std / 1e3, correlation=c)  # type: ignore[operator]
    if spec.distribution == "uniform":
        return Jitter("uniform", spec.low / 1e3, (spec.high - spec.low) / 1e3, correlation=c)  # type: ignore[operator]
    return Jitter("pareto", 0.0, spec.scale / 1e3, spec.shape, c)  # type: ignore[operator,arg-type]


def impairment(loss: LossSpec | None, jitter_spec: JitterSpec | None, rto_s: float) -> Impairment | None:
    """What a link does beyond rate and delay (:class:`Impairment`), or ``None`` for a perfect link."""
    model, delay = loss_model(loss), jitter(jitter_spec)
    return None if model is None and delay is None else Impairment(model, delay, rto_s)


def link_params(link: LinkSetup, rto_s: float) -> LinkParams:
    """The engine's :class:`LinkParams` of one link of the scenario's setup (SI units)."""
    return LinkParams(
        link.up_bps,
        link.down_bps,
        link.latency_s,
        link.duplex,
        protocol(link.protocol),
        burst_bytes(link.shaper),
        impairment(link.loss, link.jitter, rto_s),
    )


def network(scenario: Scenario) -> Network:
    """The scenario's network: its topology, with per-link overrides and, for ``custom``, its edges."""
    net = scenario.setup.network
    return Network.build(
        scenario.device_names,
        net.topology,
        net.bandwidth_bps,
        net.latency_s,
        {(x.a, x.b): link_params(x, net.rto_s) for x in net.links},
        list(net.edges),
        net.duplex,
        net.access_overhead_s,
        protocol(net.protocol),
        burst_bytes(net.shaper),
        impairment(net.loss, net.jitter, net.rto_s),
    )


def hop_matrix(scenario: Scenario) -> np.ndarray:
    """Links on the fewest-hop route between every two devices of the scenario's network (scenario order,
    zero diagonal): what ``comm_structured`` weighs the bytes by, whatever the links' rates.

    >>> from sim.config.load import parse_scenario
    >>> sc = parse_scenario({"name": "x", "model": {"name": "lenet5"}, "source": "a", "sink": "a",
    ...                      "devices": [{"name": n, "gflops": 1} for n in "abc"], "network": {"topology": "line"}})
    >>> hop_matrix(sc).tolist()
    [[0, 1, 2], [1, 0, 1], [2, 1, 0]]
    """
    names, net = scenario.device_names, network(scenario)
    return np.array([[len(net.route(a, b)) if a != b else 0 for b in names] for a in names], dtype=np.int64)


def hop_counts(scenario: Scenario) -> HopCount:
    """Links on the fewest-hop route between two devices (by index) of the scenario's network."""
    hops = hop_matrix(scenario)
    return lambda src, dst: int(hops[src, dst])


VALUE_BITS = 32  # prune.cost: seconds prices one float32 value


def device_cost(scenario: Scenario) -> np.ndarray:
    """The device-by-device cost matrix of ``admm_comm`` (scenario order, zero diagonal), scaled so that its
    smallest positive entry is 1.

    ``prune.cost_matrix`` when given; else ``prune.cost: hops`` (links on the fewest-hop route) or
    ``seconds`` (time one float32 value takes over the route: the sum of 32 bit / rate of its links). Only
    the ratios matter (the penalty is divided by its value at the start, and the reassignment compares
    sums), so the scaled matrix is what pruning reads, and what names its build in the cache: a bandwidth
    sweep of a uniform mesh prunes once.

    >>> from sim.config.load import parse_scenario
    >>> sc = parse_scenario({"name": "x", "model": {"name": "lenet5"}, "source": "a", "sink": "a",
    ...                      "devices": [{"name": n, "gflops": 1} for n in "ab"],
    ...                      "prune": {"method": "admm_comm", "cost": "seconds"}})
    >>> device_cost(sc).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    spec, names = scenario.prune, scenario.device_names
    if spec.cost_matrix is not None:
        out = np.asarray(spec.cost_matrix, dtype=np.float64)
    elif spec.cost == "hops":
        out = hop_matrix(scenario).astype(np.float64)
    else:
        net = network(scenario)
        out = np.zeros((len(names), len(names)))
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if i != j:
                    out[i, j] = sum(VALUE_BITS / link.bandwidth_bps for link in net.route(a, b))
    positive = out[out > 0]
    return out / positive.min() if positive.size else out


def layer_times(profile: DeviceProfile) -> LayerTimes:
    """The engine's table of one device profile: median seconds per task shape, and the per-op fits."""
    seconds = {task_shape(e.layer, e.op, e.flops, e.bytes_touched): e.median_s for e in profile.entries}
    return LayerTimes(seconds, {op: (f.s_per_unit, f.overhead_s) for op, f in profile.fit.items()})


def device_profile(device: DeviceSpec, path: Path | None = None) -> DeviceProfile | None:
    """The profile a device names (``profile:``), read from ``path`` (its resolved file, see
    :meth:`sim.config.records.Paths.profile`; default: ``device.profile`` as written), or None."""
    if device.profile is None:
        return None
    path = device.profile if path is None else path
    return read_profile(path).for_device(device.name, path)


def flops_per_s(device: DeviceSpec, path: Path | None = None, runtime: RuntimeProfile | None = None) -> float:
    """A device's compute rate in FLOP/s: its ``gflops``, else the conv rate of its profile (read from
    ``path``, the resolved ``profile:``), else that of the scenario's ``runtime`` profile."""
    if device.gflops is None and device.profile is None and runtime is not None:
        return runtime_gflops(runtime, device.name) * 1e9
    if device.gflops is None and device.profile is not None:
        return profiled_gflops(device_profile(device, path), path or device.profile) * 1e9  # type: ignore[arg-type]
    if device.gflops is None:
        raise UserError(f"devices: {device.name} has no gflops; profile it first (sim.pipeline.calibrate.calibrated)")
    return device.gflops * 1e9


def runtime_profile(scenario: Scenario) -> RuntimeProfile | None:
    """The scenario's top-level runtime ``profile:`` (read from its resolved path), or None."""
    path = scenario.setup.paths.runtime_profile
    return None if path is None else read_runtime_profile(path)


def runtime_gflops(profile: RuntimeProfile, device: str) -> float:
    """A device's ``gflops`` from a runtime profile, for the partitioner: its conv fit's rate, else the
    pooled conv (then ``*``) fit's; when no fit grows with FLOPs, total FLOPs over total CPU time."""
    own = profile.device(device)
    for fits in ([] if own is None else [own.fits]) + [profile.pooled]:
        for op in ("conv", "linear", ANY_OP):
            line = fits.get(op)
            if line is not None and line.s_per_flop > 0:
                return 1e-9 / line.s_per_flop
    rows = [e for d in profile.devices for e in d.entries if e.flops > 0 and e.cpu_s > 0]
    if not rows:
        raise UserError(f"profile: {profile.scenario}'s runtime profile has no conv or linear timing; give gflops")
    return sum(e.flops for e in rows) / sum(e.cpu_s for e in rows) / 1e9


@dataclass(frozen=True)
class ProfileLayers:
    """What every device's CPU times of a runtime profile share (:func:`profile_layers`): the solo curves by
    (layer, op), the profile's :func:`solo_slope` and each measured layer's line over all devices."""

    curves: dict[tuple[str, str], SoloCurve]
    slope: float | None
    layers: dict[tuple[str, str], LayerLine]


def profile_layers(profile: RuntimeProfile) -> ProfileLayers:
    """The curves, slope and pooled layer lines of ``profile``, computed once for all its devices."""
    curves = {(c.layer, c.op): c for c in profile.solo}
    entries = [e for d in profile.devices for e in d.entries]
    slope = solo_slope(entries, curves)
    return ProfileLayers(curves, slope, _layer_lines(entries, curves, slope))


def runtime_times(profile: RuntimeProfile, device: str, shared: ProfileLayers | None = None) -> RuntimeTimes:
    """The engine's CPU times of one device from a runtime profile: its measured shapes; its measured layers'
    lines along the profile's solo curves (:func:`solo_slope`), else those of every device that ran the
    layer (median); its fits (when the profile has seen it), then the pooled fits. ``shared``: the
    profile's :func:`profile_layers`, when already computed (for many devices)."""
    shared = profile_layers(profile) if shared is None else shared
    own = profile.device(device)
    if own is None:
        return RuntimeTimes({}, (profile.pooled,), shared.layers, shared.curves)
    seconds = {task_shape(e.layer, e.op, e.flops, e.bytes_touched): e.cpu_s for e in own.entries}
    layers = {**shared.layers, **_layer_lines(own.entries, shared.curves, shared.slope)}
    return RuntimeTimes(seconds, (own.fits, profile.pooled), layers, shared.curves)


def solo_slope(entries: Sequence[ComputeEntry], curves: Mapping[tuple[str, str], SoloCurve]) -> float | None:
    """How many CPU seconds a measured task takes per second its layer's share takes alone, beyond a fixed
    part: the slope of the non-negative least-squares line ``cpu_s = slope * solo_s + fixed_s`` through the
    entries of layers with a solo curve (``solo_s``: the curve at the entry's units); None with fewer than
    three distinct ``solo_s`` or no positive slope. In the runs of docs/validation.md a task took 1.6 to 2
    times its solo time plus 0.1 to 0.3 ms (the executor's own work per task), at every split: scaling a
    layer's whole measured time along its curve would scale that fixed part too.

    >>> curve = SoloCurve("c", "conv", (1.0, 2.0, 4.0), (0.001, 0.002, 0.004))
    >>> rows = [ComputeEntry("c", "conv", "conv", u, 0, 0.0003 + 2 * s, 0.0, 1) for u, s in zip(curve.units, curve.seconds)]
    >>> round(solo_slope(rows, {("c", "conv"): curve}), 6)
    2.0
    """
    points = []
    for e in entries:
        curve, units = curves.get((e.layer, e.op)), fit_units(e.op, e.flops, e.bytes_touched)
        if curve is not None and units > 0:
            points.append((curve.seconds_at(units), e.cpu_s))
    if len({x for x, _ in points}) < 3:
        return None
    line = fit_cost([(x, 0.0) for x, _ in points], [y for _, y in points])
    return line.s_per_flop if line.s_per_flop > 0 else None


def _layer_lines(
    entries: Sequence[ComputeEntry], curves: Mapping[tuple[str, str], SoloCurve], slope: float | None
) -> dict[tuple[str, str], LayerLine]:
    """Per (layer, op) of ``entries``: with a solo curve and a ``slope``, ``slope`` per solo second plus the
    median over the entries of their CPU seconds beyond it, or, when that median is negative (a layer
    cheaper than the line), in proportion to its curve; else none fixed and the median of their CPU
    seconds per :func:`layer_scale` (per unit: FLOPs, bytes touched for element-wise ops). Entries of no
    units are left out."""
    shares: dict[tuple[str, str], list[tuple[float, float]]] = {}  # (CPU s, solo s) of entries with a curve
    ratios: dict[tuple[str, str], list[float]] = {}
    for e in entries:
        units = fit_units(e.op, e.flops, e.bytes_touched)
        if units <= 0:
            continue
        key = (e.layer, e.op)
        curve = curves.get(key)
        if curve is not None and slope is not None:
            shares.setdefault(key, []).append((e.cpu_s, curve.seconds_at(units)))
        else:
            ratios.setdefault(key, []).append(e.cpu_s / layer_scale(curve, units))
    lines = {key: LayerLine(0.0, statistics.median(values)) for key, values in ratios.items()}
    for key, pairs in shares.items():
        fixed_s = statistics.median(cpu - slope * solo for cpu, solo in pairs)  # type: ignore[operator]
        if fixed_s >= 0:
            lines[key] = LayerLine(fixed_s, slope)  # type: ignore[arg-type]
        else:  # below the line: in proportion to its curve (a line through 0 would overshoot what was measured)
            lines[key] = LayerLine(0.0, statistics.median(cpu / solo for cpu, solo in pairs))
    return lines


def compute_rates(scenario: Scenario) -> list[float]:
    """Each device's compute rate in FLOP/s (:func:`flops_per_s`), profiles read from their resolved paths."""
    runtime = runtime_profile(scenario)
    return [flops_per_s(d, scenario.setup.paths.profile(d.name), runtime) for d in scenario.devices]


def device_rates(scenario: Scenario) -> list[DeviceRate]:
    """Each device's compute rate, overhead, memory bandwidth, measured table (``profile:``), per-message
    software costs and, with a top-level runtime ``profile:``, its CPU times of tasks and messages and the
    extra CPU time of a task after idling (a device's own ``profile:`` keeps its measured table), in
    scenario order."""
    runtime = runtime_profile(scenario)
    messages = None if runtime is None else MessageCpu(runtime.send, runtime.recv, runtime.transit)
    shared = None if runtime is None else profile_layers(runtime)  # once for every device
    rates = []
    for d, si in zip(scenario.devices, scenario.setup.devices, strict=True):
        path = scenario.setup.paths.profile(d.name)
        profile = device_profile(d, path)
        times: LayerTimes | RuntimeTimes | None = None if profile is None else layer_times(profile)
        if times is None and runtime is not None:
            times = runtime_times(runtime, d.name, shared)
        rates.append(
            DeviceRate(
                flops_per_s(d, path, runtime),
                si.overhead_s,
                si.mem_bandwidth_Bps,
                times,
                d.send_overhead_us / 1e6,
                d.recv_overhead_us / 1e6,
                messages,
                None if runtime is None or profile is not None else runtime.wake,  # own table: timed apart
            )
        )
    return rates


def hosts(scenario: Scenario) -> list[Host | None]:
    """The host each device shares (``devices[i].host``), in scenario order; None: a machine of its own.
    A host's ``sharing`` defaults to ``fifo``: measured on this project's 2-core machine, a task of a few
    milliseconds runs to its end once it has a core, even with four device processes on two cores
    (docs/validation.md, "Sharing the cores"), which ``processor`` sharing does not predict."""
    spec = {h.name: h for h in scenario.hosts}
    return [
        None if d.host is None else Host(d.host, spec[d.host].cores, spec[d.host].sharing or "fifo")
        for d in scenario.devices
    ]


def arrivals_s(scenario: Scenario, frames: int) -> list[float]:
    """When each frame enters at the source, in seconds from the start."""
    return [f * scenario.setup.interval_s for f in range(frames)]


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


def time_sources(workload: Workload, rates: list[DeviceRate]) -> dict[str, dict[str, int]]:
    """Per device, how many of its tasks take their time from its profile's ``table``, from its layer
    measured in another shape (``scaled``), from a ``fit`` of the op kind (layer not measured), or from its
    ``rate`` (no profile, or no fit for the op)."""
    counts = {name: {"table": 0, "scaled": 0, "fit": 0, "rate": 0} for name in workload.devices}
    for task in workload.tasks:
        source = rates[task.device].time_source(task.flops, task.bytes_touched, task.op, task.layer, task.kind)
        counts[workload.devices[task.device]][source] += 1
    return counts
