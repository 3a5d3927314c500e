"""Sweeps on a Dask cluster (``dsim sweep --scheduler``): the same sweep.csv as the process pool, and a
point whose task fails on the cluster is resubmitted. A small in-process LocalCluster (threads) keeps
this fast."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from distributed import LocalCluster

from sim.cli import main
from sim.pipeline.store import Store
from sim.study import sweep as sweeps
from tests.helpers import scenario_dict

GRID = {"network.bandwidth_mbps": [1, 10], "transfer.format": ["dense", "csr"]}


def scenario() -> dict:
    """A small LeNet-5 scenario on synthetic images (no dataset to load, no accuracy to measure)."""
    return scenario_dict(2, inputs={"dataset": "synthetic"})


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as c:
        yield c


def test_dask_sweep_writes_the_same_csv_as_the_process_pool(tmp_path, cluster) -> None:
    store = Store(tmp_path / "cache")  # the second sweep reads the workloads the first built
    pool = sweeps.sweep(scenario(), GRID, baseline=True, out=tmp_path / "pool", jobs=1, progress=False, store=store)
    dask = sweeps.sweep(
        scenario(),
        GRID,
        baseline=True,
        out=tmp_path / "dask",
        progress=False,
        scheduler=cluster.scheduler_address,
    )
    assert (tmp_path / "pool" / "sweep.csv").read_bytes() == (tmp_path / "dask" / "sweep.csv").read_bytes()
    assert len(dask) == 4 and (dask["error"] == "").all()
    pd.testing.assert_frame_equal(pool, dask)


def _failing_once(marker: Path):
    real = sweeps.simulate_point

    def flaky(index, scenario, built, baseline):
        if index == 1 and marker.exists():
            marker.unlink()
            raise ConnectionResetError("worker lost")  # what a lost worker looks like to the client
        return real(index, scenario, built, baseline)

    return flaky


def test_a_failed_point_is_retried(tmp_path, cluster, monkeypatch) -> None:
    marker = tmp_path / "fail-once"
    marker.touch()
    monkeypatch.setattr(sweeps, "simulate_point", _failing_once(marker))
    store = Store(tmp_path / "cache")
    table = sweeps.sweep(scenario(), GRID, jobs=1, progress=False, store=store, scheduler=cluster.scheduler_address)
    assert not marker.exists()  # it did fail once
    assert (table["error"] == "").all()
    monkeypatch.undo()
    assert table.equals(sweeps.sweep(scenario(), GRID, jobs=1, progress=False, store=store))


def test_cli_scheduler_option(tmp_path, cluster, capsys) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario()))
    args = [
        "sweep",
        str(path),
        "--set",
        "network.bandwidth_mbps=1,10",
        "--cache-dir",
        str(tmp_path / "c"),
        "--jobs",
        "1",
    ]
    log = tmp_path / "dask.log"
    assert main([*args, "--out", str(tmp_path / "d"), "--scheduler", cluster.scheduler_address, "--log", str(log)]) == 0
    assert main([*args, "--out", str(tmp_path / "p")]) == 0
    assert (tmp_path / "d" / "sweep.csv").read_bytes() == (tmp_path / "p" / "sweep.csv").read_bytes()
    lines = log.read_text().splitlines()  # the Dask path logs its points through sim.progress like the pool
    assert sum("point 1/2 done in" in line for line in lines) == 1
    assert sum("point 2/2 done in" in line for line in lines) == 1


@pytest.mark.slow  # waits for the connection timeout
def test_unreachable_scheduler_is_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario()))
    args = ["sweep", str(path), "--set", "network.bandwidth_mbps=1,10", "--no-cache", "--jobs", "1"]
    assert main([*args, "--out", str(tmp_path / "x"), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "--scheduler tcp://127.0.0.1:1: cannot reach the Dask scheduler" in capsys.readouterr().err
