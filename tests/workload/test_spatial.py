"""The rows form (docs/design.md §3b): receptive rows by hand and by autograd, halo messages by hand for a 3-conv
stack over 2 devices (per-layer exchange and fused tiles), and the compute of a rows split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sim.model.flowgraph import FlowGraph
from sim.model.partition import spatial_split
from sim.workload.cost import redundant_flops, task_templates
from sim.workload.graph import Window
from sim.workload.plan import plan_workload
from sim.workload.spatial import band_owner, receptive
from sim.workload.types import Split


def _rows_read(op: nn.Module, in_rows: int, out_row: int, width: int = 5) -> list[int]:
    """The input rows output row ``out_row`` of ``op`` depends on, by autograd (an independent method)."""
    x = torch.randn(1, 1, in_rows, width, requires_grad=True)
    op(x)[0, 0, out_row].sum().backward()
    assert x.grad is not None
    return np.flatnonzero(x.grad[0, 0].abs().sum(1).numpy()).tolist()


def _window_rows(window: Window, out_rows: list[int], out_size: int, in_size: int) -> list[int]:
    mask = np.zeros((out_size, 1), dtype=bool)
    mask[out_rows] = True
    return np.flatnonzero(receptive(window, mask, (in_size, 1)).any(1)).tolist()


def test_stride_2_conv_reads_rows_by_hand() -> None:
    # k=3, s=2, p=1 on 8 rows -> 4 rows; output rows [1, 2] read [1*2-1, 2*2-1+2] = [1, 5]
    window = Window((3, 3), (2, 2), (1, 1), (1, 1))
    assert _window_rows(window, [1, 2], 4, 8) == [1, 2, 3, 4, 5]
    assert _window_rows(window, [0], 4, 8) == [0, 1]  # row -1 is padding
    conv = nn.Conv2d(1, 1, 3, stride=2, padding=1)
    assert [_rows_read(conv, 8, 1), _rows_read(conv, 8, 2)] == [[1, 2, 3], [3, 4, 5]]


def test_dilated_conv_reads_rows_by_hand() -> None:
    # k=3, d=2, p=2 on 8 rows: output row 3 reads 3-2+{0,2,4} = {1,3,5}; rows [3,4] read [1, 6] (DESIGN's interval)
    window = Window((3, 3), (1, 1), (2, 2), (2, 2))
    assert _window_rows(window, [3], 8, 8) == [1, 3, 5]
    assert _window_rows(window, [3, 4], 8, 8) == [1, 2, 3, 4, 5, 6]
    assert _rows_read(nn.Conv2d(1, 1, 3, padding=2, dilation=2), 8, 3) == [1, 3, 5]


def test_max_pool_with_ceil_mode_reads_rows_by_hand() -> None:
    # k=3, s=2, p=1, ceil_mode on 8 rows -> 5 rows; the last window starts at 4*2-1 = 7 and is clipped to [7]
    pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
    assert pool(torch.zeros(1, 1, 8, 8)).shape[2] == 5
    window = Window((3, 3), (2, 2), (1, 1), (1, 1))
    assert _window_rows(window, [4], 5, 8) == [7]
    assert _window_rows(window, [0], 5, 8) == [0, 1]
    assert _window_rows(window, [2], 5, 8) == [3, 4, 5]
    avg = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True)  # avg-pool: every window element has a gradient
    assert [_rows_read(avg, 8, y) for y in (0, 2, 4)] == [[0, 1], [3, 4, 5], [7]]


def test_adaptive_pool_windows_match_torch() -> None:
    pool = nn.AdaptiveAvgPool2d((3, 1))
    window = Window(adaptive=True)
    for y in range(3):
        assert _window_rows(window, [y], 3, 7) == _rows_read(pool, 7, y)


def test_pool_bands_follow_the_input_runs() -> None:
    owner = np.repeat([0, 0, 0, 1, 1, 1, 1, 2], 3).reshape(8, 3)  # runs of 3, 4 and 1 rows
    assert band_owner(owner, (4, 2))[:, 0].tolist() == [0, 0, 1, 2]  # array_split(4 rows, 3 bands) = 2, 1, 1


class ThreeConvs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)
        self.conv3 = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(torch.relu(self.conv1(x))))


@pytest.fixture(scope="module")
def three_convs() -> FlowGraph:
    torch.manual_seed(0)
    return FlowGraph.trace(ThreeConvs().eval(), torch.randn(1, 1, 8, 8))


def _messages(graph: FlowGraph, fused: bool) -> list[tuple[str, int, int, int]]:
    plan = plan_workload(graph, spatial_split(graph, 2, 0, fused=fused), 2, 0, 0)
    return [
        (m.layer, m.src, m.dst, len(m.channels) * (len(m.positions) if m.positions is not None else 64))
        for m in plan.messages
    ]


def test_halo_messages_per_layer_by_hand(three_convs: FlowGraph) -> None:
    # rows 0-3 on d0, 4-7 on d1 at every conv (8x8, k=3, p=1)
    assert _messages(three_convs, fused=False) == [
        ("input", 0, 1, 1 * 5 * 8),  # d1's rows 4-7 read input rows 3-7: 1 channel x 5 rows x 8
        ("conv1", 0, 1, 2 * 1 * 8),  # halo: d1 needs row 3 of both channels
        ("conv1", 1, 0, 2 * 1 * 8),  # d0 needs row 4
        ("conv2", 0, 1, 2 * 8),
        ("conv2", 1, 0, 2 * 8),
        ("output", 1, 0, 2 * 4 * 8),  # d1's rows of the output to the sink
    ]


def test_halo_messages_fused_by_hand(three_convs: FlowGraph) -> None:
    # d1 owns conv3 rows 4-7 -> computes conv2 rows 3-7 -> conv1 rows 2-7 -> reads input rows 1-7
    assert _messages(three_convs, fused=True) == [("input", 0, 1, 1 * 7 * 8), ("output", 1, 0, 2 * 4 * 8)]


def test_fused_redundant_rows_are_counted_by_hand(three_convs: FlowGraph) -> None:
    plan = plan_workload(three_convs, spatial_split(three_convs, 2, 0, fused=True), 2, 0, 0)
    # conv1: d0 rows 0-5, d1 rows 2-7 -> 4 rows twice; conv2: d0 0-4, d1 3-7 -> 2 rows twice
    per_row_conv1 = 2 * 2 * (1 * 9) * 8  # 2 * filters * in*k*k * W
    per_row_conv2 = 2 * 2 * (2 * 9) * 8
    assert redundant_flops(plan, batch=1) == 4 * per_row_conv1 + 2 * per_row_conv2
    flops = {(plan.task_label(t.key), t.device): t.flops for t in task_templates(plan, batch=1)}
    assert flops[("conv1", 1)] == 6 * per_row_conv1
    assert flops[("conv2", 0)] == 5 * per_row_conv2
    assert flops[("conv3", 1)] == 4 * per_row_conv2  # H_out replaced by the 4 rows it owns


def test_tiles_split_rows_and_columns(three_convs: FlowGraph) -> None:
    split = spatial_split(three_convs, 4, 0, tiles=(2, 2))
    assert split.rows["conv1"][[0, 0, 7, 7], [0, 7, 0, 7]].tolist() == [0, 1, 2, 3]
    plan = plan_workload(three_convs, split, 4, 0, 0)
    first = plan.messages[0]  # the source sends d1 the input block rows 0-4, columns 3-7
    assert (first.src, first.dst, first.positions is not None and len(first.positions)) == (0, 1, 5 * 5)


def test_filters_split_as_a_split_plans_like_the_channel_planner(three_convs: FlowGraph) -> None:
    filters = {"conv1": np.array([0, 1]), "conv2": np.array([1, 0]), "conv3": np.array([0, 1])}
    channel = plan_workload(three_convs, filters, 2, 0, 0)
    rows = {"conv2": np.zeros((8, 8), dtype=np.int64)}  # conv2 by rows, all on d0: conv2 whole on d0
    mixed = plan_workload(three_convs, Split(filters, rows), 2, 0, 0)
    assert [(m.src, m.dst, m.channel_ids) for m in channel.messages][:1] == [(0, 1, (0,))]
    assert [(m.layer, m.src, m.dst, m.channel_ids, m.positions) for m in mixed.messages] == [
        ("input", 0, 1, (0,), None),  # conv1's filter 1 on d1 reads the image
        ("conv1", 1, 0, (1,), None),  # conv2 (rows, all on d0) reads both channels of conv1
        ("conv2", 0, 1, (0, 1), None),  # d1's filter 1 of conv3 reads both channels
        ("output", 1, 0, (1,), None),
    ]
