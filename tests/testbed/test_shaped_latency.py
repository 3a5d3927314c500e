"""A shaped validate of a scenario with link latency works on any kernel (issue 25, item 1): without netem
the links carry no added delay, and the simulation is given the same network with every latency at 0."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from sim.config.load import load, parse_scenario
from sim.testbed.validate import validate, zero_latency
from tests.helpers import scenario_dict

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
CUSTOM = Path(__file__).resolve().parents[2] / "scenarios" / "custom.yaml"


def test_zero_latency_zeroes_every_link_and_keeps_the_rest() -> None:
    sc = load(CUSTOM)  # GraphML edges (one with latency_ms 3.0) plus one network.links entry
    before = sc.setup.network
    assert max(link.latency_s for link in before.links) == 0.003
    zeroed = zero_latency(sc).setup.network
    assert zeroed.latency_s == 0.0
    assert all(link.latency_s == 0.0 for link in zeroed.links)
    # the rates and the custom topology's edges (in their order) are those of the loaded scenario
    rates = {(x.a, x.b): (x.up_bps, x.down_bps) for x in before.links}
    assert {(x.a, x.b): (x.up_bps, x.down_bps) for x in zeroed.links} == rates
    assert rates[("d1", "d2")] == (10e6, 10e6) and rates[("cam", "d1")] == (50e6, 50e6)
    assert zeroed.edges == before.edges


@pytest.mark.skipif(not IS_ROOT, reason="--shape needs root (network namespaces and tc)")
def test_shaped_validate_with_link_latency() -> None:
    data = scenario_dict(2, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 1})
    data["network"] = {"topology": "mesh", "bandwidth_mbps": 20, "latency_ms": 2.0}
    v = validate(parse_scenario(data, origin="test"), shape=True, repeats=1, timeout_s=60.0)
    applied = v.measured[0].summary["execution"]["latency_applied"]
    e2e = v.table[v.table["kind"] == "end_to_end"].iloc[0]
    assert math.isfinite(e2e["predicted_s"]) and e2e["measured_median_s"] > 0
    simulated_ms = v.predicted.summary["scenario"]["network"]["latency_ms"]
    assert simulated_ms == (2.0 if applied else 0.0)  # the simulation has the network the run had
    assert any("no netem" in n for n in v.notes) != applied
