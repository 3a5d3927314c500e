"""Counters (links, devices), critical paths and stream statistics on hand-built workloads (no torch)."""

from __future__ import annotations

import pytest

from sim.analysis import counters
from sim.analysis.critical_path import critical_path, critical_path_summary
from sim.engine.devices import DeviceRate
from tests.helpers import message, task

MBPS = 1e6


def test_link_and_device_counters_on_a_star(run) -> None:
    # d0 sends 1000 bytes to d1 and to d2 at t=0 over a 1 Mbit/s star (see test_network): the uplink
    # d0->switch carries 2000 bytes in 2 transmissions, busy 16 ms, the second waiting 8 ms; the frame
    # ends at 24 ms, so the uplink is busy 16/24 of the makespan.
    _wl, net, tl = run(
        [], [message(0, 1, 1000, final=True), message(0, 2, 1000, final=True)], topology="star", n_devices=3
    )
    links = counters.link_table(net, tl).set_index("link")
    assert links.loc["d0->switch", "bytes"] == 2000
    assert links.loc["d0->switch", "transmissions"] == 2
    assert links.loc["d0->switch", "busy_s"] == pytest.approx(0.016)
    assert links.loc["d0->switch", "wait_s"] == pytest.approx(0.008)
    assert links.loc["d0->switch", "utilisation"] == pytest.approx(16 / 24)
    assert links.loc["switch->d2", "busy_s"] == pytest.approx(0.008)
    assert links.loc["d1->switch", "bytes"] == 0  # idle links are listed too
    assert len(links) == 6


def test_device_busy_and_idle_time(run) -> None:
    # d0: 2 ms of compute, then 1000 bytes (8 ms) to d1, which computes 3 ms: makespan 13 ms.
    wl, _net, tl = run(
        [task(0, 2e6), task(1, 3e6, final=True)], [message(0, 1, 1000, after=0, needed_by=(1,))], n_devices=2
    )
    devices = counters.device_table(wl, [DeviceRate(1e9)] * 2, tl).set_index("device")
    assert devices.loc["d0", "busy_s"] == pytest.approx(0.002)
    assert devices.loc["d0", "idle_s"] == pytest.approx(0.011)
    assert devices.loc["d1", "busy_s"] == pytest.approx(0.003)
    assert devices.loc["d1", "utilisation"] == pytest.approx(3 / 13)
    assert devices.loc["d1", "gflops"] == 1.0


def test_critical_path_of_a_two_device_chain(run) -> None:
    # The hand timeline of test_engine: t0 on d0 [0, 1.1], image d0->d1 [0, 1.5], t1 on d1 [1.5, 3.5],
    # d1->d0 [3.5, 6.0], t2 on d0 [6.0, 7.1]. t0 is off the path (it ended before the reply arrived).
    tasks = [task(0, 1e9, layer="a"), task(1, 2e9, layer="a"), task(0, 1e9, final=True, layer="b")]
    msgs = [message(0, 1, 125_000, None, (1,)), message(1, 0, 250_000, 1, (2,))]
    wl, _, tl = run(tasks, msgs, n_devices=2, latency_s=0.5, rates=[DeviceRate(1e9, 0.1), DeviceRate(1e9)])
    steps = critical_path(wl, tl, 0)
    assert [(s["kind"], s.get("device") or s.get("src")) for s in steps] == [
        ("transfer", "d0"),
        ("compute", "d1"),
        ("transfer", "d1"),
        ("compute", "d0"),
    ]
    ends = [t for s in steps for t in (s["start_s"], s["end_s"])]
    assert ends == pytest.approx([0, 1.5, 1.5, 3.5, 3.5, 6.0, 6.0, 7.1])
    summary = critical_path_summary(wl, tl)
    assert summary["compute_s"] == pytest.approx(2.0 + 1.1)
    assert summary["transfer_s"] == pytest.approx(1.5 + 2.5)
    assert summary["wait_s"] == 0


def test_critical_path_counts_queueing_as_a_wait(run) -> None:
    # On the star the second message waits 8 ms for the uplink, then takes 16 ms over two hops.
    msgs = [message(0, 1, 1000, final=True), message(0, 2, 1000, final=True)]
    wl, _, tl = run([], msgs, topology="star", n_devices=3)
    steps = critical_path(wl, tl, 0)
    assert [s["kind"] for s in steps] == ["wait", "transfer"]
    assert steps[0]["on"] == "link from d0"
    assert (steps[0]["start_s"], steps[0]["end_s"]) == pytest.approx((0.0, 0.008))
    assert (steps[1]["dst"], steps[1]["hops"], steps[1]["end_s"]) == ("d2", 2, pytest.approx(0.024))


def pipeline(run, frames: int, interval_s: float):
    """Per frame: d0 computes 2 ms, sends 375 bytes to d1 (3 ms at 1 Mbit/s), d1 computes 4 ms (final)."""
    tasks, msgs = [], []
    for f in range(frames):
        tasks += [task(0, 2e6, frame=f), task(1, 4e6, final=True, frame=f)]
        msgs.append(message(0, 1, 375, after=2 * f, needed_by=(2 * f + 1,), frame=f))
    return run(tasks, msgs, n_devices=2, arrivals=[f * interval_s for f in range(frames)])


def test_saturated_stream_throughput_is_one_over_the_slowest_stage(run) -> None:
    # All frames at once: d1 (4 ms) is the slowest stage, so frames leave every 4 ms: 250 frames/s.
    # Frame f is done at 2 + 3 + 4 + 4f ms.
    _, _, tl = pipeline(run, 6, 0.0)
    assert tl.frame_done_s == pytest.approx([0.009 + 0.004 * f for f in range(6)])
    stats = counters.stream_stats(tl)
    assert stats["throughput_fps"] == pytest.approx(1 / 0.004)
    assert stats["keeps_up"] is False


def test_stream_that_keeps_up_has_constant_latency(run) -> None:
    # A frame every 5 ms > 4 ms: each frame finds the system free, latency 9 ms, results every 5 ms.
    _, _, tl = pipeline(run, 5, 0.005)
    assert tl.latency_s == pytest.approx([0.009] * 5)
    stats = counters.stream_stats(tl)
    assert stats["keeps_up"] is True
    assert stats["throughput_fps"] == pytest.approx(200.0)
    assert stats["offered_fps"] == pytest.approx(200.0)
    assert stats["latency_growth_s_per_frame"] == pytest.approx(0.0, abs=1e-12)


def test_stream_that_cannot_keep_up_is_flagged_and_its_latency_grows(run) -> None:
    # A frame every 3 ms < 4 ms: frame f is done at 9 + 4f ms, arrived at 3f: latency 9 + f ms.
    _, _, tl = pipeline(run, 5, 0.003)
    assert tl.latency_s == pytest.approx([0.009 + 0.001 * f for f in range(5)])
    stats = counters.stream_stats(tl)
    assert stats["keeps_up"] is False
    assert stats["throughput_fps"] == pytest.approx(250.0)
    assert stats["latency_growth_s_per_frame"] == pytest.approx(0.001)


def test_single_frame_throughput_is_one_over_latency(run) -> None:
    _, _, tl = pipeline(run, 1, 0.0)
    stats = counters.stream_stats(tl)
    assert stats["throughput_fps"] == pytest.approx(1 / 0.009)
    assert stats["keeps_up"] is None
