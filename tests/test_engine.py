"""The engine against closed forms, on workloads written by hand (no torch involved)."""

from __future__ import annotations

import pytest

from sim.engine.devices import DeviceRate
from sim.engine.network import Network
from sim.engine.simulate import simulate
from sim.workload.types import Workload
from tests.helpers import message, task

MBPS = 1e6


def run(tasks, messages, n_devices=2, bandwidth_bps=1 * MBPS, latency_s=0.0, rates=None, arrivals=(0.0,)):
    names = tuple(f"d{i}" for i in range(n_devices))
    wl = Workload(names, 0, 0, len(arrivals), tuple(tasks), tuple(messages))
    rates = rates or [DeviceRate(1e9)] * n_devices
    return simulate(wl, rates, Network.mesh(names, bandwidth_bps, latency_s), list(arrivals))


def test_one_message_ends_at_latency_plus_transmission() -> None:
    # 1000 bytes at 1 Mbit/s: 8 ms on the wire, then 2 ms of propagation.
    tl = run([], [message(0, 1, 1000, final=True)], latency_s=0.002)
    assert tl.message_start_s == [0.0]
    assert tl.message_end_s == [pytest.approx(0.010)]
    assert tl.message_hops == [1]
    assert tl.latency_s == [pytest.approx(0.010)]


def test_two_messages_on_one_link_queue() -> None:
    tl = run([], [message(0, 1, 1000), message(0, 1, 500, final=True)], latency_s=0.001)
    assert tl.message_start_s == [0.0, pytest.approx(0.008)]  # the second waits for the first
    assert tl.message_end_s == [pytest.approx(0.009), pytest.approx(0.008 + 0.004 + 0.001)]


def test_messages_on_different_links_do_not_queue() -> None:
    tl = run([], [message(0, 1, 1000), message(0, 2, 1000, final=True)], n_devices=3)
    assert tl.message_start_s == [0.0, 0.0]
    assert tl.message_end_s == [pytest.approx(0.008), pytest.approx(0.008)]


def test_two_layer_chain_on_two_devices_matches_hand_timeline() -> None:
    # d0 (source and sink) and d1, both 1 GFLOP/s; link 1 Mbit/s with 0.5 s latency.
    # t0: L1 on d0, 1e9 FLOP          -> [0, 1] (+0.1 s overhead -> [0, 1.1])
    # m0: image d0 -> d1, 125 kB       -> on the wire [0, 1], arrives 1.5
    # t1: L1 on d1, 2e9 FLOP, needs m0 -> [1.5, 3.5]
    # m1: d1 -> d0 after t1, 250 kB    -> on the wire [3.5, 5.5], arrives 6.0
    # t2: L2 on d0, 1e9 FLOP, needs m1 -> [6.0, 7.1] with overhead; final -> latency 7.1
    tasks = [task(0, 1e9), task(1, 2e9), task(0, 1e9, final=True)]
    msgs = [message(0, 1, 125_000, None, (1,)), message(1, 0, 250_000, 1, (2,))]
    tl = run(tasks, msgs, latency_s=0.5, rates=[DeviceRate(1e9, 0.1), DeviceRate(1e9)])
    assert tl.task_start_s == pytest.approx([0.0, 1.5, 6.0])
    assert tl.task_end_s == pytest.approx([1.1, 3.5, 7.1])
    assert tl.message_start_s == pytest.approx([0.0, 3.5])
    assert tl.message_end_s == pytest.approx([1.5, 6.0])
    assert tl.latency_s == pytest.approx([7.1])


def test_add_tasks_take_no_overhead() -> None:
    tl = run([task(0, 0.0, final=True, op="add")], [], rates=[DeviceRate(1e9, 0.5)] * 2)
    assert tl.task_end_s == [0.0]


def test_frames_queue_on_a_device_and_latency_counts_from_arrival() -> None:
    # Each frame needs 1 s of compute on d0; frames arrive every 0.5 s, so frame 1 waits 0.5 s.
    tasks = [task(0, 1e9, final=True, frame=0), task(0, 1e9, final=True, frame=1)]
    tl = run(tasks, [], arrivals=(0.0, 0.5))
    assert tl.task_start_s == pytest.approx([0.0, 1.0])
    assert tl.latency_s == pytest.approx([1.0, 1.5])


def test_events_counts_every_simpy_event_processed() -> None:
    # Counted by hand: the frame's arrival timeout, the start and the end of three processes (the source
    # and two devices), one event per chunk (3 chunks of 400, 400, 200 bytes) and the message's arrival.
    names = ("d0", "d1")
    wl = Workload(names, 0, 0, 1, (), (message(0, 1, 1000, final=True),))
    tl = simulate(wl, [DeviceRate(1e9)] * 2, Network.mesh(names, 1 * MBPS, 0.0), [0.0], chunk_bytes=400)
    assert tl.events == 1 + 2 * 3 + 3 + 1
