"""Lossy links end to end (LeNet-5 over TCP): ``p: 0`` is the lossless run file for file, a lossy run is
the same for the same seed, leaves the global generators alone and reports its retransmissions; the tail
percentiles and the deadline miss rate against hand-computed figures; a loss sweep with its figure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import sim
from sim.analysis.summary import summarize
from sim.cli import main
from sim.config.load import parse_scenario
from sim.engine.devices import DeviceRate
from sim.engine.network import Network
from sim.engine.simulate import simulate
from sim.errors import UserError
from sim.pipeline.evaluate import evaluate
from sim.pipeline.prepare import prepare
from sim.report.text import format_summary
from sim.workload.types import Workload
from tests import helpers

FILES = ("transfers.csv", "compute.csv", "hops.csv", "links.csv", "devices.csv", "traffic.csv", "trace.json")
FRAMES = {"dataset": "digits", "batch_size": 1, "frames": 4, "interval_ms": 5}


def network(**extra: object) -> dict[str, object]:
    return {"topology": "mesh", "bandwidth_mbps": 5, "latency_ms": 1.0, "protocol": "tcp", **extra}


LOSSY = network(loss={"p": 0.05}, jitter_ms={"distribution": "pareto", "scale": 0.5, "shape": 2.5})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, bytes], dict, object]]:
    """``dsim run`` without loss, with ``p: 0``, and twice with loss: each run's files, summary and folder."""
    tmp = tmp_path_factory.mktemp("lossy")
    out = {}
    for name, net in (("plain", network()), ("zero", network(loss={"p": 0})), ("a", LOSSY), ("b", LOSSY)):
        scen = tmp / f"{name}.yaml"
        scen.write_text(yaml.safe_dump(helpers.scenario_dict(inputs=FRAMES, network=net)))
        assert main(["run", str(scen), "--out", str(tmp / name)]) == 0
        summary = json.loads((tmp / name / "summary.json").read_text())
        out[name] = ({f: (tmp / name / f).read_bytes() for f in FILES}, summary, tmp / name)
    return out


def test_zero_loss_is_the_run_without_loss_file_for_file(runs) -> None:
    (plain, plain_summary, _), (zero, zero_summary, folder) = runs["plain"], runs["zero"]
    assert zero == plain
    assert zero_summary["scenario"]["network"]["loss"]["p"] == 0  # the scenario echo says what was asked
    assert {k: v for k, v in zero_summary.items() if k != "scenario"} == {
        k: v for k, v in plain_summary.items() if k != "scenario"
    }
    assert "retransmissions" not in pd.read_csv(folder / "transfers.csv").columns


def test_a_lossy_run_is_the_same_for_the_same_seed_and_counts_its_retransmissions(runs) -> None:
    (first, summary, folder), (again, _, _) = runs["a"], runs["b"]
    plain, plain_summary, plain_folder = runs["plain"]
    assert first == again and first["transfers.csv"] != plain["transfers.csv"]
    transfers = pd.read_csv(folder / "transfers.csv")
    hops, plain_hops = pd.read_csv(folder / "hops.csv"), pd.read_csv(plain_folder / "hops.csv")
    # every lost transmission is sent again: the hop table has one row more per retransmission
    assert summary["retransmissions"] == transfers["retransmissions"].sum() == len(hops) - len(plain_hops) > 0
    assert summary["latency_p95_s"] > plain_summary["latency_p95_s"]
    assert f"lossy links        {summary['retransmissions']} transmissions lost and sent again" in (
        format_summary(sim.run(folder.parent / "a.yaml").record)  # the terminal summary of the same run
    )


def test_a_lossy_evaluation_leaves_the_global_generators_alone() -> None:
    data = helpers.scenario_dict(inputs=FRAMES, network=network(loss={"p": 0.1}, jitter_ms={"std": 1.0}))
    sc = parse_scenario(data)
    built = prepare(sc).built
    torch.manual_seed(99)
    np.random.seed(99)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    assert evaluate(sc, built).summary["retransmissions"] > 0
    assert torch.equal(torch.get_rng_state(), torch_state) and np.array_equal(np.random.get_state()[1], numpy_state)


def test_percentiles_and_deadline_misses_of_four_queued_frames() -> None:
    # Four frames of 1 s of work each, all arriving at 0 on one device: latencies 1, 2, 3, 4 s. The 95th
    # percentile (linear between order statistics) is 3 + 0.85 * (4 - 3) = 3.85 s; with a 2.5 s deadline
    # frames 3 and 4 miss it: 0.5.
    tasks = tuple(helpers.task(0, 1e9, final=True, frame=f) for f in range(4))
    wl = Workload(("a",), 0, 0, 4, tasks, ())
    tl = simulate(wl, [DeviceRate(1e9)], Network.mesh(["a"], 1e6, 0.0), [0.0] * 4)
    assert tl.latency_s == pytest.approx([1.0, 2.0, 3.0, 4.0])
    summary = summarize("x", {}, wl, tl, deadline_s=2.5)
    assert summary.latency_p95_s == pytest.approx(3.85) and summary.latency_p99_s == pytest.approx(3.97)
    assert summary.deadline_miss_rate == 0.5
    assert "deadline_miss_rate" not in summarize("x", {}, wl, tl).to_dict()


def test_loss_settings_are_checked_before_any_work() -> None:
    def refused(net: dict[str, object], match: str) -> None:
        with pytest.raises(UserError, match=match):
            parse_scenario(helpers.scenario_dict(network=net))

    refused({"loss": {"p": 0.01}}, r"network\.loss: needs packets; set network\.protocol: tcp")
    refused(network(loss={"p": 0.95}), r"network\.loss\.p: must be <= 0\.9")
    refused(network(loss={"model": "gilbert_elliott", "p_good_bad": 0.1}), r"p_bad_good: required")
    refused(network(loss={"model": "bernoulli", "p": 0.1, "loss_bad": 1}), r"loss_bad: not a field of model bernoulli")
    refused(network(jitter_ms={"distribution": "uniform", "low": 3, "high": 1}), r"low: 3\.0 is above high")
    refused(network(jitter_ms={"distribution": "pareto", "scale": 1, "shape": 1}), r"shape: must be > 1")
    links = [{"a": "d0", "b": "d1", "protocol": "none", "loss": {"p": 0.1}}]
    refused({"protocol": "tcp", "links": links}, r"network\.links\[0\]\.loss: needs packets on this link")
    parse_scenario(helpers.scenario_dict(network={"topology": "shared", "loss": {"p": 0.1}}))  # the medium retries


def test_a_link_override_loses_only_on_that_link() -> None:
    links = [{"a": "d0", "b": "d1", "loss": {"p": 0.2}}, {"a": "d0", "b": "d2", "jitter_ms": "none"}]
    sc = parse_scenario(helpers.scenario_dict(network=network(jitter_ms={"std": 1.0}, links=links)))
    from sim.engine import assemble  # the engine's view of the scenario's links

    impaired = {link.name: link.impairment for link in assemble.network(sc).links()}
    assert impaired["d0->d1"].loss.p == impaired["d1->d0"].loss.p == 0.2
    assert impaired["d0->d1"].jitter.spread_s == 0.001
    assert impaired["d0->d2"] is None and impaired["d0->d3"].loss is None


def test_a_loss_sweep_draws_latency_percentiles_against_the_loss_rate(tmp_path) -> None:
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(helpers.scenario_dict(inputs=FRAMES, network=network(loss={"p": 0.01}))))
    out = tmp_path / "sweep"
    assert main(["sweep", str(scen), "--set", "network.loss.p=0,0.1", "--out", str(out), "--jobs", "1"]) == 0
    table = pd.read_csv(out / "sweep.csv")
    assert list(table["network.loss.p"]) == [0.0, 0.1]
    assert np.isnan(table["retransmissions"][0]) and table["retransmissions"][1] > 0
    assert table["latency_p95_s"][1] > table["latency_p95_s"][0]
    assert (out / "latency_vs_loss.png").stat().st_size > 0
