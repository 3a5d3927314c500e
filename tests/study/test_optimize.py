"""``dsim optimize``: the search's pieces against hand counts and brute force, the rows space against an
enumeration written here, the Dask path against the process pool, Ctrl-C, and the command end to end (its
best split, run again through ``dsim run``, gives the figures the search recorded)."""

from __future__ import annotations

import itertools
import json
import logging
import re

import numpy as np
import pandas as pd
import pytest
from distributed import LocalCluster

from sim import cli
from sim.config.load import load, parse_scenario
from sim.errors import UserError
from sim.model.partition import make_partition, spatial_split
from sim.pipeline.evaluate import run_engine
from sim.pipeline.prepare import make_plan, sized_workload
from sim.study import optimize as opt
from sim.study.optimize import (
    NAMED,
    Candidate,
    Evaluation,
    Layout,
    Search,
    SearchSettings,
    base,
    compositions,
    memory_mb,
    optimize,
    search_table,
)
from sim.workload.types import Split
from tests.helpers import SCENARIOS, scenario_dict


def test_compositions_are_every_ordered_sum() -> None:
    got = list(compositions(3, 3))
    brute = [p for p in itertools.product(range(4), repeat=3) if sum(p) == 3]
    assert sorted(got) == sorted(brute) and len(got) == len(set(got)) == 10  # C(5, 2)


@pytest.fixture(scope="module")
def lenet_base():
    return base(parse_scenario(scenario_dict(4)))


@pytest.fixture(scope="module")
def lenet_base2():
    return base(parse_scenario(scenario_dict(2)))


def test_memory_of_lenet_by_hand(lenet_base, lenet_base2) -> None:
    # LeNet-5 parameters (weights + bias): conv1 6*(25+1), conv2 16*(6*25+1), fc1 120*(400+1),
    # fc2 84*(120+1), fc3 10*(84+1) = 61706 floats = 246824 bytes; the largest output it holds is conv1's
    # 6x28x28 = 4704 floats = 18816 bytes.
    sc, graph = lenet_base.scenario, lenet_base.graph
    parts = {l.name: np.zeros(l.out_channels, dtype=np.int64) for l in graph.layers()}
    assert memory_mb(make_plan(sc, graph, parts), batch=1) == pytest.approx((0.26564, 0.0, 0.0, 0.0))
    # contiguous: conv1's 6 filters split 2,2,1,1; device 0 holds 2*26 + 4*151 + 30*401 + 21*121 + 3*85 floats
    parts = make_partition(graph, "contiguous", 4)
    weights = (2 * 26 + 4 * 151 + 30 * 401 + 21 * 121 + 3 * 85) * 4
    assert memory_mb(make_plan(sc, graph, parts), batch=1)[0] == pytest.approx((weights + 2 * 784 * 4) / 1e6)
    # rows over 2 devices (conv1 rows 14 | 14, conv2 rows 5 | 5, the linear layers on d0): d1 holds conv1 and
    # conv2 whole (6*26 + 16*151 = 2572 floats) and computes 14x28 positions of conv1's 6 channels (2352
    # floats, more than conv2's 5x10x16); d0 holds every weight (61706 floats).
    sc2, graph2 = lenet_base2.scenario, lenet_base2.graph
    got = memory_mb(make_plan(sc2, graph2, spatial_split(graph2, 2, sink=0)), batch=1)
    assert got == pytest.approx(((61706 + 2352) * 4 / 1e6, (2572 + 2352) * 4 / 1e6))


def _search(data: dict, **kw) -> pd.DataFrame:
    return search_table(optimize(parse_scenario(data), SearchSettings(**kw), progress=False))


def test_search_is_deterministic_and_independent_of_jobs() -> None:
    data = scenario_dict(3)
    one = _search(data, budget=24, seed=3)
    assert one.equals(_search(data, budget=24, seed=3))
    assert one.equals(_search(data, budget=24, seed=3, jobs=2))
    assert len(one) <= 24 and list(one["description"][: len(NAMED)]) == list(NAMED)
    assert list(one.columns[:4]) == ["index", "space", "description", "layout"]
    assert list(one.columns[-3:]) == ["memory_mb_d0", "memory_mb_d1", "memory_mb_d2"]
    layouts = dict(zip(one["description"], one["layout"].fillna("")))
    assert layouts["contiguous"] == ""  # named strategies are not layouts
    assert layouts["shares 0:0:1"] == ", ".join(f"{l} whole d2" for l in ("conv1", "conv2", "fc1", "fc2", "fc3"))
    rows = "conv1 rows 0.333:0.333:0.333, conv2 rows 0.333:0.333:0.333, fc1 whole d0, fc2 whole d0, fc3 whole d0"
    assert layouts["rows 0.333:0.333:0.333 (rates) fused"] == rows + "; fused"


def test_dask_scheduler_writes_the_same_search_as_the_process_pool(caplog) -> None:
    data = scenario_dict(3)
    pool = _search(data, budget=30, seed=2, jobs=2)
    with LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as cluster:
        settings = SearchSettings(budget=30, seed=2, scheduler=cluster.scheduler_address)
        with caplog.at_level(logging.INFO, logger="sim.progress"):
            dask = search_table(optimize(parse_scenario(data), settings))
    pd.testing.assert_frame_equal(pool, dask)
    lines = [r.getMessage() for r in caplog.records if r.name == "sim.progress"]
    assert len(lines) == len(dask) and lines[-1].startswith(f"optimize {len(dask)}/30 done")
    assert {"named", "filters", "rows", "hybrid"} <= set(pool["space"])  # every kind of candidate


def test_a_candidate_lost_on_every_try_is_one_line(tmp_path, monkeypatch) -> None:
    """A task that fails every time (what a worker lost again and again looks like) is resubmitted
    RETRIES times, then the search stops with one line."""
    tries = tmp_path / "tries"  # a file: the task runs on a copy of this function on the worker

    def lost(base_, objective, job):
        with open(tries, "a") as f:
            f.write(f"{job[0]}\n")
        raise ConnectionResetError("worker lost")

    monkeypatch.setattr(opt, "evaluate", lost)
    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None) as cluster:
        settings = SearchSettings(budget=9, scheduler=cluster.scheduler_address)
        message = r"^--scheduler \S+: candidate (\d+) was lost on the Dask cluster 4 times \(ConnectionResetError"
        with pytest.raises(UserError, match=message) as raised:
            optimize(parse_scenario(scenario_dict(2)), settings, progress=False)
    candidate = re.match(message, str(raised.value))[1]
    assert tries.read_text().split().count(candidate) == opt.RETRIES + 1 == 4


def test_bytes_objective_finds_the_split_that_sends_nothing() -> None:
    # Source and sink are d0: every layer whole on d0 sends no byte, and no split sends fewer.
    table = _search(scenario_dict(3), objective="bytes", budget=20)
    best = table.loc[table["objective"].idxmin()]
    assert best["bytes_total"] == 0 and best["objective"] == 0


def test_memory_limit_rules_out_the_one_device_split() -> None:
    data = scenario_dict(3)
    for device in data["devices"]:
        device["memory_mb"] = 0.2  # all of LeNet on one device needs 0.266 MB
    table = _search(data, objective="bytes", budget=30)
    assert not table.loc[table["memory_mb_max"] > 0.2, "feasible"].any()
    assert table["feasible"].any() and (table["memory_mb_max"] > 0.2).any()
    best = table[table["feasible"]].sort_values(["objective", "index"]).iloc[0]
    assert best["memory_mb_max"] <= 0.2 and best["bytes_total"] > 0


def test_energy_objective_reads_the_runs_joules() -> None:
    """--objective energy with powered devices: each candidate's objective is its run's energy per frame,
    and with a radio that costs far more than computing the best split is one that sends nothing."""
    data = scenario_dict(2)
    for device in data["devices"]:
        device["power"] = {"idle_w": 0.0, "busy_w": 0.0, "tx_nj_per_bit": 1e6, "rx_nj_per_bit": 1e6}
    table = _search(data, objective="energy", budget=9)
    best = table.sort_values(["objective", "index"]).iloc[0]
    assert best["bytes_total"] == 0 and best["objective"] == 0.0
    assert (table.loc[table["bytes_total"] > 0, "objective"] > 0).all()


def test_energy_objective_picks_the_lowest_energy_per_frame(tmp_path, capsys) -> None:
    """With a preset (wifi-pi4) on every device and a 3-frame stream, the best row is the one with the
    lowest energy_j_per_frame, and ``dsim run`` of best.yaml reports that energy (an independent run)."""
    data = scenario_dict(3, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 3, "interval_ms": 5})
    for device in data["devices"]:
        device["power"] = "wifi-pi4"
    scenario = tmp_path / "powered.yaml"
    scenario.write_text(json.dumps(data))
    out, log = tmp_path / "opt", tmp_path / "opt.log"
    command = ["optimize", str(scenario), "--objective", "energy", "--budget", "20", "--out", str(out)]
    assert cli.main([*command, "--quiet", "--log", str(log)]) == 0
    table = pd.read_csv(out / "search.csv")
    assert log.read_text().count("dsim optimize: optimize ") == len(table)  # a progress line per candidate
    assert (table["objective"] == table["energy_j_per_frame"]).all()
    best = table.sort_values(["objective", "index"]).iloc[0]
    assert best["energy_j_per_frame"] == table["energy_j_per_frame"].min()
    assert table["energy_j_per_frame"].nunique() > 1  # the candidates differ, so the choice means something
    run = tmp_path / "run"
    assert cli.main(["run", str(out / "best.yaml"), "--out", str(run), "--no-cache", "--quiet"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["energy_j_per_frame"] == pytest.approx(best["energy_j_per_frame"], rel=1e-9)


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
        ({}, {"spaces": ("tiles",)}, r"^--space: 'tiles' is not a list of filters, rows, pipeline, hybrid$"),
        ({}, {"budget": 3}, r"^--budget: must be at least 8"),
        ({}, {"objective": "energy"}, r"^--objective energy: no device has a power setting; give devices\[i\]\.power"),
        (
            {"transfer": {"format": "dense", "exchange": "partial_sums"}},
            {"spaces": ("rows",)},
            r"^--space rows: transfer\.exchange is partial_sums, but row splits need inputs",
        ),
        (
            {"prune": {"method": "ln_structured", "amount": 0.5}},
            {},
            r"^prune\.method: ln_structured: dsim optimize searches the amounts of unstructured pruning",
        ),
        ({}, {"min_accuracy": 1.5}, r"^--min-accuracy: must be in \(0, 1\]"),
        (
            {"prune": {"method": "l1_unstructured", "amount": 0.5}},
            {"budget": 30},
            r"^--budget: must be at least 32 \(the named strategies and one more, for each of 4 prune amounts\)",
        ),
    ],
)
def test_refusals_are_one_line(change: dict, kw: dict, message: str) -> None:
    data = {**scenario_dict(2), **change}
    with pytest.raises(UserError, match=message):
        _search(data, budget=kw.pop("budget", 9), **kw)


def test_rows_that_round_to_one_device_make_the_layer_whole(lenet_base2) -> None:
    """Shares 0.01:0.99 of conv1's 28 rows round to all 28 on d1 (largest remainder: 0.28 < 0.72): the
    split holds conv1 whole on d1, so the fused run starts at conv2, and the candidate plans and runs."""
    graph, shapes = lenet_base2.graph, opt.row_shapes(lenet_base2.graph)
    layout = Layout(((0.01, 0.99), (0.5, 0.5), *[(1.0, 0.0)] * 3), (True, True, False, False, False), True)
    split = opt.layout_split(graph, shapes, layout)
    assert set(split.rows) == {"conv2"} and split.whole == {"conv1", "fc1", "fc2", "fc3"} and split.fused
    assert set(split.filters["conv1"]) == {1} and split.rows["conv2"][:, 0].tolist() == [0] * 5 + [1] * 5
    assert opt.evaluate(lenet_base2, "latency", (0, Candidate("hybrid", "x", split, layout))).latency_s > 0


def _row_split(graph, cuts: dict[str, int], fused: bool) -> Split:
    """2 devices: conv ``c`` rows ``< cuts[c]`` on d0, the rest on d1 (a conv all on one device whole, as
    the search writes it), the linear layers whole on d0."""
    filters, rows, whole = {}, {}, set()
    for layer in graph.layers():
        if layer.name in cuts:
            height = 28 if layer.name == "conv1" else 10
            width = height
            band = np.array([0] * cuts[layer.name] + [1] * (height - cuts[layer.name]))
            if band.min() == band.max():
                filters[layer.name] = np.full(layer.out_channels, band[0])
                whole.add(layer.name)
            else:
                rows[layer.name] = np.repeat(band[:, None], width, axis=1)
                filters[layer.name] = np.full(layer.out_channels, band[0])
        else:
            filters[layer.name] = np.zeros(layer.out_channels, dtype=np.int64)
            whole.add(layer.name)
    return Split(filters, rows, frozenset(whole), fused and bool(rows))


def _fake(batch: list[Candidate]) -> list[Evaluation]:
    return [Evaluation(i, c, 0.0, 0.0, 0.0, 0, None, (0.0, 0.0), True) for i, c in enumerate(batch)]


def _owners(split: Split) -> tuple:
    return (
        tuple(sorted((k, v.tobytes()) for k, v in split.filters.items())),
        tuple(sorted((k, v.tobytes()) for k, v in split.rows.items())),
        split.fused,
    )


def test_rows_space_is_every_band_choice_when_it_fits(lenet_base2) -> None:
    """With room for them, the rows space proposes every choice of a row cut per conv (29 for conv1's 28
    rows, 11 for conv2's 10), plain and fused, and the 1x2 tile grid, plain and fused."""
    search = Search(lenet_base2, SearchSettings(budget=10_000), _fake)
    search.rows(10_000)
    got = {_owners(e.candidate.split) for e in search.evaluations if e.candidate.description.startswith("rows")}
    want = {
        _owners(_row_split(lenet_base2.graph, {"conv1": a, "conv2": b}, fused))
        for a in range(29)
        for b in range(11)
        for fused in (False, True)
    }
    assert got == want  # the same set of splits (the duplicates of fused runs without rows dropped)
    tiles = [e.candidate.description for e in search.evaluations if e.candidate.description.startswith("tiles")]
    assert tiles == ["tiles 1x2", "tiles 1x2 fused"]


def test_pipeline_space_holds_every_placement_and_the_balanced_stages_of_every_order(lenet_base) -> None:
    """LeNet-5 on 4 equal devices: every placement of contiguous stages on the devices in scenario order (a
    device may get none; C(5+3, 3) = 56), and for each of the 24 device orders a pipeline whose slowest
    stage (FLOPs by hand) is the least of any placement in that order (brute force here)."""
    search = Search(lenet_base, SearchSettings(budget=10_000), _fake)
    search.pipeline(10_000)
    owners = [tuple(int(e.candidate.split.filters[l.name][0]) for l in search.layers) for e in search.evaluations]
    flops = [235_200, 480_000, 96_000, 20_160, 1_680]  # conv1, conv2, fc1, fc2, fc3 (2 * MACs)

    def placements(order: tuple[int, ...]) -> list[tuple[int, ...]]:
        out = []
        for cuts in itertools.combinations_with_replacement(range(6), 3):
            bounds = (0, *cuts, 5)
            out.append(tuple(order[s] for s in range(4) for _ in range(bounds[s], bounds[s + 1])))
        return out

    def slowest(owner: tuple[int, ...]) -> int:
        return max(sum(f for f, o in zip(flops, owner) if o == d) for d in range(4))

    assert set(placements((0, 1, 2, 3))) <= set(owners) and len(set(placements((0, 1, 2, 3)))) == 56
    for order in itertools.permutations(range(4)):
        best = min(slowest(o) for o in placements(order))
        ordered = [o for o in owners if set(placements(order)) >= {o}]
        assert min(slowest(o) for o in ordered) == best == 480_000  # conv2 alone is the slowest stage


@pytest.mark.slow
def test_rows_search_finds_the_optimum_of_an_exhaustive_enumeration(lenet_base2) -> None:
    """LeNet-5 on 2 devices by rows: the test's own enumeration of every cut of conv1 and conv2, plain and
    fused (638 splits), each run through the plan, sizing and engine, has the same best latency as the rows
    candidates of ``dsim optimize``."""
    data = scenario_dict(2, network={"topology": "mesh", "bandwidth_mbps": 200, "latency_ms": 0.05})
    for device in data["devices"]:
        device["gflops"] = 0.2  # slow devices, fast links: splitting pays
    b = base(parse_scenario(data))
    best = np.inf
    for a, c, fused in itertools.product(range(29), range(11), (False, True)):
        split = _row_split(b.graph, {"conv1": a, "conv2": c}, fused)
        _, workload = sized_workload(b.scenario, b.graph, split, b.images, b.cache)
        timeline = run_engine(b.scenario, workload).timeline
        best = min(best, timeline.frame_done_s[0] - timeline.frame_arrival_s[0])
    table = search_table(optimize(parse_scenario(data), SearchSettings(spaces=("rows",), budget=700), progress=False))
    rows = table[table["space"] == "rows"]
    assert len(rows) >= 638 - 40  # every cut pair, the duplicates (fused without rows) dropped
    assert rows["latency_s"].min() == pytest.approx(best, rel=1e-12)
    assert best < table.loc[table["description"] == "contiguous", "latency_s"].iloc[0]


def test_interrupted_search_keeps_the_best_so_far(tmp_path, monkeypatch, capsys) -> None:
    """Ctrl-C during the second batch: the command exits 130 and writes the best split of the first batch
    (the named strategies)."""
    real, calls = opt._evaluate, []

    def interrupt_later(job):
        calls.append(job[0])
        if len(calls) == 8:  # the first of the second batch (the named strategies are the first 7)
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(opt, "_evaluate", interrupt_later)
    scenario = tmp_path / "small.yaml"  # synthetic images: no training
    scenario.write_text(json.dumps({**scenario_dict(3, inputs={"dataset": "synthetic"}), "name": "small"}))
    out = tmp_path / "opt"
    assert cli.main(["optimize", str(scenario), "--budget", "40", "--out", str(out), "--quiet"]) == 130
    table = pd.read_csv(out / "search.csv")
    assert list(table["description"]) == list(NAMED)  # the batch Ctrl-C broke is not kept
    best = table.sort_values(["objective", "index"]).iloc[0]
    partition = json.loads((out / "best.json").read_text())
    assert load(out / "best.yaml").name == "small-optimized" and partition["model"] == "lenet5"
    assert f"best {best['description']}" in capsys.readouterr().out


def test_best_scenario_sets_the_prune_amount() -> None:
    scenario = parse_scenario(scenario_dict(2, prune={"method": "l1_unstructured", "amount": 0.5}))
    assert opt.best_scenario(scenario, "best.json", 0.25)["prune"]["amount"] == 0.25
    unpruned = opt.best_scenario(scenario, "best.json", 0.0)["prune"]
    assert unpruned["method"] == "none" and unpruned["amount"] == 0.0
    assert opt.best_scenario(parse_scenario(scenario_dict(2)), "best.json")["prune"]["method"] == "none"


@pytest.mark.slow
def test_prune_amounts_under_the_accuracy_floor_are_not_searched(tmp_path, capsys) -> None:
    """LeNet-5 on digits, trained one epoch, l1_unstructured at 0, 0.25, 0.5, 0.75 and 0.9: a floor no amount
    meets is one line listing every amount's accuracy; a floor between them keeps exactly the amounts at
    or above it, and the best split, run again by ``dsim run``, has its recorded latency and accuracy."""
    data = scenario_dict(2, prune={"method": "l1_unstructured", "amount": 0.9})
    data["model"]["train_epochs"] = 1
    data["transfer"]["format"] = "csr"
    scenario = tmp_path / "pruned.yaml"
    scenario.write_text(json.dumps({**data, "name": "pruned"}))
    out = tmp_path / "opt"
    command = ["optimize", str(scenario), "--budget", "60", "--out", str(out), "--quiet"]
    assert cli.main([*command, "--min-accuracy", "0.99"]) == 2
    line = capsys.readouterr().err.strip()
    accuracy = {float(a): float(p) / 100 for a, p in re.findall(r"([\d.]+) \(([\d.]+) %\)", line)}
    assert line.startswith("dsim: error: --min-accuracy 0.99: no prune amount keeps it") and len(accuracy) == 5
    floor = sum(sorted(accuracy.values())[1:3]) / 2  # between the second and the third lowest (printed to 0.1 %)
    assert cli.main([*command, "--min-accuracy", str(floor)]) == 0
    table = pd.read_csv(out / "search.csv")
    assert (
        set(table["prune_amount"]) == {a for a, p in accuracy.items() if p >= floor}
        and len(set(table["prune_amount"])) == 3
    )
    assert (table["accuracy"] >= floor).all()
    best = table.sort_values(["objective", "index"]).iloc[0]
    run = tmp_path / "run"
    assert cli.main(["run", str(out / "best.yaml"), "--out", str(run), "--no-cache", "--quiet"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["latency_s"] == pytest.approx(best["latency_s"], rel=1e-9)
    assert summary["accuracy"] == pytest.approx(best["accuracy"], abs=1e-8)  # search.csv keeps 8 decimals
    prune = load(out / "best.yaml").prune
    assert prune.amount == best["prune_amount"] and prune.method == (
        "none" if best["prune_amount"] == 0 else "l1_unstructured"
    )


def test_command_writes_a_best_split_that_dsim_run_reproduces(tmp_path, capsys) -> None:
    out = tmp_path / "opt"
    command = ["optimize", str(SCENARIOS / "quickstart.yaml"), "--budget", "14", "--out", str(out), "--quiet"]
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
