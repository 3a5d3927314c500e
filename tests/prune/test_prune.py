"""Pruning methods, channel groups, and what pruning does to FLOPs and bytes (hand-computed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim.config.load import load
from sim.config.schema import PruneSpec
from sim.errors import UserError
from sim.model.flowgraph import FlowGraph
from sim.model.zoo import build_model
from sim.pipeline.prepare import prepare
from sim.prune import structured as prune
from tests.helpers import scenario_dict


def dense_bytes(workload) -> int:
    return sum(m.sizes["dense"] for m in workload.messages)


def flops(workload) -> float:
    return sum(t.flops for t in workload.tasks)


# -- channel groups ---------------------------------------------------------------------------------------
def test_resnet_streams_are_groups_and_the_classifier_is_not_prunable() -> None:
    model = build_model("resnet18")
    graph = FlowGraph.trace(model, torch.zeros(1, 3, 32, 32))
    groups = {g.layers: g for g in prune.channel_groups(graph)}
    assert ("conv1", "layer1.0.conv2", "layer1.1.conv2") in groups
    assert ("layer2.0.conv2", "layer2.0.shortcut.0", "layer2.1.conv2") in groups
    assert groups[("layer1.0.conv1",)].prunable
    assert not groups[("linear",)].prunable
    assert sum(len(layers) for layers in groups) == 21  # every conv and linear layer in exactly one group


# -- structured -------------------------------------------------------------------------------------------
def test_ln_structured_removes_the_smallest_filters_and_masks_bias(traced_lenet) -> None:
    model, graph = traced_lenet()
    with torch.no_grad():  # filter f gets L2 norm proportional to (f + 1)
        model.conv2.weight.copy_(torch.arange(1, 17, dtype=torch.float32).view(16, 1, 1, 1).expand(16, 6, 5, 5))
        model.conv2.bias.fill_(0.5)
    keep = prune.apply(model, graph, PruneSpec(method="ln_structured", layers={"conv2": 0.25}), seed=0)
    assert keep["conv2"].tolist() == list(range(4, 16))
    assert set(keep) == {"conv2"}  # amount 0 elsewhere
    assert model.conv2.bias[:4].abs().sum() == 0 and (model.conv2.bias[4:] == 0.5).all()
    assert (model.conv2.weight[:4] == 0).all() and (model.conv2.weight[4:] != 0).all()


def test_batchnorm_of_pruned_filters_is_masked() -> None:
    model = build_model("vgg11")
    graph = FlowGraph.trace(model, torch.zeros(1, 3, 32, 32))
    keep = prune.apply(model, graph, PruneSpec(method="ln_structured", amount=0.5), seed=0)
    gone = np.setdiff1d(np.arange(64), keep["features.0"])
    bn = model.features[1]
    assert len(gone) == 32
    assert (bn.weight[gone] == 0).all() and (bn.bias[gone] == 0).all()
    assert (bn.weight[keep["features.0"]] == 1).all()  # default init, untouched


def test_random_structured_is_seeded_and_leaves_the_global_rng_alone(traced_lenet) -> None:
    state = torch.get_rng_state()
    spec = PruneSpec(method="random_structured", amount=0.5)
    first = prune.apply(traced_lenet()[0], traced_lenet()[1], spec, seed=3)
    again = prune.apply(traced_lenet()[0], traced_lenet()[1], spec, seed=3)
    other = prune.apply(traced_lenet()[0], traced_lenet()[1], spec, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert any(not np.array_equal(first[k], other[k]) for k in first)
    assert len(first["conv2"]) == 8 and len(first["fc1"]) == 60 and "fc3" not in first


def test_remove_masks_leaves_a_plain_state_dict(traced_lenet) -> None:
    model, graph = traced_lenet()
    prune.apply(model, graph, PruneSpec(method="ln_structured", amount=0.5), seed=0)
    assert "conv1.weight_orig" in model.state_dict()
    state = prune.remove_masks(model).state_dict()
    assert not any(k.endswith(("_orig", "_mask")) for k in state)
    build_model("lenet5").load_state_dict(state)


# -- unstructured -----------------------------------------------------------------------------------------
def test_l1_unstructured_zeroes_the_amount_of_each_layer_and_honours_ignored_layers(traced_lenet) -> None:
    model, graph = traced_lenet()
    spec = PruneSpec(method="l1_unstructured", amount=0.5, layers={"fc1": 0.25}, ignored_layers=["fc3"])
    assert prune.apply(model, graph, spec, seed=0) == {}
    zeros = {n: int((model.get_submodule(n).weight == 0).sum()) for n in ("conv1", "conv2", "fc1", "fc3")}
    assert zeros == {"conv1": 75, "conv2": 1200, "fc1": 12000, "fc3": 0}  # 0.5*150, 0.5*2400, 0.25*48000


def test_global_unstructured_ranks_all_layers_together(traced_lenet) -> None:
    model, graph = traced_lenet()
    prune.apply(model, graph, PruneSpec(method="global_unstructured", amount=0.8), seed=0)
    weights = [model.get_submodule(n).weight for n in ("conv1", "conv2", "fc1", "fc2", "fc3")]
    total = sum(w.numel() for w in weights)
    assert sum(int((w == 0).sum()) for w in weights) == round(0.8 * total)
    assert len({round(float((w == 0).float().mean()), 2) for w in weights}) > 1  # not uniform per layer


def test_unknown_layer_names_are_refused_naming_the_field(traced_lenet) -> None:
    model, graph = traced_lenet()
    with pytest.raises(UserError, match=r"prune.ignored_layers: unknown layer 'conv9'; layers are conv1"):
        prune.apply(model, graph, PruneSpec(method="l1_unstructured", ignored_layers=["conv9"]), seed=0)


# -- FLOPs and bytes through the pipeline -----------------------------------------------------------------
def test_structured_pruning_of_k_filters_drops_flops_and_bytes_by_the_hand_computed_amount() -> None:
    """LeNet-5 over 4 devices (contiguous), one frame of one image; prune k=2 of conv2's 16 filters.

    FLOPs: conv2 = 2 * filters * 6 in-channels * 25 * 10*10 outputs, so 2 filters fewer is 2*2*6*25*100 =
    60,000; fc1 reads 25 features per conv2 channel, so 2 * 120 neurons * 50 features = 12,000 fewer.
    Bytes: every conv2 channel (5x5 after pooling, float32 = 100 B) goes to the 3 other devices (each owns
    fc1 neurons using all of them), so 2 channels fewer is 2 * 100 * 3 = 600 B fewer.
    """
    base = prepare(load(scenario_dict())).workload
    pruned = prepare(load(scenario_dict(prune={"method": "ln_structured", "layers": {"conv2": 0.125}})))
    assert flops(base) - flops(pruned.workload) == 60_000 + 12_000
    assert dense_bytes(base) - dense_bytes(pruned.workload) == 600
    assert pruned.graph.layers()[1].out_channels == 14


def test_unstructured_pruning_leaves_flops_and_dense_bytes_unchanged() -> None:
    base = prepare(load(scenario_dict())).workload
    pruned = prepare(load(scenario_dict(prune={"method": "l1_unstructured", "layers": {"conv2": 0.5}}))).workload
    assert flops(pruned) == flops(base)
    assert dense_bytes(pruned) == dense_bytes(base)
    assert [m.channel_ids for m in pruned.messages] == [m.channel_ids for m in base.messages]


def test_unstructured_pruning_saves_a_channel_a_remote_device_no_longer_needs(tmp_path, traced_lenet) -> None:
    """Hand-built case: device d1 owns conv2 filters 4..7 (contiguous split of 16 over 4). Their weights on
    conv1 channel 0 (owned by d0) are made tiny, so l1_unstructured with exactly 4*25 = 100 of conv2's 2400
    weights removes just them: d1 then needs none of channel 0 and the d0->d1 message loses one 14x14
    float32 channel, 784 bytes. FLOPs do not change."""
    model, _ = traced_lenet()  # the seed-0 weights the scenario builds
    with torch.no_grad():
        model.conv2.weight[4:8, 0] *= 1e-6
    checkpoint = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    base = prepare(load(scenario_dict())).workload
    spec = {"method": "l1_unstructured", "layers": {"conv2": 100 / 2400}}
    built = prepare(load(scenario_dict(model={"name": "lenet5", "checkpoint": str(checkpoint)}, prune=spec)))
    weight = built.model.conv2.weight
    assert (weight[4:8, 0] == 0).all() and int((weight == 0).sum()) == 100
    assert flops(built.workload) == flops(base)
    assert dense_bytes(base) - dense_bytes(built.workload) == 14 * 14 * 4

    def conv1_to_d1(workload) -> list[tuple[int, ...]]:
        return [m.channel_ids for m in workload.messages if m.layer == "conv1" and (m.src, m.dst) == (0, 1)]

    assert conv1_to_d1(base) == [(0, 1)] and conv1_to_d1(built.workload) == [(1,)]


def test_comm_structured_cuts_more_cross_device_bytes_than_ln_structured() -> None:
    """VGG-11 over 4 devices (contiguous, mesh), one synthetic image, half of the prunable filters removed.

    Measured: ln_structured sends 384,028 dense bytes, comm_structured 129,532 (the unpruned model sends
    731,164): ranking filters against the hop-weighted bytes they cost removes them where the feature maps
    are large.
    """

    def sent(method: str) -> tuple[int, int]:
        sc = scenario_dict(
            model={"name": "vgg11"}, inputs={"dataset": "synthetic"}, prune={"method": method, "amount": 0.5}
        )
        built = prepare(load(sc))
        removed = sum(l.out_channels for l in build_model_layers("vgg11")) - sum(
            l.out_channels for l in built.graph.layers()
        )
        return dense_bytes(built.workload), removed

    ln_bytes, ln_removed = sent("ln_structured")
    comm_bytes, comm_removed = sent("comm_structured")
    assert ln_removed == comm_removed == 1376  # the same amount: half of the 2752 prunable filters
    assert comm_bytes < ln_bytes
    assert (ln_bytes, comm_bytes) == (384_028, 129_532)


def build_model_layers(name: str):
    return FlowGraph.trace(build_model(name), torch.zeros(1, 3, 32, 32)).layers()


def test_structured_amount_for_a_layer_that_cannot_lose_filters_is_refused(traced_lenet) -> None:
    model, graph = traced_lenet()
    with pytest.raises(UserError, match=r"prune.layers: the filters of 'fc3' cannot be removed"):
        prune.apply(model, graph, PruneSpec(method="ln_structured", layers={"fc3": 0.5}), seed=0)


def test_bytes_saved_are_hop_weighted_dense_bytes_of_every_message_carrying_the_channel(traced_lenet) -> None:
    """LeNet-5, 4 devices, contiguous. A conv2 channel (5x5 float32 = 100 B after pooling) goes to the 3
    other devices; on a line d0-d1-d2-d3 (hops = |src - dst|) the owner of channels 0..3 (d0) reaches the
    others in 1 + 2 + 3 hops, d1 (channels 4..7) in 1 + 1 + 2. A conv1 channel is 14x14 float32 = 784 B."""
    from sim.model.partition import make_partition
    from sim.workload.plan import plan_workload

    _, graph = traced_lenet()
    plan = plan_workload(graph, make_partition(graph, "contiguous", 4), 4, 0, 0)
    groups = {g.layers[0]: g for g in prune.channel_groups(graph)}
    mesh = prune.bytes_saved(plan, groups["conv2"], lambda s, d: 1)
    line = prune.bytes_saved(plan, groups["conv2"], lambda s, d: abs(s - d))
    assert mesh.tolist() == [300.0] * 16
    assert line.tolist() == [600.0] * 4 + [400.0] * 4 + [400.0] * 4 + [600.0] * 4
    assert prune.bytes_saved(plan, groups["conv1"], lambda s, d: 1).tolist() == [784.0 * 3] * 6
