"""Real split runs (``dsim execute``) and their comparison with the simulator (``dsim validate``), on LeNet-5
over two devices: loopback always, shaped network namespaces when running as root."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from sim.analysis.tables import COMPUTE_COLUMNS, TRANSFER_COLUMNS
from sim.cli import main
from sim.config.load import parse_scenario
from sim.engine.replay import link_free_starts
from sim.errors import UserError
from sim.pipeline.evaluate import evaluate
from sim.pipeline.prepare import prepare
from sim.report.validation import save_validation
from sim.testbed import netns
from sim.testbed.execute import build_programs, execute, measured_result, run_devices
from sim.testbed.measure import CPU_COLUMNS, TASK_CPU_COLUMN
from sim.testbed.validate import VALIDATION_COLUMNS, compare_runs, error_distribution
from tests.helpers import DESIGN_SUMMARY_KEYS, scenario_dict

DESIGN_TRANSFERS = "frame layer src dst channels elements nnz dense_bytes csr_bytes coo_bytes bitmap_bytes format bytes hops start_s end_s"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _scenario(**overrides: object):
    data = scenario_dict(2, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 2}, **overrides)
    return parse_scenario(data, origin="test")


@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory):
    """Two repeats of a 2-device LeNet-5 run over loopback, the simulation, and the saved validation."""
    sc = _scenario()
    prep = prepare(sc)
    rounds = run_devices(build_programs(prep), None, timeout_s=120.0, repeats=2)
    runs = [measured_result(prep, reports) for reports in rounds]
    predicted = evaluate(sc, prep.built)
    table = compare_runs(predicted, runs)
    out = tmp_path_factory.mktemp("validation")
    save_validation(table, predicted, runs, out, [])
    return prep, rounds, runs, predicted, table, out


def test_outputs_equal_the_unsplit_model(loopback) -> None:
    prep, rounds, *_ = loopback
    for reports in rounds:
        sink = next(r for r in reports if r.index == prep.workload.sink)
        assert len(sink.outputs) == 2
        for x, out in zip(prep.images, sink.outputs):
            with torch.no_grad():
                expected = prep.model(x).numpy()  # the unsplit model, called directly
            np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_every_device_used_inputs_of_the_unsplit_model(loopback) -> None:
    _prep, rounds, runs, *_ = loopback
    check = runs[0].summary["execution"]["check"]
    assert check["ok"] and check["inputs_max_relative_error"] < 1e-5
    layers = {u.stage for reports in rounds for rep in reports for u in rep.inputs}
    assert {"conv1", "conv2", "fc1", "fc2", "fc3"} <= layers  # every layer's inputs were checked


def test_measured_files_have_the_columns_of_dsim_run(loopback) -> None:
    _prep, _, _runs, predicted, _, out = loopback
    transfers = pd.read_csv(out / "measured" / "transfers.csv")
    compute = pd.read_csv(out / "measured" / "compute.csv")
    summary = json.loads((out / "measured" / "summary.json").read_text())
    assert list(transfers.columns) == TRANSFER_COLUMNS + CPU_COLUMNS
    assert (transfers[CPU_COLUMNS] > 0).all().all()  # every message cost its sender and receiver some CPU
    assert DESIGN_TRANSFERS.split() == TRANSFER_COLUMNS[: len(DESIGN_TRANSFERS.split())]
    assert list(compute.columns) == [*COMPUTE_COLUMNS, TASK_CPU_COLUMN]
    # a task's thread CPU time is positive and within its wall time (one thread: it cannot exceed it, but
    # the two clocks, each read twice around the task and its sends, disagreed once by 0.11 ms on this VM:
    # 0.75 ms of CPU in 0.64 ms of wall time, in a clean clone's CI run)
    assert (compute[TASK_CPU_COLUMN] > 0).all()
    assert (compute[TASK_CPU_COLUMN] <= compute["end_s"] - compute["start_s"] + 3e-4).all()
    assert all(k in summary for k in DESIGN_SUMMARY_KEYS)
    # the same messages and bytes as the simulated run, every one timed forwards
    same = ["frame", "layer", "src", "dst", "bytes", "format"]
    pd.testing.assert_frame_equal(transfers[same], predicted.transfers[same].reset_index(drop=True))
    assert (transfers["end_s"] > transfers["start_s"]).all() and (transfers["start_s"] >= 0).all()
    for _, rows in compute.groupby("device"):  # a device runs one task at a time
        rows = rows.sort_values("start_s")
        assert (rows["end_s"] > rows["start_s"]).all()
        assert (rows["start_s"].to_numpy()[1:] >= rows["end_s"].to_numpy()[:-1]).all()
    assert summary["latency_s"] == pytest.approx(np.mean(summary["frame_latency_s"]))
    assert main(["plot", str(out / "measured")]) == 0


def test_a_frames_image_leaves_the_source_when_the_frame_arrives(loopback) -> None:
    # Both frames arrive at once: the source sends frame 1's image between frame 0's tasks, as the engine
    # does, not once it has finished frame 0 (before, its send came after the sink held frame 0).
    prep, _rounds, runs, *_ = loopback
    source = prep.workload.source
    for run in runs:
        t, c = run.transfers, run.compute
        frame1_input = t[(t.frame == 1) & (t.layer == "input")].start_s.min()
        frame0_tasks = c[(c.frame == 0) & (c.device == prep.workload.devices[source])].end_s
        assert frame1_input < frame0_tasks.max(), (frame1_input, list(frame0_tasks))


def test_validation_rows_are_sane(loopback) -> None:
    _prep, _, runs, predicted, table, out = loopback
    saved = pd.read_csv(out / "validation.csv", keep_default_na=False)
    assert list(saved.columns) == VALIDATION_COLUMNS
    assert (out / "validation.png").stat().st_size > 0
    comp = predicted.compute
    assert (table["kind"] == "compute").sum() == len(comp.groupby(["layer", "device"]))
    assert (table["kind"] == "message").sum() == len(predicted.transfers.groupby(["layer", "src", "dst"]))
    assert (table["kind"] == "end_to_end").sum() == 1
    # 2 repeats x 2 frames of every component; frame 0 and the one gap between the 2 departures: once a run
    per_frame = table[table["kind"].isin(["compute", "message", "end_to_end"])]
    assert (per_frame["samples"] == 4).all()
    once = table[table["kind"].isin(["first_frame", "interval"])]
    assert list(once["kind"]) == ["first_frame", "interval"] and (once["samples"] == 2).all()
    assert (table["measured_p10_s"] <= table["measured_median_s"]).all()
    assert (table["measured_median_s"] <= table["measured_p90_s"]).all()
    e2e = table[table["kind"] == "end_to_end"].iloc[0]
    measured = np.concatenate([r.summary["frame_latency_s"] for r in runs])
    assert e2e["measured_median_s"] == pytest.approx(np.median(measured))
    assert e2e["predicted_s"] == pytest.approx(np.median(predicted.summary["frame_latency_s"]))
    first = table[table["kind"] == "first_frame"].iloc[0]
    assert first["measured_median_s"] == pytest.approx(np.median([r.summary["frame_latency_s"][0] for r in runs]))
    gap = table[table["kind"] == "interval"].iloc[0]  # frame 1 left the sink this long after frame 0
    departures = [r.timeline.frame_done_s[1] - r.timeline.frame_done_s[0] for r in runs]
    assert gap["measured_median_s"] == pytest.approx(np.median(departures))
    # conv1 on d0 by hand: 2 * 3 filters * 1 channel * 25 * 28 * 28 FLOPs at 2 GFLOP/s
    conv1 = table[table["component"] == "conv1@d0"].iloc[0]
    assert conv1["predicted_s"] == pytest.approx(2 * 3 * 25 * 28 * 28 / 2e9)
    assert conv1["error_pct"] == pytest.approx((conv1["predicted_s"] / conv1["measured_median_s"] - 1) * 100)
    dist = error_distribution(table)
    assert set(dist["kind"]) >= {"compute", "message", "end_to_end"}


def test_partial_sums_are_refused() -> None:
    sc = _scenario(transfer={"format": "dense", "dtype": "float32", "index_bits": 32, "exchange": "partial_sums"})
    with pytest.raises(UserError, match=r"transfer\.exchange"):
        execute(sc)


def test_shape_refused_without_root_or_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    with pytest.raises(UserError, match="--shape: needs root"):
        netns.check_available()
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda tool: None if tool == "tc" else "/usr/sbin/ip")
    with pytest.raises(UserError, match="--shape: tc not found"):
        netns.check_available()


def _our_namespaces() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.startswith(f"dsim{os.getpid()}-")]


@pytest.mark.skipif(not IS_ROOT, reason="--shape needs root (network namespaces and tc)")
def test_testbed_is_removed_on_error() -> None:
    sc = _scenario(network={"topology": "star", "bandwidth_mbps": 20, "latency_ms": 0})
    with pytest.raises(RuntimeError, match="boom"), netns.testbed(sc) as bed:
        assert len(_our_namespaces()) == 3  # two devices and the switch
        assert set(bed.addresses) == {"d0", "d1"}
        raise RuntimeError("boom")
    assert _our_namespaces() == []


@pytest.mark.skipif(not IS_ROOT, reason="--shape needs root (network namespaces and tc)")
def test_shaped_execute_cli(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.yaml"
    data = scenario_dict(2, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 1})
    data["network"] = {"topology": "mesh", "bandwidth_mbps": 5, "latency_ms": 0}
    import yaml  # only this test writes a scenario file

    path.write_text(yaml.safe_dump(data))
    assert main(["execute", str(path), "--shape", "--out", str(tmp_path / "out")]) == 0
    assert _our_namespaces() == []
    transfers = pd.read_csv(tmp_path / "out" / "transfers.csv")
    image = transfers[transfers["layer"] == "input"].iloc[0]
    # 4096 bytes cannot cross a 5 Mbit/s link faster than 4096 * 8 / 5e6 s, less the 2000-byte tbf burst
    assert image["end_s"] - image["start_s"] >= (4096 - netns.DEFAULT_BURST_BYTES) * 8 / 5e6
    assert "shaped" in json.loads((tmp_path / "out" / "summary.json").read_text())["execution"]["network"]
    assert "check              ok" in capsys.readouterr().out


def test_compare_takes_measured_run_folders(loopback, tmp_path) -> None:
    *_, out = loopback
    from sim.study.compare import compare  # the loopback fixture saved both runs

    table = compare([str(out / "measured"), str(out / "predicted")], out=tmp_path, progress=False)
    summary = json.loads((out / "measured" / "summary.json").read_text())
    assert list(table["scenario"]) == ["test (measured)", "test"]
    assert table["latency_s"].iloc[0] == pytest.approx(summary["latency_s"])
    parts = table[["latency_compute_s", "latency_transfer_s", "latency_waiting_s"]].iloc[0].sum()
    # the mean critical-path breakdown covers the mean latency (a message can leave before the end of the
    # task that made it, which also runs the channel-wise ops after it, so measured steps may overlap a little)
    assert parts == pytest.approx(summary["latency_s"], rel=0.1)
    assert (tmp_path / "breakdown.png").is_file()


def test_a_message_starts_when_its_connection_is_free() -> None:
    from types import SimpleNamespace

    m = SimpleNamespace
    messages = [m(src=0, dst=1), m(src=0, dst=1), m(src=0, dst=2)]
    workload = SimpleNamespace(messages=messages)
    sent = [1.0, 1.5, 1.6]  # handed to the socket at
    received = [4.0, 6.0, 3.0]
    # message 1 waits for message 0 on the 0->1 connection (arrived at 4.0); message 2 has its own
    assert link_free_starts(workload, sent, received) == [1.0, 4.0, 1.6]
    assert link_free_starts(workload, sent, received, {(0, 1): 0.5, (0, 2): 0.5}) == [1.0, 3.5, 1.6]
    # the kernel merged messages 0 and 1 into one buffer, stamped when 1 came: 0's arrival is not 1's start
    assert link_free_starts(workload, sent, [6.0, 6.0, 3.0]) == [1.0, 1.5, 1.6]


def test_fit_devices_recovers_rate_and_overhead() -> None:
    from types import SimpleNamespace

    from sim.testbed.validate import fit_devices

    sc = _scenario()
    flops = [1e6, 4e6, 9e6]
    compute = pd.DataFrame({"layer": ["a", "b", "c"] * 2, "device": ["d0"] * 3 + ["d1"] * 3, "flops": flops * 2})
    # d0: 2 GFLOP/s + 0.5 ms per layer; d1: 5 GFLOP/s, no overhead
    times = [f / 2e9 + 5e-4 for f in flops] + [f / 5e9 for f in flops]
    table = pd.DataFrame(
        {"kind": "compute", "layer": compute["layer"], "src": compute["device"], "measured_median_s": times}
    )
    fitted = fit_devices(sc, table, SimpleNamespace(compute=compute))
    assert fitted.devices[0].gflops == pytest.approx(2.0) and fitted.devices[0].overhead_ms == pytest.approx(0.5)
    assert fitted.devices[1].gflops == pytest.approx(5.0) and fitted.devices[1].overhead_ms == pytest.approx(
        0.0, abs=1e-9
    )


def test_a_predicted_message_is_timed_from_when_its_bytes_go_to_the_socket() -> None:
    # d0 sends three messages to three peers at 0 s; on a shared uplink without interleaving they start on
    # the wire at 0, 0.08 and 0.16 s and arrive at 0.16, 0.24 and 0.32 s. A real run hands all three to their
    # sockets at 0 s (three connections): compared as it measures them they take 0.16, 0.24 and 0.32 s.
    from types import SimpleNamespace

    from sim.testbed.validate import _durations

    workload = SimpleNamespace(messages=[SimpleNamespace(src=0, dst=d) for d in (1, 2, 3)])
    ends = [0.16, 0.24, 0.32]
    transfers = pd.DataFrame(
        {"layer": "c1", "src": "d0", "dst": ["d1", "d2", "d3"], "bytes": 10_000, "start_s": [0.0, 0.08, 0.16]}
    ).assign(end_s=ends)
    result = SimpleNamespace(transfers=transfers)
    handed = link_free_starts(workload, [0.0, 0.0, 0.0], ends)
    on_wire = _durations(result, "message")["seconds"].tolist()
    assert on_wire == pytest.approx([0.16, 0.16, 0.16])
    assert _durations(result, "message", starts_s=handed)["seconds"].tolist() == pytest.approx(ends)
