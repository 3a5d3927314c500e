"""Split strategies and partition files in the three forms (docs/design.md §3b): the pipeline's dynamic programme
against brute force, the spatial bands, and a mixed partition file read back as written."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sim.errors import UserError
from sim.model.flowgraph import FlowGraph
from sim.model.partition import load_partition, make_split, pipeline_stages, save_partition, spatial_split
from sim.model.zoo import build_model


def _slowest(costs: list[float], rates: list[float], stages: list[int]) -> float:
    per = [0.0] * len(rates)
    for c, s in zip(costs, stages):
        per[s] += c
    return max(p / r for p, r in zip(per, rates))


def _brute_force(costs: list[float], rates: list[float]) -> float:
    """Every way to cut the layers into len(rates) contiguous (possibly empty) runs."""
    best = math.inf
    for cuts in itertools.combinations_with_replacement(range(len(costs) + 1), len(rates) - 1):
        bounds = [0, *cuts, len(costs)]
        stages = [d for d in range(len(rates)) for _ in range(bounds[d], bounds[d + 1])]
        best = min(best, _slowest(costs, rates, stages))
    return best


def test_pipeline_dp_equals_brute_force_on_random_costs() -> None:
    rng = np.random.default_rng(19)
    for _ in range(300):
        layers, devices = int(rng.integers(1, 8)), int(rng.integers(1, 5))
        costs = rng.uniform(0.1, 10.0, layers).tolist()
        rates = rng.uniform(0.5, 4.0, devices).tolist()
        stages = pipeline_stages(costs, rates)
        assert stages == sorted(stages) and len(stages) == layers  # contiguous, in device order
        assert math.isclose(_slowest(costs, rates, stages), _brute_force(costs, rates), rel_tol=1e-12)


@pytest.fixture(scope="module")
def lenet() -> FlowGraph:
    return FlowGraph.trace(build_model("lenet5"), torch.zeros(1, 1, 32, 32))


def test_pipeline_split_puts_whole_layers_on_stages(lenet: FlowGraph) -> None:
    # FLOPs: conv1 235,200 | conv2 480,000, fc1 96,000, fc2 20,160, fc3 1,680 -> slowest 597,840 on d1
    split = make_split(lenet, "pipeline", 2, rates=[1.0, 1.0])
    assert {name: int(owner[0]) for name, owner in split.filters.items()} == {
        "conv1": 0,
        "conv2": 1,
        "fc1": 1,
        "fc2": 1,
        "fc3": 1,
    }
    assert split.whole == set(split.filters) and all(len(set(o)) == 1 for o in split.filters.values())


def test_spatial_split_bands_convs_and_keeps_linear_layers_whole_on_the_sink(lenet: FlowGraph) -> None:
    split = spatial_split(lenet, 4, sink=2)
    assert split.rows["conv1"][:, 0].tolist() == np.repeat([0, 1, 2, 3], 7).tolist()  # 28 rows
    assert split.rows["conv2"][:, 0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]  # array_split(10, 4)
    assert split.whole == {"fc1", "fc2", "fc3"} and set(split.filters["fc1"]) == {2}


def test_mixed_partition_file_round_trips(lenet: FlowGraph, tmp_path: Path) -> None:
    names = ["a", "b"]
    split = make_split(lenet, "spatial", 2, sink=0, fused=True)
    path = tmp_path / "p.json"
    save_partition(path, "lenet5", names, split)
    doc = json.loads(path.read_text())
    assert doc["fused"] is True and doc["layers"]["fc1"] == {"device": "a"}
    assert doc["layers"]["conv2"] == {"rows": ["a"] * 5 + ["b"] * 5}
    back = load_partition(path, lenet, "lenet5", names)
    assert back.fused and back.whole == split.whole and set(back.rows) == {"conv1", "conv2"}
    assert all((back.rows[n] == split.rows[n]).all() for n in back.rows)


def test_rows_for_a_linear_layer_is_refused_in_one_line(lenet: FlowGraph, tmp_path: Path) -> None:
    layers = {l.name: ["a"] * l.out_channels for l in lenet.layers()}
    layers["fc1"] = {"rows": ["a"]}  # type: ignore[assignment]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"model": "lenet5", "layers": layers}))
    with pytest.raises(UserError, match=r"layer 'fc1' is not a conv; only convs can be split by rows"):
        load_partition(path, lenet, "lenet5", ["a", "b"])
