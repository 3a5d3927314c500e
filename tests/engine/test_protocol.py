"""Link protocol (packets, wire bytes) and token-bucket shaping against closed forms (hand-built workloads,
no torch). Every expected time is worked out by hand in the test: wire bytes, then ``bytes*8/rate``."""

from __future__ import annotations

import functools
import math

import pytest

from sim.config.load import parse_scenario
from sim.engine import assemble
from sim.engine.devices import DeviceRate
from sim.engine.network import TCP, LinkParams, Network, Protocol
from sim.engine.simulate import simulate
from sim.errors import UserError
from sim.workload.types import Workload
from tests import helpers

MBPS = 1e6
message = functools.partial(helpers.message, final=True)


def run(net: Network, messages, arrivals=(0.0,), **options):
    names = tuple(net.devices)
    wl = Workload(names, 0, 0, len(arrivals), (), tuple(messages))
    return simulate(wl, [DeviceRate(1e9)] * len(names), net, list(arrivals), **options)


def names(n: int) -> list[str]:
    return [f"d{i}" for i in range(n)]


def test_tcp_cuts_1448_byte_segments_costing_1514_bytes() -> None:
    assert TCP.segment_bytes == 1500 - 52 == 1448
    assert TCP.packets(3000) == [1514, 1514, 3000 - 2 * 1448 + 66]
    assert TCP.wire_bytes(3000) == 3000 + 3 * 66
    assert TCP.packets(0) == [66]  # an empty message still sends one packet of headers
    with_header = Protocol(1500, 66, message_header_bytes=100)
    assert with_header.packets(1348) == [1514]  # 1348 + 100 = one full segment
    assert with_header.packets(1349) == [1514, 1 + 66]


def test_a_message_over_tcp_costs_its_wire_bytes() -> None:
    # 10000 bytes: ceil(10000/1448) = 7 packets -> 10000 + 7*66 = 10462 wire bytes at 1 Mbit/s, + 1 ms.
    net = Network.build(names(2), "mesh", 1 * MBPS, 0.001, protocol=TCP)
    tl = run(net, [message(0, 1, 10000)])
    assert tl.message_end_s == [pytest.approx(10462 * 8 / 1e6 + 0.001)]
    assert len(tl.hops) == 7 and sum(h.nbytes for h in tl.hops) == 10462


def test_packets_are_stored_and_forwarded_one_by_one_on_a_line_and_a_star() -> None:
    # 2896 bytes = two full 1514-byte packets (t = 1514*8/1e6 each) over two hops, no latency:
    # packet by packet 2t + t = 3t; a whole message stored at the middle would take 2 * 2t = 4t.
    t = 1514 * 8 / 1e6
    line = Network.build(names(3), "line", 1 * MBPS, 0.0, protocol=TCP)
    assert run(line, [message(0, 2, 2896)]).message_end_s == [pytest.approx(3 * t)]
    star = Network.build(names(2), "star", 1 * MBPS, 0.0, protocol=TCP)
    assert run(star, [message(0, 1, 2896)]).message_end_s == [pytest.approx(3 * t)]
    whole = Network.build(names(3), "line", 1 * MBPS, 0.0)
    assert run(whole, [message(0, 2, 2 * 1514)]).message_end_s == [pytest.approx(4 * t)]


def test_a_message_smaller_than_the_burst_goes_at_once() -> None:
    net = Network.build(names(2), "mesh", 1 * MBPS, 0.002, burst_bytes=2000)
    assert run(net, [message(0, 1, 1000)]).message_end_s == [pytest.approx(0.002)]


def test_a_message_spanning_many_packets_waits_for_wire_minus_burst() -> None:
    # 20000 bytes over TCP: 14 packets (13*1448 = 18824, 1176 left) -> 20000 + 14*66 = 20924 wire bytes;
    # with a 2000-byte bucket at 5 Mbit/s the last leaves at (20924 - 2000) * 8 / 5e6.
    net = Network.build(names(2), "mesh", 5 * MBPS, 0.0, protocol=TCP, burst_bytes=2000)
    tl = run(net, [message(0, 1, 20000)])
    assert math.ceil(20000 / 1448) == 14
    assert tl.message_end_s == [pytest.approx((20924 - 2000) * 8 / 5e6)]
    assert tl.hops[0].end_s == tl.hops[0].start_s == 0.0  # the first packet fits in the full bucket


def test_the_bucket_refills_at_the_link_rate() -> None:
    # 1 Mbit/s = 125000 bytes/s, bucket 2000. Frame 0 at t=0 sends 1500 bytes: at once, 500 tokens left.
    # Frame 1 at t=4 ms: 500 + 0.004*125000 = 1000 tokens; its 1500 bytes wait 500/125000 = 4 ms -> 8 ms.
    # Frame 2 at t=1 s: the bucket is full again (2000, capped): 1500 bytes go at once.
    net = Network.build(names(2), "mesh", 1 * MBPS, 0.0, burst_bytes=2000)
    msgs = [message(0, 1, 1500, frame=f) for f in range(3)]
    tl = run(net, msgs, arrivals=(0.0, 0.004, 1.0))
    assert tl.message_end_s == [pytest.approx(0.0), pytest.approx(0.008), pytest.approx(1.0)]


def test_back_to_back_messages_share_one_bucket_per_link_direction() -> None:
    # Two 1500-byte messages ready together on d0->d1 (bucket 2000, 1 Mbit/s): the first goes at once, the
    # second finds 500 tokens and waits (1500-500)*8/1e6 = 8 ms. d1->d0 has a bucket of its own.
    net = Network.build(names(2), "mesh", 1 * MBPS, 0.0, burst_bytes=2000)
    tl = run(net, [message(0, 1, 1500), message(0, 1, 1500), message(1, 0, 1500)])
    assert tl.message_end_s == [pytest.approx(0.0), pytest.approx(0.008), pytest.approx(0.0)]


def test_without_protocol_or_shaper_nothing_changes() -> None:
    net = Network.build(names(2), "mesh", 1 * MBPS, 0.001)
    assert run(net, [message(0, 1, 1000)]).message_end_s == [pytest.approx(0.009)]


def test_a_route_over_links_of_two_protocols_is_refused() -> None:
    overrides = {("d1", "d2"): LinkParams(1 * MBPS, 1 * MBPS, 0.0, protocol=TCP)}
    net = Network.build(names(3), "line", 1 * MBPS, 0.0, overrides)
    with pytest.raises(UserError, match="d0 -> d2 crosses links of different protocols"):
        net.check_pairs([("d0", "d2")])
    net.check_pairs([("d1", "d2")])


def test_scenario_keys_reach_the_links_with_per_link_overrides() -> None:
    data = helpers.scenario_dict(
        3,
        network={
            "topology": "mesh",
            "bandwidth_mbps": 5,
            "protocol": "tcp",
            "shaper": {"burst_bytes": 2000},
            "links": [
                {"a": "d0", "b": "d1", "protocol": {"mtu_bytes": 9000, "packet_header_bytes": 66}},
                {"a": "d1", "b": "d2", "protocol": "none", "shaper": "none"},
            ],
        },
    )
    net = assemble.network(parse_scenario(data))
    link = {(l.src, l.dst): l for l in net.links()}
    assert link["d0", "d2"].protocol == TCP and link["d0", "d2"].burst_bytes == 2000
    assert link["d1", "d0"].protocol == Protocol(9000, 66, 0) and link["d1", "d0"].burst_bytes == 2000
    assert link["d2", "d1"].protocol is None and link["d2", "d1"].burst_bytes is None


@pytest.mark.parametrize(
    ("network", "error"),
    [
        ({"protocol": "tcp", "chunk_kb": 1}, "network.chunk_kB: a protocol already forwards packet by packet"),
        ({"protocol": {"mtu_bytes": 68, "packet_header_bytes": 100}}, "leaves no payload"),
        ({"protocol": {"mtu_bytes": 1500, "packet_header_bytes": 10}}, "packet_header_bytes"),
        ({"shaper": {"burst_bytes": 0}}, "burst_bytes"),
        ({"protocol": "udp"}, "network.protocol"),
    ],
)
def test_bad_protocol_and_shaper_settings_are_refused(network: dict, error: str) -> None:
    with pytest.raises(UserError, match=error):
        parse_scenario(helpers.scenario_dict(2, network=network))
