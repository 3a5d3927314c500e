"""Crossovers of a sweep's lines: pairs found without trying every pair, the same report as trying them all.

The oracle, :func:`all_pairs_report`, is the report as it was computed before: every pair of lines
(``itertools.combinations``), each pair filtering the table of crossings. When one setting names the lines
(the bundled sweeps: variants over a bandwidth), every pair differs in that one setting, so the report
must be the same.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sim.analysis import curves
from sim.study.sweep import sweep
from tests.helpers import SCENARIOS

X = curves.BANDWIDTH_KEY


def all_pairs_report(table: pd.DataFrame, x: str = X) -> pd.DataFrame:
    """The crossover report over every pair of lines (the quadratic way)."""
    lines = curves.lines(table, x)
    found = []
    for label, _, rows in lines:
        if "baseline_latency_s" in rows.columns and rows["baseline_latency_s"].notna().all():
            gap = rows["latency_s"].to_numpy(float) - rows["baseline_latency_s"].to_numpy(float)
            found += [(label, curves.SINGLE, v) for v in curves._crossings(rows[x].to_numpy(float), gap)]
    for (label_a, _, a), (label_b, _, b) in itertools.combinations(lines, 2):
        xs = a[x].to_numpy(float)
        yb = np.interp(np.log(xs), np.log(b[x].to_numpy(float)), b["latency_s"].to_numpy(float))
        found += [(label_a, label_b, v) for v in curves._crossings(xs, a["latency_s"].to_numpy(float) - yb)]
    crossings = pd.DataFrame(found, columns=["line", "versus", x])
    single = "baseline_latency_s" in table.columns and table["baseline_latency_s"].notna().any()
    records: list[dict[str, Any]] = []
    if single:
        pairs = [(label, curves.SINGLE, rows) for label, _, rows in lines]
    else:
        pairs = [(la, lb, (a, b)) for (la, _, a), (lb, _, b) in itertools.combinations(lines, 2)]
    for line, versus, data in pairs:
        if single:
            rows = data[data["baseline_latency_s"].notna()]
            xs, ya, yb = (
                rows[x].to_numpy(float),
                rows["latency_s"].to_numpy(float),
                rows["baseline_latency_s"].to_numpy(float),
            )
        else:
            a, b = data
            xa, xb = a[x].to_numpy(float), b[x].to_numpy(float)
            xs = xa[(xa >= xb.min()) & (xa <= xb.max())]
            yb = np.interp(np.log(xs), np.log(xb), b["latency_s"].to_numpy(float))
            ya = np.interp(np.log(xs), np.log(xa), a["latency_s"].to_numpy(float))
        if not len(xs):
            continue
        hits = crossings[(crossings["line"] == line) & (crossings["versus"] == versus)][x]
        base = {"line": line, "versus": versus, "lo": float(xs.min()), "hi": float(xs.max())}
        if len(hits):
            records += [{**base, "crosses": True, "at": float(v), "faster": ""} for v in hits]
        else:
            records.append({**base, "crosses": False, "at": np.nan, "faster": line if (ya <= yb).all() else versus})
    return pd.DataFrame(records, columns=["line", "versus", "crosses", "at", "lo", "hi", "faster"])


def test_line_pairs_are_the_pairs_that_differ_in_one_setting() -> None:
    settings = [[f"a={a}", f"b={b}", f"c={c}"] for a in range(3) for b in range(2) for c in range(2)]
    lines = [(",".join(s), s, pd.DataFrame()) for s in settings]
    expected = [
        (i, j)
        for i, j in itertools.combinations(range(len(settings)), 2)
        if sum(u != v for u, v in zip(settings[i], settings[j])) == 1
    ]
    assert curves.line_pairs(lines) == expected
    assert len(expected) == 12 * (2 + 1 + 1) // 2  # each line has 2 + 1 + 1 neighbours


@pytest.fixture(scope="module")
def bandwidth_sweep() -> pd.DataFrame:
    """The sweep that scenarios/bandwidth.yaml describes, on 9 bandwidths instead of 41."""
    variants = {
        "dense": {"transfer.format": "dense"},
        "csr": {"transfer.format": "csr"},
        "auto": {"transfer.format": "auto"},
        "auto, pruned": {"transfer.format": "auto", "prune.method": "ln_structured", "prune.amount": 0.5},
    }
    grid = {X: [float(b) for b in np.geomspace(0.1, 1000, 9)]}
    return sweep(SCENARIOS / "bandwidth.yaml", grid, baseline=True, variants=variants, jobs=1, progress=False)


def test_report_equals_the_all_pairs_report_on_the_bundled_sweep(bandwidth_sweep: pd.DataFrame) -> None:
    report = curves.crossover_report(bandwidth_sweep)
    assert report["crosses"].any() and set(report["versus"]) == {curves.SINGLE}
    pd.testing.assert_frame_equal(report, all_pairs_report(bandwidth_sweep))
    between = bandwidth_sweep.drop(columns=list(curves.BASELINE_COLUMNS))  # no baseline: the lines' pairs
    report = curves.crossover_report(between)
    assert len(report) == 6  # the 4 variants pairwise
    pd.testing.assert_frame_equal(report, all_pairs_report(between))


def test_lines_that_differ_in_two_settings_are_not_compared() -> None:
    rows = [
        {
            "point": 0,
            X: mbps,
            "transfer.format": fmt,
            "devices.1.gflops": g,
            "devices": 2,
            "latency_s": lat,
            "error": "",
        }
        for fmt in ("dense", "csr")
        for g in (1.0, 2.0)
        for mbps, lat in ((1.0, 1.0 + g + (fmt == "csr")), (10.0, 3.0 - g - (fmt == "csr")))
    ]
    report = curves.crossover_report(pd.DataFrame(rows))
    assert len(report) == 4  # of the 6 pairs of 4 lines, the 2 diagonal ones differ in both settings
    assert not (
        (report["line"] == "2 devices, format=dense, gflops=1")
        & (report["versus"] == "2 devices, format=csr, gflops=2")
    ).any()
