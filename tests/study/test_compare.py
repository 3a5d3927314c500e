"""The latency breakdown along the critical path (hand-computed timelines) and `dsim compare`."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

import sim
from sim import cli
from sim.analysis.critical_path import frame_breakdown, latency_breakdown
from sim.engine.devices import DeviceRate
from sim.engine.network import Network
from sim.engine.simulate import simulate
from sim.errors import UserError
from sim.study.compare import compare
from sim.workload.types import Task, Workload
from tests.helpers import message, scenario_dict


def _two_device_run(queued: bool):
    """a computes T0 (1 s); the image goes a->b (1000 B: 1 s on a 1000 B/s link + 0.5 s latency), b computes
    T1 (2 s) and sends 500 B back (0.5 s + 0.5 s); a computes the final T2 (1 s). With ``queued`` a second
    1000 B image message, also needed by T1, queues behind the first on a->b."""
    tasks = (
        Task(0, "L1", 0, 1e9, "conv", False),
        Task(0, "L1", 1, 2e9, "conv", False),
        Task(0, "L2", 0, 1e9, "conv", True),
    )
    inputs = [message(0, 1, 1000, None, (1,))] * (2 if queued else 1)
    messages = (*inputs, message(1, 0, 500, 1, (2,)))
    workload = Workload(("a", "b"), 0, 0, 1, tasks, messages)
    network = Network.mesh(["a", "b"], bandwidth_bps=8000.0, latency_s=0.5)
    timeline = simulate(workload, [DeviceRate(1e9), DeviceRate(1e9)], network, [0.0])
    return workload, timeline


def test_breakdown_of_a_hand_computed_timeline():
    # T0 0-1 on a; image 0-1 on the wire, at b 1.5; T1 1.5-3.5; reply 3.5-4.0, at a 4.5; T2 4.5-5.5.
    # Critical path T2 <- reply <- T1 <- image: compute 1 + 2, transfer 1.5 + 1.0, no waiting.
    workload, timeline = _two_device_run(queued=False)
    assert timeline.latency_s == [pytest.approx(5.5)]
    b = frame_breakdown(workload, timeline, 0)
    assert (b.compute_s, b.transfer_s, b.waiting_s) == (pytest.approx(3.0), pytest.approx(2.5), pytest.approx(0.0))


def test_breakdown_counts_link_queueing_as_waiting():
    # The second image message waits 1 s for the first to leave a->b: on the wire 1-2, at b 2.5;
    # T1 2.5-4.5; reply 4.5-5.0, at a 5.5; T2 5.5-6.5. Waiting 1 s, the rest as before.
    workload, timeline = _two_device_run(queued=True)
    assert timeline.latency_s == [pytest.approx(6.5)]
    b = frame_breakdown(workload, timeline, 0)
    assert (b.compute_s, b.transfer_s, b.waiting_s) == (pytest.approx(3.0), pytest.approx(2.5), pytest.approx(1.0))


def test_breakdown_adds_up_to_latency_and_single_device_is_all_compute():
    split = sim.run(scenario_dict(4, inputs={"dataset": "digits", "frames": 3, "interval_ms": 1.0}))
    parts = latency_breakdown(split.workload, split.timeline)
    assert sum(parts.values()) == pytest.approx(split.summary["latency_s"], rel=1e-12)
    assert min(parts.values()) >= 0 and parts["latency_transfer_s"] > 0
    single = sim.run(scenario_dict(1))
    parts = latency_breakdown(single.workload, single.timeline)
    # LeNet-5: 2*(6*25*28*28 + 16*6*25*10*10 + 120*400 + 84*120 + 10*84) = 833040 FLOPs at 2 GFLOP/s
    assert parts["latency_compute_s"] == pytest.approx(833040 / 2e9)
    assert parts["latency_transfer_s"] == parts["latency_waiting_s"] == 0.0


def test_compare_writes_table_and_chart_matching_separate_runs(tmp_path, capsys):
    files = []
    for name, mbps in (("fast", 100), ("slow", 5)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(scenario_dict(4, name=name, network={"bandwidth_mbps": mbps})))
        files.append(str(path))
    assert cli.main(["compare", *files, "--out", str(tmp_path / "cmp"), "--jobs", "1"]) == 0
    assert "fast" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    assert list(table["scenario"]) == ["fast", "slow"]
    assert (tmp_path / "cmp" / "breakdown.png").stat().st_size > 0
    for row, file in zip(table.itertuples(), files):
        summary = sim.run(file).summary
        assert row.latency_s == pytest.approx(summary["latency_s"], rel=1e-8)
        assert row.dense_bytes_total == summary["bytes_by_format"]["dense"]
        assert row.packed_bytes_total == summary["bytes_by_format"]["auto"]
        assert row.flops_total == summary["flops_total"] == row.flops_per_frame  # one frame
        assert row.bytes_per_frame == row.bytes_total == summary["bytes_total"]
        parts = (row.latency_compute_s, row.latency_transfer_s, row.latency_waiting_s)
        assert sum(parts) == pytest.approx(row.latency_s, rel=1e-6)
    assert table.loc[1, "latency_transfer_s"] > table.loc[0, "latency_transfer_s"]


def test_compare_refuses_a_bad_file_before_running(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(scenario_dict(2)))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(scenario_dict(2, network={"bandwidth_mbps": 0})))
    with pytest.raises(UserError, match="bandwidth_mbps"):
        compare([good, bad], progress=False)


def _stream(tmp_path, name: str, fps: float) -> str:
    """A LeNet-5 stream of 4 frames at ``fps`` on 4 devices, with the single-device baseline, as a file."""
    path = tmp_path / f"{name}.yaml"
    inputs = {"dataset": "digits", "batch_size": 1, "frames": 4, "fps": fps}
    path.write_text(yaml.safe_dump(scenario_dict(4, name=name, inputs=inputs, baseline="single")))
    return str(path)


def test_compare_of_streams_reports_throughput_keeps_up_and_speedups(tmp_path, capsys):
    files = [_stream(tmp_path, "calm", 20), _stream(tmp_path, "flood", 2000)]
    assert cli.main(["compare", *files, "--out", str(tmp_path / "cmp"), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    for header in ("MFLOP/frame", "sent kB/frame", "throughput fps", "keeps up", "1-device ms", "speedup (latency)"):
        assert header in out
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    calm, flood = table.iloc[0], table.iloc[1]
    assert list(table["frames"]) == [4, 4] and bool(calm["keeps_up"]) and not bool(flood["keeps_up"])
    # every frame is the same work (dense): per frame = total / 4
    assert calm["bytes_per_frame"] == calm["bytes_total"] / 4 and calm["flops_per_frame"] == calm["flops_total"] / 4
    # one frame alone on the source device: LeNet-5's 833040 FLOPs at 2 GFLOP/s (hand-computed)
    assert calm["baseline_service_latency_s"] == pytest.approx(833040 / 2e9)
    # the split's service latency: a one-frame run of the same split (an independent run, nothing queued)
    alone = sim.run(scenario_dict(4)).summary["latency_s"]
    assert calm["service_latency_s"] == pytest.approx(alone) and flood["service_latency_s"] == pytest.approx(alone)
    assert calm["service_speedup"] == pytest.approx(833040 / 2e9 / alone)
    # at 20 frames/s both keep up, so both deliver the offered 20 frames/s
    assert calm["throughput_fps"] == pytest.approx(20) and calm["baseline_throughput_fps"] == pytest.approx(20)
    assert calm["throughput_speedup"] == pytest.approx(1.0)
    assert calm["speedup"] == pytest.approx(calm["baseline_latency_s"] / calm["latency_s"])
    # flooded, the split's mean latency includes its queue; its service latency does not
    assert flood["latency_s"] > flood["service_latency_s"] * 1.5
    assert (tmp_path / "cmp" / "pareto.csv").is_file() and (tmp_path / "cmp" / "pareto.png").is_file()


def test_compare_default_folder_is_named_after_its_inputs(tmp_path, monkeypatch):
    files = [_stream(tmp_path, "calm", 20), _stream(tmp_path, "flood", 2000)]
    monkeypatch.chdir(tmp_path)
    assert cli.main(["compare", files[0], "--jobs", "1"]) == 0
    assert cli.main(["compare", *files, "--jobs", "1"]) == 0
    assert list(pd.read_csv(tmp_path / "results" / "compare-calm" / "comparison.csv")["scenario"]) == ["calm"]
    both = pd.read_csv(tmp_path / "results" / "compare-calm+flood" / "comparison.csv")
    assert list(both["scenario"]) == ["calm", "flood"]
    long = cli.comparison_folder([f"scenario-number-{k}" for k in range(9)])
    assert len(long) <= 80 and long.startswith("compare-scenario-number-0+8-more-")
    assert long != cli.comparison_folder([f"scenario-number-{k}" for k in range(1, 10)])


def test_compare_and_sweep_report_energy_and_its_pareto_front(tmp_path, capsys):
    """With power on the devices: the energy per frame of each compared scenario equals its own run's, the
    latency-against-energy front is written (the faster and the frugaller both on it, here Wi-Fi wins both),
    the terminal table shows it, and a sweep gets the energy columns."""
    from sim.study.sweep import sweep

    files = []
    for power in ("wifi-pi4", "lte-phone"):
        data = scenario_dict(2, name=power, inputs={"dataset": "synthetic"})
        for d in data["devices"]:
            d["power"] = power
        path = tmp_path / f"{power}.yaml"
        path.write_text(yaml.safe_dump(data))
        files.append(str(path))
    assert cli.main(["compare", *files, "--out", str(tmp_path / "cmp"), "--no-cache", "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "energy J/frame" in printed and "pareto_energy.png" in printed
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv")
    for path, row in zip(files, table.itertuples()):
        assert row.energy_j_per_frame == pytest.approx(sim.run(path).record.energy_j_per_frame)
    front = pd.read_csv(tmp_path / "cmp" / "pareto_energy.csv")
    assert front["label"].tolist() == ["wifi-pi4", "lte-phone"]  # same latency; LTE's tails cost more
    assert front["pareto"].tolist() == [True, False]
    assert (tmp_path / "cmp" / "pareto_energy.png").stat().st_size > 0
    swept = sweep(files[0], {"network.bandwidth_mbps": [5, 50]}, jobs=1, progress=False)
    assert swept["energy_j_per_frame"].notna().all() and (swept["energy_j"] > 0).all()
