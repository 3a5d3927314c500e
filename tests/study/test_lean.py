"""A sweep point's lean row (no tables) against the whole run: the same numbers, column by column.

The lean path (:func:`sim.pipeline.evaluate.point_summary`) computes a point's figures straight from the
engine's timeline. Here each figure is also computed the old way, with pandas over the run's result tables
(``transfers.csv`` and ``compute.csv`` as written by ``dsim run``), and every other column of the row is
compared with the row made from the whole run's summary.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from sim.config.load import load, parse_scenario
from sim.config.schema import Scenario
from sim.pipeline.cache import build
from sim.pipeline.evaluate import baseline_scenario, evaluate, point_summary, run_engine
from sim.study.sweep import summary_row
from sim.workload import wire
from tests.helpers import SCENARIOS, scenario_dict


def table_figures(result: Any) -> dict[str, Any]:
    """The row's byte, message, elements x hops and compute columns, with pandas over the result tables."""
    transfers, compute = result.transfers, result.compute
    sent = transfers[~transfers["multicast_copy"].astype(bool)]
    headers = int(sent["header_bytes"].sum())
    columns = [f"{f}_bytes" for f in wire.FORMATS]
    out = {
        "messages": len(transfers),
        "bytes_total": int(transfers["bytes"].sum()),
        "elements_hops": int((transfers["elements"].astype("int64") * transfers["hops"].astype("int64")).sum()),
        "flops_total": float(compute["flops"].sum()),
        "compute_s_total": float((compute["end_s"] - compute["start_s"]).sum()),
        "bytes_auto": int(sent[columns].min(axis=1, skipna=True).sum()) + headers,
    }
    out.update(
        {
            f"bytes_{f}": int(sent[f"{f}_bytes"].sum()) + headers
            for f in wire.FORMATS
            if sent[f"{f}_bytes"].notna().all()
        }
    )
    return out


def same(a: Any, b: Any) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


def check_point(scenario: Scenario) -> None:
    """The lean row of ``scenario`` equals the whole run's row, and its table figures pandas' sums."""
    built = build(scenario).built
    base = build(baseline_scenario(scenario)).built if scenario.baseline == "single" else None
    run = run_engine(scenario, built.workload)
    lean = summary_row(point_summary(scenario, built, base, run), built.workload, run.timeline)
    full = evaluate(scenario, built, base)
    whole = summary_row(full.summary, full.workload, full.timeline)
    assert lean.keys() == whole.keys()
    differ = {k: (lean[k], whole[k]) for k in lean if not same(lean[k], whole[k])}
    assert not differ, differ
    figures = table_figures(full)
    assert {k: lean[k] for k in figures} == figures


VARIANTS = {
    "mesh": {},
    "stream with a baseline": {"inputs": {"dataset": "digits", "frames": 3, "interval_ms": 1}, "baseline": "single"},
    "line, chunks": {"network": {"topology": "line", "bandwidth_mbps": 5, "latency_ms": 1, "chunk_kB": 0.7}},
    "tcp packets, auto": {
        "network": {"topology": "star", "bandwidth_mbps": 5, "latency_ms": 1, "protocol": "tcp"},
        "transfer": {"format": "auto", "dtype": "float32", "index_bits": 16},
    },
    "multicast on a shared medium": {
        "network": {"topology": "shared", "bandwidth_mbps": 5, "latency_ms": 1, "multicast": True}
    },
    "pruned": {"prune": {"method": "l1_unstructured", "amount": 0.5}, "transfer": {"format": "csr"}},
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_lean_row_equals_the_whole_runs_row(name: str) -> None:
    check_point(parse_scenario(scenario_dict(4, **VARIANTS[name])))


BUNDLED = sorted(str(p.relative_to(SCENARIOS)) for p in SCENARIOS.rglob("*.yaml") if p.name != "calibrated.yaml")


@pytest.mark.slow
@pytest.mark.parametrize("path", BUNDLED)
def test_lean_row_equals_the_whole_runs_row_on_every_bundled_scenario(path: str) -> None:
    check_point(load(SCENARIOS / path))
