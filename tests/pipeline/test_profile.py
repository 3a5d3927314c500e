"""Compute profiles: the fit, the engine's table look-up, the file format and its errors, and ``dsim profile``
end to end (torch; the timing values themselves are never asserted, only their structure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.config.load import parse_scenario
from sim.engine import assemble
from sim.engine.devices import DeviceRate, LayerTimes
from sim.engine.network import Network
from sim.engine.simulate import simulate
from sim.errors import UserError
from sim.pipeline.calibrate import calibrated
from sim.workload.profiles import (
    DeviceProfile,
    OpFit,
    ProfileEntry,
    ProfileFile,
    fit_line,
    fit_ops,
    read_profile,
    write_profile,
)
from sim.workload.types import Task, Workload
from tests import helpers


def test_fit_line_recovers_a_line_and_keeps_coefficients_non_negative() -> None:
    # seconds = 1e-9 * flops + 0.5 ms, exactly
    slope, intercept = fit_line([1e6, 3e6, 7e6], [0.0015, 0.0035, 0.0075])
    assert (slope, intercept) == (pytest.approx(1e-9), pytest.approx(5e-4))
    assert fit_line([1e6, 2e6], [0.003, 0.001]) == (0.0, pytest.approx(0.002))  # falling: flat at the mean
    # through the origin when the intercept would be negative: slope = sum(xy)/sum(xx) = (1*1+2*3)/(1+4)
    assert fit_line([1.0, 2.0], [1.0, 3.0]) == (pytest.approx(7 / 5), 0.0)
    assert fit_line([4.0, 4.0], [2.0, 2.0]) == (pytest.approx(0.5), 0.0)  # one distinct x: through 0


def test_a_measured_shape_takes_its_median_and_another_shape_the_fit() -> None:
    times = LayerTimes({("conv1", "conv", 2_000_000, 100): 0.004}, {"conv": (1e-9, 0.001)})
    rate = DeviceRate(1e12, times=times)
    assert rate.task_s(2e6, 100, "conv", "conv1") == 0.004
    assert rate.time_source(2e6, 100, "conv", "conv1") == "table"
    assert rate.task_s(5e6, 100, "conv", "conv1") == pytest.approx(0.006)  # same layer, other shape: fit
    assert rate.time_source(5e6, 100, "conv", "conv1") == "fit"
    assert rate.task_s(1e6, 100, "linear", "fc") == pytest.approx(1e-6)  # no linear fit: the rate
    assert rate.time_source(1e6, 100, "linear", "fc") == "rate"


def test_the_engine_runs_tasks_for_their_profiled_time() -> None:
    times = LayerTimes({("L", "conv", 1000, 0): 0.25})
    wl = Workload(("a",), 0, 0, 1, (Task(0, "L", 0, 1000.0, "conv", True),), ())
    tl = simulate(wl, [DeviceRate(1e9, times=times)], Network.mesh(["a"], 1e6, 0.0), [0.0])
    assert tl.latency_s == [0.25]


def _profile(devices: tuple[str, ...] = ("d0",)) -> ProfileFile:
    entries = (
        ProfileEntry("conv1", "conv", 1e6, 10, 0.002, 0.0019, 0.0025, 5),
        ProfileEntry("conv2", "conv", 3e6, 10, 0.004, 0.0039, 0.0045, 5),
    )
    return ProfileFile(
        "t",
        "lenet5",
        1,
        {"warmup": 1, "repeats": 5, "idle_gap_ms": 0.0},
        {},
        tuple(DeviceProfile(d, 1, entries, fit_ops(entries)) for d in devices),
    )


def test_profiles_round_trip_and_bad_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    write_profile(path, _profile(("d0", "d1")))
    back = read_profile(path)
    assert back == _profile(("d0", "d1"))
    assert back.devices[0].fit == {"conv": OpFit(pytest.approx(1e-9), pytest.approx(0.001))}
    with pytest.raises(UserError, match="holds no device 'x'"):
        back.for_device("x")
    with pytest.raises(UserError, match="no such file"):
        read_profile(tmp_path / "missing.json")
    data = json.loads(path.read_text())
    for change, error in (({"version": 99}, "version 99"), ({"format": "x"}, "not a dsim profile")):
        path.write_text(json.dumps({**data, **change}))
        with pytest.raises(UserError, match=error):
            read_profile(path)
    path.write_text(json.dumps({**data, "devices": [{"device": "d0"}]}))
    with pytest.raises(UserError, match="malformed"):
        read_profile(path)


def test_a_profile_device_needs_no_gflops_and_takes_the_fit_rate(tmp_path: Path) -> None:
    write_profile(tmp_path / "p.json", _profile())
    data = helpers.scenario_dict(2)
    data["devices"][1] = {"name": "d1", "profile": str(tmp_path / "p.json")}
    sc = parse_scenario(data)
    rate = assemble.device_rates(sc)[1]
    assert rate.flops_per_s == pytest.approx(1e9)  # the conv fit: 1e-9 s per FLOP
    assert rate.task_s(3e6, 10, "conv", "conv2") == 0.004
    assert calibrated(sc).devices[1].gflops == pytest.approx(1.0)


def test_profile_and_calibrate_together_are_refused() -> None:
    data = helpers.scenario_dict(2)
    data["devices"][0] = {"name": "d0", "calibrate": True, "profile": "p.json"}
    with pytest.raises(UserError, match="give profile or calibrate: true, not both"):
        parse_scenario(data)


@pytest.mark.slow
def test_dsim_profile_times_every_task_and_a_run_uses_the_table(tmp_path: Path) -> None:
    from sim.cli import main  # torch
    from sim.pipeline.prepare import prepare
    from sim.pipeline.run import run

    scenario = tmp_path / "s.yaml"
    data = helpers.scenario_dict(2)
    scenario.write_text(json.dumps(data))
    out = tmp_path / "p.json"
    assert main(["profile", str(scenario), "--out", str(out), "--warmup", "1", "--repeats", "3"]) == 0
    profile = read_profile(out)
    workload = prepare(parse_scenario(data)).workload
    for d, name in enumerate(("d0", "d1")):
        entries = profile.for_device(name).entries
        assert len(entries) == sum(t.device == d for t in workload.tasks)
        assert all(e.repeats == 3 and 0 < e.p10_s <= e.median_s <= e.p90_s for e in entries)
    data["devices"] = [{"name": n, "profile": str(out)} for n in ("d0", "d1")]
    assert run(data).summary["compute_times"] == {
        n: {"table": 5, "scaled": 0, "fit": 0, "rate": 0} for n in ("d0", "d1")
    }
    one = tmp_path / "d0.json"  # a file of one device serves any device name
    assert main(["profile", str(scenario), "--out", str(one), "--repeats", "2", "--device", "d0"]) == 0
    assert [d.device for d in read_profile(one).devices] == ["d0"]
    data["devices"].append({"name": "d2", "profile": str(one)})  # three devices: other shapes, fitted
    counts = run(data).summary["compute_times"]
    assert counts["d2"]["table"] == 0 and counts["d2"]["fit"] == 5


@pytest.mark.parametrize(("strategy", "prepares"), [("contiguous", 1), ("balanced", 2)])
def test_calibrate_prepares_the_model_once_unless_the_partition_reads_the_rates(
    monkeypatch: pytest.MonkeyPatch, strategy: str, prepares: int
) -> None:
    """calibrate: true profiles a prepared workload; the run reuses it when its workload key is the same
    (a contiguous partition), and prepares again when the partition depends on the measured rates
    (balanced). Either way the bytes are those of a run that prepares the calibrated scenario itself."""
    import sim
    from sim.pipeline import prepare as preparing
    from sim.pipeline.evaluate import evaluate

    real, calls = preparing.prepare, []

    def counting(scenario, *args, **kwargs):
        calls.append(scenario.name)
        return real(scenario, *args, **kwargs)

    monkeypatch.setattr(preparing, "prepare", counting)
    data = helpers.scenario_dict(2, partition={"strategy": strategy}, inputs={"dataset": "synthetic"})
    data["devices"][1] = {"name": "d1", "calibrate": True}
    result = sim.run(data)
    assert len(calls) == prepares
    monkeypatch.undo()
    sc = parse_scenario(
        {
            **data,
            "devices": [data["devices"][0], {"name": "d1", "gflops": result.record.scenario["devices"][1]["gflops"]}],
        }
    )
    again = evaluate(sc, real(sc).built)
    assert again.record.bytes_total == result.record.bytes_total
    assert again.transfers["bytes"].tolist() == result.transfers["bytes"].tolist()


def test_solo_curves_time_every_layer_at_shares_of_its_channels() -> None:
    from sim.pipeline.prepare import prepare  # torch
    from sim.pipeline.profile import ProfileSettings, prepared_solo_curves

    prep = prepare(parse_scenario(helpers.scenario_dict(2)))
    curves = {c.layer: c for c in prepared_solo_curves(prep, ProfileSettings(warmup=1, repeats=3))}
    assert list(curves) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    # conv1: 6 filters, 1 x 5 x 5 weights each on a 28 x 28 output: 2 * 25 * 784 = 39 200 FLOPs a filter, at
    # 1, 3 and 6 filters (1/8 and 1/4 of 6 are both one); fc3: 10 outputs of 84 inputs, 168 FLOPs each
    assert curves["conv1"].units == (39200.0, 117600.0, 235200.0)
    assert curves["fc3"].units == (168.0, 336.0, 840.0, 1680.0)
    assert curves["conv2"].op == "conv" and curves["fc1"].op == "linear"
    for c in curves.values():
        assert min(c.seconds) > 0 and list(c.seconds) == sorted(c.seconds)  # timed, made non-decreasing


def test_a_solo_share_whose_filters_read_nothing_is_left_out() -> None:
    from sim.pipeline.prepare import prepare  # torch
    from sim.pipeline.profile import ProfileSettings, prepared_solo_curves

    prep = prepare(parse_scenario(helpers.scenario_dict(2)))
    prep.graph.layer("conv1").uses[0] = False  # conv1's first filter pruned: the 1-filter share reads nothing
    conv1 = next(c for c in prepared_solo_curves(prep, ProfileSettings(warmup=1, repeats=2)) if c.layer == "conv1")
    assert conv1.units == (117600.0, 235200.0)  # 3 and 6 filters of 39 200 FLOPs


def test_the_wake_curve_is_each_calls_time_after_idling_beyond_its_time_back_to_back() -> None:
    import time

    from sim.pipeline.profile import wake_curve

    def spin(cpu_s: float) -> None:  # busy for cpu_s seconds of this thread's CPU time
        start = time.thread_time()
        while time.thread_time() - start < cpu_s:
            pass

    last = [time.perf_counter()]  # when any call last ended: the machine idles, not one call

    def slow_after_idling(extra_s: float):  # 5 ms of CPU, extra_s more after 40 ms or more of idling
        def call():
            spin(0.005 + (extra_s if time.perf_counter() - last[0] >= 0.04 else 0.0))
            last[0] = time.perf_counter()

        return call

    # after 2 ms neither call takes more than its 5 ms back to back; after 100 ms one takes 30 ms more CPU
    # time and the other 60 ms: the median of the two, 45 ms (CPU time: a preemption does not count)
    curve = wake_curve([slow_after_idling(0.03), slow_after_idling(0.06)], gaps_s=(0.002, 0.1), repeats=2)
    assert curve.gaps_s == (0.002, 0.1)
    assert curve.extra_s[0] < 0.003 and curve.extra_s[1] == pytest.approx(0.045, abs=0.003)


def test_the_wake_curve_times_some_of_the_source_devices_tasks(monkeypatch) -> None:
    from sim.pipeline import profile
    from sim.pipeline.prepare import prepare  # torch

    monkeypatch.setattr(profile, "WAKE_GAPS_S", (0.001, 0.003))  # short: this checks the wiring, not the machine
    monkeypatch.setattr(profile, "WAKE_REPEATS", 1)
    prep = prepare(parse_scenario(helpers.scenario_dict(2)))
    curve = profile.prepared_wake_curve(prep)
    assert curve is not None and curve.gaps_s == (0.001, 0.003)
    assert min(curve.extra_s) >= 0 and list(curve.extra_s) == sorted(curve.extra_s)
