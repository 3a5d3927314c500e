"""The per-device layer kernel (:func:`sim.model.shards.layer_shard`, :func:`run_shard`): a device's filters,
computed from the input channels it reads, equal those filters of the whole layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sim.model.shards import channel_features, layer_shard, run_shard
from sim.workload.graph import Window
from sim.workload.spatial import Box, window_crop


def _uses(module: nn.Conv2d | nn.Linear, in_channels: int) -> np.ndarray:
    """uses[f, c]: filter f has a non-zero weight on input channel c (a linear input has 4 features per channel)."""
    w = module.weight.detach().abs()
    if isinstance(module, nn.Linear):
        return w.reshape(w.shape[0], in_channels, -1).sum(dim=2).numpy() > 0
    per_in = w.shape[1]
    uses = np.zeros((w.shape[0], in_channels), dtype=bool)
    for f in range(w.shape[0]):
        group = f // (w.shape[0] // (in_channels // per_in))
        uses[f, group * per_in : (group + 1) * per_in] = w[f].sum(dim=(1, 2)).numpy() > 0
    return uses


@pytest.mark.parametrize(
    ("groups", "filters"),
    [
        (1, [1, 4, 5]),  # ungrouped: the filters' rows, the used channels' columns
        (4, [2, 3, 6, 7]),  # two filters in each of groups 1 and 3: those groups only
        (4, [0, 1, 2]),  # uneven over groups: the whole layer, then the owned outputs
        (8, [5]),  # depthwise, one filter
    ],
)
def test_a_conv_shard_equals_its_filters_of_the_whole_layer(groups: int, filters: list[int]) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1, stride=2, groups=groups)
    if groups == 1:
        with torch.no_grad():
            conv.weight[:, 0] = 0.0  # input channel 0 used by no filter
    x = torch.randn(2, 8, 9, 9)
    shard = layer_shard(conv, _uses(conv, 8), np.array(filters))
    if groups == 1:
        assert 0 not in shard.needed and shard.inputs.tolist() == shard.needed.tolist()
    got = run_shard(shard, x[:, torch.from_numpy(shard.inputs)])
    with torch.no_grad():
        expected = conv(x)[:, filters]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_linear_shard_reads_the_features_of_its_channels() -> None:
    torch.manual_seed(1)
    fc = nn.Linear(3 * 4, 5)  # 3 input channels of 4 features each
    with torch.no_grad():
        fc.weight[:, 4:8] = 0.0  # channel 1 is used by no neuron
    x = torch.randn(2, 12)
    shard = layer_shard(fc, _uses(fc, 3), np.array([0, 3]), in_spatial=4)
    assert shard.needed.tolist() == [0, 2]
    got = run_shard(shard, x[:, torch.from_numpy(channel_features(shard.inputs, 4))])
    with torch.no_grad():
        expected = fc(x)[:, [0, 3]]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_no_bias_for_partial_sums() -> None:
    conv = nn.Conv2d(2, 2, 1)
    shard = layer_shard(conv, np.ones((2, 2), dtype=bool), np.array([1]), bias=False)
    x = torch.zeros(1, 2, 3, 3)
    assert shard.bias is None and float(run_shard(shard, x).abs().max()) == 0.0


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation"),
    [(3, 1, 1, 1), (3, 2, 1, 1), (5, 1, 2, 1), (3, 1, 2, 2), (7, 2, 3, 1), (1, 1, 0, 1), (4, 3, 2, 1), (2, 2, 0, 1)],
)
def test_a_block_of_output_positions_equals_the_same_block_of_the_whole_conv(
    kernel: int, stride: int, padding: int, dilation: int
) -> None:
    # every block of output rows x columns, from the input block window_crop names, padded where it meets
    # the border: equal to the whole conv's outputs there (borders, inner blocks and one-row blocks alike)
    gen = torch.Generator().manual_seed(kernel * 100 + stride * 10 + padding + dilation)
    conv = nn.Conv2d(2, 3, kernel, stride, padding, dilation)
    x = torch.randn(1, 2, 11, 9, generator=gen)
    with torch.no_grad():
        whole = conv(x)
        shard = layer_shard(conv, np.ones((3, 2), dtype=bool), np.arange(3))
        window = Window((kernel, kernel), (stride, stride), (padding, padding), (dilation, dilation))
        height, width = whole.shape[2:]
        rows = np.array_split(np.arange(height), 3)
        cols = np.array_split(np.arange(width), 2)
        for r in rows:
            for c in cols:
                out = Box(int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1)
                inp, pad = window_crop(window, out, (11, 9))
                block = run_shard(shard, x[:, :, inp.y0 : inp.y1, inp.x0 : inp.x1], pad)
                expected = whole[:, :, out.y0 : out.y1, out.x0 : out.x1]
                torch.testing.assert_close(block, expected, rtol=1e-5, atol=1e-6)
