"""The interpreter's merge of received channels into the channels a device holds (compact values)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from sim.testbed.interpreter import Interpreter
from sim.testbed.program import MessageSpec, Step


def _message(k: int, src: int, channels: list[int], rank: int = 4) -> MessageSpec:
    per = (2, 2) if rank == 4 else (3,)
    return MessageSpec(k, 0, src, 0, "t", np.array(channels), 6, rank, per, "dense", 0, ("layer",))


def _merged(rank: int, have: list[int], parts: dict[int, list[int]]) -> tuple[torch.Tensor, np.ndarray]:
    """Merge messages carrying channel ``c`` filled with the value ``c`` into a device holding ``have``."""
    per = (2, 2) if rank == 4 else (3,)
    program = SimpleNamespace(steps=[Step("t", "pointwise", "call_module", "m", (), {}, rank)], messages=[], index=0)
    interp = Interpreter(program)  # type: ignore[arg-type]
    own = torch.tensor(have, dtype=torch.float32).reshape(1, -1, *[1] * len(per)).expand(1, len(have), *per)
    env = {"t": own.reshape(1, -1) if rank == 2 else own.clone()}
    held = {"t": np.array(have)}
    ms = [_message(k, src, chans, rank) for k, (src, chans) in enumerate(parts.items())]
    values = [
        torch.tensor(m.channels, dtype=torch.float32).reshape(1, -1, *[1] * len(per)).expand(1, -1, *per) for m in ms
    ]
    interp._merge(env, held, ms, values)
    return env["t"], held["t"]


def test_blocks_in_order_are_concatenated() -> None:
    value, held = _merged(4, [2, 3], {1: [4, 5], 2: [0, 1]})
    assert held.tolist() == [0, 1, 2, 3, 4, 5]
    assert value[0, :, 0, 0].tolist() == [0, 1, 2, 3, 4, 5]  # each channel carries its own index


def test_interleaved_channels_are_reordered() -> None:
    value, held = _merged(4, [0, 3], {1: [1, 4], 2: [2, 5]})
    assert held.tolist() == [0, 1, 2, 3, 4, 5]
    assert value[0, :, 1, 1].tolist() == [0, 1, 2, 3, 4, 5]


def test_a_flattened_tensor_keeps_its_features_per_channel() -> None:
    value, held = _merged(2, [1], {1: [0, 2]})
    assert held.tolist() == [0, 1, 2] and value.shape == (1, 9)
    assert value[0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
