"""Kernel / ADMM / CaP pruning: cost maps, projections, the ADMM update, the comm_aware
reassignment and the elements x hops metrics, each checked against values computed by hand."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sim.config.load import parse_scenario
from sim.config.schema import PruneSpec
from sim.engine import assemble
from sim.errors import UserError
from sim.model import partition
from sim.model.flowgraph import FlowGraph
from sim.model.zoo import build_model
from sim.pipeline.evaluate import evaluate
from sim.pipeline.prepare import prepare
from sim.prune import admm
from sim.report.save import save_run
from sim.workload.plan import place
from tests.helpers import scenario_dict


class TwoConv(nn.Module):
    """conv a: 3 -> 6 channels at 4x4, conv b: 6 -> 3 channels, then a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.b(torch.relu(self.a(x)))), 1))


def line3() -> dict:
    return scenario_dict(3, network={"topology": "line", "bandwidth_mbps": 20, "latency_ms": 1.0})


def test_cost_maps_of_a_two_conv_toy_on_a_line_of_three_devices_match_the_hand_blocks() -> None:
    torch.manual_seed(0)
    model = TwoConv()
    graph = FlowGraph.trace(model, torch.zeros(1, 3, 4, 4))
    parts = {"a": np.array([0, 0, 1, 1, 2, 2]), "b": np.array([0, 1, 2]), "fc": np.array([0, 1])}
    placement = place(graph, parts, 3, source=0, sink=0)
    inputs = {n: placement.owner[graph.args(n)[0]] for n in graph.order if graph.kind(n) == "layer"}
    cost = assemble.device_cost(parse_scenario(line3()))
    assert cost.tolist() == [[0, 1, 2], [1, 0, 1], [2, 1, 0]]
    maps = admm.cost_maps(admm.sites(model, graph, set()), parts, inputs, cost)
    hw = 16  # 4 x 4 input values per channel
    # conv a reads the image, all on d0: filters on d0 cost 0, on d1 one hop, on d2 two hops
    assert (maps["a"] / hw).tolist() == [[0, 0, 0]] * 2 + [[1, 1, 1]] * 2 + [[2, 2, 2]] * 2
    # conv b: filter on d0/d1/d2 reading channels owned d0,d0,d1,d1,d2,d2
    assert (maps["b"] / hw).tolist() == [[0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 1, 1], [2, 2, 1, 1, 0, 0]]
    assert set(maps) == {"a", "b"}  # the classifier is not a site


def test_cost_seconds_and_an_explicit_matrix() -> None:
    data = line3()
    data["network"]["links"] = [{"a": "d1", "b": "d2", "bandwidth_mbps": 10}]
    sc = parse_scenario({**data, "prune": {"method": "admm_comm", "cost": "seconds"}})
    # 32 bit / 20 Mbps per link, a 10 Mbps link twice that; scaled so the cheapest pair costs 1
    expected = np.array([[0, 1, 1 + 2], [1, 0, 2], [3, 2, 0]])
    assert np.allclose(assemble.device_cost(sc), expected, rtol=1e-12, atol=0)
    matrix = [[0, 5, 1], [5, 0, 1], [1, 1, 0]]
    sc = parse_scenario({**line3(), "prune": {"method": "admm_comm", "cost_matrix": matrix}})
    assert assemble.device_cost(sc).tolist() == matrix
    doubled = [[2 * v for v in row] for row in matrix]  # the same ratios: the same costs
    sc = parse_scenario({**line3(), "prune": {"method": "admm_comm", "cost_matrix": doubled}})
    assert assemble.device_cost(sc).tolist() == matrix
    with pytest.raises(UserError, match=r"prune.cost_matrix: must be 3 x 3"):
        parse_scenario({**line3(), "prune": {"method": "admm_comm", "cost_matrix": [[0, 1], [1, 0]]}})
    with pytest.raises(UserError, match=r"prune.cost_matrix: the diagonal must be 0"):
        parse_scenario({**line3(), "prune": {"method": "admm_comm", "cost_matrix": [[1, 1, 1]] * 3}})


@pytest.mark.parametrize("shape", [(8, 3), (6, 5), (7, 7), (16, 8), (1, 1)])
def test_kernel_projection_keeps_exactly_a_quarter_rounded_up_and_the_largest(shape: tuple[int, int]) -> None:
    w = torch.randn(*shape, 3, 3, generator=torch.Generator().manual_seed(1))
    mask = admm.project_kernels(w, admm.kernel_budget(*shape, 0.75)).numpy()
    assert mask.sum() == math.ceil(shape[0] * shape[1] / 4)
    norms = np.sqrt((w.numpy() ** 2).sum(axis=(2, 3)))
    if (~mask).any():
        assert norms[mask].min() >= norms[~mask].max()


def test_kernel_magnitude_keeps_the_budget_in_every_conv_of_resnet18_width_one_eighth() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", width=1 / 8)
    graph = FlowGraph.trace(model, torch.zeros(1, 3, 16, 16))
    spec = PruneSpec(method="kernel_magnitude", amount=0.75)
    parts = partition.make_partition(graph, "contiguous", 4)
    admm.apply(model, graph, spec, 0, parts, lambda p: {}, None)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20 and {m.out_channels for m in convs} == {8, 16, 32, 64}
    for m in convs:
        kept = int((m.weight.detach().flatten(2).abs().sum(2) != 0).sum())
        assert kept == math.ceil(m.out_channels * m.in_channels / 4)


def test_one_admm_update_is_its_closed_form() -> None:
    gen = torch.Generator().manual_seed(3)
    w, u = torch.randn(4, 5, 3, 3, generator=gen), torch.randn(4, 5, 3, 3, generator=gen) * 0.1
    model = nn.Sequential(nn.Conv2d(5, 4, 3, padding=1))
    graph = FlowGraph.trace(model, torch.zeros(1, 5, 4, 4))
    projector = admm.Projector(model, graph, admm.sites(model, graph, set()), PruneSpec(method="admm", amount=0.75))
    new = admm.admm_update({"0": w}, admm.AdmmState({"0": w}, {"0": u}, 0.5), projector, 1.4, 0.6)
    # by hand: keep the ceil(0.25 * 20) = 5 kernels of W + U with the largest L2 norm
    v = (w + u).numpy()
    norms = np.sqrt((v**2).sum(axis=(2, 3))).ravel()
    keep = np.zeros(20, dtype=bool)
    keep[np.argsort(-norms)[:5]] = True
    z = v * keep.reshape(4, 5)[:, :, None, None]
    assert np.allclose(new.z["0"].numpy(), z)
    assert np.allclose(new.u["0"].numpy(), u.numpy() + w.numpy() - z)
    assert new.rho == pytest.approx(0.6)  # 0.5 * 1.4 = 0.7, capped at 0.6
    again = admm.admm_update({"0": w}, admm.AdmmState({"0": w}, {"0": u}, 0.1), projector, 1.4, 0.6)
    assert again.rho == pytest.approx(0.14)


def test_filter_projection_keeps_residual_streams_together() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", width=1 / 8)
    graph = FlowGraph.trace(model, torch.zeros(1, 3, 16, 16))
    projector = admm.Projector(
        model, graph, admm.sites(model, graph, set()), PruneSpec(method="admm", amount=0.5, granularity="filter")
    )
    weights = {n: model.get_submodule(n).weight.detach() for n in projector.names}
    masks = projector.masks(weights)
    stream = [masks[n].flatten(1)[:, 0] for n in ("conv1", "layer1.0.conv2", "layer1.1.conv2")]
    assert all(torch.equal(stream[0], s) for s in stream) and int(stream[0].sum()) == 4


def norms_for(model: nn.Module, site_list: list[admm.Site], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for s in site_list:
        w = model.get_submodule(s.name).weight
        out[s.name] = rng.exponential(size=tuple(w.shape[:2])) ** 3  # uneven, so some moves pay off
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reassignment_never_raises_the_penalty_and_keeps_each_device_load(seed: int) -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", width=1 / 8)
    graph = FlowGraph.trace(model, torch.zeros(1, 3, 16, 16))
    site_list = admm.sites(model, graph, set())
    parts = partition.make_partition(graph, "contiguous", 4)
    cost = np.abs(np.subtract.outer(np.arange(4), np.arange(4))).astype(float)  # line hops

    def owners(p):
        placement = place(graph, p, 4, source=0, sink=0)
        return {n: placement.owner[graph.args(n)[0]] for n in graph.order if graph.kind(n) == "layer"}

    norms = norms_for(model, site_list, seed)
    before = admm.partition_penalty(site_list, norms, parts, owners(parts), cost)
    new, moved = admm.reassign(graph, site_list, norms, parts, owners, cost)
    after = admm.partition_penalty(site_list, norms, new, owners(new), cost)
    # independent recount of the penalty of the new partition, kernel by kernel
    inputs = owners(new)
    recount = sum(
        norms[s.name][f, c] * s.in_spatial * cost[new[s.name][f], inputs[s.node][c]]
        for s in site_list
        for f in range(norms[s.name].shape[0])
        for c in range(norms[s.name].shape[1])
    )
    assert after == pytest.approx(recount)
    assert after < before and moved > 0
    for name, owner in new.items():
        assert np.array_equal(np.bincount(owner, minlength=4), np.bincount(parts[name], minlength=4))
    assert np.array_equal(inputs["conv1"], np.zeros(3))  # the image stays on the source
    again, _ = admm.reassign(graph, site_list, norms, new, owners, cost)
    assert admm.partition_penalty(site_list, norms, again, owners(again), cost) <= after


# -- metrics ----------------------------------------------------------------------------------------------
def test_elements_hops_equal_the_sums_over_transfers_csv(tmp_path: Path) -> None:
    data = scenario_dict(4, network={"topology": "line", "bandwidth_mbps": 20, "latency_ms": 1.0})
    data["inputs"]["frames"] = 2
    data["prune"] = {"method": "kernel_magnitude", "amount": 0.75}
    sc = parse_scenario(data)
    result = evaluate(sc, prepare(sc).built)
    save_run(result, tmp_path)
    with (tmp_path / "transfers.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["elements_hops"] == sum(int(r["elements"]) * int(r["hops"]) for r in rows) > 0
    # busiest link by hand: on the line d0-d1-d2-d3 a message i -> j crosses every link between them
    per_link: dict[tuple[int, int], int] = {}
    for r in rows:
        i, j = int(r["src"][1:]), int(r["dst"][1:])
        step = 1 if j > i else -1
        assert int(r["hops"]) == abs(j - i)
        for k in range(i, j, step):
            per_link[(k, k + step)] = per_link.get((k, k + step), 0) + int(r["elements"])
    assert summary["elements_hops_max_link"] == max(per_link.values())
    # LeNet-5's convs: 1 x 6 kernels keep ceil(1.5) = 2, 6 x 16 keep 24
    assert summary["kept_kernels"] == pytest.approx((2 + 24) / (6 + 96))
    assert summary["kept_kernels_per_conv"] == {"conv1": pytest.approx(2 / 6), "conv2": pytest.approx(24 / 96)}


def test_admm_comm_smoke_on_lenet_keeps_the_budget_and_writes_the_comm_aware_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = scenario_dict(4, network={"topology": "line", "bandwidth_mbps": 20, "latency_ms": 1.0})
    data["model"]["train_epochs"] = 1
    data["partition"] = {"strategy": "comm_aware", "save_to": "final.json"}  # beside the scenario file
    data["prune"] = {
        "method": "admm_comm",
        "amount": 0.75,
        "lambda_comm": 10,
        "admm": {"epochs": 2, "retrain_epochs": 1},
    }
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # save_to resolves against the scenario's folder, not here
    sc = parse_scenario(data, base_dir=tmp_path)
    prepared = prepare(sc)
    assert not (tmp_path / "elsewhere" / "final.json").exists()
    for name, fraction in prepared.built.kept_kernels.items():
        layer = next(
            l for l in FlowGraph.trace(build_model("lenet5"), torch.zeros(1, 1, 32, 32)).layers() if l.name == name
        )
        assert fraction == math.ceil(layer.in_channels * layer.out_channels / 4) / (
            layer.in_channels * layer.out_channels
        )
    doc = json.loads((tmp_path / "final.json").read_text())
    assert doc["model"] == "lenet5" and set(doc["layers"]) >= {"conv1", "conv2"}
    before = torch.random.get_rng_state()
    again = prepare(sc)
    assert torch.equal(before, torch.random.get_rng_state())  # the global RNG is untouched
    assert again.built.workload.messages == prepared.built.workload.messages  # deterministic


def test_comm_aware_needs_admm_and_width_needs_a_wide_model() -> None:
    with pytest.raises(UserError, match=r"partition\.strategy: comm_aware"):
        parse_scenario(scenario_dict(2, partition={"strategy": "comm_aware"}))
    with pytest.raises(UserError, match=r"model\.width: only"):
        build_model("lenet5", width=0.5)


def test_admm_at_filter_granularity_removes_the_filters_physically() -> None:
    data = scenario_dict(2)
    data["prune"] = {
        "method": "admm",
        "amount": 0.5,
        "granularity": "filter",
        "admm": {"epochs": 1, "retrain_epochs": 0},
    }
    prepared = prepare(parse_scenario(data))
    convs = {l.name: l.out_channels for l in prepared.graph.layers() if l.op == "conv"}
    assert convs == {"conv1": 3, "conv2": 8}  # ceil(0.5 * 6), ceil(0.5 * 16): smaller tensors, not masks
    assert prepared.built.kept_kernels == {"conv1": 0.5, "conv2": pytest.approx(3 * 8 / 96)}
