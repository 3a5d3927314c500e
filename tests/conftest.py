"""Fixtures shared by the tests: LeNet-5 builders and a runner for hand-built workloads."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from torch import nn

from sim.engine.devices import DeviceRate
from sim.engine.network import Network
from sim.engine.simulate import Timeline, simulate
from sim.model.flowgraph import FlowGraph
from sim.model.zoo import build_model
from sim.workload.types import Message, Task, Workload

MBPS = 1e6


def _lenet(seed: int = 0) -> nn.Module:
    """A LeNet-5 with the weights torch draws from ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model("lenet5")


@pytest.fixture
def lenet() -> Callable[..., nn.Module]:
    """Builds a fresh LeNet-5 (``lenet(seed=0)``): the seed-0 weights are those a scenario builds."""
    return _lenet


@pytest.fixture
def traced_lenet() -> Callable[[], tuple[nn.Module, FlowGraph]]:
    """Builds a fresh seed-0 LeNet-5 and its channel-flow graph (traced on a zero image)."""

    def make() -> tuple[nn.Module, FlowGraph]:
        model = _lenet(0)
        return model, FlowGraph.trace(model, torch.zeros(1, 1, 32, 32))

    return make


@pytest.fixture(scope="session")
def lenet_graph() -> FlowGraph:
    """The channel-flow graph of the seed-0 LeNet-5, shared (read only)."""
    return FlowGraph.trace(_lenet(0), torch.zeros(1, 1, 32, 32))


class HandRun(NamedTuple):
    """A simulated hand-built workload."""

    workload: Workload
    network: Network
    timeline: Timeline


def _run(
    tasks: Sequence[Task],
    messages: Sequence[Message],
    network: Network | None = None,
    *,
    n_devices: int = 2,
    topology: str = "mesh",
    bandwidth_bps: float = 1 * MBPS,
    latency_s: float = 0.0,
    rates: Sequence[DeviceRate] | None = None,
    arrivals: Sequence[float] = (0.0,),
    **options: Any,
) -> HandRun:
    """Simulate ``tasks`` and ``messages`` (device 0 is source and sink) on ``network``, or on a
    ``topology`` of ``n_devices`` devices d0.. with one bandwidth and latency; every device at 1 GFLOP/s
    unless ``rates`` says otherwise; one frame per entry of ``arrivals``."""
    if network is None:
        network = Network.build(tuple(f"d{i}" for i in range(n_devices)), topology, bandwidth_bps, latency_s)
    names = tuple(network.devices)
    workload = Workload(names, 0, 0, len(arrivals), tuple(tasks), tuple(messages))
    timeline = simulate(workload, rates or [DeviceRate(1e9)] * len(names), network, list(arrivals), **options)
    return HandRun(workload, network, timeline)


@pytest.fixture
def run() -> Callable[..., HandRun]:
    """Runs a hand-built workload through the engine (see :func:`_run`)."""
    return _run


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own empty folder: nothing lands in the repository's ``results/``, and a test
    that reads a bundled file by a cwd-relative path fails (use ``tests.helpers.SCENARIOS``)."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True, scope="session")
def _private_build_cache() -> Iterator[None]:
    """Every test session uses its own build cache folder, so no test reads or fills ``~/.cache/dsim``."""
    old = os.environ.get("DSIM_CACHE")
    with tempfile.TemporaryDirectory(prefix="dsim-test-cache-") as tmp:
        os.environ["DSIM_CACHE"] = tmp
        yield
    if old is None:
        os.environ.pop("DSIM_CACHE", None)
    else:
        os.environ["DSIM_CACHE"] = old
