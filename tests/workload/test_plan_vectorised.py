"""The vectorised weight-usage tracing and message plan against the rules computed here one filter, one
channel and one device pair at a time (docs/design.md §3.3-§3.4), on a small model with a residual add, a
cat, a grouped conv, a flatten into a linear layer and unstructured zeros, over a scattered partition."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sim.model.flowgraph import FlowGraph
from sim.workload.plan import MessagePlan, TaskKey, plan_workload

DEVICES = 4


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.g = nn.Conv2d(8, 8, 3, padding=1, groups=4)  # 2 input channels per group
        self.c = nn.Conv2d(16, 6, 1)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.a(x))
        z = self.b(y) + y  # residual add: y is read by b and by the add
        cat = torch.cat([self.g(z), y], 1)
        return self.fc(torch.flatten(F.relu(self.c(cat)), 1))


def sparse_net() -> Net:
    """The model with about half of its weights zero, some whole kernels among them (seeded)."""
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.mul_(
                    (torch.rand(module.weight.shape[:2]) > 0.4)
                    .float()
                    .view(*module.weight.shape[:2], *[1] * (module.weight.dim() - 2))
                )
                module.weight.mul_((torch.rand(module.weight.shape) > 0.3).float())
    return net


def test_weight_usage_of_every_layer_is_that_of_each_filter() -> None:
    model = sparse_net()
    graph = FlowGraph.trace(model, torch.randn(1, 3, 4, 4))
    for name in graph.order:
        if graph.kind(name) != "layer":
            continue
        layer = graph.layer(name)
        weight = model.get_submodule(layer.name).weight.detach()
        groups = layer.groups
        expected = np.zeros_like(layer.uses)
        for f in range(weight.shape[0]):
            for j in range(weight.shape[1]):
                kernel = weight[f, j]
                if weight.dim() == 2:  # linear: feature j belongs to channel j // (features per channel)
                    expected[f, j // layer.in_spatial] |= bool(kernel != 0)
                else:
                    group = f // (weight.shape[0] // groups)
                    expected[f, group * weight.shape[1] + j] = bool((kernel != 0).any())
        assert layer.uses.tolist() == expected.tolist(), name


def reference_messages(graph: FlowGraph, owner: dict[str, np.ndarray], producer: dict[str, np.ndarray]) -> list[tuple]:
    """Every message of the ``inputs`` scheme, pair by pair and channel by channel."""
    out = []
    for tensor in graph.order:
        if graph.kind(tensor) == "output":
            continue
        channels = graph.node(tensor).channels
        needs: dict[str, np.ndarray] = {}  # consumer -> (devices, channels)
        for consumer in graph.consumers(tensor):
            need = np.zeros((DEVICES, channels), dtype=bool)
            kind = graph.kind(consumer)
            if kind == "layer":
                layer, filters = graph.layer(consumer), owner[consumer]
                for f in range(layer.uses.shape[0]):
                    for c in range(channels):
                        need[filters[f], c] |= bool(layer.uses[f, c])
            elif kind == "add":
                for c in range(channels):
                    need[owner[consumer][c], c] = True
            elif kind == "output":
                need[0] = True
            else:
                continue
            needs[consumer] = need
        for src in range(DEVICES):
            for dst in range(DEVICES):
                chans = [
                    c for c in range(channels) if owner[tensor][c] == src and any(n[dst, c] for n in needs.values())
                ]
                if src == dst or not chans:
                    continue
                users = [u for u, n in needs.items() if any(n[dst, c] for c in chans)]
                stages = sorted({producer[tensor][c] for c in chans}, key=graph.rank)
                final = any(graph.kind(u) == "output" for u in users)
                layer = "output" if final else "+".join(graph.label(s) for s in stages)
                after = None if stages == [graph.input_node()] else TaskKey(stages[-1])
                needed_by = tuple(TaskKey(u) for u in users if graph.kind(u) != "output")
                out.append((tensor, layer, src, dst, chans, after, needed_by, final))
    return out


def test_messages_are_those_of_the_rules_pair_by_pair() -> None:
    graph = FlowGraph.trace(sparse_net(), torch.randn(1, 3, 4, 4))
    rng = np.random.default_rng(1)
    partition = {
        graph.label(n): rng.integers(0, DEVICES, graph.layer(n).out_channels)
        for n in graph.order
        if graph.kind(n) == "layer"
    }
    plan = plan_workload(graph, partition, DEVICES, 0, 0)
    got = [(m.tensor, m.layer, m.src, m.dst, m.channels.tolist(), m.after, m.needed_by, m.final) for m in plan.messages]
    expected = reference_messages(graph, plan.placement.owner, plan.placement.producer)
    assert got == expected
    assert {m[1] for m in got} >= {"output"} and any(
        "+" in m[1] for m in got
    )  # a final gather, and a cat's mixed producers
    assert all(isinstance(m, MessagePlan) and m.channels.dtype == np.int64 for m in plan.messages)
