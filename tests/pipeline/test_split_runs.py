"""Runs of the three split forms (docs/design.md §3b) end to end: a pipeline against its closed form, the rows
form's summary and device table, and the refusals that keep rows out of what does not model them."""

from __future__ import annotations

import itertools

import pytest

from sim.config.load import parse_scenario
from sim.errors import UserError
from sim.pipeline.describe import describe, layer_table, ownership_table
from sim.pipeline.evaluate import evaluate, workload_key
from sim.pipeline.prepare import prepare
from sim.report.plots import plot_ownership
from tests.helpers import scenario_dict

# LeNet-5 FLOPs (docs/design.md §3.6): conv1 2*6*1*25*28*28, then conv2 2*16*6*25*10*10, fc1 2*120*400,
# fc2 2*84*120, fc3 2*10*84. At equal rates the pipeline's best cut is conv1 | the rest.
CONV1 = 2 * 6 * 1 * 25 * 28 * 28
REST = 2 * 16 * 6 * 25 * 10 * 10 + 2 * 120 * 400 + 2 * 84 * 120 + 2 * 10 * 84
HANDOFF_BYTES = 6 * 14 * 14 * 4  # conv1's pooled output, float32, dense


def _pipeline_scenario(frames: int):
    data = scenario_dict(
        2,
        inputs={"dataset": "synthetic", "batch_size": 1, "frames": frames, "interval_ms": 0},
        devices=[{"name": "d0", "gflops": 1.0}, {"name": "d1", "gflops": 1.0}],
        network={"topology": "mesh", "bandwidth_mbps": 100, "latency_ms": 1.0},
        sink="d1",
        partition={"strategy": "pipeline"},
    )
    return parse_scenario(data, origin="test")


def test_pipeline_latency_and_departures_follow_the_closed_form() -> None:
    sc = _pipeline_scenario(frames=6)
    result = evaluate(sc, prepare(sc).built)
    stage0, stage1 = CONV1 / 1e9, REST / 1e9
    link = HANDOFF_BYTES * 8 / 100e6 + 1e-3
    assert list(result.transfers["bytes"]) == [HANDOFF_BYTES] * 6
    done = result.compute[result.compute["layer"] == "fc3"].sort_values("frame")["end_s"].tolist()
    assert done[0] == pytest.approx(stage0 + link + stage1, rel=1e-9)  # frame 0: the stages and the link
    gaps = [b - a for a, b in itertools.pairwise(done)]
    assert gaps == pytest.approx([max(stage0, stage1, link - 1e-3)] * 5, rel=1e-9)  # the slowest stage


def test_rows_run_reports_redundant_flops_and_weights_per_device() -> None:
    data = scenario_dict(2, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 1, "interval_ms": 0})
    data["partition"] = {"strategy": "spatial", "fused": True}
    sc = parse_scenario(data, origin="test")
    result = evaluate(sc, prepare(sc).built)
    # LeNet's convs fused over 2 devices: conv1 28 rows in two bands of 14; d0 owns conv2 rows 0-4, which
    # read pooled rows 0-8, i.e. conv1 rows 0-17; d1 owns rows 5-9 -> pooled 5-13 -> conv1 rows 10-27.
    # conv1 rows 10-17 are computed twice: 8 rows of 2*6*25*28 FLOPs.
    assert result.summary["redundant_flops"] == 8 * 2 * 6 * 25 * 28
    weights = result.devices.set_index("device")["weights_bytes"]
    conv = (6 * 25 + 6) + (16 * 6 * 25 + 16)  # both convs in full on both devices, with biases
    fc = (120 * 400 + 120) + (84 * 120 + 84) + (10 * 84 + 10)  # the classifier whole on the sink
    assert weights.to_dict() == {"d0": 4 * (conv + fc), "d1": 4 * conv}


def test_filters_runs_do_not_report_redundant_flops() -> None:
    sc = parse_scenario(scenario_dict(2), origin="test")
    result = evaluate(sc, prepare(sc).built)
    assert "redundant_flops" not in result.summary
    per_device = result.devices["weights_bytes"].sum()
    lenet = (6 * 25 + 6) + (16 * 6 * 25 + 16) + (120 * 400 + 120) + (84 * 120 + 84) + (10 * 84 + 10)
    assert per_device == 4 * lenet  # filters: every weight held exactly once


def test_refusals_name_the_field() -> None:
    data = scenario_dict(2)
    data["partition"] = {"strategy": "spatial"}
    data["transfer"] = {"format": "dense", "exchange": "partial_sums"}
    with pytest.raises(UserError, match=r"transfer.exchange: partial sums are defined for filters"):
        parse_scenario(data, origin="test")
    data = scenario_dict(2, prune={"method": "admm_comm", "amount": 0.5})
    data["partition"] = {"strategy": "pipeline"}
    with pytest.raises(UserError, match=r"prune.method: admm_comm prices filters on devices"):
        parse_scenario(data, origin="test")
    data = scenario_dict(2)
    data["partition"] = {"strategy": "contiguous", "fused": True}
    with pytest.raises(UserError, match=r"fused and tiles are settings of strategy: spatial"):
        parse_scenario(data, origin="test")


def test_describe_prints_each_layers_form_and_devices(tmp_path) -> None:
    data = scenario_dict(2, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 1, "interval_ms": 0})
    data["partition"] = {"strategy": "spatial"}
    sc = parse_scenario(data, origin="test")
    prep = prepare(sc)
    table = layer_table(prep).set_index("layer")
    assert table.loc["conv1", "form"] == "rows" and table.loc["conv1", "devices"] == "d0,d1"
    assert table.loc["fc1", "form"] == "whole" and table.loc["fc1", "devices"] == "d0"
    assert "rows" in describe(prep, evaluate(sc, prep.built))
    owners = ownership_table(prep)
    conv2 = owners[owners["layer"] == "conv2"].set_index("device")["share"]
    assert conv2.to_dict() == {"d0": 0.5, "d1": 0.5}  # array_split of 10 rows over 2 devices
    plot_ownership(owners, tmp_path / "own.png")
    assert (tmp_path / "own.png").stat().st_size > 0


def test_pipeline_workloads_follow_the_device_rates() -> None:
    slow, fast = _pipeline_scenario(1), _pipeline_scenario(1)
    fast = fast.model_copy(
        update={"devices": [d.model_copy(update={"gflops": 9.0}) for d in fast.devices[:1]] + fast.devices[1:]}
    )
    assert workload_key(slow) != workload_key(fast)  # the stages are balanced on the rates
