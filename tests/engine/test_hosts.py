"""Devices sharing a host's cores and per-message software costs, against closed forms (hand-built
workloads, no torch). Devices compute at 1 GFLOP/s, so a task of 1e9 FLOPs takes 1 s."""

from __future__ import annotations

import pytest

from sim.config.load import parse_scenario
from sim.engine import assemble
from sim.engine.devices import DeviceRate, Host
from sim.engine.network import Network
from sim.engine.simulate import simulate
from sim.errors import UserError
from sim.workload.types import Task, Workload
from tests import helpers

MBPS = 1e6


def task(device: int, flops: float = 1e9, final: bool = False) -> Task:
    return Task(0, f"t{device}", device, flops, "conv", final)


def run(n: int, tasks, messages=(), rates=None, hosts=()):
    names = tuple(f"d{i}" for i in range(n))
    wl = Workload(names, 0, 0, 1, tuple(tasks), tuple(messages))
    net = Network.build(list(names), "mesh", 1 * MBPS, 0.0)
    return simulate(wl, rates or [DeviceRate(1e9)] * n, net, [0.0], hosts=hosts)


def test_devices_on_a_one_core_host_take_turns() -> None:
    # Two 1 s tasks ready at 0: apart, both end at 1 s; on one core the second waits for the first.
    tasks = [task(0, final=True), task(1, final=True)]
    assert run(2, tasks).task_end_s == [1.0, 1.0]
    one = Host("box", 1)
    tl = run(2, tasks, hosts=[one, one])
    assert (tl.task_start_s, tl.task_end_s) == ([0.0, 1.0], [1.0, 2.0])
    assert tl.latency_s == [2.0]


def test_a_host_with_as_many_cores_as_devices_changes_nothing() -> None:
    two = Host("box", 2)
    tasks = [task(0, final=True), task(1, final=True), task(2, final=True)]
    tl = run(3, tasks, hosts=[two, two, None])  # d2 has a machine of its own
    assert tl.task_end_s == [1.0, 1.0, 1.0]


def test_send_and_receive_costs_add_to_a_message_path() -> None:
    # d0 computes 1 s, pays 2 ms to send 1000 bytes (8 ms at 1 Mbit/s, no latency), d1 pays 3 ms to
    # receive it, then computes 1 s: d1 starts at 1 + 0.002 + 0.008 + 0.003.
    msg = helpers.message(0, 1, 1000, after=0, needed_by=(1,))
    rates = [DeviceRate(1e9, send_overhead_s=0.002), DeviceRate(1e9, recv_overhead_s=0.003)]
    tl = run(2, [task(0), task(1, final=True)], [msg], rates)
    assert tl.message_ready_s == [pytest.approx(1.002)]
    assert tl.message_end_s == [pytest.approx(1.010)]
    assert tl.task_start_s[1] == pytest.approx(1.013)
    assert tl.latency_s == [pytest.approx(2.013)]


def test_sending_delays_the_senders_next_task() -> None:
    # d0's first task releases two messages: 1 ms each to send, one after the other; its next task
    # starts at 1.002. The second message is ready at 1.002 and queues behind the first (8 ms each).
    msgs = [helpers.message(0, 1, 1000, after=0), helpers.message(0, 1, 1000, after=0, final=True)]
    rates = [DeviceRate(1e9, send_overhead_s=0.001), DeviceRate(1e9)]
    tl = run(2, [task(0), task(0, final=True)], msgs, rates)
    assert tl.task_start_s[1] == pytest.approx(1.002)
    assert tl.message_ready_s == [pytest.approx(1.001), pytest.approx(1.002)]
    assert tl.message_end_s == [pytest.approx(1.009), pytest.approx(1.017)]


def test_receiving_takes_a_core_and_counts_at_the_sink() -> None:
    # d1 sends its 1000-byte output to the sink d0 (8 ms); d0 takes 5 ms to receive it: the frame is done
    # at 1 + 0.008 + 0.005. Two messages for one task are received one after the other, in arrival order.
    out = helpers.message(1, 0, 1000, after=0, final=True)
    rates = [DeviceRate(1e9, recv_overhead_s=0.005), DeviceRate(1e9)]
    assert run(2, [task(1)], [out], rates).latency_s == [pytest.approx(1.013)]
    both = [helpers.message(0, 1, 1000, after=None, needed_by=(0,)), helpers.message(2, 1, 2000, needed_by=(0,))]
    rates = [DeviceRate(1e9), DeviceRate(1e9, recv_overhead_s=0.005), DeviceRate(1e9)]
    wl_tasks = [task(1, final=True)]
    # the image from d0 (source) arrives at 8 ms; d2's message (after=None also: its frame's arrival, from d2)
    # arrives at 16 ms on its own link d2->d1. Receive 8..13 ms and 16..21 ms, then compute 1 s.
    tl = run(3, wl_tasks, both, rates)
    assert tl.message_end_s == [pytest.approx(0.008), pytest.approx(0.016)]
    assert tl.task_start_s == [pytest.approx(0.021)]


def test_scenario_hosts_reach_the_engine() -> None:
    data = helpers.scenario_dict(3, hosts=[{"name": "box", "cores": 2}])
    data["devices"][0].update(host="box", send_overhead_us=200)
    data["devices"][1].update(host="box", recv_overhead_us=50)
    sc = parse_scenario(data)
    assert assemble.hosts(sc) == [Host("box", 2), Host("box", 2), None]
    rates = assemble.device_rates(sc)
    assert (rates[0].send_overhead_s, rates[1].recv_overhead_s) == (pytest.approx(2e-4), pytest.approx(5e-5))


@pytest.mark.parametrize(
    ("hosts", "device", "error"),
    [
        ([], {"host": "box"}, "devices.0..host: unknown host 'box'; hosts are none"),
        ([{"name": "a", "cores": 1}], {"host": "b"}, "devices.0..host: unknown host 'b'; hosts are a"),
        ([{"name": "a", "cores": 0}], {}, "hosts.0..cores"),
        ([{"name": "a", "cores": 1}, {"name": "a", "cores": 2}], {}, "duplicate host name 'a'"),
        ([], {"send_overhead_us": -1}, "send_overhead_us"),
    ],
)
def test_bad_hosts_are_refused(hosts: list, device: dict, error: str) -> None:
    data = helpers.scenario_dict(2, hosts=hosts)
    data["devices"][0].update(device)
    with pytest.raises(UserError, match=error):
        parse_scenario(data)
