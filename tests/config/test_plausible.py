"""Magnitudes that are probably unit mistakes get one note on stderr, and the scenario still loads."""

from __future__ import annotations

import pytest

from sim.config.load import parse_scenario
from sim.config.plausible import plausibility_notes
from tests.helpers import scenario_dict


def test_bit_per_second_given_as_mbps_is_noted_once_and_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    data = scenario_dict(2, network={"topology": "mesh", "bandwidth_mbps": 20_000_000, "latency_ms": 1.0})
    sc = parse_scenario(data, origin="mistake.yaml")
    assert sc.setup.network.bandwidth_bps == 2e13  # accepted as written
    parse_scenario(data, origin="mistake.yaml")  # a second load (a sweep point) does not repeat it
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "dsim: mistake.yaml: note: network.bandwidth_mbps: 2e+07 Mbit/s is 20 Tbit/s; bit/s given as Mbit/s? "
        "(1 Mbps = 1e6 bit/s)"
    ]


@pytest.mark.parametrize(
    ("section", "value", "field"),
    [
        ("devices", [{"name": "d0", "gflops": 5e8}, {"name": "d1", "gflops": 2}], "devices[0].gflops"),
        ("devices", [{"name": "d0", "gflops": 2}, {"name": "d1", "gflops": 2e-4}], "devices[1].gflops"),
        ("network", {"bandwidth_mbps": 20, "latency_ms": 50_000}, "network.latency_ms"),
        ("network", {"bandwidth_mbps": 20, "links": [{"a": "d0", "b": "d1", "up_mbps": 1e8}]}, "links[0].up_mbps"),
        ("network", {"bandwidth_mbps": 0.0002}, "network.bandwidth_mbps"),
        ("inputs", {"dataset": "digits", "frames": 2, "interval_ms": 0.033}, "inputs.interval_ms"),
        ("inputs", {"dataset": "digits", "frames": 2, "interval_ms": 3_600_000}, "inputs.interval_ms"),
    ],
)
def test_each_implausible_magnitude_is_named(section: str, value: object, field: str) -> None:
    notes = plausibility_notes(parse_scenario(scenario_dict(2, **{section: value})))
    assert len(notes) == 1 and field in notes[0]


def test_ordinary_and_deliberately_extreme_values_pass_silently() -> None:
    ordinary = scenario_dict(2, inputs={"dataset": "digits", "frames": 3, "interval_ms": 33})
    fast = scenario_dict(2, network={"bandwidth_mbps": 100_000, "latency_ms": 0.01})  # 100 Gbit/s
    slow = scenario_dict(2, network={"bandwidth_mbps": 0.001, "latency_ms": 5000})  # 1 kbit/s radio
    for data in (ordinary, fast, slow):
        assert plausibility_notes(parse_scenario(data)) == []
