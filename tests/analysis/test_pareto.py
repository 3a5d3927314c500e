"""Pareto fronts (hand-made tables whose fronts are found by inspection) and the crossover report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sim.analysis import curves
from sim.analysis.pareto import Objective, non_dominated, pareto_table, sweep_labels


def test_non_dominated_on_a_hand_made_table():
    # (latency, bytes): a=(1, 50) b=(2, 20) c=(3, 10) are a front; d=(2, 30) is beaten by b, e=(4, 40) by b
    # and c; f=(1, 50) equals a, and equal rows do not dominate each other
    t = pd.DataFrame({"lat": [1, 2, 3, 2, 4, 1], "kb": [50, 20, 10, 30, 40, 50]}, dtype=float)
    front = non_dominated(t, [Objective("lat"), Objective("kb")])
    assert front.tolist() == [True, True, True, False, False, True]


def test_accuracy_is_maximised_and_missing_values_never_make_the_front():
    t = pd.DataFrame({"lat": [1.0, 1.0, 2.0, 0.5], "acc": [0.9, 0.95, 0.99, np.nan]})
    # row 0 is beaten by row 1 (same latency, more accurate); row 3 has no accuracy
    assert non_dominated(t, [Objective("lat"), Objective("acc", maximize=True)]).tolist() == [False, True, True, False]


def test_pareto_table_is_per_frame_skips_failed_rows_and_sorts_by_latency():
    table = pd.DataFrame(
        {
            "latency_s": [0.003, 0.001, 0.002, np.nan],
            "bytes_total": [1000, 8000, 4000, np.nan],
            "frames": [2, 2, 2, 2],
            "accuracy": [0.90, 0.80, 0.70, np.nan],
            "error": ["", "", "", "bad value"],
        }
    )
    front = pareto_table(table, ["slow", "fast", "middle", "failed"])
    assert list(front["label"]) == ["fast", "middle", "slow"]
    assert list(front["bytes_per_frame"]) == [4000, 2000, 500]
    # fast (1 ms, 4000 B, 80 %), middle (2 ms, 2000 B, 70 %), slow (3 ms, 500 B, 90 %): each is beaten by
    # another on some objective but by none on all three
    assert list(front["pareto"]) == [True, True, True]
    # middle at 800 B (400 B per frame) and 95 % beats slow (500 B per frame, 90 %) on all three
    table.loc[2, "accuracy"] = 0.95
    table.loc[2, "bytes_total"] = 800
    front = pareto_table(table, ["slow", "fast", "middle", "failed"])
    assert dict(zip(front["label"], front["pareto"])) == {"fast": True, "middle": True, "slow": False}


def test_sweep_labels_name_the_settings_that_vary():
    table = pd.DataFrame(
        {
            "point": [0, 1],
            "scenario": "s",
            "variant": ["a", "b"],
            "network.bandwidth_mbps": [1.0, 10.0],
            "transfer.dtype": ["float32", "float32"],
            "latency_s": [1.0, 2.0],
            "error": "",
        }
    )
    assert sweep_labels(table) == ["a, bandwidth_mbps=1", "b, bandwidth_mbps=10"]


def test_crossover_report_names_crossings_and_lines_that_never_cross():
    rows = []
    for variant, lats in (("wins", (3.0, 1.0, 0.5)), ("never", (4.0, 3.0, 2.5))):
        for mbps, lat in zip((1.0, 10.0, 100.0), lats):
            rows.append(
                {
                    "variant": variant,
                    "network.bandwidth_mbps": mbps,
                    "devices": 4,
                    "latency_s": lat,
                    "baseline_latency_s": 2.0,
                }
            )
    table = pd.DataFrame(rows)
    table.insert(0, "point", range(len(table)))
    table["error"] = ""
    report = curves.crossover_report(table)
    wins = report[report["line"] == "wins"].iloc[0]
    # gap +1 at 1 Mbps, -1 at 10 Mbps: halfway in log bandwidth, 10**0.5
    assert bool(wins["crosses"]) and wins["at"] == pytest.approx(10**0.5) and wins["versus"] == curves.SINGLE
    never = report[report["line"] == "never"].iloc[0]
    assert not bool(never["crosses"]) and (never["lo"], never["hi"]) == (1.0, 100.0)
    assert never["faster"] == curves.SINGLE


def test_designs_are_compared_only_under_equal_conditions():
    # two designs at two bandwidths: at each bandwidth "small" (fewer bytes, faster) beats "big"; across
    # bandwidths, "small" at 1 Mbps (slow) would be beaten by "big" at 100 Mbps were they compared
    table = pd.DataFrame(
        {
            "point": range(4),
            "variant": ["big", "small", "big", "small"],
            "network.bandwidth_mbps": [1.0, 1.0, 100.0, 100.0],
            "latency_s": [0.010, 0.008, 0.002, 0.001],
            "bytes_total": [2000, 1000, 2000, 1000],
            "error": "",
        }
    )
    front = pareto_table(table, ["big@1", "small@1", "big@100", "small@100"], within=["network.bandwidth_mbps"])
    assert dict(zip(front["label"], front["pareto"])) == {
        "small@100": True,
        "big@100": False,
        "small@1": True,
        "big@1": False,
    }
    assert dict(zip(*(pareto_table(table, list("abcd"))[c] for c in ("label", "pareto")))) == {
        "d": True,
        "c": False,
        "b": False,
        "a": False,
    }
