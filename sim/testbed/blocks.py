"""Values held as channels at a block of positions (a plan with rows, docs/design.md §3b): a device's value of
a tensor is ``(B, k, h, w)`` (or flattened, ``(B, k*h*w)``), the channels ``have`` (ascending) at the block
``box`` (:class:`sim.workload.spatial.Box`) of the tensor's grid. The interpreter
(:mod:`sim.testbed.interpreter`) crops what a stage reads from it and picks a message's positions.

Example: the right half of a 2x4 value, and two of its positions::

    >>> v = torch.arange(8.0).reshape(1, 1, 2, 4)
    >>> right = crop(v, np.array([0]), Box(0, 2, 0, 4), np.array([0]), Box(0, 2, 2, 4))
    >>> right[0, 0].tolist(), at(right, Box(0, 2, 2, 4), np.array([3, 6]), width=4)[0, 0].tolist()
    ([[2.0, 3.0], [6.0, 7.0]], [3.0, 6.0])
"""

from __future__ import annotations

import numpy as np
import torch

from sim.workload.spatial import Box

NOWHERE = Box(0, 0, 0, 0)  # the block of a value a device holds none of


def crop(
    value: torch.Tensor, have: np.ndarray, box: Box, want: np.ndarray, target: Box, copy: bool = False
) -> torch.Tensor:
    """Channels ``want`` at block ``target``, ``(B, k, h, w)``, of a value holding channels ``have`` at block
    ``box``; zeros where it holds none (padding a conv's block reads but no element it computes needs).
    The value itself (reshaped) when nothing changes, unless ``copy``."""
    v = value.reshape(value.shape[0], len(have), *box.hw)
    if not copy and target == box and np.array_equal(have, want):
        return v
    out = torch.zeros((value.shape[0], len(want), *target.hw), dtype=value.dtype)
    both = np.isin(want, have)
    y0, y1, x0, x1 = max(box.y0, target.y0), min(box.y1, target.y1), max(box.x0, target.x0), min(box.x1, target.x1)
    if both.any() and y1 > y0 and x1 > x0:
        src = torch.from_numpy(np.searchsorted(have, want[both]))
        dst = torch.from_numpy(np.flatnonzero(both))
        part = v[:, :, y0 - box.y0 : y1 - box.y0, x0 - box.x0 : x1 - box.x0].index_select(1, src)
        out[:, dst, y0 - target.y0 : y1 - target.y0, x0 - target.x0 : x1 - target.x0] = part
    return out


def at(value: torch.Tensor, box: Box, positions: np.ndarray, width: int) -> torch.Tensor:
    """``(B, k, len(positions))``: the grid's flat ``positions`` (``y*width + x``) of a ``(B, k, h, w)`` value
    held at ``box``; a RuntimeError when one is outside it."""
    flat = value.reshape(value.shape[0], value.shape[1], -1)
    return flat.index_select(2, torch.from_numpy(box.relative(positions, width)))
