"""The receiving side of the wire (sim.testbed.transport.Receiver): messages read on the device's own thread,
each kept until it is needed, each timed by when it arrived rather than when it was read."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from sim.testbed import transport
from sim.testbed.program import MessageSpec
from sim.workload import wire

SPEC = wire.WireSpec("float32", 32)


def _spec(k: int, channels: int = 2) -> MessageSpec:
    return MessageSpec(k, 0, 0, 1, "x", np.arange(channels), channels, 4, (2, 2), "dense", 0, ("conv",))


@pytest.fixture
def pair():
    """Makes connections over loopback from device 0 (first: its sending end) to device 1 (second: the
    incoming sockets by sender); every socket made is closed after the test."""
    made: list[socket.socket] = []

    def make() -> tuple[socket.socket, dict[int, socket.socket]]:
        listener = transport.listen("127.0.0.1", 1)
        out = transport.connect(listener.getsockname(), 0, 5.0)
        incoming = transport.accept(listener, 1, 5.0)
        listener.close()
        made.extend([out, *incoming.values()])
        time.sleep(0.05)  # the kernel turns receive timestamps on in deferred work (accept asked for them)
        return out, incoming

    yield make
    for s in made:
        s.close()


def _receiver(incoming: dict[int, socket.socket], ms: list[MessageSpec], timeout_s: float = 5.0):
    return transport.Receiver(
        incoming,
        {m.k: m for m in ms},
        lambda body, m: transport.decode_body(body, m, 1, SPEC),
        ["a", "b"],
        1,
        time.monotonic() + timeout_s,
        timeout_s,
    )


def _send(out: socket.socket, m: MessageSpec, value: float) -> float:
    """Send ``m`` with every element ``value``; when its bytes went to the socket (time.monotonic)."""
    matrix = np.full((len(m.channels), 4), value, dtype=np.float32)
    start = time.monotonic()
    out.sendall(transport.frame_message(m, matrix, b"", SPEC))
    return start


def test_a_message_read_late_is_timed_by_its_arrival(pair) -> None:
    out, incoming = pair()
    m = _spec(0)
    receiver = _receiver(incoming, [m])
    sent_s = _send(out, m, 1.5)
    time.sleep(0.2)  # the device is busy: the message waits in the kernel
    (value,) = receiver.take([m])
    read_s = time.monotonic()
    assert value.shape == (1, 2, 2, 2) and bool((value == 1.5).all())
    arrived_s = receiver.finish()[0].end_s
    # the kernel's stamp: within a few ms of the send (loopback), not 0.2 s later when it was read
    assert sent_s <= arrived_s < sent_s + 0.05 and read_s - arrived_s > 0.15


def test_a_message_passed_on_the_way_to_another_is_kept_until_needed(pair) -> None:
    out, incoming = pair()
    first, second = _spec(0), _spec(1, channels=3)
    receiver = _receiver(incoming, [first, second])
    _send(out, first, 1.5)
    _send(out, second, -2.0)
    (value,) = receiver.take([second])
    assert value.shape == (1, 3, 2, 2) and bool((value == -2.0).all())
    assert 0 in receiver.times and 0 in receiver.values  # read on the way, not yet taken
    (kept,) = receiver.take([first])
    assert kept.shape == (1, 2, 2, 2) and bool((kept == 1.5).all())
    times = receiver.finish()
    assert times[0].end_s <= times[1].end_s and times[0].cpu_s > 0 and times[1].cpu_s > 0


def test_drain_reads_what_arrived_without_waiting(pair) -> None:
    out, incoming = pair()
    m = _spec(0)
    receiver = _receiver(incoming, [m])
    before = time.monotonic()
    receiver.drain()  # nothing there: returns at once
    assert time.monotonic() - before < 0.5 and 0 not in receiver.times
    _send(out, m, 3.0)
    time.sleep(0.05)
    receiver.drain()
    assert 0 in receiver.times  # read (and timed) before anyone asked for it


def test_a_message_that_never_comes_fails_in_one_line_naming_the_sender(pair) -> None:
    _out, incoming = pair()
    m = _spec(0)
    receiver = _receiver(incoming, [m], timeout_s=0.2)
    with pytest.raises(transport.TransportError, match=r"device b waited 0.2 s for a message from device a"):
        receiver.take([m])


def test_a_sender_that_closes_its_connection_is_reported_as_gone(pair) -> None:
    out, incoming = pair()
    m = _spec(0)
    receiver = _receiver(incoming, [m])
    out.close()
    with pytest.raises(transport.PeerGone, match="connection from device a closed"):
        receiver.take([m])


def test_two_devices_sending_each_other_more_than_their_buffers_hold_do_not_wait_on_each_other(pair) -> None:
    # Each sends the other 16 MB (more than a 4 MB send buffer and the peer's receive buffer together)
    # before reading: a plain sendall would block both for good; sending reads the incoming side meanwhile.
    ab, ba = pair(), pair()  # a -> b, b -> a
    big = MessageSpec(0, 0, 0, 1, "x", np.arange(1024), 1024, 4, (64, 64), "dense", 0, ("conv",))
    data = transport.frame_message(big, np.ones((1024, 64 * 64), dtype=np.float32), b"", SPEC)
    ends = {"a": (ab[0], ba[1]), "b": (ba[0], ab[1])}  # device: (its sending socket, its incoming sockets)
    got: dict[str, float] = {}

    def device(name: str) -> None:
        out, incoming = ends[name]
        receiver = _receiver(incoming, [big], timeout_s=20.0)
        receiver.send(out, data, "peer")
        (value,) = receiver.take([big])
        got[name] = float(value.sum())
        receiver.close()

    threads = [threading.Thread(target=device, args=(n,), daemon=True) for n in ends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30.0)
    assert got == {"a": 1024 * 64 * 64, "b": 1024 * 64 * 64}


def test_a_message_in_small_pieces_is_put_together_and_an_unexpected_one_is_one_line(pair) -> None:
    out, incoming = pair()
    m = _spec(0)
    data = transport.frame_message(m, np.full((2, 4), 7.0, dtype=np.float32), b"", SPEC)
    receiver = _receiver(incoming, [m])
    out.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(0, len(data), 3):  # the header and the body each split across reads
        out.sendall(data[i : i + 3])
        time.sleep(0.002)
        receiver.drain()
    (value,) = receiver.take([m])
    assert bool((value == 7.0).all())
    out.sendall(transport.APP_HEADER.pack(9, 0))  # message 9 is not one this device expects
    with pytest.raises(transport.TransportError, match="message 9 arrived unexpected on the connection from device a"):
        receiver.take([_spec(1)])
