"""The costs a runtime profile adds, against closed forms (hand-built workloads, no torch): a message's CPU
time on its sender and receiver (growing with its bytes), processor sharing of a host's cores, packets
of different connections interleaving on one busy link, a task's wake-up after its device idled, and a
layer's cost in another split along its solo curve. Devices compute at 1 GFLOP/s."""

from __future__ import annotations

import pytest

from sim.analysis.tables import TRANSIT_COLUMN, WAKE_COLUMN, compute_table, transfers_table
from sim.engine import assemble
from sim.engine.devices import DeviceRate, Host, LayerLine, MessageCpu, RuntimeTimes
from sim.engine.network import Link, Network, Protocol
from sim.engine.simulate import simulate, wire_seconds
from sim.report.trace import chrome_trace
from sim.workload.runtime import ComputeEntry, CostLine, DeviceCompute, RuntimeProfile, Sharing, SoloCurve, WakeCurve
from sim.workload.types import Task, Workload
from tests import helpers

MBPS = 1e6


def task(device: int, flops: float = 1e9, final: bool = False, layer: str = "") -> Task:
    return Task(0, layer or f"t{device}", device, flops, "conv", final)


def workload(n: int, tasks, messages=()) -> Workload:
    return Workload(tuple(f"d{i}" for i in range(n)), 0, 0, 1, tuple(tasks), tuple(messages))


def test_a_messages_cpu_time_on_sender_and_receiver_grows_with_its_bytes() -> None:
    # 10 000 bytes: the sender pays 100 us + 10 ns/byte = 0.2 ms, the wire at 1 Mbit/s 80 ms, the receiver
    # 200 us + 30 ns/byte = 0.5 ms; d1 starts at 1 + 0.0002 + 0.08 + 0.0005.
    cpu = MessageCpu({"dense": CostLine(0.0, 1e-8, 1e-4)}, {"dense": CostLine(0.0, 3e-8, 2e-4)})
    rates = [DeviceRate(1e9, message_cpu=cpu), DeviceRate(1e9, message_cpu=cpu)]
    msg = helpers.message(0, 1, 10_000, after=0, needed_by=(1,))
    wl = workload(2, [task(0), task(1, final=True)], [msg])
    tl = simulate(wl, rates, Network.mesh(["d0", "d1"], 1 * MBPS, 0.0), [0.0])
    assert tl.message_ready_s == [pytest.approx(1.0002)]
    assert tl.message_end_s == [pytest.approx(1.0802)]
    assert tl.task_start_s[1] == pytest.approx(1.0807)
    spans = {(s.side, s.device): (s.start_s, s.end_s, s.cpu_s) for s in tl.cpu_spans}
    assert spans[("send", 0)] == pytest.approx((1.0, 1.0002, 0.0002))
    assert spans[("recv", 1)] == pytest.approx((1.0802, 1.0807, 0.0005))
    table = transfers_table(wl, tl)  # every cost visible in transfers.csv and in the trace
    assert (table["send_cpu_s"][0], table["recv_cpu_s"][0]) == (pytest.approx(0.0002), pytest.approx(0.0005))
    cats = {e.get("cat") for e in chrome_trace(wl, tl)["traceEvents"]}
    assert {"send_cpu", "recv_cpu"} <= cats


def test_a_messages_transit_delay_holds_no_core() -> None:
    # d1 and d2 share one core (fifo); d2 computes from 0 to 20 ms. d0's 1,000 bytes take 8 ms at 1 Mbit/s
    # and arrive 5 ms of transit later, at 13 ms, although the core is busy: the transit holds none. d1's
    # task (1 ms) needs them and waits for the core: 20 to 21 ms. The same 5 ms as receive CPU time would
    # be paid on the core: the task would start at 25 ms.
    transit = MessageCpu(transit={"dense": CostLine(0.0, 0.0, 0.005)})
    as_cpu = MessageCpu(recv={"dense": CostLine(0.0, 0.0, 0.005)})
    wl = workload(
        3, [task(1, 1e6, final=True), task(2, 2e7, final=True)], [helpers.message(0, 1, 1000, needed_by=(0,))]
    )
    net = Network.mesh(["d0", "d1", "d2"], 1 * MBPS, 0.0)
    box = Host("box", 1)
    tl = simulate(wl, [DeviceRate(1e9, message_cpu=transit)] * 3, net, [0.0], hosts=[None, box, box])
    assert tl.message_end_s == [pytest.approx(0.013)]
    assert (tl.task_start_s, tl.task_end_s) == (
        [pytest.approx(0.020), 0.0],
        [pytest.approx(0.021), pytest.approx(0.020)],
    )
    assert all(span.cpu_s == 0 for span in tl.cpu_spans)
    assert list(transfers_table(wl, tl)[TRANSIT_COLUMN]) == [pytest.approx(0.005)]
    lumped = simulate(wl, [DeviceRate(1e9, message_cpu=as_cpu)] * 3, net, [0.0], hosts=[None, box, box])
    assert (lumped.message_end_s, lumped.task_start_s[0]) == ([pytest.approx(0.008)], pytest.approx(0.025))


def test_a_transit_in_proportion_to_the_wire_time_follows_the_link_rate() -> None:
    # A transit line of 0.1 ms plus 5 % of the wire time. 2,000 bytes take 16 ms at 1 Mbit/s: they arrive
    # 0.1 + 0.8 ms later, at 16.9 ms; at 4 Mbit/s they take 4 ms and arrive 0.1 + 0.2 ms later, at 4.3 ms.
    # Over two hops (a star, 1 Mbit/s up, 4 Mbit/s down) the wire time is that of the slower: 16 ms.
    cpu = MessageCpu(transit={"dense": CostLine(0.0, 0.0, 1e-4, s_per_wire_s=0.05)})
    wl = workload(2, [], [helpers.message(0, 1, 2000, final=True)])
    for mbps, arrival_s in ((1, 0.0169), (4, 0.0043)):
        tl = simulate(wl, [DeviceRate(1e9, message_cpu=cpu)] * 2, Network.mesh(["d0", "d1"], mbps * MBPS, 0.0), [0.0])
        assert tl.message_end_s == [pytest.approx(arrival_s)]
        assert tl.transit_s == [pytest.approx(arrival_s - 2000 * 8 / (mbps * MBPS))]
    route = [Link("d0", "s", 1 * MBPS, 0.0), Link("s", "d1", 4 * MBPS, 0.0)]
    assert wire_seconds(2000, route) == pytest.approx(0.016)


def test_without_message_costs_the_transfers_table_keeps_its_columns() -> None:
    wl = workload(2, [task(0)], [helpers.message(0, 1, 1000, after=0, final=True)])
    tl = simulate(wl, [DeviceRate(1e9)] * 2, Network.mesh(["d0", "d1"], 1 * MBPS, 0.0), [0.0])
    assert tl.cpu_spans == []
    assert "send_cpu_s" not in transfers_table(wl, tl)


def test_two_processes_on_one_core_double_a_layers_time() -> None:
    # Processor sharing: two 1 s tasks at once on one core each run at half speed and end at 2 s (fifo:
    # 1 s and 2 s); on two cores each ends at 1 s; three on two cores each at 2/3 speed end at 1.5 s.
    tasks = [task(0, final=True), task(1, final=True)]
    net = Network.mesh(["d0", "d1", "d2"], 1 * MBPS, 0.0)
    one = Host("box", 1, "processor")
    tl = simulate(workload(2, tasks), [DeviceRate(1e9)] * 2, net, [0.0], hosts=[one, one])
    assert (tl.task_start_s, tl.task_end_s) == ([0.0, 0.0], [2.0, 2.0])
    two = Host("box", 2, "processor")
    tl = simulate(workload(2, tasks), [DeviceRate(1e9)] * 2, net, [0.0], hosts=[two, two])
    assert tl.task_end_s == [1.0, 1.0]
    three = [task(0, final=True), task(1, final=True), task(2, final=True)]
    tl = simulate(workload(3, three), [DeviceRate(1e9)] * 3, net, [0.0], hosts=[two, two, two])
    assert tl.task_end_s == [pytest.approx(1.5)] * 3


def test_a_job_that_starts_later_shares_the_core_from_then_on() -> None:
    # d0 runs a 1 s task from 0; d1's 1 s task starts at 0.5, when the message it needs arrives. From 0.5
    # both run at half speed: d0 has 0.5 s of work left and ends at 1.5; d1 has done 0.5 s of work by then,
    # runs alone and ends at 2.0.
    one = Host("box", 1, "processor")
    msg = helpers.message(2, 1, 62_500, needed_by=(1,))  # from d2 (own machine): 0.5 s at 1 Mbit/s
    wl = workload(3, [task(0, final=True), task(1, final=True)], [msg])
    net = Network.mesh(["d0", "d1", "d2"], 1 * MBPS, 0.0)
    tl = simulate(wl, [DeviceRate(1e9)] * 3, net, [0.0], hosts=[one, one, None])
    assert tl.task_start_s == [0.0, pytest.approx(0.5)]
    assert tl.task_end_s == [pytest.approx(1.5), pytest.approx(2.0)]


def test_packets_of_messages_to_several_peers_interleave_on_the_senders_uplink() -> None:
    # A star: d0 sends 3000 bytes to d1 and 3000 to d2, both ready at 0, over d0->switch at 1 Mbit/s with
    # 1000-byte packets (no headers): 3 packets each, 8 ms per packet. FIFO: d1's packets leave at 8, 16,
    # 24 ms and d2's at 32, 40, 48; each is forwarded on its own switch link (8 ms): d1's message arrives
    # at 32 ms, d2's at 56. Interleaved: d1, d2, d1, d2, d1, d2 reach the switch at 8, 16, ..., 48 ms; d1's
    # last (at 40) arrives at 48 ms, d2's last (at 48) at 56 ms.
    protocol = Protocol(mtu_bytes=1000 - 14, packet_header_bytes=0)
    net = Network.build(["d0", "d1", "d2"], "star", 1 * MBPS, 0.0, protocol=protocol)
    msgs = [helpers.message(0, 1, 3000, final=True), helpers.message(0, 2, 3000, final=True)]
    wl = workload(3, [], msgs)
    fifo = simulate(wl, [DeviceRate(1e9)] * 3, net, [0.0])
    assert fifo.message_end_s == [pytest.approx(0.032), pytest.approx(0.056)]
    mixed = simulate(wl, [DeviceRate(1e9)] * 3, net, [0.0], interleave=True)
    assert mixed.message_end_s == [pytest.approx(0.048), pytest.approx(0.056)]
    assert mixed.message_start_s == [0.0, pytest.approx(0.008)]
    uplink = [(h.message, h.start_s) for h in mixed.hops if h.link.name == "d0->switch"]
    assert [m for m, _ in sorted(uplink, key=lambda x: x[1])] == [0, 1, 0, 1, 0, 1]


def test_interleaving_changes_nothing_on_dedicated_links() -> None:
    protocol = Protocol(mtu_bytes=1000 - 14, packet_header_bytes=0)
    net = Network.build(["d0", "d1", "d2"], "mesh", 1 * MBPS, 0.001, protocol=protocol)
    msgs = [helpers.message(0, 1, 3000, final=True), helpers.message(0, 2, 5000, final=True)]
    wl = workload(3, [], msgs)
    plain = simulate(wl, [DeviceRate(1e9)] * 3, net, [0.0])
    mixed = simulate(wl, [DeviceRate(1e9)] * 3, net, [0.0], interleave=True)
    assert mixed.message_end_s == plain.message_end_s


def test_runtime_times_fall_back_from_shape_to_kind_to_op_to_pooled() -> None:
    own = {"conv/k9/g1": CostLine(1e-9, 0.0, 0.0), "conv": CostLine(2e-9, 0.0, 0.0)}
    pooled = {"linear": CostLine(0.0, 1e-6, 0.0), "*": CostLine(4e-9, 0.0, 0.0)}
    times = RuntimeTimes({("c1", "conv", 1000, 10): 0.5}, (own, pooled))
    assert times.lookup("c1", "conv", 1000.0, 10, "conv/k9/g1") == (0.5, "table")
    assert times.lookup("c2", "conv", 1000.0, 10, "conv/k9/g1") == (pytest.approx(1e-6), "fit")
    assert times.lookup("c3", "conv", 1000.0, 10, "conv/k1/g1") == (pytest.approx(2e-6), "fit")  # the op's fit
    assert times.lookup("fc", "linear", 1000.0, 10, "linear") == (pytest.approx(1e-5), "fit")  # pooled
    assert times.lookup("a", "add", 0.0, 10, "add") == (0.0, "fit")  # pooled "*": 0 FLOPs


def test_a_layer_measured_in_another_split_scales_with_its_units() -> None:
    # d0 ran c1 at 1 MFLOP in 2 ms; d1 ran c1 at 1 MFLOP in 4 ms and the add a over 1,000 bytes in 1 ms.
    def entry(layer: str, op: str, flops: float, nbytes: int, cpu_s: float) -> ComputeEntry:
        return ComputeEntry(layer, op, op, flops, nbytes, cpu_s, cpu_s, 1)

    devices = (
        DeviceCompute("d0", (entry("c1", "conv", 1e6, 0, 0.002),), {}),
        DeviceCompute("d1", (entry("c1", "conv", 1e6, 0, 0.004), entry("a", "add", 0.0, 1000, 0.001)), {}),
    )
    profile = RuntimeProfile("s", "m", 1, {}, Sharing(2, 1), devices, {"*": CostLine(0.0, 0.0, 0.5)}, {}, {})
    d0, new = assemble.runtime_times(profile, "d0"), assemble.runtime_times(profile, "d9")
    assert d0.lookup("c1", "conv", 1e6, 0) == (0.002, "table")
    assert d0.lookup("c1", "conv", 3e6, 0) == (pytest.approx(0.006), "scaled")  # its own 2 ns per FLOP
    assert d0.lookup("a", "add", 0.0, 500) == (pytest.approx(0.0005), "scaled")  # d1's 1 us per byte
    assert new.lookup("c1", "conv", 3e6, 0) == (pytest.approx(0.009), "scaled")  # median of 2 and 4 ns per FLOP
    assert d0.lookup("c3", "conv", 3e6, 0) == (0.5, "fit")  # a layer nobody ran: the fits


def test_a_layer_measured_in_another_split_scales_along_its_solo_curve() -> None:
    # Alone, c1 takes 1 ms at 1 MFLOP and 1.5 ms at 2 MFLOP (a fixed part: twice the FLOPs, 1.5 x the time).
    # d0 ran c1 at 1 MFLOP in 3 ms (3 x its solo time), d1 at 2 MFLOP in 6 ms (4 x). d0 at 2 MFLOP: its own
    # 3 x 1.5 ms = 4.5 ms (per FLOP: 6 ms); a new device at 1.5 MFLOP: the median factor 3.5 x the curve's
    # 1.25 ms = 4.375 ms; at 4 MFLOP, past the curve, along its last segment: 1.5 + 2 * 0.5 = 2.5 ms solo.
    def entry(flops: float, cpu_s: float) -> ComputeEntry:
        return ComputeEntry("c1", "conv", "conv", flops, 0, cpu_s, cpu_s, 1)

    devices = (DeviceCompute("d0", (entry(1e6, 0.003),), {}), DeviceCompute("d1", (entry(2e6, 0.006),), {}))
    curve = SoloCurve("c1", "conv", (1e6, 2e6), (0.001, 0.0015))
    profile = RuntimeProfile("s", "m", 1, {}, Sharing(2, 1), devices, {}, {}, {}, {}, (curve,))
    d0, new = assemble.runtime_times(profile, "d0"), assemble.runtime_times(profile, "d9")
    assert d0.lookup("c1", "conv", 2e6, 0) == (pytest.approx(0.0045), "scaled")
    assert new.lookup("c1", "conv", 1.5e6, 0) == (pytest.approx(0.004375), "scaled")
    assert d0.lookup("c1", "conv", 4e6, 0) == (pytest.approx(3 * 0.0025), "scaled")


def test_messages_on_one_connection_keep_their_order_when_interleaving() -> None:
    # d0 sends two 3000-byte messages to d1 (one TCP connection) and one to d2, all ready at 0, over the
    # star's d0->switch uplink (1 Mbit/s, 1000-byte packets: 8 ms each). Turns go by connection: d1's
    # first message, then d2's, packet by packet (d1 a, d2, d1 a, d2, d1 a, d2: 8 ms each, to 48 ms); d1's
    # second message follows alone (56, 64, 72 ms). Each arrives 8 ms after its last packet reached the
    # switch: 48, 80 and 56 ms. Interleaved by message, d1's second would have shared the link from the start.
    protocol = Protocol(mtu_bytes=1000 - 14, packet_header_bytes=0)
    net = Network.build(["d0", "d1", "d2"], "star", 1 * MBPS, 0.0, protocol=protocol)
    msgs = [helpers.message(0, 1, 3000, final=True), helpers.message(0, 1, 3000, final=True)]
    msgs.append(helpers.message(0, 2, 3000, final=True))
    mixed = simulate(workload(3, [], msgs), [DeviceRate(1e9)] * 3, net, [0.0], interleave=True)
    assert mixed.message_end_s == [pytest.approx(0.048), pytest.approx(0.080), pytest.approx(0.056)]


def test_a_multicast_payload_takes_turns_apart_from_any_connection() -> None:
    # A shared medium at 1 Mbit/s, 1000-byte packets (8 ms each): messages 0 and 1 are one payload from d0
    # to d1 and d2 (multicast: 3 packets once), message 2 another 3000-byte tensor from d0 to d1. Turns
    # alternate: payload, m2, payload, m2, payload, m2: the payload ends at 40 ms, m2 at 48 ms (the payload's
    # message numbers (0, 1) must not be taken for the d0 -> d1 connection, which would queue them FIFO).
    protocol = Protocol(mtu_bytes=1000 - 14, packet_header_bytes=0)
    msgs = [helpers.message(0, 1, 3000, final=True, tensor="a"), helpers.message(0, 2, 3000, final=True, tensor="a")]
    msgs.append(helpers.message(0, 1, 3000, final=True, tensor="b"))
    net = Network.build(["d0", "d1", "d2"], "shared", 1 * MBPS, 0.0, protocol=protocol)
    tl = simulate(workload(3, [], msgs), [DeviceRate(1e9)] * 3, net, [0.0], multicast=True, interleave=True)
    assert tl.message_end_s == [pytest.approx(0.040), pytest.approx(0.040), pytest.approx(0.048)]


def test_a_task_after_its_device_idled_takes_the_wake_curves_extra_time() -> None:
    # Wake curve: 0.1 ms after 10 ms of idling, 0.5 ms after 100 ms (linear between, from 0 at none).
    # d0's first task (1 ms, no task before: the last point, 0.5 ms) ends at 1.5 ms and sends 10,000 bytes
    # at 1 Mbit/s (80 ms): they arrive at 81.5 ms. d1's first task also ends at 1.5 ms; its second waits
    # for the message, idle for 80 ms: 0.1 + 0.4 * 70 / 90 = 0.4111 ms more, so it ends at 82.9111 ms; its
    # third follows at once (no idling, nothing more) and ends at 83.9111 ms.
    wake = WakeCurve((0.01, 0.1), (1e-4, 5e-4))
    msg = helpers.message(0, 1, 10_000, after=0, needed_by=(2,))
    tasks = [task(0, 1e6, layer="a"), task(1, 1e6, layer="b"), task(1, 1e6, layer="c"), task(1, 1e6, True, "e")]
    wl = workload(2, tasks, [msg])
    tl = simulate(wl, [DeviceRate(1e9, wake=wake)] * 2, Network.mesh(["d0", "d1"], 1 * MBPS, 0.0), [0.0])
    extra = 1e-4 + 4e-4 * 70 / 90
    assert tl.task_end_s == [pytest.approx(x) for x in (0.0015, 0.0015, 0.0815 + 0.001 + extra, 0.0825 + 0.001 + extra)]
    table = compute_table(wl, tl)  # visible in compute.csv, as part of the task's time, and in the trace
    assert list(table[WAKE_COLUMN]) == [pytest.approx(x) for x in (5e-4, 5e-4, extra, 0.0)]
    traced = [e["args"]["wake_s"] for e in chrome_trace(wl, tl)["traceEvents"] if e.get("cat") == "compute"]
    assert traced == [pytest.approx(x) for x in (5e-4, 5e-4, extra, 0.0)]
    assert WAKE_COLUMN not in compute_table(
        wl, simulate(wl, [DeviceRate(1e9)] * 2, Network.mesh(["d0", "d1"], 1 * MBPS, 0.0), [0.0])
    )


def test_a_layer_measured_in_three_splits_scales_along_its_solo_curve_beyond_a_fixed_part() -> None:
    # Alone, c1 takes 1, 1.5 and 2.5 ms at 1, 2 and 4 MFLOP. Measured in a run: 3, 4 and 6 ms, i.e. 1 ms
    # fixed plus twice the solo time (the line through the three: slope 2, 1 ms). A new device at 3 MFLOP
    # (solo 2 ms) takes 1 + 2 * 2 = 5 ms; per measured/solo ratio (3, 2.67, 2.4: median 2.67) it would be
    # 5.33 ms. d0, measured at 1 MFLOP, at 2 MFLOP: its own 1 ms beyond the line plus 2 * 1.5 = 4 ms.
    def entry(flops: float, cpu_s: float) -> ComputeEntry:
        return ComputeEntry("c1", "conv", "conv", flops, 0, cpu_s, cpu_s, 1)

    devices = tuple(
        DeviceCompute(f"d{i}", (entry(flops, cpu),), {})
        for i, (flops, cpu) in enumerate(((1e6, 3e-3), (2e6, 4e-3), (4e6, 6e-3)))
    )
    curve = SoloCurve("c1", "conv", (1e6, 2e6, 4e6), (0.001, 0.0015, 0.0025))
    profile = RuntimeProfile("s", "m", 1, {}, Sharing(3, 1), devices, {}, {}, {}, {}, (curve,))
    assert assemble.solo_slope([e for d in devices for e in d.entries], {("c1", "conv"): curve}) == pytest.approx(2.0)
    assert assemble.runtime_times(profile, "d9").lookup("c1", "conv", 3e6, 0) == (pytest.approx(0.005), "scaled")
    assert assemble.runtime_times(profile, "d0").lookup("c1", "conv", 2e6, 0) == (pytest.approx(0.004), "scaled")


def test_a_task_waiting_for_a_shared_core_wakes_from_when_it_gets_the_core() -> None:
    # d0 and d1 share one core (fifo); wake curve: 0.1 ms per ms idled, 1 ms from 10 ms on (a first task:
    # 1 ms). d0's a (1 ms, first: +1 ms) runs 0-2 ms; d1's b waits for the core, then 2-4 ms (first: +1 ms);
    # d0's d, queued at 2 ms, gets the core at 4 ms, idle 2 ms: +0.2 ms, 4-5.2 ms; d1's c, idle 1.2 ms since
    # b ended: +0.12 ms, 5.2-6.32 ms. (Taken when the core is requested, d would have idled 0 ms.)
    wake = WakeCurve((0.01,), (1e-3,))
    tasks = [task(0, 1e6, layer="a"), task(1, 1e6, layer="b"), task(0, 1e6, True, "d"), task(1, 1e6, True, "c")]
    box = Host("box", 1)
    tl = simulate(
        workload(2, tasks),
        [DeviceRate(1e9, wake=wake)] * 2,
        Network.mesh(["d0", "d1"], MBPS, 0.0),
        [0.0],
        hosts=[box, box],
    )
    assert tl.task_end_s == [pytest.approx(x) for x in (0.002, 0.004, 0.0052, 0.00632)]
    assert tl.task_wake_s == [pytest.approx(x) for x in (1e-3, 1e-3, 2e-4, 1.2e-4)]


def test_a_layer_cheaper_than_the_line_scales_in_proportion_to_its_curve() -> None:
    # With a slope of 2: c1 measured at 3 ms where it takes 1 ms alone is 1 ms beyond the line (d0's own
    # part; d1's 2 ms: the median for another device is 1.5 ms); c2 measured at 1.5 ms where it takes 1 ms
    # alone lies below the line (-0.5 ms): scaled in proportion to its curve, 1.5 x 1.6 ms = 2.4 ms at twice
    # the FLOPs, not 2 x 1.6 ms = 3.2 ms.
    def entry(layer: str, cpu_s: float) -> ComputeEntry:
        return ComputeEntry(layer, "conv", "conv", 1e6, 0, cpu_s, cpu_s, 1)

    curves = {(c, "conv"): SoloCurve(c, "conv", (1e6, 2e6), (0.001, 0.0016)) for c in ("c1", "c2")}
    lines = assemble._layer_lines([entry("c1", 0.003), entry("c1", 0.004), entry("c2", 0.0015)], curves, 2.0)
    assert lines[("c1", "conv")] == LayerLine(pytest.approx(0.0015), 2.0)
    assert lines[("c2", "conv")].seconds(0.0016) == pytest.approx(0.0024)
