"""The wire between device processes: TCP connections, message framing, and reading messages.

One TCP connection per ordered device pair that exchanges messages. On connecting, the sender writes a
4-byte hello (:data:`HELLO`, its device index); then, per message, an 8-byte header (:data:`APP_HEADER`:
workload message index, byte count) and the message's bytes: the channel header, then the
:mod:`sim.workload.wire` encoding, exactly as ``transfers.csv`` sizes them. A message is handed to the
socket from the device's own thread (``TCP_NODELAY``, a 4 MB send buffer: usually at once; when the
buffer is full, the device reads its own incoming connections until it can go on, so that two devices
sending each other large messages do not wait on each other: :meth:`Receiver.send`); the receiving
device reads on its own thread (:class:`Receiver`) and learns when each message arrived from the
kernel's receive timestamps.

Example (two ends of one process)::

    >>> listener = listen("127.0.0.1", 1)                                  # doctest: +SKIP
    >>> out = connect(listener.getsockname(), 0, 5.0)                      # doctest: +SKIP
    >>> accept(listener, 1, 5.0)                                           # doctest: +SKIP
    {0: <socket.socket ...>}
"""

from __future__ import annotations

import selectors
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from sim.testbed.program import MessageSpec, ReceiveTime
from sim.workload import wire

APP_HEADER = struct.Struct("<II")  # workload message index, bytes that follow
HELLO = struct.Struct("<I")  # the sending device's index
SEND_BUFFER_BYTES = 4 << 20  # asked for on every sending socket (as root beyond net.core.wmem_max)
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; not exported by Python's socket module
_TIMESPEC = struct.Struct("@qq")  # struct timespec: seconds, nanoseconds
_STAMP_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)


class TransportError(RuntimeError):
    """A connection failed or a message did not come in time: one line naming the peer device."""


class PeerGone(TransportError):
    """A connection failed because the device at its other end closed it or ended: the consequence of that
    device's own failure, which the parent reports instead when it comes (:mod:`sim.testbed.launcher`)."""


def listen(host: str, peers: int) -> socket.socket:
    """A listening TCP socket on ``host`` (any free port) with a backlog for ``peers`` connections."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen(max(16, peers))
    return listener


def connect(address: tuple[str, int], index: int, timeout_s: float) -> socket.socket:
    """A connection to a peer's listener, introduced with ``index``; TCP_NODELAY and a large send buffer."""
    s = socket.create_connection(address, timeout=timeout_s)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        s.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, SEND_BUFFER_BYTES)
    except OSError:  # not root: capped at net.core.wmem_max
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
    s.settimeout(None)
    s.sendall(HELLO.pack(index))
    return s


def accept(listener: socket.socket, count: int, timeout_s: float) -> dict[int, socket.socket]:
    """``count`` incoming connections by the sender's index (from its hello), with receive timestamps on
    (``SO_TIMESTAMPNS``: the kernel turns them on for the first socket in deferred work, so at set-up)."""
    listener.settimeout(timeout_s)
    incoming = {}
    for _ in range(count):
        s, _addr = listener.accept()
        s.settimeout(timeout_s)
        hello = b""
        while len(hello) < HELLO.size:
            chunk = s.recv(HELLO.size - len(hello))
            if not chunk:
                raise ConnectionError("a peer closed its connection before introducing itself")
            hello += chunk
        (src,) = HELLO.unpack(hello)
        s.settimeout(None)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        incoming[src] = s
    return incoming


def channel_header(m: MessageSpec, kind: str, index_bits: int) -> bytes:
    """The bytes naming a message's channels: ``index_list``, ``bitmap`` or none."""
    if kind == "index_list":
        return m.channels.astype(f"<u{index_bits // 8}").tobytes()
    if kind == "bitmap":
        present = np.zeros(m.tensor_channels, dtype=bool)
        present[m.channels] = True
        return np.packbits(present).tobytes()
    return b""


def frame_message(m: MessageSpec, matrix: np.ndarray, header: bytes, spec: wire.WireSpec) -> bytes:
    """The bytes one message puts on the connection: APP_HEADER, channel header, encoded matrix."""
    body = wire.encode(matrix, m.fmt, spec)
    return APP_HEADER.pack(m.k, len(header) + len(body)) + header + body


def decode_body(body: bytes | bytearray, m: MessageSpec, batch: int, spec: wire.WireSpec) -> torch.Tensor:
    """A message's bytes (channel header, then the encoding) as a (B, k, ...) tensor of its channels."""
    k = len(m.channels)
    rows = batch * k if m.rank == 4 else batch
    cols = int(np.prod(m.per_channel)) * (1 if m.rank == 4 else k)
    matrix = wire.decode(memoryview(body)[m.header_bytes :], m.fmt, (rows, cols), spec)  # type: ignore[arg-type]
    return torch.from_numpy(np.ascontiguousarray(matrix)).reshape(batch, k, *m.per_channel)


@dataclass
class _Incoming:
    """One incoming connection and the message being read on it: ``got`` bytes so far of its 8-byte header
    (:data:`APP_HEADER`), then of its ``body``; the CPU time spent on it and when its latest bytes arrived."""

    src: int
    sock: socket.socket
    header: bytearray = field(default_factory=lambda: bytearray(APP_HEADER.size))
    got: int = 0
    k: int = -1
    body: bytearray = field(default_factory=bytearray)
    cpu_s: float = 0.0
    arrived_s: float = 0.0


class Receiver:
    """A device's incoming connections during one round, read on the device's own thread (as a hand-written
    runtime does: no receiving thread to wake per packet and hand messages over).

    While the device waits for messages (:meth:`take`) it reads every connection as bytes arrive, keeping
    each message, decoded, until it is needed; between tasks (:meth:`drain`) it reads, without waiting,
    what arrived meanwhile. A message's arrival is the kernel's receive timestamp of its last byte
    (``SO_TIMESTAMPNS``; each read stops at a message's end), or the time of the read when the kernel gave
    none; for a message that completed while the device was blocked waiting, when the device woke to read
    it (waking a process is a cost of the message that no CPU time shows). When the next message on a
    connection reaches the kernel before this one is read (both within one task), the kernel may merge
    them into one buffer carrying the later timestamp.

    ``expected``: the messages of this round by workload index; ``name``: device names by index; reads
    give up at ``deadline`` (``time.monotonic`` s), the end of the round, which lasts ``timeout_s``.
    """

    def __init__(
        self,
        incoming: dict[int, socket.socket],
        expected: dict[int, MessageSpec],
        decode: Callable[[bytearray, MessageSpec], torch.Tensor],
        name: Sequence[str],
        me: int,
        deadline: float,
        timeout_s: float,
    ):
        self.expected, self.decode, self.name, self.me = expected, decode, name, me
        self.deadline, self.timeout_s = deadline, timeout_s
        self.values: dict[int, torch.Tensor] = {}
        self.times: dict[int, ReceiveTime] = {}
        self.realtime_offset_s = time.time() - time.monotonic()  # stamps: CLOCK_REALTIME; one offset a round
        self.incoming = {src: _Incoming(src, s) for src, s in incoming.items()}
        self.woke_s: float | None = None  # when the device last woke from waiting for bytes (None: it did not)
        self.selector = selectors.DefaultSelector()
        for c in self.incoming.values():
            self.selector.register(c.sock, selectors.EVENT_READ, c)

    def take(self, ms: Sequence[MessageSpec]) -> list[torch.Tensor]:
        """The values of messages ``ms``; while waiting for them, reads every connection as bytes arrive."""
        for m in ms:
            self._wait_for(m)
        return [self.values.pop(m.k) for m in ms]

    def drain(self) -> None:
        """Read, without waiting, every message (or part of one) that has arrived."""
        self._read_ready(0.0)

    def add_cpu(self, ks: Sequence[int], cpu_s: float) -> None:
        """Charge ``cpu_s`` (merging) to messages ``ks``, in equal shares."""
        for k in ks:
            t = self.times[k]
            self.times[k] = ReceiveTime(t.end_s, t.cpu_s + cpu_s / len(ks))

    def finish(self) -> dict[int, ReceiveTime]:
        """Read every message of the round not read yet (none of its values was needed); the receive times
        by message index."""
        for m in sorted(self.expected.values(), key=lambda m: m.k):
            self._wait_for(m)
        return self.times

    def close(self) -> None:
        """Release the selector (the connections stay open for the next round)."""
        self.selector.close()

    def _wait_for(self, m: MessageSpec) -> None:
        """Read every connection as its bytes arrive until ``m`` has come (the device has nothing else to do):
        a message completed after the device blocked counts as come when the device woke to read it."""
        if m.k not in self.times:  # first what has come already (a drain between tasks may have read it)
            self.drain()
        while m.k not in self.times:
            left_s = self.deadline - time.monotonic()
            if left_s <= 0:
                raise TransportError(
                    f"device {self.name[self.me]} waited {self.timeout_s:.3g} s for a message from device "
                    f"{self.name[m.src]} (tensor {m.tensor}, frame {m.frame}) and none came"
                )
            self._read_ready(left_s)

    def _read_ready(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for bytes on any connection, then read every connection that has some;
        after a wait, the messages completed are timed by when the device woke (:attr:`woke_s`), which holds
        the time the process took to wake and get a core (a stamp alone left LeNet-5's slow loopback check
        at -54 %)."""
        ready = self.selector.select(timeout_s)
        self.woke_s = time.monotonic() if timeout_s > 0 else None
        for key, _ in ready:
            while key.data is not None and self._advance(key.data):  # data None: a socket being sent to
                pass

    def send(self, sock: socket.socket, data: bytes, dst: str) -> None:
        """Hand ``data`` to ``sock``; while its send buffer is full, read this device's incoming connections
        (the peer may itself be blocked sending to this device), until the round's deadline."""
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view, socket.MSG_DONTWAIT) :]
            except BlockingIOError:
                left_s = self.deadline - time.monotonic()
                if left_s <= 0:
                    raise TransportError(
                        f"device {self.name[self.me]} could not send to device {dst} in time"
                    ) from None
                self.selector.register(sock, selectors.EVENT_WRITE)
                try:
                    self._read_ready(left_s)
                finally:
                    self.selector.unregister(sock)

    def _advance(self, c: _Incoming) -> bool:
        """One read on ``c``, without waiting, toward the end of its current message, which it keeps
        (decoded) once complete; False when nothing more was there."""
        cpu = time.thread_time()
        in_body = c.got >= APP_HEADER.size
        view = memoryview(c.body)[c.got - APP_HEADER.size :] if in_body else memoryview(c.header)[c.got :]
        if len(view):
            try:
                n, ancillary, _flags, _addr = c.sock.recvmsg_into([view], _STAMP_SPACE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            except OSError as exc:
                raise PeerGone(
                    f"device {self.name[self.me]}: the connection from device {self.name[c.src]} failed: {exc}"
                ) from None
            if not n:
                raise PeerGone(
                    f"device {self.name[self.me]}: the connection from device {self.name[c.src]} closed during the run"
                )
            c.got += n
            c.arrived_s = self._arrival(ancillary)
        if c.got == APP_HEADER.size and not in_body:
            c.k, nbytes = APP_HEADER.unpack(c.header)
            m = self.expected.get(c.k)
            if m is None or m.src != c.src or c.k in self.times:
                raise TransportError(
                    f"device {self.name[self.me]}: message {c.k} arrived unexpected on the connection from "
                    f"device {self.name[c.src]}"
                )
            c.body = bytearray(nbytes)
        done = c.got >= APP_HEADER.size and c.got == APP_HEADER.size + len(c.body)
        if done:
            self.values[c.k] = self.decode(c.body, self.expected[c.k])
            cpu_s = c.cpu_s + time.thread_time() - cpu
            arrived_s = c.arrived_s if self.woke_s is None else max(c.arrived_s, self.woke_s)
            self.times[c.k] = ReceiveTime(arrived_s, cpu_s)
            c.got, c.cpu_s = 0, 0.0
        else:
            c.cpu_s += time.thread_time() - cpu
        return True

    def _arrival(self, ancillary: list[tuple[int, int, bytes]]) -> float:
        """When the bytes just read arrived (``time.monotonic`` s): the kernel's stamp, or now."""
        now = time.monotonic()
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                seconds, nanoseconds = _TIMESPEC.unpack_from(data)
                return min(now, seconds + nanoseconds * 1e-9 - self.realtime_offset_s)
        return now
