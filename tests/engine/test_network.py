"""Topologies, routing, chunking, shared medium and multicast against closed forms (hand-built workloads,
no torch). Times are worked out by hand in each test: ``bytes*8/bandwidth`` on the wire, then latency."""

from __future__ import annotations

import functools

import pytest

from sim.engine.devices import DeviceRate
from sim.engine.network import LinkParams, Network
from sim.engine.simulate import chunk_sizes
from sim.errors import UserError
from sim.topology import MEDIUM
from sim.workload.types import Task
from tests import helpers

MBPS = 1e6


message = functools.partial(helpers.message, final=True)  # each message here ends its frame unless told


def names(n: int) -> list[str]:
    return [f"d{i}" for i in range(n)]


def test_three_hop_line_store_and_forward_is_the_sum_of_hop_times(run) -> None:
    # d0 - d1 - d2 - d3 with different rates and latencies on each link; 1000 bytes d0 -> d3.
    overrides = {
        ("d0", "d1"): LinkParams(1 * MBPS, 1 * MBPS, 0.001),  # 8 ms + 1 ms
        ("d1", "d2"): LinkParams(2 * MBPS, 2 * MBPS, 0.002),  # 4 ms + 2 ms
        ("d2", "d3"): LinkParams(4 * MBPS, 4 * MBPS, 0.003),  # 2 ms + 3 ms
    }
    net = Network.build(names(4), "line", 1 * MBPS, 0.0, overrides)
    tl = run([], [message(0, 3, 1000)], net).timeline
    assert tl.message_hops == [3]
    assert tl.message_end_s == [pytest.approx(0.009 + 0.006 + 0.005)]
    assert [(h.link.name, h.start_s) for h in tl.hops] == [
        ("d0->d1", 0.0),
        ("d1->d2", pytest.approx(0.009)),
        ("d2->d3", pytest.approx(0.015)),
    ]


def test_chunks_pipeline_along_a_line(run) -> None:
    # 3000 bytes in 1000-byte chunks over 3 hops of 1 Mbit/s (8 ms per chunk) and 1 ms latency:
    # the last chunk leaves hop 1 at 24 ms; each later hop adds one chunk time and one latency:
    # n*t + (hops-1)*t + hops*L = 3*8 + 2*8 + 3*1 = 43 ms (store-and-forward whole: 3*(24+1) = 75 ms).
    net = Network.build(names(4), "line", 1 * MBPS, 0.001)
    assert run([], [message(0, 3, 3000)], net).timeline.message_end_s == [pytest.approx(0.075)]
    tl = run([], [message(0, 3, 3000)], net, chunk_bytes=1000).timeline
    assert tl.message_start_s == [0.0]
    assert tl.message_end_s == [pytest.approx(0.043)]
    assert len(tl.hops) == 9 and sum(h.nbytes for h in tl.hops) == 3 * 3000


def test_chunk_sizes_end_with_the_remainder() -> None:
    assert chunk_sizes(2500, 1000) == [1000, 1000, 500]
    assert chunk_sizes(2000, 1000) == [1000, 1000]
    assert chunk_sizes(10, None) == [10]


def test_shared_medium_serialises_every_transmission(run) -> None:
    # d0->d1 and d2->d0 at t=0 use different device pairs; on a mesh they overlap, on the shared medium
    # the second waits for the first: [0, 8] and [8, 16] ms, each plus 0.5 ms access overhead, + 1 ms latency.
    msgs = [message(0, 1, 1000), message(2, 0, 1000)]
    mesh = run([], msgs, Network.build(names(3), "mesh", 1 * MBPS, 0.001)).timeline
    assert mesh.message_end_s == [pytest.approx(0.009), pytest.approx(0.009)]
    shared = run([], msgs, Network.build(names(3), "shared", 1 * MBPS, 0.001, access_overhead_s=0.0005)).timeline
    assert shared.message_start_s == [0.0, pytest.approx(0.0085)]
    assert shared.message_end_s == [pytest.approx(0.0095), pytest.approx(0.018)]
    assert {h.link.queue_name for h in shared.hops} == {MEDIUM}


def test_half_duplex_link_carries_one_direction_at_a_time(run) -> None:
    msgs = [message(0, 1, 1000), message(1, 0, 1000)]
    full = run([], msgs, Network.build(names(2), "line", 1 * MBPS, 0.0)).timeline
    assert full.message_end_s == [pytest.approx(0.008), pytest.approx(0.008)]
    half = run([], msgs, Network.build(names(2), "line", 1 * MBPS, 0.0, duplex="half")).timeline
    assert half.message_end_s == [pytest.approx(0.008), pytest.approx(0.016)]


def test_asymmetric_up_and_down_rates(run) -> None:
    # up (d0->d1) 2 Mbit/s: 1000 bytes in 4 ms; down (d1->d0) 0.5 Mbit/s: 16 ms. Given as (d1, d0) the
    # override is read from d1's side.
    net = Network.build(names(2), "line", 1 * MBPS, 0.0, {("d1", "d0"): LinkParams(0.5 * MBPS, 2 * MBPS, 0.0)})
    tl = run([], [message(0, 1, 1000), message(1, 0, 1000)], net).timeline
    assert tl.message_end_s == [pytest.approx(0.004), pytest.approx(0.016)]


def test_star_uplink_queues_two_messages_a_mesh_does_not(run) -> None:
    # d0 sends 1000 bytes to d1 and to d2 at t=0, 1 Mbit/s, no latency.
    msgs = [message(0, 1, 1000), message(0, 2, 1000)]
    mesh = run([], msgs, Network.build(names(3), "mesh", 1 * MBPS, 0.0)).timeline
    assert mesh.message_start_s == [0.0, 0.0]
    assert mesh.message_end_s == [pytest.approx(0.008), pytest.approx(0.008)]
    # star: both cross d0->switch first: [0, 8] and [8, 16] ms; then switch->d1 [8, 16], switch->d2 [16, 24].
    star = run([], msgs, Network.build(names(3), "star", 1 * MBPS, 0.0)).timeline
    assert star.message_hops == [2, 2]
    assert star.message_start_s == [0.0, pytest.approx(0.008)]
    assert star.message_end_s == [pytest.approx(0.016), pytest.approx(0.024)]


def test_multicast_sends_one_payload_once_on_the_shared_medium(run) -> None:
    # The same payload (frame, src, tensor, channels) for d1, d2, d3: 1000 bytes at 1 Mbit/s, 1 ms latency.
    msgs = [message(0, d, 1000, tensor="img", channel_ids=(0,)) for d in (1, 2, 3)]
    net = Network.build(names(4), "shared", 1 * MBPS, 0.001)
    unicast = run([], msgs, net).timeline
    assert unicast.message_end_s == pytest.approx([0.009, 0.017, 0.025])
    multi = run([], msgs, net, multicast=True).timeline
    assert multi.message_end_s == pytest.approx([0.009] * 3)
    assert len(multi.hops) == 1 and multi.hops[0].nbytes == 1000
    assert multi.carried_by == [0, 0, 0]


def test_multicast_goes_at_the_slowest_receivers_rate(run) -> None:
    msgs = [message(0, d, 1000, tensor="img", channel_ids=(0,)) for d in (1, 2)]
    net = Network.build(names(3), "shared", 2 * MBPS, 0.0, {("d0", "d2"): LinkParams(1 * MBPS, 1 * MBPS, 0.0)})
    assert run([], msgs, net, multicast=True).timeline.message_end_s == pytest.approx([0.008, 0.008])


def test_different_payloads_are_not_merged(run) -> None:
    msgs = [message(0, 1, 1000, tensor="img", channel_ids=(0,)), message(0, 2, 1000, tensor="img", channel_ids=(1,))]
    tl = run([], msgs, Network.build(names(3), "shared", 1 * MBPS, 0.0), multicast=True).timeline
    assert tl.message_end_s == pytest.approx([0.008, 0.016])


def test_ring_routes_the_short_way_and_breaks_ties_in_device_order() -> None:
    net = Network.build(names(5), "ring", 1 * MBPS, 0.0)
    assert [l.name for l in net.route("d0", "d4")] == ["d0->d4"]
    assert [l.name for l in net.route("d0", "d3")] == ["d0->d4", "d4->d3"]
    even = Network.build(names(4), "ring", 1 * MBPS, 0.0)
    assert [l.name for l in even.route("d0", "d2")] == ["d0->d1", "d1->d2"]  # d1 before d3
    assert [l.name for l in even.route("d2", "d0")] == ["d2->d1", "d1->d0"]


def test_star_has_a_switch_node_that_is_not_a_device() -> None:
    net = Network.build(names(3), "star", 1 * MBPS, 0.0)
    assert [l.name for l in net.route("d1", "d2")] == ["d1->switch", "switch->d2"]
    assert net.devices == names(3)


def test_no_route_names_the_pair() -> None:
    net = Network.build(names(3), "custom", 1 * MBPS, 0.0, extra_edges=[("d0", "d1")])
    with pytest.raises(UserError, match="no path from d0 to d2") as err:
        net.check_pairs([("d0", "d1"), ("d0", "d2")])
    assert "\n" not in str(err.value)


def test_roofline_task_time(run) -> None:
    # 1e6 FLOP at 1 GFLOP/s = 1 ms of compute; 4e6 bytes at 1 GB/s = 4 ms of memory traffic: 4 ms + 0.5 ms.
    rate = DeviceRate(1e9, 0.0005, mem_bandwidth_Bps=1e9)
    assert rate.task_s(1e6, 4e6, "conv") == pytest.approx(0.0045)
    assert rate.task_s(1e7, 4e6, "conv") == pytest.approx(0.0105)  # compute-bound: 10 ms
    assert rate.task_s(0.0, 4e6, "add") == pytest.approx(0.004)  # adds pay memory time, no overhead
    assert DeviceRate(1e9).task_s(1e6, 4e9, "conv") == pytest.approx(0.001)  # no bandwidth: compute only
    net = Network.build(names(1), "mesh", 1 * MBPS, 0.0)
    tl = run([Task(0, "L", 0, 1e6, "conv", True, 4_000_000)], [], net, rates=[rate]).timeline
    assert tl.task_end_s == [pytest.approx(0.0045)]
