"""``dsim execute`` and the split forms (docs/design.md §3b): a pipeline (whole layers), row bands, a tile grid,
fused tiles and a hybrid run for real, one process per device over loopback, and equal the unsplit model;
the messages the devices put on their connections are the simulated workload's, pair by pair and layer by
layer, counted in real encoded bytes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sim.config.load import parse_scenario
from sim.model.partition import contiguous_split, save_partition, spatial_split
from sim.pipeline.prepare import Prepared, prepare, trace_model
from sim.testbed.execute import build_programs, check_values, run_devices
from sim.testbed.program import DeviceReport
from sim.testbed.validate import validate
from sim.workload.types import Split
from tests.helpers import scenario_dict


def _scenario(partition: dict[str, object], sink: str = "d0", model: dict[str, Any] | None = None):
    data = scenario_dict(2, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 2}, sink=sink)
    data["partition"] = partition
    if model is not None:
        data["model"] = model
    return parse_scenario(data, origin="test")


def _run(prep: Prepared) -> list[DeviceReport]:
    """One timed run for real (the check pass first), its outputs compared with the unsplit model."""
    (reports,) = run_devices(build_programs(prep), None, timeout_s=120.0, repeats=1)
    sink = next(r for r in reports if r.index == prep.workload.sink)
    assert len(sink.outputs) == prep.workload.frames
    for x, out in zip(prep.images or [], sink.outputs):
        with torch.no_grad():
            expected = prep.model(x).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    return reports


def _sent(prep: Prepared, reports: list[DeviceReport]) -> tuple[Counter[Any], Counter[Any]]:
    """Messages and bytes per (src, dst, layer) of the real run (the bytes each device wrote on its
    connection, application header left out) and of the simulated workload (sized from counts)."""
    real: Counter[Any] = Counter()
    for r in reports:
        for k, sent in r.sent.items():
            m = prep.workload.messages[k]
            assert m.src == r.index
            real[(m.src, m.dst, m.layer, "messages")] += 1
            real[(m.src, m.dst, m.layer, "bytes")] += sent.bytes
    simulated: Counter[Any] = Counter()
    for m in prep.workload.messages:
        simulated[(m.src, m.dst, m.layer, "messages")] += 1
        simulated[(m.src, m.dst, m.layer, "bytes")] += m.bytes
    return real, simulated


def test_a_pipeline_runs_for_real_and_equals_the_unsplit_model() -> None:
    prep = prepare(_scenario({"strategy": "pipeline"}, sink="d1"))
    assert {int(o[0]) for o in prep.plan.partition.values()} == {0, 1}  # both stages are used
    _run(prep)


ROWS_FORMS = {
    "rows": {"strategy": "spatial"},
    "tiles 2x1": {"strategy": "spatial", "tiles": [2, 1]},
    "fused": {"strategy": "spatial", "fused": True},
}


@pytest.mark.parametrize("form", list(ROWS_FORMS))
def test_rows_forms_run_for_real_equal_the_unsplit_model_and_send_the_simulated_messages(form: str) -> None:
    prep = prepare(_scenario(ROWS_FORMS[form]))
    assert prep.plan.spatial is not None
    reports = _run(prep)
    real, simulated = _sent(prep, reports)
    assert real == simulated
    check = check_values(prep, reports)
    assert check.ok and check.inputs_error < 1e-5
    used = {u.stage for r in reports for u in r.inputs if u.positions is not None}
    assert {"conv1", "conv2"} <= used  # both convs read blocks of positions, checked against the unsplit model
    layers = {key[2] for key in real}
    if form == "fused":  # one fused run: only the image and the run's last rows cross
        assert "conv1" not in layers and "max_pool2d" not in layers
    else:  # halos of the first pool's bands cross both ways (conv2 reads 4 rows beyond its band)
        assert {(0, 1, "max_pool2d", "bytes"), (1, 0, "max_pool2d", "bytes")} <= set(real)


@pytest.mark.slow  # padding is checked fast in process by test_rows_interpreter.py
def test_a_padded_strided_residual_model_in_fused_tiles_runs_for_real() -> None:
    # ResNet-18 (3x3 convs with padding 1, stride 2, residual adds, a global pool) at 1/8 width on 16x16
    # images: the tiles at the image border get the zero padding, the inner edges their halos
    model = {"name": "resnet18", "input_shape": [3, 16, 16], "width": 0.125}
    prep = prepare(_scenario({"strategy": "spatial", "tiles": [2, 1], "fused": True}, model=model))
    reports = _run(prep)
    real, simulated = _sent(prep, reports)
    assert real == simulated
    assert check_values(prep, reports).ok


def test_a_hybrid_of_rows_filters_and_whole_layers_runs_for_real(tmp_path: Path) -> None:
    # conv1 by rows, conv2 by filters, the classifier whole on the sink (as tools/split_hybrid.py writes)
    scenario = _scenario({"strategy": "contiguous"})
    graph = trace_model(scenario)
    spatial = spatial_split(graph, 2, sink=0, fused=True)
    filters = {
        layer.name: contiguous_split(layer.out_channels, 2) if layer.name == "conv2" else spatial.filters[layer.name]
        for layer in graph.layers()
    }
    path = tmp_path / "hybrid.json"
    save_partition(path, "lenet5", ["d0", "d1"], Split(filters, {"conv1": spatial.rows["conv1"]}, spatial.whole))
    prep = prepare(_scenario({"file": str(path)}))
    split = prep.plan.split
    assert split is not None and [split.form(n) for n in ("conv1", "conv2", "fc1")] == ["rows", "filters", "whole"]
    reports = _run(prep)
    real, simulated = _sent(prep, reports)
    assert real == simulated
    assert check_values(prep, reports).ok
    positions = {m.positions is not None for m in prep.plan.messages}
    assert positions == {True, False}  # halos of rows and whole channels both crossed


@pytest.mark.slow  # one more real run; the forms above are the default suite's
def test_validate_compares_every_task_and_message_class_of_fused_tiles() -> None:
    result = validate(_scenario({"strategy": "spatial", "tiles": [2, 1], "fused": True}), repeats=1)
    table, predicted = result.table, result.predicted
    assert result.measured[0].summary["execution"]["check"]["ok"]
    assert (table["kind"] == "compute").sum() == len(predicted.compute.groupby(["layer", "device"]))
    assert (table["kind"] == "message").sum() == len(predicted.transfers.groupby(["layer", "src", "dst"]))
    per_run = table["kind"].isin(["first_frame", "interval"])  # one frame 0 and one interval per run
    assert (table.loc[~per_run, "samples"] == 2).all()  # 1 repeat x 2 frames of every component
    assert (table.loc[per_run, "samples"] == 1).all() and per_run.sum() == 2
