"""What one device of a real split run executes, and what it reports back: picklable records only.

A :class:`DeviceProgram` is built by :mod:`sim.testbed.compile` from the workload plan and sent to the
device's process (:mod:`sim.testbed.worker`): the model's fx nodes in order (:class:`Step`), the weight
shard of each layer it computes (:class:`sim.model.shards.LayerShard`), the messages it sends and receives
(:class:`MessageSpec`) and the images when it owns image channels. The process answers each
:class:`Round` with a :class:`DeviceReport`: times in seconds since the round's ``t0``
(``time.monotonic``, CLOCK_MONOTONIC, one clock for every process of a host).

Example::

    >>> Step("relu1", "pointwise", "call_module", "relu1", (Ref("conv1"),), {}).args[0].name
    'conv1'
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from sim.model.shards import LayerShard
from sim.workload import wire
from sim.workload.spatial import Box


@dataclass(frozen=True)
class Ref:
    """A reference to the value of fx node ``name`` inside a step's arguments."""

    name: str


@dataclass(frozen=True)
class FunctionName:
    """A function by module and attribute name (``torch.nn.functional``, ``relu``), resolved in the worker."""

    module: str
    name: str

    def resolve(self) -> Any:
        """The function itself."""
        return getattr(importlib.import_module(self.module), self.name)


@dataclass(frozen=True)
class Step:
    """One fx node: ``kind`` is the channel-graph kind, or ``helper`` for a non-tensor node (``x.size(0)``)."""

    name: str
    kind: str
    op: str
    target: Any
    args: Any
    kwargs: Any
    rank: int = 4
    shape: tuple[int, ...] = ()  # the value's shape without the batch dimension
    channels: int = 0  # channels of the tensor (a flattened tensor: of its source)
    spatial: int = 1  # elements per channel (H*W; a flattened tensor: features per channel)
    hw: tuple[int, int] = (1, 1)  # the grid of a channel's positions (a flattened tensor: its source's)


@dataclass(frozen=True)
class MessageSpec:
    """One message of one frame: workload index ``k``, tensor channels, and how it is encoded."""

    k: int
    frame: int
    src: int
    dst: int
    tensor: str
    channels: np.ndarray
    tensor_channels: int
    rank: int
    per_channel: tuple[int, ...]  # shape of one channel of one image: (H, W), or (S,) when flattened
    fmt: str
    header_bytes: int
    waiters: tuple[str, ...]  # stage nodes on dst that wait for it ("output" for the final gather)
    positions: np.ndarray | None = None  # rows form: the positions (y*W + x) of those channels; None: all


@dataclass(frozen=True)
class Piece:
    """A block ``box`` of a conv's output positions that one device computes, the input block ``in_box``
    it reads and the zero padding ``pad`` that block gets at the image border
    (:func:`sim.workload.spatial.window_crop`)."""

    box: Box
    in_box: Box
    pad: tuple[int, int, int, int]


@dataclass(frozen=True)
class Area:
    """What one device computes of one stage of a plan with rows (docs/design.md §3b): ``channels`` at the
    positions of ``box`` (the smallest block holding the elements it computes); for a conv, ``pieces``,
    blocks exactly covering those positions (:func:`sim.workload.spatial.cover`: one for a band or a
    tile); ``reads``, the input positions it needs (checked). A linear layer has no pieces: it reads whole
    channels."""

    channels: np.ndarray
    box: Box
    pieces: tuple[Piece, ...] = ()
    reads: np.ndarray | None = None


@dataclass
class DeviceProgram:
    """Everything device ``index`` runs; picklable (sent to its process)."""

    index: int
    name: str
    frames: int
    batch: int
    interval_s: float
    steps: list[Step]
    shards: dict[str, LayerShard]
    modules: dict[str, nn.Module]
    owned: dict[str, np.ndarray]  # add nodes and the input node: channels this device owns
    messages: list[MessageSpec]  # those it sends or receives, every frame
    images: list[torch.Tensor]  # per frame, when it owns image channels
    spec: wire.WireSpec
    index_bits: int
    channel_header: str
    sink: bool
    output: str  # the model's output tensor node
    names: tuple[str, ...]  # every device's name, by index (for messages that name a peer)
    threads: int = 1
    areas: dict[str, Area] | None = None  # a plan with rows: what it computes of each stage (None: by channels)
    stages: frozenset[str] = frozenset()  # a plan with rows: every stage but the image (banded pools too)
    listen_host: str = "127.0.0.1"
    netns: str | None = None
    setup_timeout_s: float = 120.0  # bound on each set-up step (listening, connecting, the parent's orders)


@dataclass(frozen=True)
class Round:
    """One pass over the frames, as the parent orders it.

    ``check``: the untimed check pass, frame 0 only, as fast as possible, every layer input kept for the
    comparison with the unsplit model (it also warms every op and connection up). Otherwise a timed run
    of every frame, frame ``f`` entering at ``t0 + f * interval_s``, keeping only the sink's outputs.
    ``timeout_s``: how long after ``t0`` the round may last before the device gives up waiting."""

    t0: float
    timeout_s: float
    check: bool = False


@dataclass(frozen=True)
class TaskTime:
    """A layer (or add) of one frame on one device: from the start of the layer to the end of the
    channel-wise ops that follow it there (seconds since ``t0``); ``cpu_s`` the CPU seconds its thread
    spent on it (``time.thread_time``; the device computes with ``threads`` 1 unless told otherwise)."""

    frame: int
    stage: str
    start_s: float
    end_s: float
    cpu_s: float


@dataclass(frozen=True)
class SendTime:
    """A message on its sender: ``ready_s`` when its channels existed, ``start_s`` when its bytes went to the
    socket; ``cpu_s`` the sender thread's CPU time to encode and hand them over (``time.thread_time``)."""

    ready_s: float
    start_s: float
    cpu_s: float
    bytes: int = 0  # what went on the connection for it, the 8-byte application header left out


@dataclass(frozen=True)
class ReceiveTime:
    """A message on its receiver: ``end_s`` when its last byte arrived (the kernel's receive timestamp);
    ``cpu_s`` the CPU time to read its body, decode it and merge it into the tensor it belongs to."""

    end_s: float
    cpu_s: float


@dataclass(frozen=True)
class UsedValue:
    """A value a device used (check pass only): the input channels ``channels`` of stage ``stage`` in
    frame ``frame``, ``(B, k, ...)``; an add's operands are stacked on a first axis. With ``positions``
    (rows form), only those positions (``y*W + x``) of the channels, ``(B, k, positions)``."""

    frame: int
    stage: str
    channels: np.ndarray
    value: np.ndarray
    positions: np.ndarray | None = None


@dataclass
class DeviceReport:
    """What one device measured in one round (seconds since ``t0``), and the values it used."""

    index: int
    tasks: list[TaskTime] = field(default_factory=list)
    sent: dict[int, SendTime] = field(default_factory=dict)  # by workload message index
    received: dict[int, ReceiveTime] = field(default_factory=dict)
    done_s: list[float] = field(default_factory=list)  # sink: per frame, when it held every output
    inputs: list[UsedValue] = field(default_factory=list)  # check pass only
    outputs: list[np.ndarray] = field(default_factory=list)  # sink: per frame
    late_s: float = 0.0  # how long after t0 this device got to start (a loaded host); 0 when on time
