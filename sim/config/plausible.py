"""Plausibility notes: magnitudes a scenario accepts but that are probably unit mistakes.

A scenario's numbers are checked for validity by the schema (:mod:`sim.config.schema`); a value can be
valid and still far outside anything real, usually because it was written in another unit: bit/s given
as ``bandwidth_mbps``, FLOP/s as ``gflops``, seconds as ``latency_ms``. :func:`plausibility_notes` names each
such value with the unit it was probably meant in; loading prints each note once on stderr and goes on.

Thresholds (:data:`LIMITS`), chosen far outside the devices and networks this simulator models, so a
deliberate extreme (a 100 Gbit/s data-centre link, a 1 kbit/s radio) passes silently:

* a link above 1e5 Mbit/s (100 Gbit/s), or below 1e-3 Mbit/s (1 kbit/s);
* a latency above 1e4 ms (10 s);
* a device above 1e6 GFLOP/s (a petaFLOP/s), or below 1e-3 GFLOP/s (1 MFLOP/s);
* an interval between frames above 6e5 ms (10 minutes), or above 0 and below 0.1 ms (10,000 frames/s).

Example::

    >>> from sim.config.load import parse_scenario
    >>> sc = parse_scenario({"name": "x", "model": {"name": "lenet5"}, "source": "a", "sink": "a",
    ...     "devices": [{"name": "a", "gflops": 2}], "network": {"bandwidth_mbps": 20000000}})
    >>> plausibility_notes(sc)
    ['network.bandwidth_mbps: 2e+07 Mbit/s is 20 Tbit/s; bit/s given as Mbit/s? (1 Mbps = 1e6 bit/s)']
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.config.schema import Scenario


@dataclass(frozen=True)
class Limit:
    """The plausible range ``[low, high]`` of one kind of value, and what a value outside it probably is."""

    unit: str
    low: float
    high: float
    too_low: str
    too_high: str


LIMITS = {
    "mbps": Limit("Mbit/s", 1e-3, 1e5, "kbit/s or bit/s given as Mbit/s?", "bit/s given as Mbit/s? (1 Mbps = 1e6 bit/s)"),
    "latency_ms": Limit("ms", 0.0, 1e4, "", "microseconds given as ms?"),
    "gflops": Limit("GFLOP/s", 1e-3, 1e6, "FLOP/s given in millions?", "FLOP/s given as GFLOP/s? (1 GFLOP/s = 1e9 FLOP/s)"),
    "interval_ms": Limit("ms", 0.1, 6e5, "seconds given as ms?", "microseconds given as ms?"),
}  # fmt: skip


def _note(field: str, value: float | None, kind: str) -> str | None:
    limit = LIMITS[kind]
    if value is None or (kind == "interval_ms" and value == 0):
        return None
    if value > limit.high:
        extra = f" is {value / 1e6:.3g} Tbit/s" if kind == "mbps" else ""
        return f"{field}: {value:.3g} {limit.unit}{extra}; {limit.too_high}"
    if value < limit.low and limit.too_low:
        return f"{field}: {value:.3g} {limit.unit}; {limit.too_low}"
    return None


def plausibility_notes(scenario: Scenario) -> list[str]:
    """One line for each value of ``scenario`` outside its plausible range (module docstring), naming the
    field, the value and the unit it was probably meant in."""
    net = scenario.network
    checks: list[tuple[str, float | None, str]] = [
        ("network.bandwidth_mbps", net.bandwidth_mbps, "mbps"),
        ("network.latency_ms", net.latency_ms, "latency_ms"),
        ("inputs.interval_ms", scenario.inputs.interval_ms, "interval_ms"),
    ]
    for i, link in enumerate(net.links):
        for key in ("bandwidth_mbps", "up_mbps", "down_mbps"):
            checks.append((f"network.links[{i}].{key}", getattr(link, key), "mbps"))
        checks.append((f"network.links[{i}].latency_ms", link.latency_ms, "latency_ms"))
    for i, device in enumerate(scenario.devices):
        checks.append((f"devices[{i}].gflops", device.gflops, "gflops"))
    return [note for field, value, kind in checks if (note := _note(field, value, kind)) is not None]
