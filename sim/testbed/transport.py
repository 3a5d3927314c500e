"""The wire between device processes: TCP connections, message framing, and the receiving thread.

One TCP connection per ordered device pair that exchanges messages. On connecting, the sender writes a
4-byte hello (:data:`HELLO`, its device index); then, per message, an 8-byte header (:data:`APP_HEADER`:
workload message index, byte count) and the message's bytes: the channel header, then the
:mod:`sim.workload.wire` encoding, exactly as ``transfers.csv`` sizes them. A message is one ``sendall``
from the device's own thread (``TCP_NODELAY``, a send buffer large enough that it returns once the bytes
are in the kernel); one receiving thread per device reads every incoming connection (``selectors``) and
keeps each message, decoded, until the device's thread takes it.

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
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sim.testbed.program import MessageSpec, ReceiveTime
from sim.workload import wire

APP_HEADER = struct.Struct("<II")  # workload message index, bytes that follow
HELLO = struct.Struct("<I")  # the sending device's index
SEND_BUFFER_BYTES = 4 << 20  # asked for on every sending socket (as root beyond net.core.wmem_max)
_SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
_READ_BYTES = 1 << 20


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
    """``count`` incoming connections by the sender's index (from its hello)."""
    listener.settimeout(timeout_s)
    incoming = {}
    for _ in range(count):
        s, _addr = listener.accept()
        s.settimeout(timeout_s)
        (src,) = HELLO.unpack(read_exactly(s, HELLO.size))
        s.settimeout(None)
        incoming[src] = s
    return incoming


def read_exactly(s: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes from ``s``."""
    chunks, got = [], 0
    while got < n:
        chunk = s.recv(min(n - got, _READ_BYTES))
        if not chunk:
            raise ConnectionError(f"connection closed after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


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
    """The bytes one ``sendall`` puts on the connection: APP_HEADER, channel header, encoded matrix."""
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
class _Stream:
    """Bytes read so far on one incoming connection, and the CPU time spent on its current message."""

    src: int
    buffer: bytearray
    cpu_s: float = 0.0


class Receiver:
    """One thread that reads every incoming connection of a device for one round and keeps each message,
    decoded, with when its last byte was read; :meth:`take` waits for messages until a deadline.

    ``expected``: the messages of this round by workload index; ``name``: device names by index."""

    def __init__(
        self,
        incoming: dict[int, socket.socket],
        expected: dict[int, MessageSpec],
        decode: Callable[[bytearray, MessageSpec], torch.Tensor],
        name: Sequence[str],
        me: int,
    ):
        self.incoming, self.expected, self.decode, self.name, self.me = incoming, expected, decode, name, me
        self.values: dict[int, torch.Tensor] = {}
        self.times: dict[int, ReceiveTime] = {}
        self.failure: TransportError | None = None
        self.scratch = memoryview(bytearray(_READ_BYTES))  # every read lands here first (no allocation per read)
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="dsim-receiver", daemon=True)
        self.thread.start()

    def take(self, ms: Sequence[MessageSpec], deadline: float, timeout_s: float) -> list[torch.Tensor]:
        """The values of messages ``ms``, waiting for them until ``deadline`` (``time.monotonic``)."""
        with self.cond:
            while not all(m.k in self.values for m in ms):
                if self.failure:
                    raise self.failure
                left = deadline - time.monotonic()
                if left <= 0:
                    m = next(m for m in ms if m.k not in self.values)
                    raise TransportError(
                        f"device {self.name[self.me]} waited {timeout_s:.3g} s for a message from device "
                        f"{self.name[m.src]} (tensor {m.tensor}, frame {m.frame}) and none came"
                    )
                self.cond.wait(left)
            return [self.values.pop(m.k) for m in ms]

    def add_cpu(self, ks: Sequence[int], cpu_s: float) -> None:
        """Charge ``cpu_s`` (merging) to messages ``ks``, in equal shares."""
        for k in ks:
            t = self.times[k]
            self.times[k] = ReceiveTime(t.end_s, t.cpu_s + cpu_s / len(ks))

    def finish(self, timeout_s: float) -> dict[int, ReceiveTime]:
        """Wait for the thread to end (every message read); the receive times by message index."""
        self.thread.join(timeout_s)
        if self.failure:
            raise self.failure
        if self.thread.is_alive():
            raise TransportError(f"device {self.name[self.me]}: messages still incoming at the end of the run")
        return self.times

    def _run(self) -> None:
        left = len(self.expected)
        streams: dict[int, _Stream] = {}
        try:
            with selectors.DefaultSelector() as sel:
                for src, s in self.incoming.items():
                    streams[src] = _Stream(src, bytearray())
                    sel.register(s, selectors.EVENT_READ, streams[src])
                while left:
                    for key, _ in sel.select():
                        left -= self._read(key.fileobj, key.data)  # type: ignore[arg-type]
        except BaseException as exc:  # surfaced by take/finish in the device's thread
            with self.cond:
                gone = isinstance(exc, (PeerGone, ConnectionResetError))
                self.failure = self.failure or (PeerGone if gone else TransportError)(
                    f"device {self.name[self.me]}: {exc}"
                )
                self.cond.notify_all()

    def _read(self, s: socket.socket, stream: _Stream) -> int:
        """Read what ``s`` has; keep every message it completes. Returns how many it completed."""
        cpu = time.thread_time()
        got = s.recv_into(self.scratch)
        if not got:
            raise PeerGone(f"the connection from device {self.name[stream.src]} closed during the run")
        buf = stream.buffer
        buf += self.scratch[:got]
        done = 0
        while len(buf) >= APP_HEADER.size:
            k, nbytes = APP_HEADER.unpack_from(buf)
            if len(buf) < APP_HEADER.size + nbytes:
                break
            end = time.monotonic()
            m = self.expected.get(k)
            if m is None or m.src != stream.src:
                raise TransportError(f"message {k} arrived unexpected on the connection from device {stream.src}")
            value = self.decode(buf[APP_HEADER.size : APP_HEADER.size + nbytes], m)
            del buf[: APP_HEADER.size + nbytes]
            now = time.thread_time()
            spent, stream.cpu_s, cpu = stream.cpu_s + now - cpu, 0.0, now
            with self.cond:
                self.values[k], self.times[k] = value, ReceiveTime(end, spent)
                self.cond.notify_all()
            done += 1
        stream.cpu_s += time.thread_time() - cpu
        return done
