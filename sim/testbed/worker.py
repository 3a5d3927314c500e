"""One device of a real split run (``dsim execute``): its program, and the process that runs it.

A :class:`DeviceProgram` is everything one device needs, built by :mod:`sim.testbed.execute` from the
workload plan: the fx nodes of the model in order, the weight shard of each layer it computes (the rows of
the filters it owns, the columns of the input channels they use), the messages it sends and receives, and
the images when it owns image channels. :func:`main` runs in its own OS process (multiprocessing spawn):
it optionally enters a network namespace, listens, connects to the devices it sends to, waits for the
common start time ``t0`` (``time.monotonic``, CLOCK_MONOTONIC, shared by every process of one host), runs
every frame and reports what it timed.

Values are held *compactly*: a tensor node's value on a device is ``(tensor, held)`` where ``held`` lists the
channels it holds, ascending, and the tensor has only those channels (dim 1; a flattened ``(B, C*S)``
tensor has ``S`` features per channel). Channel-wise ops run on what a device holds, a layer on the input
channels its filters use, an add on the channels the device owns; a received message's channels are merged
in just before the stage that waits for it.

Wire protocol, one TCP connection per ordered device pair: a 4-byte hello (the sender's index), then per
message an 8-byte header (``<II``: workload message index, byte count) and the message's bytes (channel
header, then the :mod:`sim.workload.wire` encoding), exactly as ``transfers.csv`` sizes them.
"""

from __future__ import annotations

import ctypes
import os
import queue
import socket
import struct
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sim.workload import wire

APP_HEADER = struct.Struct("<II")  # workload message index, bytes that follow
HELLO = struct.Struct("<I")  # the sending device's index
CLONE_NEWNET = 0x40000000
_FUNCTIONS: dict[FunctionName, Any] = {}  # resolved call_function targets


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
        import importlib  # the worker resolves each name once

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


@dataclass(frozen=True)
class LayerShard:
    """A conv or linear layer as one device computes it: ``owned`` filters from ``needed`` input channels.

    ``weight`` is ``W[owned][:, needed]`` (linear: the columns of ``needed`` channels' features), or the whole
    weight for a grouped conv (``full``: it runs on all input channels, zeros where not held, and keeps the
    owned outputs)."""

    op: str
    owned: np.ndarray
    needed: np.ndarray
    weight: torch.Tensor
    bias: torch.Tensor | None
    in_channels: int
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    full: bool = False


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
    threads: int = 1
    listen_host: str = "127.0.0.1"
    netns: str | None = None
    timeout_s: float = 60.0
    keep_inputs: bool = True  # return every layer input for the check against the unsplit model
    peers: dict[int, tuple[str, int]] = field(default_factory=dict)


@dataclass
class DeviceReport:
    """What one device measured (seconds since ``t0``) and the values it used, for the check."""

    index: int
    tasks: list[tuple[int, str, float, float]]  # frame, stage node, start, end
    sent: dict[int, tuple[float, float]]  # message index -> (ready, start of sendall)
    received: dict[int, float]  # message index -> when its last byte was read
    done_s: list[float]  # sink: per frame, when it held every output
    inputs: list[tuple[int, str, np.ndarray, np.ndarray]]  # frame, stage node, channels, value (B, k, ...)
    outputs: list[np.ndarray]  # sink: per frame
    late_s: float = 0.0  # how long after t0 this device got to start (a loaded host); 0 when on time


def enter_netns(name: str) -> None:
    """Move this process (its calling thread, before any other starts) into network namespace ``name``."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name} failed")
    finally:
        os.close(fd)


def main(conn: Connection) -> None:
    """Process entry: receive a program, set up sockets, run it, report; every failure is reported as text."""
    listener: socket.socket | None = None
    socks: list[socket.socket] = []
    try:
        program: DeviceProgram = conn.recv()
        if program.netns:
            enter_netns(program.netns)
        torch.set_num_threads(program.threads)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.settimeout(program.timeout_s)
        listener.bind((program.listen_host, 0))
        listener.listen(16)
        conn.send(("listening", listener.getsockname()[1]))
        peers: dict[int, tuple[str, int]] = _expect(conn, "peers", program.timeout_s)
        device = _Device(program, peers, listener)
        socks = device.sockets
        device.warm_up()
        conn.send(("ready", None))
        while (t0 := _expect(conn, "start", program.timeout_s)) is not None:  # one round per repeat
            conn.send(("done", device.run(t0)))
    except BaseException as exc:  # reported to the parent, which raises it; the process then ends
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"))
        except OSError:
            pass
    finally:
        for s in [*socks, *([listener] if listener else [])]:
            s.close()


def _expect(conn: Connection, what: str, timeout_s: float) -> Any:
    if not conn.poll(timeout_s):
        raise TimeoutError(f"no '{what}' from the parent in {timeout_s:.0f} s")
    tag, value = conn.recv()
    if tag != what:
        raise RuntimeError(f"expected '{what}' from the parent, got '{tag}'")
    return value


class _Device:
    """The sockets and threads of one device, and its frame loop."""

    def __init__(self, program: DeviceProgram, peers: dict[int, tuple[str, int]], listener: socket.socket):
        self.p = program
        self.channels = {s.name: s.channels for s in program.steps}
        self.by_k = {m.k: m for m in program.messages}
        dsts = sorted({m.dst for m in program.messages if m.src == program.index})
        srcs = sorted({m.src for m in program.messages if m.dst == program.index})
        self.out: dict[int, socket.socket] = {}
        for dst in dsts:
            s = socket.create_connection(peers[dst], timeout=program.timeout_s)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(HELLO.pack(program.index))
            self.out[dst] = s
        self.incoming: dict[int, socket.socket] = {}
        for _ in srcs:
            s, _addr = listener.accept()
            s.settimeout(program.timeout_s)
            (src,) = HELLO.unpack(_read(s, HELLO.size))
            self.incoming[src] = s
        self.expected = {src: sum(m.src == src for m in program.messages) for src in srcs}  # per round
        self.sockets = [*self.out.values(), *self.incoming.values()]
        self.inbox: dict[int, torch.Tensor] = {}
        self.received: dict[int, float] = {}
        self.sent: dict[int, tuple[float, float]] = {}
        self.cond = threading.Condition()
        self.failure: list[str] = []
        self.queues: dict[int, queue.Queue[tuple[int, np.ndarray, float] | None]] = {d: queue.Queue() for d in dsts}

    # -- network threads -------------------------------------------------------------------------------
    def _sender(self, dst: int) -> None:
        s, q = self.out[dst], self.queues[dst]
        try:
            while (item := q.get()) is not None:
                k, matrix, ready = item
                m = self.by_k[k]
                payload = _channel_header(m, self.p) + wire.encode(matrix, m.fmt, self.p.spec)
                start = time.monotonic()
                s.sendall(APP_HEADER.pack(k, len(payload)) + payload)
                self.sent[k] = (ready, start)
        except BaseException as exc:  # surfaced by the frame loop
            self._fail(f"sending to device {dst}: {type(exc).__name__}: {exc}")

    def _receiver(self, src: int) -> None:
        s = self.incoming[src]
        try:
            for _ in range(self.expected[src]):
                k, nbytes = APP_HEADER.unpack(_read(s, APP_HEADER.size))
                body = _read(s, nbytes)
                end = time.monotonic()
                m = self.by_k[k]
                if m.src != src or m.dst != self.p.index:
                    raise RuntimeError(f"message {k} arrived on the connection from device {src}")
                value = _decode(body, m, self.p)
                with self.cond:
                    self.inbox[k], self.received[k] = value, end
                    self.cond.notify_all()
        except BaseException as exc:
            self._fail(f"receiving: {type(exc).__name__}: {exc}")

    def _fail(self, text: str) -> None:
        with self.cond:
            self.failure.append(text)
            self.cond.notify_all()

    def _wait(self, ks: Sequence[int]) -> None:
        deadline = time.monotonic() + self.p.timeout_s
        with self.cond:
            while not all(k in self.received for k in ks):
                if self.failure:
                    raise RuntimeError(self.failure[0])
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [k for k in ks if k not in self.received]
                    raise TimeoutError(f"device {self.p.name}: messages {missing} did not arrive in time")
                self.cond.wait(left)

    # -- the frame loop ----------------------------------------------------------------------------------
    def _schedule(self) -> tuple[dict[tuple[int, str], list[MessageSpec]], dict[tuple[int, str], list[MessageSpec]]]:
        """Messages by (frame, tensor) this device sends, and by (frame, stage) those it waits for."""
        sends: dict[tuple[int, str], list[MessageSpec]] = {}
        waits: dict[tuple[int, str], list[MessageSpec]] = {}
        for m in self.p.messages:
            if m.src == self.p.index:
                sends.setdefault((m.frame, m.tensor), []).append(m)
            else:
                for w in m.waiters:
                    waits.setdefault((m.frame, w), []).append(m)
        return sends, waits

    def warm_up(self) -> None:
        """Run frame 0 once without the network (received messages are zeros, sent ones are encoded and
        decoded here), before reporting ready, so that no first call of an op is timed."""
        sends, waits = self._schedule()
        with torch.no_grad():
            self._frame(0, time.monotonic(), sends, waits, DeviceReport(self.p.index, [], {}, {}, [], [], []), dry=True)
        self.inbox.clear()

    def run(self, t0: float) -> DeviceReport:
        threads = [threading.Thread(target=self._sender, args=(d,), daemon=True) for d in self.out]
        threads += [threading.Thread(target=self._receiver, args=(s,), daemon=True) for s in self.incoming]
        self.sent, self.received, self.inbox, self.failure = {}, {}, {}, []
        p = self.p
        report = DeviceReport(p.index, [], self.sent, self.received, [], [], [])
        for t in threads:
            t.start()
        sends, waits = self._schedule()
        report.late_s = max(0.0, time.monotonic() - t0)
        with torch.no_grad():
            while time.monotonic() < t0:
                time.sleep(min(0.01, max(0.0, t0 - time.monotonic())))
            for f in range(p.frames):
                self._frame(f, t0, sends, waits, report)
        for q in self.queues.values():
            q.put(None)
        for t in threads:
            t.join(p.timeout_s)
            if t.is_alive():
                raise TimeoutError(f"device {p.name}: a network thread did not finish in time")
        if self.failure:
            raise RuntimeError(self.failure[0])
        report.sent = {k: (r - t0, s - t0) for k, (r, s) in self.sent.items()}
        report.received = {k: e - t0 for k, e in self.received.items()}
        report.tasks = [(f, n, s - t0, e - t0) for f, n, s, e in report.tasks]
        report.done_s = [d - t0 for d in report.done_s]
        return report

    def _frame(
        self,
        f: int,
        t0: float,
        sends: dict[tuple[int, str], list[MessageSpec]],
        waits: dict[tuple[int, str], list[MessageSpec]],
        report: DeviceReport,
        dry: bool = False,
    ) -> None:
        """Run frame ``f``. ``dry``: a warm-up before ``t0`` (every op once, so no first call is timed):
        received messages are zeros, sent ones are encoded and decoded here instead of sent."""
        p = self.p
        env: dict[str, Any] = {}
        held: dict[str, np.ndarray] = {}
        task: tuple[str, float] | None = None
        for step in p.steps:
            if step.kind in ("layer", "add", "output"):
                if task is not None:
                    report.tasks.append((f, task[0], task[1], time.monotonic()))
                    task = None
                incoming = waits.get((f, step.name), [])
                if incoming and not dry:
                    self._wait([m.k for m in incoming])
                for m in incoming:
                    if dry:
                        self.inbox[m.k] = torch.zeros((p.batch, len(m.channels), *m.per_channel))
                    self._merge(env, held, m)
                if step.kind == "output":
                    if p.sink:
                        value = env[p.output]
                        if len(held[p.output]) != step.channels:
                            raise RuntimeError("the sink does not hold every model output")
                        report.done_s.append(time.monotonic())
                        report.outputs.append(value.numpy().copy())
                    continue
                start = time.monotonic()
                value, chans, used = self._stage(step, env, held)
                if len(chans):
                    task = (step.name, start)
                if used is not None and p.keep_inputs:
                    report.inputs.append((f, step.name, *used))
            elif step.kind == "input":
                arrival = t0 + f * p.interval_s
                while time.monotonic() < arrival and not dry:
                    time.sleep(min(0.005, max(0.0, arrival - time.monotonic())))
                chans = p.owned[step.name]
                value = p.images[f][:, torch.from_numpy(chans)] if len(chans) else _empty(step, p.batch)
            elif step.kind == "helper":
                env[step.name] = _call(step, _subst(step.args, env), _subst(step.kwargs, env), p.modules)
                continue
            else:
                value, chans = self._channelwise(step, env, held)
            env[step.name], held[step.name] = value, chans
            for m in sends.get((f, step.name), []):
                matrix = _as_matrix(_select(value, chans, m.channels, m.rank), m.rank)
                if dry:
                    _decode(_channel_header(m, p) + wire.encode(matrix, m.fmt, p.spec), m, p)
                else:
                    self.queues[m.dst].put((m.k, matrix, time.monotonic()))
        if task is not None:
            report.tasks.append((f, task[0], task[1], time.monotonic()))

    def _merge(self, env: dict[str, Any], held: dict[str, np.ndarray], m: MessageSpec) -> None:
        have = held[m.tensor]
        if np.isin(m.channels, have).all():
            return  # already merged for an earlier stage
        both = np.concatenate([have, m.channels])
        order = np.argsort(both, kind="stable")
        value = torch.cat([_channels(env[m.tensor], len(have)), self.inbox.pop(m.k)], dim=1)
        value = value.index_select(1, torch.from_numpy(order))
        env[m.tensor], held[m.tensor] = _unchannels(value, m.rank), both[order]

    def _stage(
        self, step: Step, env: dict[str, Any], held: dict[str, np.ndarray]
    ) -> tuple[torch.Tensor, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """A layer or an add on this device: (value, channels it holds, (input channels, input) for the check)."""
        p = self.p
        if step.kind == "add":
            owned = p.owned[step.name]
            if not len(owned):
                return _empty(step, p.batch), owned, None
            chosen = {r.name: _select(env[r.name], held[r.name], owned, step.rank) for r in _refs(step.args)}
            operands = [v.numpy().copy() for v in chosen.values()]  # before an in-place add changes one
            value = _call(step, _subst(step.args, chosen), _subst(step.kwargs, chosen), p.modules)
            return value, owned, (owned, np.stack(operands))
        shard = p.shards[step.name]
        if not len(shard.owned):
            return _empty(step, p.batch), shard.owned, None
        source = step.args[0].name
        x_rank = 4 if shard.op == "conv" else 2
        if shard.full:
            x = _expand(env[source], held[source], shard.in_channels)
            out = F.conv2d(x, shard.weight, shard.bias, shard.stride, shard.padding, shard.dilation, shard.groups)
            out = out[:, torch.from_numpy(shard.owned)]
            used = _select(env[source], held[source], shard.needed, x_rank)
        elif shard.op == "conv":
            x = used = _select(env[source], held[source], shard.needed, x_rank)
            out = F.conv2d(x, shard.weight, shard.bias, shard.stride, shard.padding, shard.dilation)
        else:
            x = used = _select(env[source], held[source], shard.needed, x_rank)
            out = F.linear(x, shard.weight, shard.bias)
        return out, shard.owned, (shard.needed, used.numpy())

    def _channelwise(self, step: Step, env: dict[str, Any], held: dict[str, np.ndarray]) -> tuple[Any, np.ndarray]:
        """Pointwise ops, flatten and cat on the channels this device holds."""
        if step.kind == "cat":
            parts, pieces, offset = _refs(step.args[0]), [], 0
            for a in parts:
                pieces.append(held[a.name] + offset)
                offset += self.channels[a.name]
            return torch.cat([env[a.name] for a in parts], dim=1), np.concatenate(pieces)
        source = next(a.name for a in _refs(step.args))
        chans = held[source]
        x = env[source]
        if not len(chans):  # none of it here (a pipeline stage on another device): pooling cannot take 0 channels
            return _empty(step, self.p.batch), chans
        if step.kind == "flatten":
            return torch.flatten(x, 1), chans
        module = self.p.modules.get(step.target) if step.op == "call_module" else None
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            per = chans if step.rank == 4 else _features(chans, step.spatial)
            return _batch_norm(module, x, per), chans
        return _call(step, _subst(step.args, env), _subst(step.kwargs, env), self.p.modules), chans


def _features(chans: np.ndarray, per: int) -> np.ndarray:
    """The features of channels ``chans`` of a flattened tensor with ``per`` features per channel."""
    return (chans[:, None] * per + np.arange(per)[None, :]).ravel()


def _batch_norm(module: Any, x: torch.Tensor, index: np.ndarray) -> torch.Tensor:
    """A batch-norm module (eval mode) on the channels (or features) ``index`` only."""
    i = torch.from_numpy(index)
    rm, rv = module.running_mean, module.running_var
    w = None if module.weight is None else module.weight[i]
    b = None if module.bias is None else module.bias[i]
    return F.batch_norm(x, None if rm is None else rm[i], None if rv is None else rv[i], w, b, False, 0.0, module.eps)


def _refs(args: Any) -> list[Ref]:
    if isinstance(args, Ref):
        return [args]
    if isinstance(args, (list, tuple)):
        return [r for a in args for r in _refs(a)]
    if isinstance(args, dict):
        return [r for a in args.values() for r in _refs(a)]
    return []


def _subst(args: Any, env: dict[str, Any]) -> Any:
    if isinstance(args, Ref):
        return env[args.name]
    if isinstance(args, tuple):
        return tuple(_subst(a, env) for a in args)
    if isinstance(args, list):
        return [_subst(a, env) for a in args]
    if isinstance(args, dict):
        return {k: _subst(v, env) for k, v in args.items()}
    return args


def _call(step: Step, args: Any, kwargs: Any, modules: dict[str, nn.Module]) -> Any:
    if step.op == "call_module":
        return modules[step.target](*args, **kwargs)
    if step.op == "call_function":
        if step.target not in _FUNCTIONS:
            _FUNCTIONS[step.target] = step.target.resolve()
        return _FUNCTIONS[step.target](*args, **kwargs)
    if step.op == "call_method":
        return getattr(args[0], step.target)(*args[1:], **kwargs)
    raise RuntimeError(f"cannot run fx node {step.name} ({step.op})")


def _empty(step: Step, batch: int) -> torch.Tensor:
    rest = step.shape[1:] if step.rank == 4 else ()
    return torch.zeros((batch, 0, *rest))


def _channels(value: torch.Tensor, k: int) -> torch.Tensor:
    """``value`` with channels on dim 1: (B, k, H, W) as is, a flattened (B, k*S) as (B, k, S)."""
    return value if value.ndim == 4 else value.reshape(value.shape[0], k, -1)


def _unchannels(value: torch.Tensor, rank: int) -> torch.Tensor:
    return value if rank == 4 else value.reshape(value.shape[0], -1)


def _select(value: torch.Tensor, have: np.ndarray, want: np.ndarray, rank: int) -> torch.Tensor:
    """The channels ``want`` (ascending) of a compact value holding ``have``; a RuntimeError when not held."""
    if len(want) == len(have) and np.array_equal(want, have):
        return value
    pos = np.searchsorted(have, want)
    if (pos >= len(have)).any() or not np.array_equal(have[np.minimum(pos, len(have) - 1)], want):
        raise RuntimeError(f"channels {np.setdiff1d(want, have).tolist()} are not held")
    out = _channels(value, len(have)).index_select(1, torch.from_numpy(pos))
    return _unchannels(out, rank)


def _expand(value: torch.Tensor, have: np.ndarray, channels: int) -> torch.Tensor:
    """A compact 4-D value as a full-width tensor, zeros in the channels not held."""
    full = torch.zeros((value.shape[0], channels, *value.shape[2:]), dtype=value.dtype)
    full[:, torch.from_numpy(have)] = value
    return full


def _as_matrix(value: torch.Tensor, rank: int) -> np.ndarray:
    """A message's payload matrix (sim.workload.sizing.message_matrix): (B*k, H*W) or (B, k*S)."""
    v = value.numpy()
    return v.reshape(v.shape[0] * v.shape[1], -1) if rank == 4 else v.reshape(v.shape[0], -1)


def _channel_header(m: MessageSpec, p: DeviceProgram) -> bytes:
    if p.channel_header == "index_list":
        return m.channels.astype(f"<u{p.index_bits // 8}").tobytes()
    if p.channel_header == "bitmap":
        present = np.zeros(m.tensor_channels, dtype=bool)
        present[m.channels] = True
        return np.packbits(present).tobytes()
    return b""


def _decode(body: bytes, m: MessageSpec, p: DeviceProgram) -> torch.Tensor:
    """A message's bytes as a (B, k, ...) tensor of its channels."""
    payload, k = body[m.header_bytes :], len(m.channels)
    rows = p.batch * k if m.rank == 4 else p.batch
    cols = int(np.prod(m.per_channel)) * (1 if m.rank == 4 else k)
    matrix = wire.decode(payload, m.fmt, (rows, cols), p.spec)
    return torch.from_numpy(np.ascontiguousarray(matrix)).reshape(p.batch, k, *m.per_channel)


def _read(s: socket.socket, n: int, eof_ok: bool = False) -> bytes:
    """Exactly ``n`` bytes from ``s``; empty bytes at a clean end of stream when ``eof_ok``."""
    chunks, got = [], 0
    while got < n:
        chunk = s.recv(min(n - got, 1 << 20))
        if not chunk:
            if eof_ok and got == 0:
                return b""
            raise ConnectionError(f"connection closed after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
