"""Output files of `dsim run`: all present with the columns of docs/design.md §5, identical across runs, CSR exact."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from sim.cli import main
from sim.config.load import load
from sim.pipeline.prepare import prepare
from sim.report.save import save_run
from sim.workload import wire
from sim.workload.sizing import message_matrix
from tests.helpers import DESIGN_SUMMARY_KEYS, scenario_dict

FILES = ("transfers.csv", "compute.csv", "traffic.csv", "summary.json", "trace.json", "timeline.png")


def run_to(tmp_path, name: str, **overrides) -> dict[str, bytes]:
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(scenario_dict(**overrides)))
    out = tmp_path / name
    assert main(["run", str(scen), "--out", str(out)]) == 0
    return {f: (out / f).read_bytes() for f in FILES}


def test_same_scenario_same_seed_gives_identical_files(tmp_path) -> None:
    frames = {"dataset": "digits", "batch_size": 2, "frames": 3, "interval_ms": 2}
    first = run_to(tmp_path, "a", inputs=frames)
    second = run_to(tmp_path, "b", inputs=frames)
    assert first == second
    other_seed = run_to(tmp_path, "c", inputs=frames, seed=1)
    assert other_seed["transfers.csv"] != first["transfers.csv"]  # other weights and images: other nnz


def test_files_have_the_design_columns(tmp_path) -> None:
    run_to(tmp_path, "o")
    out = tmp_path / "o"
    # docs/design.md §5, written out here so that a change in the code cannot change the test; the last two
    # transfer columns came later (channel headers, multicast).
    design = "frame, layer, src, dst, channels, elements, nnz, dense_bytes, csr_bytes, coo_bytes, bitmap_bytes, "
    design += "format, bytes, hops, start_s, end_s"
    transfers = [*design.split(", "), "header_bytes", "multicast_copy"]
    assert list(pd.read_csv(out / "transfers.csv").columns) == transfers
    assert list(pd.read_csv(out / "compute.csv").columns) == ["frame", "layer", "device", "flops", "start_s", "end_s"]
    summary = json.loads((out / "summary.json").read_text())
    for key in DESIGN_SUMMARY_KEYS:
        assert key in summary
    assert summary["scenario"]["network"]["bandwidth_mbps"] == 20
    trace = json.loads((out / "trace.json").read_text())
    tracks = {e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "thread_name"}
    assert {"d0", "d1", "d2", "d3", "d0->d1", "d1->d0"} <= tracks
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csr_round_trips_real_activations_exactly() -> None:
    built = prepare(load(scenario_dict(inputs={"dataset": "digits", "batch_size": 2, "frames": 1})))
    graph, plan = built.graph, built.plan
    from sim.model.data import frame_batches

    images = frame_batches("digits", (1, 32, 32), 1, 2, 0)[0].images
    values = graph.activations(images, plan.tensors())
    spec = wire.WireSpec("float32", 32)
    checked = 0
    for m in plan.messages:
        node = graph.node(m.tensor)
        matrix = message_matrix(values[m.tensor], m.channels, node.channels, node.rank)
        buf = wire.encode(matrix, "csr", spec)
        rows, nnz = matrix.shape[0], np.count_nonzero(matrix)
        assert len(buf) == (rows + 1) * 4 + nnz * (4 + 4)
        assert np.array_equal(wire.decode(buf, "csr", matrix.shape, spec), matrix)
        checked += 1
    assert checked == len(plan.messages) > 40


def test_a_save_that_fails_midway_leaves_the_folder_as_it_was(tmp_path, monkeypatch) -> None:
    import sim
    from sim.report import save as saving

    result = sim.run(scenario_dict(2))
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("old")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(saving, "plot_traffic", broken)  # the last file of the set
    with pytest.raises(OSError, match="disk full"):
        save_run(result, out)
    assert [p.name for p in out.iterdir()] == ["summary.json"] and (out / "summary.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind
    monkeypatch.undo()
    written = save_run(result, out)
    assert {p.name for p in written} == {p.name for p in out.iterdir()} and len(written) >= 10
    assert oct((out / "transfers.csv").stat().st_mode & 0o777) == "0o644"
