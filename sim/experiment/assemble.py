"""From a scenario to what the engine runs on: its network, its device rates and its frame arrivals.

Everything comes from the scenario's :class:`~sim.config.setup.Setup` (SI units, the GraphML edges read
once when the scenario was loaded); ``calibrate: true`` devices are measured here, once, in the process
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

import dataclasses
from collections.abc import Callable

from sim.config.schema import Scenario
from sim.config.setup import device_setups
from sim.engine.devices import DeviceRate
from sim.engine.network import LinkParams, Network
from sim.errors import UserError

HopCount = Callable[[int, int], int]  # (src device index, dst device index) -> links on its route


def network(scenario: Scenario) -> Network:
    """The scenario's network: its topology, with per-link overrides and, for ``custom``, its edges."""
    net = scenario.setup.network
    overrides = {(x.a, x.b): LinkParams(x.up_bps, x.down_bps, x.latency_s, x.duplex) for x in net.links}
    return Network.build(
        scenario.device_names,
        net.topology,
        net.bandwidth_bps,
        net.latency_s,
        overrides,
        list(net.edges),
        net.duplex,
        net.access_overhead_s,
    )


def hop_counts(scenario: Scenario) -> HopCount:
    """Links on the fewest-hop route between two devices (by index) of the scenario's network."""
    names, net = scenario.device_names, network(scenario)
    return lambda src, dst: len(net.route(names[src], names[dst]))


def flops_per_s(scenario: Scenario) -> list[float]:
    """Each device's compute rate in FLOP/s, in scenario order; a ``calibrate: true`` device must have been
    measured first (:func:`calibrated`)."""
    rates = []
    for d in scenario.setup.devices:
        if d.flops_per_s is None:
            raise UserError(
                f"devices: {d.name} has calibrate: true; measure it first (sim.experiment.assemble.calibrated)"
            )
        rates.append(d.flops_per_s)
    return rates


def device_rates(scenario: Scenario) -> list[DeviceRate]:
    """Each device's compute rate, overhead and memory bandwidth, in scenario order."""
    rates = flops_per_s(scenario)
    return [DeviceRate(r, d.overhead_s, d.mem_bandwidth_Bps) for r, d in zip(rates, scenario.setup.devices)]


def arrivals_s(scenario: Scenario, frames: int) -> list[float]:
    """When each frame enters at the source, in seconds from the start."""
    return [f * scenario.setup.interval_s for f in range(frames)]


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
    measured = scenario.model_copy(update={"devices": devices})
    measured._setup = dataclasses.replace(scenario.setup, devices=device_setups(measured))
    return measured
