"""LeNet-5 with a contiguous partition and dense float32 messages: every message size, by hand.

The expected sizes are written out from the layer shapes (docs/design.md §3.4-§3.6 and §4), not computed by the
code under test. LeNet-5: input 1x32x32 -> conv1 6x28x28 -> pool 6x14x14 -> conv2 16x10x10 -> pool
16x5x5 -> flatten 400 -> fc1 120 -> fc2 84 -> fc3 10. Every weight is non-zero, so a device needs every
input channel of a layer it owns filters of. Device 0 is the source and the sink.
"""

from __future__ import annotations

import pytest

import sim
from sim.config.load import parse_scenario
from sim.pipeline.prepare import prepare
from tests.helpers import scenario_dict

F32 = 4  # bytes per float32

# numpy.array_split over 4 devices: conv1 6 -> [2,2,1,1]; conv2 16 -> [4]*4; fc1 120 -> [30]*4;
# fc2 84 -> [21]*4; fc3 10 -> [3,3,2,2].
FOUR = {
    "input": {(0, 1): 32 * 32 * F32, (0, 2): 32 * 32 * F32, (0, 3): 32 * 32 * F32},
    # pooled conv1 output: owner's channels x 14*14, to every other device (all need all 6 channels)
    "conv1": {(i, j): ch * 14 * 14 * F32 for i, ch in enumerate([2, 2, 1, 1]) for j in range(4) if i != j},
    # pooled conv2 output, flattened: 4 channels x 5*5 each
    "conv2": {(i, j): 4 * 25 * F32 for i in range(4) for j in range(4) if i != j},
    "fc1": {(i, j): 30 * F32 for i in range(4) for j in range(4) if i != j},
    "fc2": {(i, j): 21 * F32 for i in range(4) for j in range(4) if i != j},
    "output": {(1, 0): 3 * F32, (2, 0): 2 * F32, (3, 0): 2 * F32},
}
# 2 devices: conv1 [3,3], conv2 [8,8], fc1 [60,60], fc2 [42,42], fc3 [5,5]
TWO = {
    "input": {(0, 1): 32 * 32 * F32},
    "conv1": {(0, 1): 3 * 196 * F32, (1, 0): 3 * 196 * F32},
    "conv2": {(0, 1): 8 * 25 * F32, (1, 0): 8 * 25 * F32},
    "fc1": {(0, 1): 60 * F32, (1, 0): 60 * F32},
    "fc2": {(0, 1): 42 * F32, (1, 0): 42 * F32},
    "output": {(1, 0): 5 * F32},
}


@pytest.mark.parametrize(("n_devices", "expected", "total"), [(4, FOUR, 33_676), (2, TWO, 11_236)])
def test_every_message_size_by_hand(n_devices: int, expected: dict, total: int) -> None:
    result = sim.run(scenario_dict(n_devices=n_devices))
    names = [f"d{i}" for i in range(n_devices)]
    got: dict[str, dict[tuple[int, int], int]] = {}
    for row in result.transfers.itertuples():
        got.setdefault(row.layer, {})[(names.index(row.src), names.index(row.dst))] = row.bytes
        assert row.dense_bytes == row.bytes and row.format == "dense"
    assert got == expected
    assert sum(sum(v.values()) for v in expected.values()) == total
    assert result.summary["bytes_total"] == total


def test_message_order_follows_tensor_then_destination() -> None:
    t = sim.run(scenario_dict(n_devices=4)).transfers
    layers = list(dict.fromkeys(t["layer"]))
    assert layers == ["input", "conv1", "conv2", "fc1", "fc2", "output"]
    conv1 = t[t["layer"] == "conv1"]
    assert list(zip(conv1["src"], conv1["dst"]))[:3] == [("d0", "d1"), ("d0", "d2"), ("d0", "d3")]


def test_conv2_bytes_touched_by_hand(lenet_graph) -> None:
    # conv2 reads 6 channels of 14x14 (pooled conv1) with 5x5 kernels and writes 16 filters of 10x10.
    # 4 of its filters on a batch of 2: input 2*6*196 = 2352, weights 4*6*25 = 600, outputs 2*4*100 = 800
    # float32 values: (2352 + 600 + 800) * 4 bytes.
    assert lenet_graph.layer("conv2").bytes_touched(4, 2) == 15_008
    # In a run over 4 devices (contiguous: 4 filters each) every conv2 task touches that much.
    prepared = prepare(parse_scenario(scenario_dict(4, inputs={"dataset": "digits", "batch_size": 2})))
    conv2 = [t.bytes_touched for t in prepared.workload.tasks if t.layer == "conv2"]
    assert conv2 == [15_008] * 4
