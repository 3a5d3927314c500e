"""The rows form (docs/design.md §3b): every element ``(c, y, x)`` of every tensor has one owner.

A rows-split conv owns its output rows (or ``(y, x)`` tile blocks) as the partition lists them; a
``filters`` or ``whole`` layer owns whole channels as in docs/design.md §3. Channel-wise ops keep ownership.
A pooling op that reads a tensor owned by rows gets its own bands: its output rows (and columns) are split
with ``numpy.array_split`` into as many bands as its input has runs of one owner, band ``k`` going to the
owner of the input's run ``k`` (so the ``spatial`` strategy's bands line up from layer to layer). A
residual add belongs to the owner of its first operand, element by element.

**Stages** are the points where a device produces elements: the image, conv and linear layers, adds and
banded pools. Each stage has, per device, the elements it *computes*: those it owns, or, inside a fused
run (``fused``), those its own later work needs. **Need**: device ``d`` needs input element ``(c, y, x)``
of a stage when some element it computes reads it: a conv's filter ``f`` reads channel ``c`` when
``uses[f, c]``, and output position ``(y', x')`` reads the input positions of its receptive field
(:meth:`~sim.workload.graph.Window.reads`, exact for kernel, stride, padding, dilation and adaptive
pools); a linear layer reads every feature of the channels its neurons use; an add reads both operands at
its own positions; the sink reads the whole model output.

**Messages**: for each tensor a stage reads and each ordered pair ``i -> j``, one message with the elements
``i`` owns and ``j`` needs, sent as ``batch*channels`` rows by positions columns: the channels and positions
are the smallest block covering them (equal to them whenever ``j``'s need is a product of channels and
positions, which it is unless a tensor feeds consumers of different forms).

**Fused runs** (``fused``): within a connected run of rows-split convs (through channel-wise ops, pools,
adds and cats), every tensor from which another conv of the run is reached is *internal*: each device
computes the part of it that its own later work needs (overlaps computed more than once, the redundant
FLOPs), and internal tensors never cross. Only the run's inputs and its last tensors are owned and sent.
A rows conv whose rows all have one owner starts no run and joins none: its owner computes it (as a whole
layer) and what a run needs of it crosses in the ordinary halo messages.

Example::

    >>> w = Window((3, 3), (1, 1), (1, 1), (1, 1))  # a 3x3 conv, stride 1, padding 1
    >>> band = np.zeros((4, 4), dtype=bool); band[:2] = True  # output rows 0-1
    >>> receptive(w, band, (4, 4)).any(axis=1).tolist()  # read input rows 0-2
    [True, True, True, False]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sim.errors import UserError
from sim.workload.graph import ChannelGraph, Node, Window

Masks = np.ndarray  # bool (n_devices, C, S): per device, a set of elements of a tensor viewed as (C, S)


@dataclass(frozen=True)
class SpatialPlacement:
    """Element ownership and work for a partition with rows-split layers (module docstring).

    ``owner[t]`` is the owning device of each element of tensor ``t`` as ``(C, S)`` (``S = H*W``, or the
    features per channel of a flattened tensor); ``computes[s]`` the elements each device computes of
    stage ``s`` (``(n, C, S)``); ``needs[t][s]`` the elements of ``t`` each device needs for consumer stage
    ``s`` (``"output"``: the sink's gather); ``producer[t]`` the stage of each channel; ``internal`` the
    tensors of fused runs, computed where needed and never sent.
    """

    owner: Mapping[str, np.ndarray]
    computes: Mapping[str, Masks]
    needs: Mapping[str, Mapping[str, Masks]]
    producer: Mapping[str, np.ndarray]
    stages: tuple[str, ...]
    internal: frozenset[str]

    def reads(self, graph: ChannelGraph, stage: str) -> Masks:
        """The elements of its (first) input each device reads to compute its part of ``stage``."""
        return self.needs[graph.args(stage)[0]][stage]


def hw(node: Node) -> tuple[int, int]:
    """``(H, W)`` of a 4-D tensor node."""
    return int(node.shape[1]), int(node.shape[2])


def receptive(window: Window, positions: np.ndarray, in_hw: tuple[int, int]) -> np.ndarray:
    """The input positions (bool ``(H_in, W_in)``) that output ``positions`` (bool ``(H_out, W_out)``) of
    an op with ``window`` read (docs/design.md §3b, receptive rows; columns alike)."""
    rows = window.reads(0, positions.shape[0], in_hw[0]).astype(np.int64)
    cols = window.reads(1, positions.shape[1], in_hw[1]).astype(np.int64)
    return (rows.T @ positions.astype(np.int64) @ cols) > 0


@dataclass(frozen=True)
class Box:
    """A block of a ``(H, W)`` grid: rows ``y0 <= y < y1`` and columns ``x0 <= x < x1`` (empty when either
    range is).

    >>> b = Box(1, 3, 0, 2)
    >>> b.hw, b.positions(width=4).tolist(), b.union(Box(0, 1, 3, 4))
    ((2, 2), [4, 5, 8, 9], Box(y0=0, y1=3, x0=0, x1=4))
    """

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def hw(self) -> tuple[int, int]:
        """``(rows, columns)``."""
        return self.y1 - self.y0, self.x1 - self.x0

    @property
    def empty(self) -> bool:
        return self.y1 <= self.y0 or self.x1 <= self.x0

    def positions(self, width: int) -> np.ndarray:
        """The flat positions ``y*width + x`` of the block, row by row."""
        rows, cols = np.arange(self.y0, self.y1), np.arange(self.x0, self.x1)
        return (rows[:, None] * width + cols[None, :]).ravel()

    def union(self, other: Box) -> Box:
        """The smallest block holding both."""
        if self.empty:
            return other
        if other.empty:
            return self
        return Box(min(self.y0, other.y0), max(self.y1, other.y1), min(self.x0, other.x0), max(self.x1, other.x1))

    def relative(self, positions: np.ndarray, width: int) -> np.ndarray:
        """The grid's flat ``positions`` (``y*width + x``) as flat positions inside the block, row by row; a
        RuntimeError when one is outside it.

        >>> Box(1, 3, 0, 2).relative(np.array([4, 9]), width=4).tolist()
        [0, 3]
        """
        ys, xs = positions // width, positions % width
        if ((ys < self.y0) | (ys >= self.y1) | (xs < self.x0) | (xs >= self.x1)).any():
            raise RuntimeError(f"positions outside the block {self} are not held")
        return (ys - self.y0) * (self.x1 - self.x0) + (xs - self.x0)

    @staticmethod
    def holding(positions: np.ndarray, width: int) -> Box:
        """The smallest block holding the grid's flat ``positions`` (``y*width + x``, at least one).

        >>> Box.holding(np.array([5, 10]), width=4)
        Box(y0=1, y1=3, x0=1, x1=3)
        """
        ys, xs = positions // width, positions % width
        return Box(int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)

    @staticmethod
    def bounding(mask: np.ndarray) -> Box:
        """The smallest block holding the true entries of ``mask`` (bool ``(H, W)``); empty when none are."""
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if not len(rows):
            return Box(0, 0, 0, 0)
        return Box(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def cover(mask: np.ndarray) -> list[Box]:
    """Blocks exactly covering the true entries of ``mask`` (bool ``(H, W)``), none overlapping: runs of
    rows with the same columns, each cut into runs of columns (one block for a band or a tile).

    >>> m = np.zeros((4, 4), dtype=bool); m[:2, :2] = m[2:, 2:] = True   # two tiles of a 2x2 grid
    >>> cover(m)
    [Box(y0=0, y1=2, x0=0, x1=2), Box(y0=2, y1=4, x0=2, x1=4)]
    """
    blocks, y = [], 0
    while y < mask.shape[0]:
        end = y + 1
        while end < mask.shape[0] and np.array_equal(mask[end], mask[y]):
            end += 1
        cols = np.flatnonzero(mask[y])
        if len(cols):
            cuts = np.flatnonzero(np.diff(cols) > 1) + 1
            blocks += [Box(y, end, int(run[0]), int(run[-1]) + 1) for run in np.split(cols, cuts)]
        y = end
    return blocks


def window_crop(window: Window, out: Box, in_hw: tuple[int, int]) -> tuple[Box, tuple[int, int, int, int]]:
    """The input block that output block ``out`` of a conv reads (docs/design.md §3b, receptive rows
    ``[a*s - p, b*s - p + d*(k-1)]``, columns alike) clipped to the input, and the zero padding the block
    gets where it was clipped, ``(left, right, top, bottom)`` as ``torch.nn.functional.pad`` takes it: a
    block at the image border gets the conv's padding, an inner block none (its halo is real input).

    Rows 0-1 of a 3x3 conv with padding 1 over 4 rows read rows 0-2 and one padded row above; rows 2-3
    read rows 1-3 and one padded row below:

    >>> w = Window((3, 3), (1, 1), (1, 1), (1, 1))
    >>> window_crop(w, Box(0, 2, 0, 4), (4, 4))
    (Box(y0=0, y1=3, x0=0, x1=4), (1, 1, 1, 0))
    >>> window_crop(w, Box(2, 4, 0, 4), (4, 4))
    (Box(y0=1, y1=4, x0=0, x1=4), (1, 1, 0, 1))
    """

    def axis(a: int, lo_out: int, hi_out: int, size: int) -> tuple[int, int, int, int]:
        k, s, p, d = window.kernel[a], window.stride[a], window.padding[a], window.dilation[a]
        lo, hi = lo_out * s - p, (hi_out - 1) * s - p + d * (k - 1)  # inclusive
        first, last = max(lo, 0), min(hi, size - 1)
        return first, last + 1, first - lo, hi - last

    y0, y1, top, bottom = axis(0, out.y0, out.y1, in_hw[0])
    x0, x1, left, right = axis(1, out.x0, out.x1, in_hw[1])
    return Box(y0, y1, x0, x1), (left, right, top, bottom)


def band_owner(input_owner: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """A pooling op's owner per output position (module docstring): the runs of one owner along the
    input's first column (rows) and first row (columns), each mapped to one ``array_split`` band.

    >>> band_owner(np.repeat([0, 0, 1, 1, 2, 2], 4).reshape(6, 4), (3, 2)).tolist()
    [[0, 0], [1, 1], [2, 2]]
    """

    def runs(line: np.ndarray) -> list[int]:
        return [0] + [k for k in range(1, len(line)) if line[k] != line[k - 1]]

    row_starts, col_starts = runs(input_owner[:, 0]), runs(input_owner[0, :])
    out = np.zeros(out_hw, dtype=np.int64)
    row_bands = np.array_split(np.arange(out_hw[0]), len(row_starts))
    col_bands = np.array_split(np.arange(out_hw[1]), len(col_starts))
    for r, rows in enumerate(row_bands):
        for c, cols in enumerate(col_bands):
            out[np.ix_(rows, cols)] = input_owner[row_starts[r], col_starts[c]]
    return out


def place_elements(
    graph: ChannelGraph,
    filters: Mapping[str, np.ndarray],
    rows: Mapping[str, np.ndarray],
    n_devices: int,
    source: int,
    sink: int,
    *,
    fused: bool = False,
    input_owner: Sequence[int] | None = None,
) -> SpatialPlacement:
    """Owners, stages, fused runs, computed elements and needs of a partition with ``rows`` layers
    (module docstring): owners forward in topological order, needs (and what fused runs compute) backward."""
    owner, producer, stages = _owners(graph, filters, rows, source, input_owner)
    stage_set = set(stages)
    internal = _internal(graph, rows, stage_set) if fused else frozenset()
    devices = np.arange(n_devices)[:, None, None]
    computes = {s: owner[s][None] == devices for s in stages if s not in internal}
    needs: dict[str, dict[str, Masks]] = {}
    for t in reversed(graph.order):
        if graph.kind(t) == "output":
            continue
        need: dict[str, Masks] = {}
        for c in graph.consumers(t):
            if graph.kind(c) == "output":
                need["output"] = np.zeros((n_devices, *owner[t].shape), dtype=bool)
                need["output"][sink] = True
            elif c in stage_set:
                need[c] = np.stack([_reads(graph, c, t, computes[c][d]) for d in range(n_devices)])
            elif c in internal:  # a channel-wise op computed where needed: its needs are its input's
                for s, m in needs[c].items():
                    back = _back(graph, c, t, m)
                    need[s] = need[s] | back if s in need else back
        needs[t] = need
        if t in internal and t in stage_set:
            nothing = np.zeros((n_devices, *owner[t].shape), dtype=bool)
            computes[t] = np.logical_or.reduce(list(need.values())) if need else nothing
    return SpatialPlacement(owner, computes, needs, producer, tuple(stages), internal)


def _owners(
    graph: ChannelGraph,
    filters: Mapping[str, np.ndarray],
    rows: Mapping[str, np.ndarray],
    source: int,
    input_owner: Sequence[int] | None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]]:
    """``(owner, producer, stages)``: every tensor's owner per element ``(C, S)``, the stage of each of its
    channels, and the stages in topological order."""
    owner: dict[str, np.ndarray] = {}
    producer: dict[str, np.ndarray] = {}
    stages: list[str] = []
    for node in graph.order:
        rec, kind, args = graph.node(node), graph.kind(node), graph.args(node)
        shape = (rec.channels, rec.spatial)
        if kind == "output":
            continue
        if kind == "input":
            chans = np.full(rec.channels, source) if input_owner is None else np.asarray(input_owner, dtype=np.int64)
            owner[node] = np.repeat(chans[:, None], rec.spatial, axis=1)
        elif kind == "layer" and graph.label(node) in rows:
            owner[node] = np.broadcast_to(np.asarray(rows[graph.label(node)]).reshape(1, -1), shape).copy()
        elif kind == "layer":
            owner[node] = np.repeat(np.asarray(filters[graph.label(node)])[:, None], rec.spatial, axis=1)
        elif kind == "add":
            owner[node] = owner[args[0]]
        elif kind == "cat":
            owner[node] = np.concatenate([owner[a] for a in args])
            producer[node] = np.concatenate([producer[a] for a in args])
            continue
        elif rec.window is not None and _varies(owner[args[0]]):  # a pool reading rows: its own bands
            source_owner = owner[args[0]]
            channel = source_owner[int(np.flatnonzero((source_owner != source_owner[:, :1]).any(axis=1))[0])]
            bands = band_owner(channel.reshape(hw(graph.node(args[0]))), hw(rec))
            owner[node] = np.broadcast_to(bands.reshape(1, -1), shape).copy()
        else:  # channel-wise ops (and pools of whole channels) keep ownership; flatten keeps (C, S)
            src = owner[args[0]]
            owner[node] = src if src.shape == shape else np.repeat(src[:, :1], rec.spatial, axis=1)
            producer[node] = producer[args[0]]
            continue
        stages.append(node)
        producer[node] = np.full(rec.channels, node, dtype=object)
    return owner, producer, stages


def _varies(owner: np.ndarray) -> bool:
    """True when some channel's elements have more than one owner (the tensor is owned by rows)."""
    return bool((owner != owner[:, :1]).any())


def _internal(graph: ChannelGraph, rows: Mapping[str, np.ndarray], stages: set[str]) -> frozenset[str]:
    """The internal tensors of fused runs (module docstring). A rows conv whose rows all have one owner is
    no part of a run: its owner computes it and the runs around it read it through halo messages."""
    convs = {
        n
        for n in graph.order
        if graph.kind(n) == "layer" and graph.label(n) in rows and np.unique(np.asarray(rows[graph.label(n)])).size > 1
    }
    region: set[str] = set()
    for n in graph.order:
        kind, args = graph.kind(n), graph.args(n)
        if n in convs or (kind in ("pointwise", "add", "cat") and args and all(a in region for a in args)):
            region.add(n)
    internal: set[str] = set()
    for n in reversed(graph.order):
        if n in region and any(c in convs or c in internal for c in graph.consumers(n)):
            internal.add(n)
    for n in graph.order:  # channel-wise ops of an internal tensor are computed where needed, too
        if n not in internal and n not in stages and any(a in internal for a in graph.args(n)):
            if graph.kind(n) == "flatten" or graph.kind(n) == "output":
                raise UserError(
                    f"partition.fused: '{graph.label(n)}' reads a tensor inside a fused run; "
                    "end the run before it or set fused: false"
                )
            internal.add(n)
    return frozenset(internal)


def _reads(graph: ChannelGraph, stage: str, tensor: str, computed: np.ndarray) -> np.ndarray:
    """Bool ``(C_t, S_t)``: the elements of ``tensor`` that computing ``computed`` (bool ``(C, S)`` of
    ``stage``) reads."""
    t, rec, kind = graph.node(tensor), graph.node(stage), graph.kind(stage)
    need = np.zeros((t.channels, t.spatial), dtype=bool)
    if not computed.any():
        return need
    if kind == "add":
        return computed.copy()
    if kind == "layer" and graph.layer(stage).op == "linear":
        need[graph.layer(stage).uses[computed[:, 0]].any(axis=0)] = True
        return need
    window = rec.window
    assert window is not None  # a conv or a banded pool
    uses = graph.layer(stage).uses if kind == "layer" else np.eye(rec.channels, dtype=bool)
    patterns, inverse = np.unique(computed, axis=0, return_inverse=True)
    for k, pattern in enumerate(patterns):
        if pattern.any():
            chans = uses[np.asarray(inverse).reshape(-1) == k].any(axis=0)
            field = receptive(window, pattern.reshape(hw(rec)), hw(t)).reshape(-1)
            need[np.ix_(chans, field)] = True
    return need


def _back(graph: ChannelGraph, node: str, tensor: str, need: Masks) -> Masks:
    """What ``need`` (on internal channel-wise op ``node``'s output) asks of its input ``tensor``."""
    if graph.kind(node) != "cat":
        return need
    start = 0
    for a in graph.args(node):
        width = graph.node(a).channels
        if a == tensor:
            return need[:, start : start + width]
        start += width
    raise KeyError(tensor)
