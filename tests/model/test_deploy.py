"""The deployment phase (weights shipped before inference): shard bytes by hand, and its time reported apart from inference.

LeNet-5 split contiguously over 4 devices d0..d3: conv1 6 filters [2,2,1,1] (fan_in 1*5*5 = 25),
conv2 16 [4]*4 (fan_in 6*25 = 150), fc1 120 [30]*4 (fan_in 400), fc2 84 [21]*4 (fan_in 120),
fc3 10 [3,3,2,2] (fan_in 84). Each layer has a bias, so a device's shard of a layer is one
(filters, fan_in + 1) float32 matrix: weights, then the bias column.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import prune

import sim
from sim.config.schema import ModelSpec
from sim.errors import UserError
from sim.model import partition
from sim.model.deploy import deployment_workload
from sim.model.flowgraph import FlowGraph
from sim.pipeline.prepare import load_model
from sim.workload.plan import plan_workload
from sim.workload.wire import WireSpec
from tests.helpers import scenario_dict

SPLITS = {"conv1": [2, 2, 1, 1], "conv2": [4] * 4, "fc1": [30] * 4, "fc2": [21] * 4, "fc3": [3, 3, 2, 2]}
FAN_IN = {"conv1": 25, "conv2": 150, "fc1": 400, "fc2": 120, "fc3": 84}


def pruned_lenet() -> torch.nn.Module:
    model = load_model(ModelSpec(name="lenet5"), seed=0)
    for name in SPLITS:
        prune.l1_unstructured(getattr(model, name), "weight", amount=0.5)
        prune.remove(getattr(model, name), "weight")
    return model


def test_csr_deployment_bytes_of_pruned_lenet_by_hand() -> None:
    model = pruned_lenet()
    graph = FlowGraph.trace(model, torch.zeros(1, 1, 32, 32))
    plan = plan_workload(graph, partition.make_partition(graph, "contiguous", 4), 4, 0, 0)
    workload = deployment_workload(graph, plan, ["d0", "d1", "d2", "d3"], 0, WireSpec(), "csr")
    expected = {}
    for name, split in SPLITS.items():
        layer = getattr(model, name)
        weight, bias = layer.weight.detach().flatten(1), layer.bias.detach()
        assert int((weight == 0).sum()) == round(weight.numel() * 0.5)  # l1_unstructured zeroed half
        start = 0
        for d, rows in enumerate(split):
            nnz = int(weight[start : start + rows].count_nonzero() + bias[start : start + rows].count_nonzero())
            if d != 0:  # d0 ships, it keeps its own shard
                expected[(name, d)] = (rows + 1) * 4 + nnz * (4 + 4)  # csr: row pointers, then (index, value)
            start += rows
    got = {(m.layer, m.dst): m.bytes for m in workload.messages}
    assert got == expected
    assert {(m.layer, m.dst): (m.channels, m.elements) for m in workload.messages} == {
        (name, d): (SPLITS[name][d], SPLITS[name][d] * (FAN_IN[name] + 1)) for name, d in expected
    }
    # dense is the same size pruned or not: unstructured pruning shrinks only packed shards
    dense = deployment_workload(graph, plan, ["d0", "d1", "d2", "d3"], 0, WireSpec(), "dense")
    assert [m.bytes for m in dense.messages] == [m.elements * 4 for m in workload.messages]


def test_deployment_time_and_bytes_reported_apart_from_latency() -> None:
    plain = sim.run(scenario_dict())
    deployed = sim.run(scenario_dict(deploy={"from": "d0", "format": "dense"}))
    # d1 gets the most: conv1 2x26 + conv2 4x151 + fc1 30x401 + fc2 21x121 + fc3 3x85 floats
    d1 = (2 * 26 + 4 * 151 + 30 * 401 + 21 * 121 + 3 * 85) * 4
    d2 = d3 = (1 * 26 + 4 * 151 + 30 * 401 + 21 * 121 + 2 * 85) * 4
    assert deployed.summary["deploy_bytes"] == d1 + d2 + d3 == 184_896
    # one FIFO link per destination at 20 Mbps: the last shard of d1 arrives after its bytes plus 1 ms
    assert abs(deployed.summary["deploy_s"] - (d1 * 8 / 20e6 + 1e-3)) < 1e-12
    assert deployed.summary["latency_s"] == plain.summary["latency_s"]
    assert deployed.summary["bytes_total"] == plain.summary["bytes_total"]
    assert deployed.summary["deploy_bytes_by_format"]["dense"] == 184_896
    assert "deploy_s" not in plain.summary


def test_partial_sum_shards_hold_the_weights_on_own_channels() -> None:
    # conv1 under partial sums: only d0 owns the image channel, so it holds every conv1 weight (6 filters x 25)
    # and ships none of them; d1..d3 get just their filters' biases, (filters, 1).
    graph = FlowGraph.trace(load_model(ModelSpec(name="lenet5"), seed=0), torch.zeros(1, 1, 32, 32))
    plan = plan_workload(graph, partition.make_partition(graph, "contiguous", 4), 4, 0, 0, exchange="partial_sums")
    workload = deployment_workload(graph, plan, ["d0", "d1", "d2", "d3"], 0, WireSpec(), "dense")
    conv1 = [(m.dst, m.channels, m.elements) for m in workload.messages if m.layer == "conv1"]
    assert conv1 == [(1, 2, 2), (2, 1, 1), (3, 1, 1)]
    # conv2: d1 owns 2 of conv1's 6 channels; all 16 filters use them: 16 x (2*25) weights, then 4 biases
    conv2 = sorted((m.channels, m.elements) for m in workload.messages if m.layer == "conv2" and m.dst == 1)
    assert conv2 == [(4, 4), (16, 16 * 50)]


def test_deploy_from_an_unknown_device_is_refused() -> None:
    with pytest.raises(UserError, match=r"deploy\.from: unknown device 'cloud'"):
        sim.run(scenario_dict(deploy={"from": "cloud"}))
