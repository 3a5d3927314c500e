"""Runtime profiles (``dsim profile --execute``): undoing processor sharing, reading back, predicting.

The fast tests profile a *simulated* run whose CPU times are known (devices at 1 GFLOP/s on a 2-core host
shared by 4 devices): the profile must recover them, and predict the run back. The slow test profiles a
real loopback run of one configuration and validates another."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from sim.analysis.result import RunResult
from sim.analysis.tables import compute_table, transfers_table
from sim.cli import main
from sim.config.load import parse_scenario
from sim.engine import assemble
from sim.engine.devices import DeviceRate, MessageCpu
from sim.engine.simulate import Timeline, simulate
from sim.errors import UserError
from sim.pipeline.evaluate import evaluate
from sim.pipeline.prepare import prepare
from sim.testbed.measure import TASK_CPU_COLUMN
from sim.testbed.runtime_profile import cpu_seconds, profile_from_runs, wake_gaps
from sim.testbed.validate import validate
from sim.workload.runtime import CostLine, SoloCurve, WakeCurve, read_runtime_profile, write_runtime_profile
from sim.workload.types import Task, Workload
from tests import helpers
from tests.helpers import scenario_dict


def test_cpu_seconds_undo_processor_sharing() -> None:
    # On one core: a [0, 3] alone for 1 s, with b [1, 2] for 1 s (half each), alone again for 1 s: 2.5 s.
    assert cpu_seconds([(0.0, 3.0), (1.0, 2.0)], cores=1) == [2.5, 0.5]
    assert cpu_seconds([(0.0, 3.0), (1.0, 2.0)], cores=2) == [3.0, 1.0]  # a core each: nothing shared


@pytest.mark.parametrize(("previous_end_s", "gaps"), [(1.0, {1: 1.0}), (4.5, {})])
def test_the_wake_gap_goes_to_the_last_message_a_task_waited_for(previous_end_s: float, gaps: dict) -> None:
    # d1's second task needs m0 (arrives at 2 s) and m1 (at 4 s) and starts at 5 s: when d1 was idle (its
    # first task ended at 1 s) the 1 s after m1's arrival is m1's; when it was busy until 4.5 s, nobody's.
    tasks = (Task(0, "a", 1, 1.0, "conv", False), Task(0, "b", 1, 1.0, "conv", True))
    msgs = (helpers.message(0, 1, 100, needed_by=(1,)), helpers.message(2, 1, 100, needed_by=(1,)))
    wl = Workload(("d0", "d1", "d2"), 0, 1, 1, tasks, msgs)
    tl = Timeline([0.0, 5.0], [previous_end_s, 6.0], [0.0, 0.0], [2.0, 4.0], [1, 1])
    assert wake_gaps(wl, RunResult(None, None, {}, wl, tl)) == gaps  # type: ignore[arg-type]


def _shared(tmp_path: Path, **extra: object):
    """4 devices at 1 GFLOP/s sharing 2 cores, on links as fast as loopback (100 Gbit/s, no delay)."""
    data = scenario_dict(
        4,
        inputs={"dataset": "synthetic", "batch_size": 1, "frames": 2},
        hosts=[{"name": "box", "cores": 2, "sharing": "processor"}],
        **extra,
    )
    for d in data["devices"]:
        d.update(gflops=1.0, host="box")
    data["network"] = {"topology": "mesh", "bandwidth_mbps": 1e5, "latency_ms": 0}
    return data


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory):
    """A simulated run standing in for a measured one (CPU times known: FLOPs / 1e9), and its profile."""
    tmp = tmp_path_factory.mktemp("runtime")
    sc = parse_scenario(_shared(tmp), origin="test")
    prep = prepare(sc)
    run = evaluate(sc, prep.built)
    run.record = replace(run.record, execution={"network": "simulated", "latency_applied": False, "loadavg": None})
    profile = profile_from_runs(sc, prep.workload, [run], shape=False, cores=2)
    return tmp, sc, prep, run, profile


def test_the_profile_of_a_shared_run_recovers_each_tasks_cpu_time(simulated) -> None:
    profile = simulated[-1]
    assert (profile.sharing.processes, profile.sharing.cores) == (4, 2)
    walls = [e.wall_s for d in profile.devices for e in d.entries]
    for d in profile.devices:
        for e in d.entries:
            assert e.cpu_s == pytest.approx(e.flops / 1e9, rel=1e-9, abs=1e-12)
    # sharing made some tasks slower than their CPU time: the profile is not the wall time
    assert sum(walls) > sum(e.flops for d in profile.devices for e in d.entries) / 1e9 * 1.01


def test_a_measured_task_cpu_time_is_taken_as_it_is(simulated) -> None:
    # A compute table with the testbed's cpu_s column (here a third of each task's FLOPs / 1e9, unlike the
    # processor-sharing estimate) gives the entries' CPU seconds as they were measured.
    _tmp, sc, prep, run, _profile = simulated
    compute = run.compute.copy()
    compute[TASK_CPU_COLUMN] = compute["flops"] / 3e9
    measured = RunResult(run.transfers, compute, run.record, prep.workload, run.timeline)
    profile = profile_from_runs(sc, prep.workload, [measured], shape=False, cores=2)
    for d in profile.devices:
        for e in d.entries:
            assert e.cpu_s == pytest.approx(e.flops / 3e9, rel=1e-12)


def test_a_profile_written_and_read_back_gives_the_same_predictions(simulated) -> None:
    tmp, sc, prep, run, profile = simulated
    path = tmp / "runtime.json"
    write_runtime_profile(path, profile)
    assert read_runtime_profile(path) == profile
    data = _shared(tmp, profile=str(path))
    for d in data["devices"]:
        d.pop("gflops")  # every rate from the profile
    from_file = evaluate(parse_scenario(data, origin="test"), prep.built)
    rates = [
        DeviceRate(
            1e9,
            times=assemble.runtime_times(profile, name),
            message_cpu=MessageCpu(profile.send, profile.recv, profile.transit),
        )
        for name in prep.workload.devices
    ]
    in_memory = simulate(prep.workload, rates, assemble.network(sc), [0.0, 0.0], hosts=assemble.hosts(sc))
    assert from_file.timeline.task_end_s == in_memory.task_end_s
    spans = from_file.timeline.cpu_spans  # the receive costs are charged, and totalled in summary.json
    assert from_file.summary["message_cpu_s"]["recv"] == pytest.approx(sum(x.cpu_s for x in spans if x.side == "recv"))
    assert from_file.timeline.transit_s == in_memory.transit_s and max(in_memory.transit_s) > 0
    # and the profile of a run predicts that run back: its CPU times were recovered exactly; its messages'
    # transit (under 1 us each at 100 Gbit/s) is counted twice, as wire and as transit delay
    assert from_file.summary["latency_s"] == pytest.approx(run.summary["latency_s"], abs=5e-6)


def test_waiting_behind_other_messages_on_a_link_is_not_a_receive_cost(tmp_path: Path) -> None:
    # A simulated run on 2 Mbit/s links (no CPU cost for any message) in which messages queue behind each
    # other on their links. The engine replays that wait itself, so the
    # profile must find no receive time beyond the wire, although the messages' transits exceed their wire
    # times alone.
    data = _shared(tmp_path)
    data["network"] = {"topology": "mesh", "bandwidth_mbps": 2, "latency_ms": 1}
    sc = parse_scenario(data, origin="test")
    prep = prepare(sc)
    run = evaluate(sc, prep.built)
    run.record = replace(run.record, execution={"network": "simulated", "latency_applied": True, "loadavg": None})
    tl, net = run.timeline, assemble.network(sc)
    tl.message_start_s = list(tl.message_ready_s)  # as the testbed records it: when the bytes go to the socket
    alone = [sum(link.transmit_s(msg.bytes) + link.latency_s for link in net.route(*(prep.workload.devices[i]
             for i in (msg.src, msg.dst)))) for msg in prep.workload.messages]  # fmt: skip
    transit = [end - start for start, end in zip(tl.message_start_s, tl.message_end_s)]
    assert max(t - a for t, a in zip(transit, alone)) > 1e-3  # some message waited a millisecond or more
    profile = profile_from_runs(sc, prep.workload, [run], shape=True, cores=2)
    for line in [*profile.recv.values(), *profile.transit.values()]:
        assert line.overhead_s == pytest.approx(0.0, abs=1e-9)
        assert line.s_per_byte == pytest.approx(0.0, abs=1e-12)


def test_a_shaped_profile_fits_the_transit_to_the_wire_time(tmp_path: Path) -> None:
    # A simulated run on 2 Mbit/s links whose messages each arrive 0.2 ms plus 4 % of their wire time after
    # the wire (a transit line the engine applies): the profile recovers that line, per second on the
    # wire, not per byte, so that at 8 Mbit/s a message's transit is a quarter of its part per wire time.
    data = _shared(tmp_path)
    data["network"] = {"topology": "mesh", "bandwidth_mbps": 2, "latency_ms": 0}
    sc = parse_scenario(data, origin="test")
    prep = prepare(sc)
    line = CostLine(0.0, 0.0, 2e-4, s_per_wire_s=0.04)
    rates = [DeviceRate(1e12, message_cpu=MessageCpu(transit={"dense": line}))] * len(prep.workload.devices)
    tl = simulate(prep.workload, rates, assemble.network(sc), [0.0, 0.0])
    tl.message_start_s = list(tl.message_ready_s)  # as the testbed records it: when the bytes go to the socket
    run = evaluate(sc, prep.built)
    run.timeline, run.transfers = tl, run.transfers.assign(end_s=tl.message_end_s)
    run.record = replace(run.record, execution={"network": "simulated", "latency_applied": True, "loadavg": None})
    profile = profile_from_runs(sc, prep.workload, [run], shape=True, cores=2)
    fitted = profile.transit["dense"]
    assert fitted.s_per_wire_s == pytest.approx(0.04, rel=1e-3) and fitted.s_per_byte == 0
    assert fitted.overhead_s == pytest.approx(2e-4, rel=1e-3)
    cpu = MessageCpu(transit=profile.transit)
    assert cpu.transit_s("dense", 4000, wire_s=4000 * 8 / 8e6) == pytest.approx(2e-4 + 0.04 * 0.004, rel=1e-3)


def test_validate_with_a_profile_does_not_calibrate_this_machine(simulated, monkeypatch) -> None:
    # Devices marked calibrate: true, validated against a runtime profile: the profile gives every rate,
    # so this machine is not profiled first (it would raise here); the "measured" run is a simulated one.
    tmp, _sc, _prep, run, profile = simulated
    path = tmp / "for-validate.json"
    write_runtime_profile(path, profile)
    data = _shared(tmp)
    for d in data["devices"]:
        d.pop("gflops")
        d["calibrate"] = True

    def no_calibration(_sc):
        raise AssertionError("calibrated() was called")

    monkeypatch.setattr("sim.testbed.validate.calibrated", no_calibration)
    monkeypatch.setattr("sim.testbed.validate.execute", lambda *a, **k: [run])
    v = validate(parse_scenario(data, origin="test"), runtime_profile=path)
    assert v.extra["profile"]["out_of_sample"] is False
    with pytest.raises(UserError, match="--calibrate or --profile, not both"):
        validate(parse_scenario(data, origin="test"), runtime_profile=path, calibrate=True)


def test_validate_times_a_predicted_message_from_its_hand_off(tmp_path: Path, monkeypatch) -> None:
    # One frame on a 1 Mbit/s star without interleaving: a device's messages to several peers queue on its
    # uplink. validate compares each predicted message as a run measures it: from when it was ready (its
    # bytes to the socket), or, if later, when the message before it to the same peer arrived; not from its
    # first byte on the wire.
    data = scenario_dict(4, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 1})
    data["network"] = {"topology": "star", "bandwidth_mbps": 1, "latency_ms": 0}
    sc = parse_scenario(data, origin="test")
    run = evaluate(sc, prepare(sc).built)
    run.record = replace(run.record, execution={"network": "simulated", "latency_applied": False, "loadavg": None})
    monkeypatch.setattr("sim.testbed.validate.execute", lambda *a, **k: [run])
    v = validate(sc)
    t, ready = v.predicted.transfers, v.predicted.timeline.message_ready_s
    last_end: dict[tuple[str, str], float] = {}  # per connection, when its latest message arrived
    waited = 0
    for k in sorted(range(len(t)), key=lambda k: ready[k]):
        row = t.iloc[k]
        start = max(ready[k], last_end.get((row.src, row.dst), 0.0))
        last_end[(row.src, row.dst)] = row.end_s
        rows = v.table[(v.table.kind == "message") & (v.table.layer == row.layer) & (v.table.src == row.src)]
        assert rows[rows.dst == row.dst].predicted_s.iloc[0] == pytest.approx(row.end_s - start, abs=1e-12)
        waited += row.start_s - start > 1e-6
    assert waited > 0  # some waited on an uplink behind another connection's message: the two starts differ


def test_a_version_2_profile_is_read_with_its_transit_per_byte(simulated) -> None:
    tmp, *_rest, profile = simulated
    path = tmp / "v2.json"
    write_runtime_profile(path, profile)
    data = json.loads(path.read_text())
    data["version"] = 2
    for section in ("pooled", "send", "recv", "transit"):
        for line in data[section].values():
            line.pop("s_per_wire_s")
    data["transit"] = {"dense": {"s_per_flop": 0.0, "s_per_byte": 1e-8, "overhead_s": 1e-4, "points": 3}}
    path.write_text(json.dumps(data))
    line = read_runtime_profile(path).transit["dense"]
    assert line.s_per_wire_s == 0.0 and line.seconds(0.0, 10_000, wire_s=1.0) == pytest.approx(2e-4)
    assert profile.transit and all(x.s_per_wire_s == 0.0 for x in profile.transit.values())  # loopback: per byte


def test_solo_curves_are_written_read_back_and_checked(simulated) -> None:
    tmp, *_rest, profile = simulated
    path = tmp / "solo.json"
    with_curve = replace(profile, solo=(SoloCurve("conv1", "conv", (1e4, 2e4), (1e-4, 1.5e-4)),))
    write_runtime_profile(path, with_curve)
    assert read_runtime_profile(path) == with_curve
    data = json.loads(path.read_text())
    data["solo"][0]["units"] = [2e4, 1e4]
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"malformed .*solo curve of conv1: units must be increasing"):
        read_runtime_profile(path)
    data["solo"][0].update(units=[1e4, 2e4], seconds=[2e-4, 1e-4])
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"solo curve of conv1: seconds must not decrease"):
        read_runtime_profile(path)
    data["version"], data["solo"] = 3, []  # a version-3 file has no curves: per unit
    path.write_text(json.dumps({k: v for k, v in data.items() if k != "solo"}))
    assert read_runtime_profile(path).solo == ()


def test_a_missing_runtime_profile_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"profile: no such file .*dsim profile SCENARIO --execute"):
        validate(parse_scenario(_shared(tmp_path), origin="test"), runtime_profile=tmp_path / "none.json")
    (tmp_path / "other.json").write_text('{"format": "dsim-profile", "version": 1}')
    with pytest.raises(UserError, match="is not a runtime profile"):
        read_runtime_profile(tmp_path / "other.json")


@pytest.mark.slow
def test_profile_one_configuration_and_validate_another_on_loopback(tmp_path: Path, capsys) -> None:
    # Profile LeNet-5 on 2 devices (loopback), predict it on 3: the printed error of the time between
    # departures is bounded. The bound is loose (50 %): the run shares this machine's cores with whatever
    # else runs on it. Frame 0 is not bounded: a timed run's first frame still pays for waking the device
    # processes (docs/validation.md, "The first frame").
    base = scenario_dict(2, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 3})
    other = scenario_dict(3, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 3})
    for name, data in (("two", base), ("three", other)):
        data["name"] = name
        (tmp_path / f"{name}.yaml").write_text(__import__("yaml").safe_dump(data))
    profile = tmp_path / "profile.json"
    assert main(["profile", str(tmp_path / "two.yaml"), "--execute", "--repeats", "2", "--out", str(profile)]) == 0
    out = tmp_path / "val"
    assert (
        main(["validate", str(tmp_path / "three.yaml"), "--repeats", "3", "--profile", str(profile), "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "out of sample (devices 2 -> 3)" in printed
    error = float(re.search(r"between departures .* error ([-+][0-9.]+) %", printed).group(1))
    assert abs(error) <= 50.0, printed
    info = json.loads((out / "validation.json").read_text())
    assert info["profile"]["out_of_sample"] is True


def test_a_scenarios_profile_sets_rates_and_fifo_sharing(simulated) -> None:
    tmp, *_rest, profile = simulated
    path = tmp / "rates.json"
    write_runtime_profile(path, profile)
    data = _shared(tmp, profile=str(path))
    data["hosts"] = [{"name": "box", "cores": 2}]  # sharing not given: fifo, also with a runtime profile
    for d in data["devices"]:
        d.pop("gflops")
    sc = parse_scenario(data, origin="test")
    assert {h.sharing for h in assemble.hosts(sc) if h is not None} == {"fifo"}
    # the partitioner's rate: 1 / the conv fit's seconds per FLOP (the run computed at 1 GFLOP/s)
    assert assemble.compute_rates(sc) == [pytest.approx(1e9, rel=1e-6)] * 4
    data["hosts"][0]["sharing"] = "processor"
    assert {h.sharing for h in assemble.hosts(parse_scenario(data, origin="test")) if h is not None} == {"processor"}
    data["hosts"][0]["sharing"] = "round"
    with pytest.raises(UserError, match=r"hosts.0..sharing"):
        parse_scenario(data, origin="test")


def test_a_profile_takes_each_tasks_wake_up_off_its_cpu_time(simulated) -> None:
    # The simulated run again, with a wake-up after idling (0.2 ms after 0.1 ms, 1 ms after 10 ms; a first
    # task 1 ms): its tasks took longer than FLOPs / 1e9. A profile told the same curve takes each task's
    # wake-up, from its device's idle time before it in the run, off again: FLOPs / 1e9 exactly.
    _tmp, sc, prep, run, _profile = simulated
    wake = WakeCurve((1e-4, 1e-2), (2e-4, 1e-3))
    rates = [DeviceRate(1e9, wake=wake)] * len(prep.workload.devices)
    tl = simulate(prep.workload, rates, assemble.network(sc), [0.0, 0.0], hosts=assemble.hosts(sc))
    assert sum(tl.task_wake_s) > 0.004  # each device's first task alone: 1 ms
    woke = RunResult(
        transfers_table(prep.workload, tl), compute_table(prep.workload, tl), run.record, prep.workload, tl
    )
    profile = profile_from_runs(sc, prep.workload, [woke], shape=False, cores=2, wake=wake)
    assert profile.wake == wake
    for d in profile.devices:
        for e in d.entries:
            assert e.cpu_s == pytest.approx(e.flops / 1e9, rel=1e-9, abs=1e-12)
    kept = profile_from_runs(sc, prep.workload, [woke], shape=False, cores=2)  # without: the wake-ups stay in
    assert (
        sum(e.cpu_s for d in kept.devices for e in d.entries)
        > sum(e.flops for d in kept.devices for e in d.entries) / 1e9 + 0.002
    )


def test_the_wake_curve_is_written_read_back_and_checked(simulated) -> None:
    tmp, *_rest, profile = simulated
    path = tmp / "wake.json"
    with_wake = replace(profile, wake=WakeCurve((0.01, 0.1), (1e-4, 5e-4)))
    write_runtime_profile(path, with_wake)
    assert read_runtime_profile(path) == with_wake
    data = json.loads(path.read_text())
    data["wake"]["extra_s"] = [5e-4, 1e-4]
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"malformed .*wake: .*extra_s must not decrease"):
        read_runtime_profile(path)
    data["wake"] = {"gaps_s": [0.01, 0.1], "extra_s": [1e-4, float("inf")]}
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"negative or non-finite"):
        read_runtime_profile(path)
    data["version"] = 4  # a version-4 file has no wake curve: no extra time
    path.write_text(json.dumps({k: v for k, v in data.items() if k != "wake"}))
    assert read_runtime_profile(path).wake is None
