"""CIFAR ResNets with dense weights: every message's bytes against a count made from the architecture alone.

The expected messages are derived here from the known CIFAR ResNet structure (block widths, strides,
which blocks have 1x1-conv shortcuts) and the partition, not from the traced graph: with dense weights a
device needs every input channel of a layer it owns filters of; the owner of ``(a + b)[c]`` (the block's
``conv2``) needs ``b[c]``; a tensor read by two consumers (a block input read by ``conv1`` and by the add
or the shortcut conv) crosses once per device pair.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from sim.config.load import load
from sim.pipeline.evaluate import evaluate
from sim.pipeline.prepare import prepare
from tests.helpers import scenario_dict

F32 = 4
WIDTHS = (64, 128, 256, 512)
DEPTHS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}


def blocks(model: str) -> list[tuple[str, int, int, int, bool]]:
    """(name, in_channels, out_channels, stride, shortcut conv?) of every BasicBlock of a CIFAR ResNet."""
    out, c_in = [], 64
    for stage, (width, depth) in enumerate(zip(WIDTHS, DEPTHS[model]), start=1):
        for i in range(depth):
            stride = 2 if stage > 1 and i == 0 else 1
            out.append((f"layer{stage}.{i}", c_in, width, stride, stride != 1 or c_in != width))
            c_in = width
    return out


def expected_messages(model: str, parts: dict[str, np.ndarray], n_dev: int) -> Counter:
    """(layer label, src, dst, bytes) of every message, from the architecture and the partition."""
    out: Counter = Counter()

    def send(label: str, owner: np.ndarray, need: np.ndarray, spatial: int) -> None:
        """``need[d]``: bool over channels that device d needs; one message per pair with channels."""
        for i in range(n_dev):
            for j in range(n_dev):
                k = int(((owner == i) & need[j]).sum()) if i != j else 0
                if k:
                    out[(label, i, j, k * spatial * F32)] += 1

    def all_if_owner(layer: str, channels: int) -> np.ndarray:
        """Dense weights: a device owning any filter of ``layer`` needs every input channel."""
        return np.array([[(parts[layer] == d).any()] * channels for d in range(n_dev)])

    # image: 3 channels of 32x32 at the source (device 0), read by the stem conv
    send("input", np.zeros(3, int), all_if_owner("conv1", 3), 32 * 32)
    stream_label, stream_owner, size = "conv1", parts["conv1"], 32
    for name, c_in, c_out, stride, has_sc in blocks(model):
        out_size = size // stride
        need = all_if_owner(f"{name}.conv1", c_in)
        if has_sc:
            need |= all_if_owner(f"{name}.shortcut.0", c_in)
        else:  # identity shortcut: the add's owner (conv2's owner of channel c) needs x[c]
            need |= np.eye(n_dev, dtype=bool)[parts[f"{name}.conv2"]].T
        send(stream_label, stream_owner, need, size * size)
        send(f"{name}.conv1", parts[f"{name}.conv1"], all_if_owner(f"{name}.conv2", c_out), out_size**2)
        if has_sc:
            add_need = np.eye(n_dev, dtype=bool)[parts[f"{name}.conv2"]].T
            send(f"{name}.shortcut.0", parts[f"{name}.shortcut.0"], add_need, out_size**2)
        stream_label, stream_owner, size = f"{name}.add", parts[f"{name}.conv2"], out_size
    # global average pool -> flatten -> linear: 512 features of 1 element each
    send(stream_label, stream_owner, all_if_owner("linear", 512), 1)
    # final gather of the 10 logits at the sink (device 0)
    send("output", parts["linear"], np.array([[d == 0] * 10 for d in range(n_dev)]), 1)
    return out


CASES = [
    ("resnet18", 4, {"strategy": "contiguous"}),
    ("resnet18", 4, {"strategy": "random", "seed": 7}),
    pytest.param("resnet34", 16, {"strategy": "random", "seed": 3}, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("model", "n_devices", "partition"), CASES)
def test_resnet_every_message_matches_independent_count(model: str, n_devices: int, partition: dict) -> None:
    scenario = load(
        scenario_dict(n_devices, model={"name": model}, inputs={"dataset": "synthetic"}, partition=partition)
    )
    built = prepare(scenario)
    result = evaluate(scenario, built.built)
    names = scenario.device_names
    got = Counter((r.layer, names.index(r.src), names.index(r.dst), r.bytes) for r in result.transfers.itertuples())
    expected = expected_messages(model, {k: np.asarray(v) for k, v in built.plan.partition.items()}, n_devices)
    assert got == expected
    assert result.summary["bytes_total"] == sum(key[3] * n for key, n in expected.items())
