"""The workload: the contract the engine reads (docs/design.md §1). The torch side ends here.

A :class:`Workload` is every device's compute tasks and every message between devices, per frame, in
creation order; the engine (:mod:`sim.engine`) reads nothing else, so a bandwidth sweep re-runs the engine,
never the model.

Example::

    >>> t = Task(frame=0, layer="conv1", device=0, flops=2e6, op="conv", final=True)
    >>> w = Workload(devices=("a",), source=0, sink=0, frames=1, tasks=(t,), messages=())
    >>> w.tasks[0].flops
    2000000.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

Partition = Mapping[str, np.ndarray]  # layer name -> owning device index of each output channel
FLOAT32_BYTES = 4


@dataclass(frozen=True)
class Split:
    """A partition in the three forms of docs/design.md §3b.

    ``filters`` holds every layer's owner per output channel: the ``filters`` form as given, a ``whole``
    layer (listed in ``whole``) as one device for every channel, and a ``rows`` layer (a key of ``rows``)
    as the device of its first row (only the channel view of :class:`sim.workload.plan.Placement` reads it).
    ``rows[layer]`` is the owning device of each output position, ``(H_out, W_out)``. ``fused`` fuses each
    run of rows-split convs (DeepThings' fused tile partitioning).

    >>> s = Split({"fc": np.array([1, 1])}, whole=frozenset({"fc"}))
    >>> s.form("fc"), s.spatial
    ('whole', False)
    """

    filters: Partition
    rows: Mapping[str, np.ndarray] = field(default_factory=dict)
    whole: frozenset[str] = frozenset()
    fused: bool = False

    @property
    def spatial(self) -> bool:
        """True when some layer is split by rows (the element planner is needed)."""
        return bool(self.rows)

    def form(self, layer: str) -> str:
        """``filters``, ``rows`` or ``whole``."""
        return "rows" if layer in self.rows else "whole" if layer in self.whole else "filters"


@dataclass(frozen=True)
class Task:
    """One device's share of one stage for one frame: a conv/linear layer, a residual add, or under
    ``partial_sums`` a layer's partial sums (``op`` conv/linear) or their sum (``<L>.sum``, ``op`` add)."""

    frame: int
    layer: str
    device: int
    flops: float
    op: str  # "conv", "linear" or "add"
    final: bool  # produces model outputs on the sink
    bytes_touched: int = 0  # float32 bytes read and written: its inputs, its weights and its outputs
    kind: str = ""  # op kind a runtime profile's fits are keyed by (sim.workload.runtime.op_kind); "": op


@dataclass(frozen=True, kw_only=True)
class Message:
    """Channels of one tensor sent from ``src`` to ``dst`` for one frame, with its size in every format
    (built by keyword only: fifteen fields are too many to read by position)."""

    frame: int
    layer: str  # producing layer label; "input" for the image, "output" for the final gather,
    # "<layer>.partial" for partial sums of that layer (then ``partial`` is set)
    src: int
    dst: int
    channels: int
    elements: int
    nnz: int
    sizes: Mapping[str, int]  # bytes of the encoded buffer per wire format
    format: str  # the format it is sent in
    bytes: int
    after: int | None  # index of the task on src whose end makes it ready; None: the frame's arrival
    needed_by: tuple[int, ...]  # indices of the tasks on dst that wait for it
    final: bool  # part of the gather of model outputs at the sink
    tensor: str = ""  # graph node whose channels (or, with ``partial``, whose partial sums) it carries
    channel_ids: tuple[int, ...] = ()  # which channels of that tensor; equal (frame, src, tensor, partial,
    # channel_ids) means equal payload, which a multicast medium can send once
    header_bytes: int = 0  # channel-identity header, included in ``bytes``, not in ``sizes``
    partial: bool = False  # partial sums of layer ``tensor`` computed on ``src``, not its output channels
    position_ids: tuple[int, ...] = ()  # rows form: which positions (y*W + x) of those channels; () all


@dataclass(frozen=True)
class Workload:
    """Everything the engine needs: devices, tasks and messages in creation order."""

    devices: tuple[str, ...]
    source: int
    sink: int
    frames: int
    tasks: tuple[Task, ...]
    messages: tuple[Message, ...]
    exchange: tuple[tuple[str, str], ...] = ()  # (layer label, exchange scheme) per conv/linear layer
    weights_bytes: tuple[int, ...] = ()  # float32 conv/linear weights and biases each device holds
    redundant_flops: float | None = None  # rows form: FLOPs of fused tiles' overlaps (None: no rows)
