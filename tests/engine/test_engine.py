"""The engine against closed forms, on workloads written by hand (no torch involved)."""

from __future__ import annotations

import pytest

from sim.engine.devices import DeviceRate
from sim.engine.network import Network
from sim.engine.simulate import simulate
from sim.workload.types import Workload
from tests.helpers import message, task

# Times below are dyadic (bytes*8/bandwidth and flops/rate come out as sums of powers of two), so the
# engine's float arithmetic is exact and the tests compare with ==.


def test_one_message_ends_at_latency_plus_transmission(run) -> None:
    # 125 000 bytes at 1 Mbit/s: 1 s on the wire, then 0.5 s of propagation.
    tl = run([], [message(0, 1, 125_000, final=True)], latency_s=0.5).timeline
    assert tl.message_start_s == [0.0]
    assert tl.message_end_s == [1.5]
    assert tl.message_hops == [1]
    assert tl.latency_s == [1.5]


def test_two_messages_on_one_link_queue(run) -> None:
    tl = run([], [message(0, 1, 125_000), message(0, 1, 62_500, final=True)], latency_s=0.25).timeline
    assert tl.message_start_s == [0.0, 1.0]  # the second waits for the first
    assert tl.message_end_s == [1.25, 1.0 + 0.5 + 0.25]


@pytest.mark.parametrize("big_first", [True, False])
def test_messages_ready_at_the_same_instant_go_in_creation_order(run, big_first: bool) -> None:
    # docs/design.md §3.7: same-time events resolve in creation order. Two messages d0 -> d1 ready at t=0 on one link:
    # whichever was created first is on the wire first, whatever its size.
    big, small = message(0, 1, 125_000, final=True), message(0, 1, 62_500, final=True)
    tl = run([], [big, small] if big_first else [small, big]).timeline
    if big_first:  # big [0, 1], then small [1, 1.5]
        assert (tl.message_start_s, tl.message_end_s) == ([0.0, 1.0], [1.0, 1.5])
    else:  # small [0, 0.5], then big [0.5, 1.5]
        assert (tl.message_start_s, tl.message_end_s) == ([0.0, 0.5], [0.5, 1.5])


def test_tasks_ready_at_the_same_instant_run_in_creation_order(run) -> None:
    # Two tasks of d0, both ready at t=0 (0.5 s and 0.25 s at 1 GFLOP/s): the first created runs first.
    tl = run([task(0, 5e8, layer="A"), task(0, 2.5e8, final=True, layer="B")], []).timeline
    assert (tl.task_start_s, tl.task_end_s) == ([0.0, 0.5], [0.5, 0.75])


def test_messages_on_different_links_do_not_queue(run) -> None:
    tl = run([], [message(0, 1, 125_000), message(0, 2, 125_000, final=True)], n_devices=3).timeline
    assert tl.message_start_s == [0.0, 0.0]
    assert tl.message_end_s == [1.0, 1.0]


def test_two_layer_chain_on_two_devices_matches_hand_timeline(run) -> None:
    # d0 (source and sink) and d1, both 1 GFLOP/s; link 1 Mbit/s with 0.5 s latency.
    # t0: L1 on d0, 1e9 FLOP          -> [0, 1] (+0.25 s overhead -> [0, 1.25])
    # m0: image d0 -> d1, 125 kB       -> on the wire [0, 1], arrives 1.5
    # t1: L1 on d1, 2e9 FLOP, needs m0 -> [1.5, 3.5]
    # m1: d1 -> d0 after t1, 250 kB    -> on the wire [3.5, 5.5], arrives 6.0
    # t2: L2 on d0, 1e9 FLOP, needs m1 -> [6.0, 7.25] with overhead; final -> latency 7.25
    tasks = [task(0, 1e9), task(1, 2e9), task(0, 1e9, final=True)]
    msgs = [message(0, 1, 125_000, None, (1,)), message(1, 0, 250_000, 1, (2,))]
    tl = run(tasks, msgs, latency_s=0.5, rates=[DeviceRate(1e9, 0.25), DeviceRate(1e9)]).timeline
    assert tl.task_start_s == [0.0, 1.5, 6.0]
    assert tl.task_end_s == [1.25, 3.5, 7.25]
    assert tl.message_start_s == [0.0, 3.5]
    assert tl.message_end_s == [1.5, 6.0]
    assert tl.latency_s == [7.25]


def test_add_tasks_take_no_overhead(run) -> None:
    tl = run([task(0, 0.0, final=True, op="add")], [], rates=[DeviceRate(1e9, 0.5)] * 2).timeline
    assert tl.task_end_s == [0.0]


def test_frames_queue_on_a_device_and_latency_counts_from_arrival(run) -> None:
    # Each frame needs 1 s of compute on d0; frames arrive every 0.5 s, so frame 1 waits 0.5 s.
    tasks = [task(0, 1e9, final=True, frame=0), task(0, 1e9, final=True, frame=1)]
    tl = run(tasks, [], arrivals=(0.0, 0.5)).timeline
    assert tl.task_start_s == [0.0, 1.0]
    assert tl.latency_s == [1.0, 1.5]


def test_events_counts_every_simpy_event_processed() -> None:
    # Counted by hand: the frame's arrival timeout, the start and the end of three processes (the source
    # and two devices), one event per chunk (3 chunks of 400, 400, 200 bytes) and the message's arrival.
    names = ("d0", "d1")
    wl = Workload(names, 0, 0, 1, (), (message(0, 1, 1000, final=True),))
    tl = simulate(wl, [DeviceRate(1e9)] * 2, Network.mesh(names, 1e6, 0.0), [0.0], chunk_bytes=400)
    assert tl.events == 1 + 2 * 3 + 3 + 1
