"""Exchange schemes: ``inputs`` versus ``partial_sums`` versus ``auto``.

The model outputs are checked by running the split model device by device (sim.model.shards.execute) and
comparing with the unsplit model. Message bytes and FLOPs are written out by hand from LeNet-5's shapes:
input 1x32x32 -> conv1 6x28x28 -> pool 6x14x14 -> conv2 16x10x10 -> pool 16x5x5 -> flatten 400 -> fc1 120
-> fc2 84 -> fc3 10. Contiguous split over 4 devices (d0 source and sink): conv1 [2,2,1,1], conv2 [4]*4,
fc1 [30]*4, fc2 [21]*4, fc3 [3,3,2,2].
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import sim
from sim.config.schema import ModelSpec
from sim.model import partition
from sim.model import shards as split
from sim.model.flowgraph import FlowGraph
from sim.pipeline.prepare import load_model
from sim.workload.cost import task_templates
from sim.workload.plan import TaskKey, plan_workload
from tests.helpers import scenario_dict

F32 = 4


def traced(name: str, batch: int = 2) -> tuple[torch.nn.Module, FlowGraph, torch.Tensor]:
    shape = (1, 32, 32) if name == "lenet5" else (3, 32, 32)
    model = load_model(ModelSpec(name=name), seed=0)
    images = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(7))
    return model, FlowGraph.trace(model, images), images


@pytest.mark.parametrize(("name", "strategy"), [("lenet5", "contiguous"), ("lenet5", "random"), ("resnet18", "random")])
def test_both_schemes_reproduce_the_unsplit_model(name: str, strategy: str) -> None:
    model, graph, images = traced(name, batch=2 if name == "lenet5" else 1)
    parts = partition.make_partition(graph, strategy, 4, seed=3, rates=[1.0] * 4)
    labels = [graph.label(n) for n in graph.order if graph.kind(n) == "layer"]
    mixed = {label: ("partial_sums" if k % 2 else "inputs") for k, label in enumerate(labels)}
    expected = model(images)
    for exchange in ("inputs", "partial_sums", mixed):
        plan = plan_workload(graph, parts, 4, source=1, sink=2, exchange=exchange)
        out = split.execute(graph, plan, images)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_grouped_convs_split_exactly_with_partial_sums() -> None:
    model, graph, images = traced("mobilenetv2", batch=1)
    parts = partition.make_partition(graph, "random", 3, seed=1, rates=[1.0] * 3)
    plan = plan_workload(graph, parts, 3, source=0, sink=0, exchange="partial_sums")
    torch.testing.assert_close(split.execute(graph, plan, images), model(images), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("exchange", ["inputs", "partial_sums"])
def test_executor_refuses_an_incomplete_plan(exchange: str) -> None:
    _, graph, images = traced("lenet5")
    parts = partition.make_partition(graph, "contiguous", 4)
    plan = plan_workload(graph, parts, 4, source=0, sink=0, exchange=exchange)
    dropped = next(k for k, m in enumerate(plan.messages) if m.layer in ("conv1", "conv1.partial") and m.dst == 3)
    plan = replace(plan, messages=plan.messages[:dropped] + plan.messages[dropped + 1 :])  # a plan missing one
    with pytest.raises(RuntimeError) if exchange == "inputs" else pytest.raises(AssertionError):
        out = split.execute(graph, plan, images)  # partial sums: a missing addend gives a wrong sum
        torch.testing.assert_close(out, graph.module(images))


def by_layer(transfers) -> dict[str, int]:
    return {k: int(v) for k, v in transfers.groupby("layer", sort=False)["bytes"].sum().items()}


def test_partial_sum_messages_by_hand() -> None:
    result = sim.run(scenario_dict(transfer={"exchange": "partial_sums"}))
    t = result.transfers
    # every layer combines partial sums: only partial sums and the final gather cross the network
    assert by_layer(t) == {
        "conv1.partial": (2 + 1 + 1) * 28 * 28 * F32,  # d0 holds the image; d1..d3's filters' partial sums
        "conv2.partial": 12 * 4 * 10 * 10 * F32,  # every pair: the 4 filters of the receiver, 10x10
        "fc1.partial": 12 * 30 * F32,
        "fc2.partial": 12 * 21 * F32,
        "fc3.partial": 3 * (3 + 3 + 2 + 2) * F32,  # each device receives from the 3 others
        "output": (3 + 2 + 2) * F32,
    }
    assert result.summary["bytes_total"] == 12544 + 19200 + 1440 + 1008 + 120 + 28
    conv1 = t[t["layer"] == "conv1.partial"]
    pairs = list(zip(conv1["src"], conv1["dst"], conv1["channels"]))
    assert pairs == [("d0", "d1", 2), ("d0", "d2", 1), ("d0", "d3", 1)]


def test_partial_sum_flops_by_hand() -> None:
    compute = sim.run(scenario_dict(transfer={"exchange": "partial_sums"})).compute
    flops = {(r.layer, r.device): r.flops for r in compute.itertuples()}
    # 2 * (filters using i's channels) * (i's input channels) * kh*kw * H_out*W_out
    assert flops[("conv1", "d0")] == 2 * 6 * 1 * 25 * 28 * 28  # only d0 holds the image
    assert ("conv1", "d1") not in flops
    assert [flops[("conv2", f"d{i}")] for i in range(4)] == [2 * 16 * c * 25 * 10 * 10 for c in (2, 2, 1, 1)]
    assert flops[("fc1", "d2")] == 2 * 120 * 4 * 25  # 4 channels of 5x5 features
    assert flops[("fc3", "d3")] == 2 * 10 * 21
    assert all(flops[(f"{layer}.sum", f"d{i}")] == 0 for layer in ("conv1", "fc3") for i in range(4))
    # the partial sums of a layer add up to the layer's full cost
    assert sum(v for (layer, _), v in flops.items() if layer == "conv2") == 2 * 16 * 6 * 25 * 100


def test_auto_picks_the_cheaper_scheme_per_layer_by_hand() -> None:
    # dense bytes per layer, inputs vs partial sums:
    # conv1: image to 3 devices 3*4096 = 12288 vs 12544      -> inputs
    # conv2: 6 pooled channels x 196 x 3 destinations x 4 = 14112 vs 19200 -> inputs
    # fc1:   12 pairs x 100 features x 4 = 4800 vs 1440      -> partial sums
    # fc2:   12 x 30 x 4 = 1440 vs 1008                       -> partial sums
    # fc3:   12 x 21 x 4 = 1008 vs 120                        -> partial sums
    result = sim.run(scenario_dict(transfer={"exchange": "auto"}))
    assert result.summary["exchange"] == {
        "conv1": "inputs",
        "conv2": "inputs",
        "fc1": "partial_sums",
        "fc2": "partial_sums",
        "fc3": "partial_sums",
    }
    assert by_layer(result.transfers) == {
        "input": 12288,
        "conv1": 14112,
        "fc1.partial": 1440,
        "fc2.partial": 1008,
        "fc3.partial": 120,
        "output": 28,
    }


def test_partial_sum_payloads_are_the_real_values() -> None:
    _, graph, images = traced("lenet5", batch=1)
    plan = plan_workload(graph, partition.make_partition(graph, "contiguous", 4), 4, 0, 0, exchange="partial_sums")
    frames, partials = split.frame_values(graph, plan, [images])
    # device 0's partial sums of conv2 over its two pooled conv1 channels, by a direct convolution
    x = torch.from_numpy(frames[0]["max_pool2d"])[:, :2]
    weight = graph.module.conv2.weight[:, :2]
    expected = torch.nn.functional.conv2d(x, weight).detach().numpy()
    np.testing.assert_allclose(partials[0][("conv2", 0)], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fmt", ["csr", "auto"])
def test_auto_exchange_never_sends_more_than_either_scheme(fmt: str) -> None:
    totals = {}
    for exchange in ("inputs", "partial_sums", "auto"):
        scenario = scenario_dict(partition={"strategy": "random"}, transfer={"format": fmt, "exchange": exchange})
        totals[exchange] = sim.run(scenario).summary["bytes_total"]
    assert totals["auto"] <= min(totals["inputs"], totals["partial_sums"])


def test_grouped_conv_partial_flops_count_each_filter_against_its_own_group() -> None:
    # "0": 1 -> 4 channels (8x8 -> 6x6), owned [0,0,1,1]; "1": depthwise 3x3 (6x6 -> 4x4), owned [1,0,0,1].
    # fx names the layer nodes _0 and _1.
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 4, 3, groups=4)).eval()
    graph = FlowGraph.trace(model, torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    parts = {"0": np.array([0, 0, 1, 1]), "1": np.array([1, 0, 0, 1])}
    plan = plan_workload(graph, parts, 2, source=0, sink=0, exchange="partial_sums")
    flops = {(t.key, t.device): t.flops for t in task_templates(plan, batch=1)}
    # device 0 owns dw's input channels 0 and 1; filter c of a depthwise conv reads channel c alone, so its
    # partial sums cover filters 0 and 1, one channel each: 2 * 2 * 3*3 * 4*4
    partial_1, partial_0 = TaskKey("_1", "partial"), TaskKey("_0", "partial")
    assert flops[(partial_1, 0)] == flops[(partial_1, 1)] == 2 * 2 * 9 * 16
    assert flops[(partial_0, 0)] == 2 * 4 * 1 * 9 * 36  # the image is on device 0: all of conv0
    assert (partial_0, 1) not in flops
    # filter 0 (on device 1) reads channel 0 (on device 0); filter 2 (on device 0) reads channel 2 (on 1)
    assert [(m.src, m.dst, m.channel_ids) for m in plan.messages if m.partial and m.layer == "1.partial"] == [
        (0, 1, (0,)),
        (1, 0, (2,)),
    ]
    torch.testing.assert_close(split.execute(graph, plan, torch.ones(1, 1, 8, 8)), model(torch.ones(1, 1, 8, 8)))
