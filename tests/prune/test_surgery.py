"""Physical channel removal: the smaller model computes exactly what the masked model computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sim.config.schema import PruneSpec
from sim.errors import UserError
from sim.model.flowgraph import FlowGraph
from sim.model.zoo import build_model
from sim.prune import structured as prune
from sim.prune import surgery

SHAPES = {"lenet5": (1, 32, 32), "vgg11": (3, 32, 32), "resnet18": (3, 32, 32), "mobilenetv2": (3, 32, 32)}


def make(name: str) -> nn.Module:
    """A model with seeded weights and non-trivial batch-norm statistics and affine parameters."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(name)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2.0)
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -1.0, 1.0)
    return model.eval()


def images(name: str, n: int = 4) -> torch.Tensor:
    return torch.rand((n, *SHAPES[name]), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", ["lenet5", "vgg11", "resnet18", "mobilenetv2"])
def test_masked_model_equals_physically_smaller_model(name: str) -> None:
    x = images(name, 2)
    spec = PruneSpec(method="ln_structured", amount=0.4)
    masked = make(name)
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    full_params = n_params(masked)
    with torch.no_grad():
        unpruned = masked(x)
    graph = FlowGraph.trace(masked, x[:1])
    keep = prune.apply(masked, graph, spec, seed=0)
    # the same pruning of an identical copy (a masked model cannot be deep-copied), baked and shrunk
    twin = make(name)
    assert {k: v.tolist() for k, v in prune.apply(twin, graph, spec, seed=0).items()} == {
        k: v.tolist() for k, v in keep.items()
    }
    small = surgery.shrink(prune.remove_masks(twin), graph, keep)
    with torch.no_grad():
        eval_masked, eval_small = masked.eval()(x), small.eval()(x)
        train_masked, train_small = masked.train()(x), small.train()(x)
    assert torch.allclose(eval_masked, eval_small, atol=1e-5, rtol=1e-4)
    assert torch.allclose(train_masked, train_small, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(eval_small, unpruned, atol=1e-3)  # pruning did change the function
    for layer, kept in keep.items():  # filters really removed
        module = small.get_submodule(layer)
        assert (module.out_channels if isinstance(module, nn.Conv2d) else module.out_features) == len(kept)
    assert n_params(small) < 0.5 * full_params


def test_residual_stream_keeps_one_channel_set_and_consumers_follow() -> None:
    model = make("resnet18")
    graph = FlowGraph.trace(model, images("resnet18", 1))
    keep = prune.apply(model, graph, PruneSpec(method="ln_structured", amount=0.25), seed=0)
    stream = ["conv1", "layer1.0.conv2", "layer1.1.conv2"]
    assert len(keep["conv1"]) == 48  # round(0.25 * 64) = 16 removed
    assert all(np.array_equal(keep[n], keep["conv1"]) for n in stream)
    small = surgery.shrink(prune.remove_masks(model), graph, keep)
    assert small.bn1.num_features == 48 and small.layer1[0].bn2.num_features == 48
    assert small.layer1[0].conv1.in_channels == 48  # reads the stream
    assert small.layer2[0].shortcut[0].in_channels == 48
    assert small.layer1[0].conv2.in_channels == len(keep["layer1.0.conv1"])
    assert small.linear.in_features == len(keep["layer4.0.conv2"])


def test_linear_after_flatten_keeps_the_features_of_kept_channels() -> None:
    model = make("lenet5")
    graph = FlowGraph.trace(model, images("lenet5", 1))
    keep = {"conv2": np.array([1, 3])}
    fc1 = model.fc1.weight.detach().clone()
    small = surgery.shrink(model, graph, keep)
    # channel c spans features 25c .. 25c+24 of the flattened 16x5x5 tensor
    expected = torch.cat([fc1[:, 25:50], fc1[:, 75:100]], dim=1)
    assert torch.equal(small.fc1.weight, expected)
    assert small.conv2.out_channels == 2 and small.fc1.in_features == 50


def test_depthwise_conv_keeps_its_groups() -> None:
    model = make("mobilenetv2")
    graph = FlowGraph.trace(model, images("mobilenetv2", 1))
    keep = prune.apply(model, graph, PruneSpec(method="ln_structured", amount=0.5), seed=0)
    small = surgery.shrink(prune.remove_masks(model), graph, keep)
    dw = small.layers[1].conv2
    assert dw.groups == dw.in_channels == dw.out_channels == 48  # 96 - round(0.5 * 96)
    assert np.array_equal(keep["layers.1.conv1"], keep["layers.1.conv2"])


def test_slice_partition_indexes_owners_by_kept_channels() -> None:
    parts = {"a": np.array([0, 0, 1, 1, 2, 3]), "b": np.array([0, 1])}
    sliced = surgery.slice_partition(parts, {"a": np.array([1, 2, 5])})
    assert sliced["a"].tolist() == [0, 1, 3] and sliced["b"].tolist() == [0, 1]


def test_add_operands_keeping_different_channels_is_refused() -> None:
    model = make("resnet18")
    graph = FlowGraph.trace(model, images("resnet18", 1))
    with pytest.raises(UserError, match="residual stream"):
        surgery.shrink(model, graph, {"layer1.0.conv2": np.arange(10)})
