"""``dsim optimize``: the search's pieces against hand counts and brute force, and the command end to end
(its best split, run again through ``dsim run``, gives the latency the search recorded)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import cli
from sim.config.load import load, parse_scenario
from sim.errors import UserError
from sim.model.partition import make_partition
from sim.study.optimize import (
    NAMED,
    SearchSettings,
    balanced_cuts,
    base,
    compositions,
    memory_mb,
    optimize,
    search_table,
)
from tests.helpers import SCENARIOS, scenario_dict


def test_compositions_are_every_ordered_sum() -> None:
    got = list(compositions(3, 3))
    brute = [p for p in itertools.product(range(4), repeat=3) if sum(p) == 3]
    assert sorted(got) == sorted(brute) and len(got) == len(set(got)) == 10  # C(5, 2)


def _brute_cuts(costs: list[list[float]]) -> float:
    n_dev, n_layers = len(costs), len(costs[0])
    best = float("inf")
    for cuts in itertools.combinations(range(1, n_layers), n_dev - 1):
        bounds = (0, *cuts, n_layers)
        slowest = max(sum(costs[d][bounds[d] : bounds[d + 1]]) for d in range(n_dev))
        best = min(best, slowest)
    return best


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.integers(2, 4).flatmap(
        lambda d: st.integers(d, 8).flatmap(
            lambda n: st.lists(st.lists(st.integers(1, 20), min_size=n, max_size=n), min_size=d, max_size=d)
        )
    )
)
def test_balanced_cuts_equal_brute_force(costs: list[list[int]]) -> None:
    floats = [[float(c) for c in row] for row in costs]
    cuts = balanced_cuts(floats)
    bounds = (0, *cuts, len(costs[0]))
    assert all(bounds[i] < bounds[i + 1] for i in range(len(bounds) - 1)), "every stage holds a layer"
    slowest = max(sum(floats[d][bounds[d] : bounds[d + 1]]) for d in range(len(costs)))
    assert slowest == _brute_cuts(floats)


@pytest.fixture(scope="module")
def lenet_base():
    return base(parse_scenario(scenario_dict(4)))


def test_memory_of_lenet_on_one_device_by_hand(lenet_base) -> None:
    # LeNet-5 parameters (weights + bias): conv1 6*(25+1), conv2 16*(6*25+1), fc1 120*(400+1),
    # fc2 84*(120+1), fc3 10*(84+1) = 61706 floats = 246824 bytes; the largest output it holds is conv1's
    # 6x28x28 = 4704 floats = 18816 bytes.
    graph = lenet_base.graph
    parts = {l.name: np.zeros(l.out_channels, dtype=np.int64) for l in graph.layers()}
    assert memory_mb(graph, parts, 4, batch=1) == pytest.approx((0.26564, 0.0, 0.0, 0.0))
    # contiguous: conv1's 6 filters split 2,2,1,1; device 0 holds 2*26 + 4*151 + 30*401 + 21*121 + 3*85 floats
    parts = make_partition(graph, "contiguous", 4)
    weights = (2 * 26 + 4 * 151 + 30 * 401 + 21 * 121 + 3 * 85) * 4
    assert memory_mb(graph, parts, 4, batch=1)[0] == pytest.approx((weights + 2 * 784 * 4) / 1e6)


def _search(data: dict, **kw) -> pd.DataFrame:
    return search_table(optimize(parse_scenario(data), SearchSettings(**kw), progress=False))


def test_search_is_deterministic_and_independent_of_jobs() -> None:
    data = scenario_dict(3)
    one = _search(data, budget=24, seed=3)
    assert one.equals(_search(data, budget=24, seed=3))
    assert one.equals(_search(data, budget=24, seed=3, jobs=2))
    assert len(one) <= 24 and list(one["description"][: len(NAMED)]) == list(NAMED)


def test_bytes_objective_finds_the_split_that_sends_nothing() -> None:
    # Source and sink are d0: every layer whole on d0 sends no byte, and no split sends fewer.
    table = _search(scenario_dict(3), objective="bytes", budget=20)
    best = table.loc[table["objective"].idxmin()]
    assert best["bytes_total"] == 0 and best["objective"] == 0


def test_memory_limit_rules_out_the_one_device_split() -> None:
    data = scenario_dict(3)
    for device in data["devices"]:
        device["memory_mb"] = 0.2  # all of LeNet on one device needs 0.266 MB
    table = _search(data, objective="bytes", budget=20)
    assert not table.loc[table["memory_mb_max"] > 0.2, "feasible"].any()
    best = table[table["feasible"]].sort_values(["objective", "index"]).iloc[0]
    assert best["memory_mb_max"] <= 0.2 and best["bytes_total"] > 0


def test_no_feasible_split_is_one_line() -> None:
    data = scenario_dict(2)
    for device in data["devices"]:
        device["memory_mb"] = 0.001
    with pytest.raises(UserError, match=r"^devices\[\*\]\.memory_mb: no split of the \d+ evaluated fits"):
        _search(data, budget=10)


@pytest.mark.parametrize(
    ("change", "kw", "message"),
    [
        ({}, {"objective": "speed"}, r"^--objective: 'speed' is not one of"),
        ({}, {"spaces": ("rows",)}, r"^--space: 'rows' is not a list of"),
        ({}, {"budget": 3}, r"^--budget: must be at least 6"),
        ({}, {"objective": "energy"}, r"^--objective energy: no device has a power setting"),
        ({"prune": {"method": "ln_structured", "amount": 0.5}}, {}, r"^prune\.method: ln_structured: dsim optimize"),
    ],
)
def test_refusals_are_one_line(change: dict, kw: dict, message: str) -> None:
    data = {**scenario_dict(2), **change}
    with pytest.raises(UserError, match=message):
        _search(data, budget=kw.pop("budget", 8), **kw)


def test_command_writes_a_best_split_that_dsim_run_reproduces(tmp_path, capsys) -> None:
    out = tmp_path / "opt"
    command = ["optimize", str(SCENARIOS / "quickstart.yaml"), "--budget", "12", "--out", str(out), "--quiet"]
    assert cli.main(command) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["best.json", "best.yaml", "pareto.png", "search.csv"]
    table = pd.read_csv(out / "search.csv")
    best = table[table["feasible"]].sort_values(["objective", "index"]).iloc[0]
    assert f"best {best['description']}" in printed and all(name in printed for name in NAMED)
    partition = json.loads((out / "best.json").read_text())
    assert partition["model"] == "lenet5" and set(partition["devices"]) == {"cam", "d1", "d2", "d3"}
    run = tmp_path / "run"
    assert cli.main(["run", str(out / "best.yaml"), "--out", str(run), "--no-cache", "--quiet"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["latency_s"] == pytest.approx(best["latency_s"], rel=1e-6)
    assert summary["bytes_total"] == best["bytes_total"]
    assert load(out / "best.yaml").name == "quickstart-optimized"
