"""A rows plan run device by device (:func:`sim.model.shards.execute_rows`) gives the unsplit model's
outputs, padded borders included, for every form: row bands, fused runs, tile grids and a hybrid of rows,
filters and whole layers; a plan missing one halo is caught."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from sim.model import shards
from sim.model.flowgraph import FlowGraph
from sim.model.partition import contiguous_split, spatial_split
from sim.model.zoo import build_model
from sim.workload.plan import plan_workload
from sim.workload.types import Split

FORMS = {
    "rows": {},
    "fused": {"fused": True},
    "tiles": {"tiles": (2, 2)},
    "fused tiles": {"tiles": (2, 2), "fused": True},
}


@pytest.fixture(scope="module", params=["lenet5", pytest.param("resnet18", marks=pytest.mark.slow)])
def traced(request: pytest.FixtureRequest) -> tuple[FlowGraph, torch.Tensor, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = build_model(request.param, width=0.25 if request.param == "resnet18" else 1.0).eval()
        x = torch.randn(2, *((1, 32, 32) if request.param == "lenet5" else (3, 16, 16)))
    with torch.no_grad():
        return FlowGraph.trace(model, x), x, model(x)


def _close(out: torch.Tensor, ref: torch.Tensor) -> None:
    assert float((out - ref).abs().max() / ref.abs().max()) <= 1e-4


@pytest.mark.parametrize("form", list(FORMS))
def test_rows_forms_equal_the_unsplit_model(traced, form: str) -> None:
    graph, x, ref = traced
    plan = plan_workload(graph, spatial_split(graph, 4, sink=1, **FORMS[form]), 4, 0, 1)
    _close(shards.execute_rows(graph, plan, x), ref)


def test_fused_tiles_through_residual_blocks_equal_the_unsplit_model() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        model = build_model("resnet18", width=0.125).eval()
        x = torch.randn(1, 3, 16, 16)
    graph = FlowGraph.trace(model, x)
    plan = plan_workload(graph, spatial_split(graph, 4, sink=0, tiles=(2, 2), fused=True), 4, 0, 0)
    with torch.no_grad():
        _close(shards.execute_rows(graph, plan, x), model(x))


def test_hybrid_of_rows_filters_and_whole_equals_the_unsplit_model(traced) -> None:
    graph, x, ref = traced
    spatial = spatial_split(graph, 3, sink=2, fused=True)
    convs = [l.name for l in graph.layers() if l.op == "conv"]
    early = set(convs[:1])
    filters = {
        l.name: spatial.filters[l.name] if l.name in early or l.op == "linear" else contiguous_split(l.out_channels, 3)
        for l in graph.layers()
    }
    split = Split(filters, {n: spatial.rows[n] for n in early}, spatial.whole, fused=True)
    plan = plan_workload(graph, split, 3, 0, 2)
    assert {m.positions is not None for m in plan.messages} == {True, False}  # halos and channel messages
    _close(shards.execute_rows(graph, plan, x), ref)


def test_a_missing_halo_is_caught(traced) -> None:
    graph, x, _ = traced
    plan = plan_workload(graph, spatial_split(graph, 2, sink=0), 2, 0, 0)
    halo = next(k for k, m in enumerate(plan.messages) if m.layer != "input" and m.positions is not None)
    broken = replace(plan, messages=plan.messages[:halo] + plan.messages[halo + 1 :])
    with pytest.raises(RuntimeError, match="lacks"):
        shards.execute_rows(graph, broken, x)


def test_each_device_holds_only_part_of_a_split_tensor(traced) -> None:
    graph, _, _ = traced
    plan = plan_workload(graph, spatial_split(graph, 4, sink=0), 4, 0, 0)
    assert plan.spatial is not None
    first_conv = next(n for n in graph.order if graph.kind(n) == "layer")
    computes = plan.spatial.computes[first_conv]
    assert np.array_equal(computes.sum(axis=0), np.ones(computes.shape[1:]))  # every element once
    assert all(0 < c.mean() < 1 for c in computes)


@pytest.mark.parametrize("form", ["fused", "fused tiles"])
@pytest.mark.parametrize("which", [0, 1])
def test_a_rows_conv_all_on_one_device_in_a_fused_run_equals_the_unsplit_model(traced, form: str, which: int) -> None:
    # the first (or second) conv keeps the rows form with every row on device 1: it starts no run and joins
    # none; its owner computes it and the runs around it read it through halo messages
    graph, x, ref = traced
    spatial = spatial_split(graph, 4, sink=1, **FORMS[form])
    conv = [l.name for l in graph.layers() if l.op == "conv"][which]
    rows = {**spatial.rows, conv: np.ones_like(spatial.rows[conv])}
    split = Split({**spatial.filters, conv: np.ones_like(spatial.filters[conv])}, rows, spatial.whole, fused=True)
    plan = plan_workload(graph, split, 4, 0, 1)
    assert plan.spatial is not None
    node = next(n for n in graph.order if graph.kind(n) == "layer" and graph.label(n) == conv)
    assert node not in plan.spatial.internal and plan.spatial.computes[node][1].all()
    _close(shards.execute_rows(graph, plan, x), ref)
