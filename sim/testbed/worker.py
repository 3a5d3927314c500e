"""The process of one device in a real split run: :func:`main` (multiprocessing *spawn* target).

It receives its :class:`~sim.testbed.program.DeviceProgram` from the parent (:mod:`sim.testbed.launcher`),
optionally enters its network namespace, listens, reports its port, connects to the devices it sends to
and accepts those it receives from, then answers each :class:`~sim.testbed.program.Round` with a
:class:`~sim.testbed.program.DeviceReport`: the check pass first, then the timed runs. Every failure is
reported to the parent as one line (``("error", text)``, or ``("peer-gone", text)`` when a peer closed a
connection: :class:`~sim.testbed.transport.PeerGone`), and the process ends.

Parent protocol, over a multiprocessing pipe: parent sends the program; device sends ``("listening",
port)``; parent sends ``("peers", {index: (host, port)})``; device sends ``("ready", None)``; then per round
the parent sends ``("round", Round)`` and the device ``("done", DeviceReport)``; ``("round", None)`` ends it.

Example::

    >>> proc = ctx.Process(target=main, args=(child_conn,)); proc.start()    # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import os
import pickle
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch

from sim.testbed import transport
from sim.testbed.interpreter import Interpreter
from sim.testbed.program import DeviceProgram, DeviceReport, MessageSpec, ReceiveTime, Round, SendTime, TaskTime

CLONE_NEWNET = 0x40000000


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
    """Process entry: receive a program, set up sockets, answer rounds; every failure is reported as text."""
    sockets: list[socket.socket] = []
    name = "?"
    try:
        program: DeviceProgram = pickle.loads(conn.recv_bytes())  # sent by value (launcher)
        name = program.name
        if program.netns:
            enter_netns(program.netns)
        torch.set_num_threads(program.threads)
        dsts = sorted({m.dst for m in program.messages if m.src == program.index})
        srcs = sorted({m.src for m in program.messages if m.dst == program.index})
        listener = transport.listen(program.listen_host, len(srcs))
        sockets.append(listener)
        conn.send(("listening", listener.getsockname()[1]))
        peers: dict[int, tuple[str, int]] = _expect(conn, "peers", program.setup_timeout_s)
        out = {d: transport.connect(peers[d], program.index, program.setup_timeout_s) for d in dsts}
        sockets += out.values()
        incoming = transport.accept(listener, len(srcs), program.setup_timeout_s)
        sockets += incoming.values()
        interp = Interpreter(program)
        conn.send(("ready", None))
        while (rnd := _expect(conn, "round", None)) is not None:
            conn.send(("done", run_round(program, interp, out, incoming, rnd)))
    except BaseException as exc:  # reported to the parent as one line; the process then ends
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not isinstance(exc, transport.TransportError):
            text = f"device {name}: {type(exc).__name__}: {text}"
        try:
            conn.send(("peer-gone" if isinstance(exc, transport.PeerGone) else "error", text))
        except OSError:
            pass
    finally:
        for s in sockets:
            s.close()


def _expect(conn: Connection, what: str, timeout_s: float | None) -> Any:
    """The parent's next order, which must be ``what``; waits at most ``timeout_s`` (None: as long as the
    parent lives: it ends this process when it gives up)."""
    if timeout_s is not None and not conn.poll(timeout_s):
        raise TimeoutError(f"no '{what}' from the parent in {timeout_s:.0f} s")
    tag, value = conn.recv()
    if tag != what:
        raise RuntimeError(f"expected '{what}' from the parent, got '{tag}'")
    return value


class _Link:
    """This device's connections during one round: sends inline, receives through a
    :class:`transport.Receiver`, and keeps every message's times."""

    def __init__(self, program: DeviceProgram, out: dict[int, socket.socket], receiver: transport.Receiver):
        self.p, self.out, self.receiver = program, out, receiver
        self.receive, self.drain, self.merged = receiver.take, receiver.drain, receiver.add_cpu
        self.sent: dict[int, SendTime] = {}
        self.headers = {
            m.k: transport.channel_header(m, program.channel_header, program.index_bits)
            for m in program.messages
            if m.src == program.index
        }

    def send(self, m: MessageSpec, matrix: np.ndarray) -> None:
        ready, cpu = time.monotonic(), time.thread_time()
        data = transport.frame_message(m, matrix, self.headers[m.k], self.p.spec)
        start = time.monotonic()
        try:
            self.receiver.send(self.out[m.dst], data, self.p.names[m.dst])
        except OSError as exc:
            raise transport.PeerGone(
                f"device {self.p.name} could not send to device {self.p.names[m.dst]}: {type(exc).__name__}: {exc}"
            ) from None
        self.sent[m.k] = SendTime(ready, start, time.thread_time() - cpu, len(data) - transport.APP_HEADER.size)


def run_round(
    program: DeviceProgram,
    interp: Interpreter,
    out: dict[int, socket.socket],
    incoming: dict[int, socket.socket],
    rnd: Round,
) -> DeviceReport:
    """One round (:class:`Round`): the check pass (frame 0, at once, values kept) or a timed run."""
    frames = [0] if rnd.check else list(range(program.frames))
    wanted = set(frames)
    expected = {m.k: m for m in program.messages if m.dst == program.index and m.frame in wanted}
    receiver = transport.Receiver(
        incoming, expected, lambda body, m: transport.decode_body(body, m, program.batch, program.spec),
        program.names, program.index, rnd.t0 + rnd.timeout_s, rnd.timeout_s,
    )  # fmt: skip
    link = _Link(program, out, receiver)
    report = DeviceReport(program.index)
    report.late_s = max(0.0, time.monotonic() - rnd.t0)
    while (left := rnd.t0 - time.monotonic()) > 0:
        time.sleep(min(0.01, left))
    try:
        interp.inputs_sent.clear()
        interp.arrivals = {} if rnd.check else {f: rnd.t0 + f * program.interval_s for f in frames[1:]}
        with torch.no_grad():
            for f in frames:
                arrival = None if rnd.check else rnd.t0 + f * program.interval_s
                interp.frame(f, link, report, arrival, keep_values=rnd.check)
        received = receiver.finish()
    finally:
        receiver.close()
    t0 = rnd.t0
    report.sent = {k: SendTime(s.ready_s - t0, s.start_s - t0, s.cpu_s, s.bytes) for k, s in link.sent.items()}
    report.received = {k: ReceiveTime(r.end_s - t0, r.cpu_s) for k, r in received.items()}
    report.tasks = [TaskTime(t.frame, t.stage, t.start_s - t0, t.end_s - t0, t.cpu_s) for t in report.tasks]
    report.done_s = [d - t0 for d in report.done_s]
    return report
