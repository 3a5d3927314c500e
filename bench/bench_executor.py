"""How lean ``dsim execute`` is: its frame latency against a minimal hand-written runtime of the same split.

The minimal runtime (:func:`_minimal_device`, below) is what one would write by hand for one model: one
process per device, a single thread, full-width tensors with the received channels written in place, one
``sendall`` per message with an 8-byte header, ``TCP_NODELAY``, blocking reads in the order the layers need
them, and no check of the values. It runs the same split (ownership and messages of the same workload
plan), the same frames at the same interval, on the same network: loopback, and (as root) the shaped
veths of ``dsim execute --shape`` (tbf burst 2000 B) at 5 and 20 Mbit/s.

Printed per point: each runtime's median frame latency (p10, p90) and the ratio dsim / minimal (the issue's
target: at most 1.10). VGG-11 (CIFAR size, batch-norm), 4 devices, mesh, dense float32, ``exchange:
inputs``. Timings depend on the machine's load: measure on a quiet machine. Run alone with
``python bench/run.py bench_executor`` (``BENCH_EXECUTOR_FRAMES``, ``BENCH_EXECUTOR_REPEATS`` override the
defaults of 20 frames and 3 repeats).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so that spawned processes import this module
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.config.load import parse_scenario
from sim.pipeline.prepare import Prepared, prepare
from sim.testbed import netns, worker
from sim.testbed.execute import execute

HEADER = struct.Struct("<II")
FRAMES = int(os.environ.get("BENCH_EXECUTOR_FRAMES", "20"))
REPEATS = int(os.environ.get("BENCH_EXECUTOR_REPEATS", "3"))
INTERVAL_MS = 300


def _scenario(bandwidth_mbps: float) -> Any:
    devices = [{"name": n, "gflops": 10.0} for n in ("cam", "e1", "e2", "e3")]
    return parse_scenario(
        {
            "name": f"bench-executor-{bandwidth_mbps:g}",
            "seed": 0,
            "model": {"name": "vgg11", "input_shape": [3, 32, 32]},
            "inputs": {"dataset": "synthetic", "batch_size": 1, "frames": FRAMES, "interval_ms": INTERVAL_MS},
            "devices": devices,
            "network": {"topology": "mesh", "bandwidth_mbps": bandwidth_mbps, "latency_ms": 0},
            "source": "cam",
            "sink": "cam",
            "partition": {"strategy": "contiguous"},
            "transfer": {"format": "dense", "dtype": "float32", "index_bits": 32, "exchange": "inputs"},
        },
        origin="bench_executor",
    )


# -- the minimal runtime -----------------------------------------------------------------------------------
@dataclass
class _Op:
    """One node on one device: ``kind`` input, layer, pointwise, flatten; ``src`` the node it reads."""

    name: str
    kind: str
    src: str = ""
    fn: Any = None  # pointwise: a callable on the device's channels
    needed: Any = None  # layer: input channels read
    weight: Any = None
    bias: Any = None
    conv: Any = None  # stride, padding of a conv


@dataclass
class _Mini:
    """Everything one device of the minimal runtime runs."""

    index: int
    ops: list[_Op]
    own: dict[str, np.ndarray]  # channels this device computes, per node
    width: dict[str, tuple[int, ...]]  # per node: (channels, *per-channel shape)
    sends: dict[str, list[tuple[int, int, np.ndarray]]]  # node -> (message index, dst, positions in own)
    recvs: dict[str, list[tuple[int, np.ndarray]]]  # node -> (src, channels), in arrival order per src
    images: list[torch.Tensor]
    sink_tensor: str
    sink: bool
    frames: int
    interval_s: float
    netns: str | None = None
    host: str = "127.0.0.1"


def _minis(prep: Prepared) -> list[_Mini]:
    graph, plan = prep.graph, prep.plan
    gm = graph.module
    targets = {n.name: str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    functions = {n.name: n.target for n in gm.graph.nodes if n.op == "call_function"}
    minis = []
    for d in range(plan.n_devices):
        ops, own, width = [], {}, {}
        for name in graph.order:
            kind, node = graph.kind(name), graph.node(name)
            width[name] = (node.channels, *(node.shape[1:] if node.rank == 4 else (node.spatial,)))
            if kind == "output":
                continue
            src = graph.args(name)[0] if graph.args(name) else ""
            if kind == "input":
                own[name] = np.flatnonzero(plan.ownership[name] == d)
                ops.append(_Op(name, "input"))
            elif kind == "layer":
                module = gm.get_submodule(targets[name])
                own[name] = np.flatnonzero(plan.ownership[name] == d)
                needed = np.flatnonzero(graph.layer(name).uses[own[name]].any(axis=0))
                w = module.weight.detach()[torch.from_numpy(own[name])]
                if isinstance(module, nn.Linear):
                    per = graph.layer(name).in_spatial
                    cols = (needed[:, None] * per + np.arange(per)[None, :]).ravel()
                    w = w[:, torch.from_numpy(cols)]
                    conv = None
                else:
                    w = w[:, torch.from_numpy(needed)]
                    conv = (module.stride, module.padding)
                b = module.bias.detach()[torch.from_numpy(own[name])]
                ops.append(_Op(name, "layer", src, None, needed, w.contiguous(), b, conv))
            elif kind in ("pointwise", "flatten"):
                own[name] = own[src]
                if kind == "flatten":
                    ops.append(_Op(name, "flatten", src))
                    continue
                module = gm.get_submodule(targets[name]) if name in targets else None
                if isinstance(module, nn.BatchNorm2d):  # the device's channels of it
                    i = torch.from_numpy(own[src])
                    fn = nn.BatchNorm2d(len(i), eps=module.eps).eval()
                    for key in ("running_mean", "running_var", "weight", "bias"):
                        getattr(fn, key).data = getattr(module, key).detach()[i].clone()
                else:
                    fn = module if module is not None else functions[name]
                ops.append(_Op(name, "pointwise", src, fn))
            else:
                raise SystemExit(f"bench_executor: the minimal runtime runs chains only, not {kind} ({name})")
        sends: dict[str, list[tuple[int, int, np.ndarray]]] = {}
        recvs: dict[str, list[tuple[int, np.ndarray]]] = {}
        for k, m in enumerate(plan.messages):
            if m.src == d:
                pos = np.searchsorted(own[m.tensor], m.channels)
                sends.setdefault(m.tensor, []).append((k, m.dst, pos))
            if m.dst == d:
                recvs.setdefault(m.tensor, []).append((m.src, np.asarray(m.channels)))
        minis.append(
            _Mini(
                d,
                ops,
                own,
                width,
                sends,
                recvs,
                list(prep.images or []) if len(own[graph.input_node()]) else [],
                graph.output_tensor(),
                d == plan.sink,
                prep.workload.frames,
                prep.scenario.setup.interval_s,
            )
        )
    return minis


def _read(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


def _minimal_device(conn: Any) -> None:
    """One device of the minimal runtime (a spawned process)."""
    mini: _Mini = pickle.loads(conn.recv_bytes())
    if mini.netns:
        worker.enter_netns(mini.netns)
    torch.set_num_threads(1)
    listener = socket.socket()
    listener.bind((mini.host, 0))
    listener.listen(16)
    conn.send(listener.getsockname()[1])
    peers = conn.recv()
    dsts = sorted({dst for items in mini.sends.values() for _, dst, _ in items})
    out = {}
    for dst in dsts:
        s = socket.create_connection(peers[dst])
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(struct.pack("<I", mini.index))
        out[dst] = s
    inc = {}
    for _ in {src for items in mini.recvs.values() for src, _ in items}:
        s, _ = listener.accept()
        inc[struct.unpack("<I", _read(s, 4))[0]] = s
    conn.send("ready")
    while (t0 := conn.recv()) is not None:
        conn.send(_minimal_run(mini, out, inc, t0))


def _merge(mini: _Mini, name: str, value: torch.Tensor, inc: dict[int, socket.socket]) -> torch.Tensor:
    """The full-width tensor of node ``name``: own channels and every received one written in place."""
    full = torch.zeros((value.shape[0], *mini.width[name]))
    full[:, torch.from_numpy(mini.own[name])] = value.reshape(
        value.shape[0], len(mini.own[name]), *mini.width[name][1:]
    )
    for src, chans in mini.recvs.get(name, []):
        _, n = HEADER.unpack(_read(inc[src], HEADER.size))
        got = np.frombuffer(_read(inc[src], n), dtype=np.float32)
        full[:, torch.from_numpy(chans)] = torch.from_numpy(got.copy()).reshape(
            value.shape[0], len(chans), *mini.width[name][1:]
        )
    return full


def _minimal_run(mini: _Mini, out: dict[int, socket.socket], inc: dict[int, socket.socket], t0: float) -> list[float]:
    latencies = []
    with torch.no_grad():
        for f in range(mini.frames):
            arrival = t0 + f * mini.interval_s
            vals: dict[str, torch.Tensor] = {}
            for op in mini.ops:
                if op.kind == "input":
                    while time.monotonic() < arrival:
                        time.sleep(min(0.005, max(0.0, arrival - time.monotonic())))
                    own = mini.own[op.name]
                    v = (
                        mini.images[f][:, torch.from_numpy(own)]
                        if mini.images
                        else torch.zeros((1, 0, *mini.width[op.name][1:]))
                    )
                elif op.kind == "layer":
                    full = _merge(mini, op.src, vals[op.src], inc)
                    x = full[:, torch.from_numpy(op.needed)]
                    if op.conv is None:
                        v = F.linear(x.reshape(x.shape[0], -1), op.weight, op.bias)
                    else:
                        v = F.conv2d(x, op.weight, op.bias, op.conv[0], op.conv[1])
                elif op.kind == "flatten":
                    v = torch.flatten(vals[op.src], 1)
                else:
                    v = op.fn(vals[op.src])
                vals[op.name] = v
                for _k, dst, pos in mini.sends.get(op.name, []):
                    per = v.reshape(v.shape[0], len(mini.own[op.name]), -1)
                    body = per[:, torch.from_numpy(pos)].numpy().tobytes()
                    out[dst].sendall(HEADER.pack(_k, len(body)) + body)
            if mini.sink:
                _merge(mini, mini.sink_tensor, vals[mini.sink_tensor], inc)
                latencies.append(time.monotonic() - arrival)
    return latencies


def minimal(prep: Prepared, bed: netns.Testbed | None, repeats: int) -> list[float]:
    """Frame latencies (s) of the minimal runtime: ``repeats`` runs of every frame."""
    ctx = mp.get_context("spawn")
    procs, conns = [], []
    try:
        for mini in _minis(prep):
            name = prep.workload.devices[mini.index]
            if bed is not None:
                mini.netns, mini.host = bed.namespaces[name], bed.addresses[name]
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_minimal_device, args=(child,), daemon=True)
            proc.start()
            parent.send_bytes(pickle.dumps(mini))
            procs.append(proc)
            conns.append(parent)
        ports = [c.recv() for c in conns]
        hosts = [bed.addresses[n] if bed else "127.0.0.1" for n in prep.workload.devices]
        for c in conns:
            c.send({d: (hosts[d], ports[d]) for d in range(len(conns))})
        assert all(c.recv() == "ready" for c in conns)
        latencies = []
        for _ in range(repeats):
            t0 = time.monotonic() + 1.0
            for c in conns:
                c.send(t0)
            results = [c.recv() for c in conns]
            latencies += results[prep.plan.sink]
        for c in conns:
            c.send(None)
        return latencies
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()


def _figures(latencies: list[float]) -> str:
    a = np.asarray(latencies) * 1e3
    return f"{np.median(a):8.1f} ms (p10 {np.percentile(a, 10):6.1f}, p90 {np.percentile(a, 90):6.1f})"


def main() -> None:
    points: list[tuple[str, float, bool]] = [("loopback", 20.0, False)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        points += [("shaped 5 Mbit/s", 5.0, True), ("shaped 20 Mbit/s", 20.0, True)]
    else:
        print("(not root: the shaped points are skipped)")
    print(
        f"VGG-11, 4 devices, mesh; {FRAMES} frames {INTERVAL_MS} ms apart x {REPEATS} repeats; load {os.getloadavg()}"
    )
    print(f"{'point':<18} {'dsim execute':>38} {'minimal runtime':>38} {'ratio':>6}")
    for label, mbps, shaped in points:
        sc = _scenario(mbps)
        prep = prepare(sc)
        runs = execute(sc, shape=shaped, repeats=REPEATS, prepared=prep)
        ours = [x for r in runs for x in r.summary["frame_latency_s"]]
        if shaped:
            with netns.testbed(sc) as bed:
                theirs = minimal(prep, bed, REPEATS)
        else:
            theirs = minimal(prep, None, REPEATS)
        ratio = float(np.median(ours) / np.median(theirs))
        print(f"{label:<18} {_figures(ours):>38} {_figures(theirs):>38} {ratio:6.2f}", flush=True)


if __name__ == "__main__":
    main()
