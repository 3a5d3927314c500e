"""Ownership and messages on small hand-written models: cat, depthwise convs, a residual block."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sim.errors import UserError
from sim.model.flowgraph import FlowGraph
from sim.model.partition import make_partition
from sim.workload.cost import task_templates
from sim.workload.graph import residual_groups
from sim.workload.plan import WorkloadPlan, plan_workload

F32 = 4


def plan_of(model: nn.Module, shape, parts, n_devices=2) -> WorkloadPlan:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x = torch.rand(1, *shape)
    graph = FlowGraph.trace(model, x)
    return plan_workload(graph, {k: np.asarray(v) for k, v in parts.items()}, n_devices, source=0, sink=0)


def messages(plan: WorkloadPlan) -> set[tuple[str, int, int, tuple[int, ...]]]:
    return {(m.layer, m.src, m.dst, m.channel_ids) for m in plan.messages}


class CatNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Conv2d(1, 2, 3, padding=1)
        self.c = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.cat([F.relu(self.a(x)), self.b(x)], 1))


def test_cat_concatenates_ownership_and_the_image_crosses_once() -> None:
    # a, b, c each split [0, 1] -> cat channels (a0, a1, b0, b1) owned by (0, 1, 0, 1).
    plan = plan_of(CatNet(), (1, 8, 8), {"a": [0, 1], "b": [0, 1], "c": [0, 1]})
    assert plan.ownership["cat"].tolist() == [0, 1, 0, 1]
    assert messages(plan) == {
        ("input", 0, 1, (0,)),  # read by a and b on device 1: one message
        ("a+b", 0, 1, (0, 2)),  # c is dense: device 1 needs the cat channels device 0 owns
        ("a+b", 1, 0, (1, 3)),
        ("output", 1, 0, (1,)),
    }
    sizes = {m.layer: len(m.channels) * 8 * 8 * F32 for m in plan.messages}
    assert sizes == {"input": 256, "a+b": 512, "output": 256}


class DepthwiseNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pw = nn.Conv2d(2, 4, 1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw(F.relu(self.pw(x)))


def test_depthwise_filter_needs_only_its_own_channel() -> None:
    # pw contiguous (0,0,1,1); dw round robin (0,1,0,1): dw filter f reads only channel f.
    plan = plan_of(DepthwiseNet(), (2, 6, 6), {"pw": [0, 0, 1, 1], "dw": [0, 1, 0, 1]})
    assert messages(plan) == {
        ("input", 0, 1, (0, 1)),
        ("pw", 0, 1, (1,)),  # dw filter 1 on device 1 needs pw channel 1 (device 0)
        ("pw", 1, 0, (2,)),  # dw filter 2 on device 0 needs pw channel 2 (device 1)
        ("output", 1, 0, (1, 3)),
    }
    # FLOPs: 2 * filters * in_channels * k*k / groups * H*W = 2 * 2 * 4 * 9 / 4 * 36 per device
    flops = {(t.key.stage, t.device): t.flops for t in task_templates(plan, batch=1)}
    assert flops[("dw", 0)] == flops[("dw", 1)] == 2 * 2 * 9 * 36
    assert flops[("pw", 0)] == 2 * 2 * 2 * 36


class ResidualNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        return F.relu(self.conv2(F.relu(self.conv1(x))) + x)


def block_diagonal(model: ResidualNet, parts: dict[str, np.ndarray]) -> None:
    """Zero every weight between channels on different devices, so convs need nothing remote."""
    with torch.no_grad():
        model.conv1.weight[parts["conv1"][:, None] != parts["stem"][None, :]] = 0
        model.conv2.weight[parts["conv2"][:, None] != parts["conv1"][None, :]] = 0


@pytest.mark.parametrize("strategy", ["random", "aligned"])
def test_residual_add_alone_causes_transfers_unless_aligned(strategy: str) -> None:
    model = ResidualNet()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        x = torch.rand(1, 1, 6, 6)
    parts = make_partition(FlowGraph.trace(model, x), strategy, 2, seed=3)
    block_diagonal(model, parts)
    plan = plan_of(model, (1, 6, 6), parts)
    stem_owner, add_owner = parts["stem"], parts["conv2"]
    if strategy == "random":
        # seed 3 gives stem (1,1,0,0) and conv2 (1,0,0,1): channels 1 and 3 change hands at the add
        assert stem_owner.tolist() == [1, 1, 0, 0] and add_owner.tolist() == [1, 0, 0, 1]
        expected = {("stem", 1, 0, (1,)), ("stem", 0, 1, (3,))}
    else:
        assert stem_owner.tolist() == add_owner.tolist()  # one residual stream, one assignment
        expected = set()
    inner = {m for m in messages(plan) if m[0] not in ("input", "output")}
    assert inner == expected


def test_residual_groups_tie_stem_and_block_output() -> None:
    graph = FlowGraph.trace(ResidualNet(), torch.zeros(1, 1, 6, 6))
    assert residual_groups(graph) == [["stem", "conv2"]]


class Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.conv(x), dim=1)


def test_unsupported_op_is_one_line_error_naming_op_and_node() -> None:
    with pytest.raises(UserError) as err:
        FlowGraph.trace(Unsupported(), torch.zeros(1, 1, 6, 6))
    assert "unsupported operation softmax at 'softmax'" in str(err.value)
    assert "\n" not in str(err.value)


def test_lenet_layers_and_shapes() -> None:
    from sim.model.zoo import build_model

    g = FlowGraph.trace(build_model("lenet5"), torch.zeros(1, 1, 32, 32))
    layers = g.layers()
    assert [l.name for l in layers] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    fc1 = layers[2]
    assert (fc1.in_channels, fc1.in_spatial, fc1.out_channels) == (16, 25, 120)  # flatten keeps channels


def test_wrong_input_shape_is_one_line_error() -> None:
    from sim.model.zoo import build_model

    with pytest.raises(UserError, match=r"model.input_shape: the model fails on input of shape \[1, 28, 28\]"):
        FlowGraph.trace(build_model("lenet5"), torch.zeros(1, 1, 28, 28))  # LeNet's linear layer wants 32x32
    with pytest.raises(UserError, match=r"\[3, 32, 32\] gives 3 channel\(s\) .* set model.input_shape: \[1, 32, 32\]"):
        FlowGraph.trace(build_model("lenet5"), torch.zeros(1, 3, 32, 32))


class ScalarAdd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + 1.0


def test_adding_a_scalar_is_refused() -> None:
    with pytest.raises(UserError, match="must add two tensors"):
        FlowGraph.trace(ScalarAdd(), torch.zeros(1, 1, 6, 6))
