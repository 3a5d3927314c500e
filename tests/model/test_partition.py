"""Partition strategies, partition files, and the partition/describe commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

import sim
from sim.cli import main
from sim.model.flowgraph import FlowGraph
from sim.model.partition import (
    contiguous_split,
    imbalance,
    make_partition,
    proportional_split,
    save_partition,
    spatial_split,
)
from sim.model.zoo import build_model, model_names
from sim.workload.types import Split
from tests.helpers import scenario_dict


def test_contiguous_and_round_robin(lenet_graph) -> None:
    assert contiguous_split(6, 4).tolist() == [0, 0, 1, 1, 2, 3]
    rr = make_partition(lenet_graph, "round_robin", 4)
    assert rr["conv1"].tolist() == [0, 1, 2, 3, 0, 1]
    assert rr["fc3"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_random_is_seeded_and_keeps_the_shares(lenet_graph) -> None:
    a = make_partition(lenet_graph, "random", 4, seed=1)
    b = make_partition(lenet_graph, "random", 4, seed=1)
    c = make_partition(lenet_graph, "random", 4, seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    assert np.bincount(a["fc1"]).tolist() == [30, 30, 30, 30]


def test_balanced_shares_follow_gflops(lenet_graph) -> None:
    # 16 filters over rates 1:1:2:4 -> exact shares 2, 2, 4, 8
    parts = make_partition(lenet_graph, "balanced", 4, rates=[1e9, 1e9, 2e9, 4e9])
    assert np.bincount(parts["conv2"]).tolist() == [2, 2, 4, 8]
    # 6 filters over 1:2 -> 2, 4; 10 over 1:1:1 -> 4, 3, 3 (largest remainder, ties to the earlier device)
    assert proportional_split(6, [1, 2]).tolist() == [0, 0, 1, 1, 1, 1]
    assert np.bincount(proportional_split(10, [1, 1, 1])).tolist() == [4, 3, 3]
    # with exact shares every device takes the same time on conv2: imbalance of that layer is 1
    even = make_partition(lenet_graph, "contiguous", 4)
    rates = [1e9, 1e9, 2e9, 4e9]
    assert imbalance(lenet_graph, parts, rates) < imbalance(lenet_graph, even, rates)
    # equal devices, contiguous: conv1 shares 2,2,1,1 (slowest 2 / mean 1.5), fc3 3,3,2,2 (3 / 2.5),
    # the other three layers split evenly (1)
    assert imbalance(lenet_graph, even, [1e9] * 4) == pytest.approx((2 / 1.5 + 1 + 1 + 1 + 3 / 2.5) / 5)


def test_aligned_ties_every_residual_stream() -> None:
    graph = FlowGraph.trace(build_model("resnet18"), torch.zeros(1, 3, 32, 32))
    parts = make_partition(graph, "aligned", 4, seed=0)
    stage1 = ["conv1", "layer1.0.conv2", "layer1.1.conv2"]
    assert all(np.array_equal(parts[stage1[0]], parts[n]) for n in stage1)
    stage2 = ["layer2.0.shortcut.0", "layer2.0.conv2", "layer2.1.conv2"]
    assert all(np.array_equal(parts[stage2[0]], parts[n]) for n in stage2)
    assert not np.array_equal(parts["layer1.0.conv1"], parts["conv1"])  # inner layers stay random


def write_scenario(tmp_path, **overrides) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario_dict(**overrides)))
    return str(path)


def test_partition_command_writes_a_file_the_scenario_can_use(tmp_path, capsys) -> None:
    scen = write_scenario(tmp_path)
    pfile = tmp_path / "p.json"
    assert main(["partition", scen, "--strategy", "round_robin", "--out", str(pfile)]) == 0
    doc = json.loads(pfile.read_text())
    assert doc["devices"] == ["d0", "d1", "d2", "d3"]
    assert doc["layers"]["conv1"] == ["d0", "d1", "d2", "d3", "d0", "d1"]
    used = write_scenario(tmp_path, partition={"file": str(pfile)})
    assert main(["run", used, "--out", str(tmp_path / "out")]) == 0
    rows = (tmp_path / "out" / "transfers.csv").read_text().splitlines()
    # round robin conv1: d0 owns channels 0 and 4 -> it sends 2 channels of 14x14 to each device
    assert "0,conv1,d0,d1,2,392," in "\n".join(rows)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["layers"].pop("fc2"), "layer 'fc2' is missing"),
        (lambda d: d["layers"].update(fc9=["d0"]), "layer 'fc9' is not in model 'lenet5'"),
        (lambda d: d["layers"]["conv1"].pop(), "layer 'conv1' has 5 entries; expected 6"),
        (lambda d: d["layers"]["conv2"].__setitem__(0, "phone"), "layer 'conv2' names unknown device 'phone'"),
    ],
)
def test_mismatched_partition_file_is_refused_in_one_line(tmp_path, capsys, edit, message) -> None:
    scen = write_scenario(tmp_path)
    pfile = tmp_path / "p.json"
    assert main(["partition", scen, "--strategy", "contiguous", "--out", str(pfile)]) == 0
    doc = json.loads(pfile.read_text())
    edit(doc)
    pfile.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["run", write_scenario(tmp_path, partition={"file": str(pfile)}), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_describe_prints_flops_and_traffic(tmp_path, capsys) -> None:
    assert main(["describe", write_scenario(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "78,400" in out  # conv1 on d0: 2 filters * 25 * 784 * 2
    assert "traffic matrix" in out and "6268" in out  # d0 sends 4096 + 1568 + 400 + 120 + 84 to each


@pytest.mark.parametrize("model", model_names())
def test_every_zoo_model_runs_on_four_devices(tmp_path, model) -> None:
    scen = write_scenario(tmp_path, model={"name": model}, inputs={"dataset": "synthetic"})
    out = tmp_path / "out"
    assert main(["run", scen, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["latency_s"] > 0 and summary["bytes_total"] > 0
    for name in ("transfers.csv", "compute.csv", "traffic.csv", "trace.json", "timeline.png"):
        assert (out / name).stat().st_size > 0


def test_user_model_runs_from_a_scenario(tmp_path, monkeypatch) -> None:
    (tmp_path / "mynet.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def make(num_classes=10):\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),"
        " nn.Linear(4, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    scen = write_scenario(
        tmp_path, model={"name": "mynet:make", "input_shape": [3, 16, 16]}, inputs={"dataset": "synthetic"}
    )
    assert main(["run", scen, "--out", str(tmp_path / "out")]) == 0


def test_a_fused_partition_file_with_a_conv_all_on_one_device_runs(lenet_graph, tmp_path) -> None:
    # conv1 in rows, every row on d0, conv2 in rows over both devices, fused: conv1 is computed by d0 and
    # d1 gets the rows of its output that conv2's band reads (it used to crash place_elements)
    spatial = spatial_split(lenet_graph, 2, sink=0, fused=True)
    rows = {**spatial.rows, "conv1": np.zeros_like(spatial.rows["conv1"])}
    filters = {**spatial.filters, "conv1": np.zeros_like(spatial.filters["conv1"])}
    pfile = tmp_path / "p.json"
    save_partition(pfile, "lenet5", ["d0", "d1"], Split(filters, rows, spatial.whole, fused=True))
    doc = json.loads(pfile.read_text())
    assert doc["fused"] is True and doc["layers"]["conv1"] == {"rows": ["d0"] * 28}
    summary = sim.run(scenario_dict(2, partition={"file": str(pfile)})).summary
    # d1's conv2 rows 5-9 (5x5 kernel) read rows 5-13 of the 6x14x14 pooled conv1 output: 6*9*14 floats
    assert {l["link"]: l["bytes"] for l in summary["links"]}["d0->d1"] == 6 * 9 * 14 * 4
    assert summary["redundant_flops"] == 0.0
