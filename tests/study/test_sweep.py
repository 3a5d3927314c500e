"""Sweeps: one build per distinct workload, rows equal to separate runs, failures and interrupts kept."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim
from sim import cli
from sim.analysis import curves
from sim.config import overrides as grid
from sim.config.load import load
from sim.errors import UserError
from sim.pipeline import prepare as runner
from sim.pipeline.evaluate import evaluate
from sim.study import sweep as sweeps
from tests.helpers import SCENARIOS, scenario_dict

LENET_FLOPS = 2 * (6 * 25 * 28 * 28 + 16 * 6 * 25 * 10 * 10 + 120 * 400 + 84 * 120 + 10 * 84)  # 833040
SAME = (
    "latency_s",
    "latency_p50_s",
    "latency_p99_s",
    "throughput_fps",
    "makespan_s",
    "bytes_total",
    "flops_total",
    "compute_s_total",
    "messages",
)


@pytest.fixture
def count_builds(monkeypatch):
    """Count calls of sim.pipeline.prepare.prepare (the torch side)."""
    calls = []
    real = runner.prepare

    def counting(scenario, **kwargs):
        calls.append(scenario)
        return real(scenario, **kwargs)

    monkeypatch.setattr(runner, "prepare", counting)
    return calls


@pytest.mark.parametrize("jobs", [1, 2])
def test_bandwidth_sweep_builds_once_and_matches_separate_runs(count_builds, jobs):
    bandwidths = [0.5, 5, 50]
    table = sim.sweep(scenario_dict(4), {"network.bandwidth_mbps": bandwidths}, jobs=jobs, progress=False)
    assert len(count_builds) == 1
    assert list(table["network.bandwidth_mbps"]) == bandwidths
    assert (table["error"] == "").all()
    for row, mbps in zip(table.to_dict("records"), bandwidths):
        summary = sim.run(scenario_dict(4, network={"bandwidth_mbps": mbps})).summary
        for column in SAME:
            assert row[column] == summary[column], column
        assert row["bytes_dense"] == summary["bytes_by_format"]["dense"]
        assert row["bytes_auto"] == summary["bytes_by_format"]["auto"]
    assert table["latency_s"].is_monotonic_decreasing


def test_one_build_per_distinct_workload_key(count_builds):
    grid = {"transfer.format": ["dense", "csr", "auto"], "network.bandwidth_mbps": [1, 10], "devices.1.gflops": [1, 4]}
    table = sweeps.sweep(scenario_dict(4), grid, jobs=1, progress=False)
    assert len(table) == 12
    assert len(count_builds) == 3  # one per format; bandwidth and a device's speed reuse the workload
    row = table[(table["transfer.format"] == "csr") & (table["devices.1.gflops"] == 4)].iloc[0]
    devices = scenario_dict(4)["devices"]
    devices[1] = {"name": "d1", "gflops": 4}
    summary = sim.run(
        scenario_dict(4, devices=devices, network={"bandwidth_mbps": 1}, transfer={"format": "csr"})
    ).summary
    assert row["latency_s"] == summary["latency_s"]
    assert row["bytes_total"] == summary["bytes_by_format"]["csr"]


def test_bad_point_records_its_error_and_the_others_complete(tmp_path):
    table = sweeps.sweep(
        scenario_dict(2), {"network.bandwidth_mbps": [10, 0, 20]}, out=tmp_path, jobs=1, progress=False
    )
    assert "network.bandwidth_mbps: must be >= 1e-06" in table.loc[1, "error"]
    assert math.isnan(table.loc[1, "latency_s"])
    assert table.loc[[0, 2], "latency_s"].notna().all() and (table.loc[[0, 2], "error"] == "").all()
    saved = pd.read_csv(tmp_path / "sweep.csv")
    assert list(saved["point"]) == [0, 1, 2] and "must be >= 1e-06" in saved.loc[1, "error"]


def test_interrupt_keeps_finished_rows(tmp_path, monkeypatch):
    real, calls = sweeps.run_engine, []

    def interrupted(scenario, workload):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(scenario, workload)

    monkeypatch.setattr(sweeps, "run_engine", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sweeps.sweep(scenario_dict(2), {"network.bandwidth_mbps": [1, 2, 3, 4]}, out=tmp_path, jobs=1, progress=False)
    saved = pd.read_csv(tmp_path / "sweep.csv")
    assert list(saved["network.bandwidth_mbps"]) == [1, 2]
    assert saved["latency_s"].notna().all()


def test_baseline_is_the_source_device_alone():
    table = sweeps.sweep(
        scenario_dict(4),
        {"network.bandwidth_mbps": [1, 100], "transfer.format": ["dense", "csr"]},
        baseline=True,
        jobs=1,
        progress=False,
    )
    # LeNet-5 whole on d0 at 2 GFLOP/s, whatever the links and the wire format
    assert table["baseline_latency_s"].to_numpy() == pytest.approx([LENET_FLOPS / 2e9] * 4)
    assert table["speedup"].to_numpy() == pytest.approx(table["baseline_latency_s"] / table["latency_s"])
    assert curves.baselines(table, "network.bandwidth_mbps")[0][0] == "single device"


def test_quickstart_latency_never_increases_with_bandwidth_on_mesh():
    settings = {
        "network.latency_ms": [0, 1, 5],
        "inputs.frames": [1, 3],
        "network.bandwidth_mbps": list(grid.parse_logspace("k=0.05:5000:15")[1]),
    }
    table = sweeps.sweep(str(SCENARIOS / "quickstart.yaml"), settings, jobs=1, progress=False)
    assert (table["error"] == "").all()
    for _, curve in table.groupby(["network.latency_ms", "inputs.frames"]):
        latency = curve.sort_values("network.bandwidth_mbps")["latency_s"].to_numpy()
        assert (latency[1:] <= latency[:-1]).all()


@settings(max_examples=30, deadline=None)
@given(
    low=st.floats(0.01, 1000),
    factor=st.floats(1.0, 100.0),
    latency_ms=st.floats(0, 10),
    gflops=st.lists(st.floats(0.1, 10), min_size=4, max_size=4),
    interval_ms=st.floats(0, 5),
)
def test_latency_monotone_in_bandwidth_property(quickstart_workload, low, factor, latency_ms, gflops, interval_ms):
    base, workload = quickstart_workload
    latencies = []
    for mbps in (low, low * factor):
        data = base.model_dump(mode="json")
        data["network"].update(bandwidth_mbps=mbps, latency_ms=latency_ms)
        data["inputs"]["interval_ms"] = interval_ms
        for device, rate in zip(data["devices"], gflops):
            device["gflops"] = rate
        latencies.append(evaluate(load(data), workload).summary["frame_latency_s"])
    assert all(fast <= slow for slow, fast in zip(*latencies))


@pytest.fixture(scope="module")
def quickstart_workload():
    sc = load(str(SCENARIOS / "quickstart.yaml"))
    sc = sc.model_copy(update={"inputs": sc.inputs.model_copy(update={"frames": 2})})
    return sc, runner.prepare(sc).built


def test_parse_set_and_logspace():
    assert grid.parse_set("transfer.format=dense,csr,auto") == ("transfer.format", ["dense", "csr", "auto"])
    assert grid.parse_set("network.bandwidth_mbps=1,2.5,1e3") == ("network.bandwidth_mbps", [1, 2.5, 1000.0])
    key, values = grid.parse_logspace("network.bandwidth_mbps=1:1000:4")
    assert key == "network.bandwidth_mbps" and values == pytest.approx([1, 10, 100, 1000])
    for bad in ("x", "k=", "=1,2"):
        with pytest.raises(UserError, match="--set"):
            grid.parse_set(bad)
    for bad in ("k=1:10", "k=0:10:3", "k=1:10:x"):
        with pytest.raises(UserError, match="--logspace"):
            grid.parse_logspace(bad)


def test_unknown_key_refuses_the_whole_sweep():
    with pytest.raises(UserError, match=r"network\.bandwith_mbps: no such scenario field"):
        sweeps.sweep(scenario_dict(2), {"network.bandwith_mbps": [1]}, progress=False)
    with pytest.raises(UserError, match="list index below 2"):
        sweeps.sweep(scenario_dict(2), {"devices.2.gflops": [1]}, progress=False)


def test_crossovers_interpolate_in_log_bandwidth():
    table = pd.DataFrame(
        {
            "point": [0, 1, 2],
            "devices": 4,
            "network.bandwidth_mbps": [1.0, 10.0, 100.0],
            "latency_s": [10.0, 4.0, 1.0],
            "baseline_latency_s": 2.0,
            "error": "",
        }
    )
    cross = curves.crossovers(table)
    # between 10 Mbps (gap +2) and 100 Mbps (gap -1): 2/3 of the way in log10: 10**(1 + 2/3)
    assert len(cross) == 1 and cross.iloc[0]["network.bandwidth_mbps"] == pytest.approx(10 ** (5 / 3))
    assert cross.iloc[0]["line"] == "4 devices" and cross.iloc[0]["versus"] == "single device"


def test_cli_sweep_writes_table_and_plot(tmp_path, capsys):
    out = tmp_path / "sw"
    code = cli.main(
        [
            "sweep",
            str(SCENARIOS / "quickstart.yaml"),
            "--set",
            "network.bandwidth_mbps=1,100",
            "--baseline",
            "--out",
            str(out),
            "--jobs",
            "1",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "2 points (0 failed)" in printed
    assert len(pd.read_csv(out / "sweep.csv")) == 2
    assert (out / "latency_vs_bandwidth.png").stat().st_size > 0
    before = (out / "sweep.csv").read_bytes()
    for bad in (["--jobs", "0"], ["--set", "network.bandwidth_mbps=-1,0", "--jobs", "1"]):
        # a bad option, or a sweep whose every point is refused: the earlier results stay as they were
        assert cli.main(["sweep", str(SCENARIOS / "quickstart.yaml"), "--out", str(out), *bad]) == 2
        assert (out / "sweep.csv").read_bytes() == before


def test_parallel_sweep_equals_serial():
    grid = {"transfer.format": ["dense", "auto"], "network.bandwidth_mbps": [1, 30]}
    serial = sweeps.sweep(scenario_dict(3), grid, jobs=1, progress=False)
    parallel = sweeps.sweep(scenario_dict(3), grid, jobs=2, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)


def test_variants_run_over_the_whole_grid(count_builds):
    variants = dict(
        [
            grid.parse_variant("dense:transfer.format=dense"),
            grid.parse_variant("packed:transfer.format=auto,transfer.index_bits=16"),
        ]
    )
    assert variants["packed"] == {"transfer.format": "auto", "transfer.index_bits": 16}
    table = sweeps.sweep(
        scenario_dict(2), {"network.bandwidth_mbps": [1, 10]}, variants=variants, jobs=1, progress=False
    )
    assert list(table["variant"]) == ["dense", "dense", "packed", "packed"] and len(count_builds) == 2
    packed = sim.run(
        scenario_dict(2, network={"bandwidth_mbps": 10}, transfer={"format": "auto", "index_bits": 16})
    ).summary
    assert table.loc[3, "latency_s"] == packed["latency_s"] and table.loc[3, "bytes_total"] == packed["bytes_total"]
    assert [label for label, _, _ in curves.lines(table, "network.bandwidth_mbps")] == ["dense", "packed"]
    with pytest.raises(UserError, match="also swept"):
        sweeps.sweep(scenario_dict(2), {"transfer.format": ["csr"]}, variants=variants, progress=False)
    with pytest.raises(UserError, match="--variant"):
        grid.parse_variant("no-colon")


def test_comm_pruned_variant_builds_once_per_hop_matrix(count_builds):
    """Pruning reads hop counts, not rates: a bandwidth sweep prunes once per topology (issue 25)."""
    variants = {"dense": {}, "comm": {"prune.method": "comm_structured", "prune.amount": 0.5}}
    grid_ = {"network.topology": ["mesh", "line"], "network.bandwidth_mbps": [1, 100]}
    synthetic = scenario_dict(3, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 1})
    table = sweeps.sweep(synthetic, grid_, variants=variants, jobs=1, progress=False)
    assert (table["error"] == "").all() and len(table) == 8
    assert len(count_builds) == 3  # dense once; comm_structured once on the mesh and once on the line
    comm = table[table["variant"] == "comm"]
    assert comm.groupby("network.topology")["bytes_total"].nunique().tolist() == [1, 1]
    assert comm["bytes_total"].max() < table[table["variant"] == "dense"]["bytes_total"].min()


def test_admm_comm_key_holds_the_scaled_costs_not_the_rates():
    from sim.pipeline.evaluate import workload_key  # only this test reads the key itself

    def key(topology: str, mbps: float, cost: str) -> str:
        prune = {"method": "admm_comm", "amount": 0.5, "cost": cost}
        return workload_key(load(scenario_dict(3, network={"topology": topology, "bandwidth_mbps": mbps}, prune=prune)))

    assert key("mesh", 1, "seconds") == key("mesh", 100, "seconds")  # 32 bit / rate, all equal: ratios 1
    assert key("line", 1, "hops") == key("line", 100, "hops")
    assert key("mesh", 1, "hops") != key("line", 1, "hops")  # 2 hops between the ends of the line


def test_pruning_sweep_table_shows_accuracy_and_flags_chance():
    from sim.report.text import format_sweep  # the terminal text of dsim sweep

    table = sweeps.sweep(scenario_dict(2), {"prune.amount": [0.0, 0.5]}, jobs=1, progress=False)
    text = format_sweep(table)
    header = text.splitlines()[0].split()
    assert "accuracy" in header
    for acc in table["accuracy"]:  # an untrained LeNet-5: about one digit in ten
        assert f"{acc * 100:.2f}" in text
    assert (table["accuracy"] <= 0.2).all() and text.count("is near chance") == 2
