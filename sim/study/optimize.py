"""``dsim optimize``: search for the best split of a scenario, with the simulator as the cost model.

The model is traced and its frames run once (:class:`Base`); every candidate split is then planned, sized
(the unsplit model's tensor values are cached per frame) and simulated, on one or several processes.

A candidate gives every partitionable layer a **share vector**: the fraction of its output channels each
device owns, turned into contiguous runs of channels by :func:`sim.model.partition.proportional_split`.
A one-hot share vector puts the whole layer on one device, so the search spaces are:

``filters``
    one share vector for every layer, from an exhaustive grid over the devices' shares when it fits the
    budget (shares in steps of ``1/k``), plus the start proportional to the devices' rates;
``pipeline``
    contiguous stages of layers in topological order, stage ``i`` whole on device ``i``: every placement of
    the cuts when they fit the budget, else the cuts that balance the stages' compute (dynamic programming
    over the devices' rates, :func:`balanced_cuts`);
``hybrid``
    simulated annealing over per-layer share vectors (move a quantum of one layer's share between two
    devices, put a layer whole on one device, or copy a neighbour's shares), started from the best so far.

The named strategies (``contiguous``, ``balanced``, ``round_robin``, ``aligned``, ``random``) are always
evaluated, so the printed table says how far each is from the best. Everything is seeded
(``--seed``, default the scenario's) and the result does not depend on ``--jobs``: candidates are
proposed in fixed batches and their results are read in proposal order.

Memory per device (``devices[i].memory_mb``, 1 MB = 1e6 bytes) bounds the float32 weights the device holds
plus the largest output it holds at once (its share of one layer's output, for the batch); a split that
needs more is infeasible and never chosen.

Example::

    >>> from sim.config.load import load
    >>> result = optimize(load("scenarios/quickstart.yaml"), SearchSettings(budget=20))  # doctest: +SKIP
    >>> result.best.description  # doctest: +SKIP
    'filters shares 0.25:0.25:0.25:0.25'
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from sim.config.schema import Scenario
from sim.engine import assemble
from sim.errors import UserError
from sim.fileio import staged_directory, write_csv
from sim.model.flowgraph import FlowGraph
from sim.model.partition import make_partition, proportional_split, save_partition
from sim.pipeline.calibrate import calibrated
from sim.pipeline.evaluate import BuiltWorkload, point_summary, run_engine
from sim.pipeline.prepare import prepare, sized_workload, start_forked_worker
from sim.progress import Progress
from sim.report.plots import plot_search
from sim.study.sweep import check_jobs, map_items
from sim.workload.types import Partition

OBJECTIVES = ("latency", "throughput", "bytes", "energy")
SPACES = ("filters", "pipeline", "hybrid")
NAMED = ("contiguous", "balanced", "round_robin", "aligned", "random")
BATCH = 8  # candidates proposed together (evaluated in parallel); fixed, so results do not depend on --jobs
SEARCH_COLUMNS = (
    "index",
    "space",
    "description",
    "feasible",
    "objective",
    "latency_s",
    "throughput_fps",
    "bytes_total",
    "memory_mb_max",
)


@dataclass(frozen=True)
class SearchSettings:
    """What to optimise and how long to search.

    ``budget`` bounds the candidates evaluated (the named strategies included); ``time_s``, when given,
    stops the search at the first batch that ends after it (seconds of wall time). ``seed`` ``None`` takes
    the scenario's.
    """

    objective: str = "latency"
    spaces: tuple[str, ...] = SPACES
    budget: int = 200
    time_s: float | None = None
    seed: int | None = None
    jobs: int = 1


@dataclass(frozen=True)
class Candidate:
    """One split to evaluate: a partition and how it was found."""

    space: str  # "named", "filters", "pipeline" or "hybrid"
    description: str
    partition: Partition


@dataclass(frozen=True)
class Evaluation:
    """A candidate's figures: the objective (lower is better: throughput enters negated), the run's
    latency (s, mean over frames), throughput (frames/s), bytes on the wire, and memory per device (MB)."""

    index: int
    candidate: Candidate
    objective: float
    latency_s: float
    throughput_fps: float
    bytes_total: int
    memory_mb: tuple[float, ...]
    feasible: bool

    def row(self, devices: Sequence[str]) -> dict[str, Any]:
        """The candidate's row of ``search.csv``."""
        out: dict[str, Any] = {
            "index": self.index,
            "space": self.candidate.space,
            "description": self.candidate.description,
            "feasible": self.feasible,
            "objective": self.objective,
            "latency_s": self.latency_s,
            "throughput_fps": self.throughput_fps,
            "bytes_total": self.bytes_total,
            "memory_mb_max": max(self.memory_mb),
        }
        out.update({f"memory_mb_{d}": m for d, m in zip(devices, self.memory_mb)})
        return out


@dataclass
class SearchResult:
    """Every evaluated candidate in order, the best feasible one, and the named strategies' evaluations."""

    scenario: Scenario
    graph: FlowGraph
    evaluations: list[Evaluation] = field(default_factory=list)

    @property
    def best(self) -> Evaluation:
        """The feasible candidate with the lowest objective (the first one on ties)."""
        feasible = [e for e in self.evaluations if e.feasible]
        return min(feasible, key=lambda e: (e.objective, e.index))

    def named(self) -> list[Evaluation]:
        """The named strategies' evaluations, in :data:`NAMED` order."""
        return [e for e in self.evaluations if e.candidate.space == "named"]


@dataclass
class Base:
    """What every candidate shares: the calibrated scenario (no baseline, no deployment), the traced graph,
    the frames' image batches and the cache of the unsplit model's tensor values (one dict per frame)."""

    scenario: Scenario
    graph: FlowGraph
    images: list[Any]
    cache: list[dict[str, np.ndarray]]


def check_settings(scenario: Scenario, settings: SearchSettings) -> None:
    """Refuse, in one line each, what the search cannot do for ``scenario``."""
    if settings.objective not in OBJECTIVES:
        raise UserError(f"--objective: '{settings.objective}' is not one of {', '.join(OBJECTIVES)}")
    unknown = [s for s in settings.spaces if s not in SPACES]
    if unknown or not settings.spaces:
        raise UserError(
            f"--space: '{','.join(unknown) or '(empty)'}' is not a list of {', '.join(SPACES)} "
            "(rows: not searched yet; write a partition file by hand)"
        )
    if settings.budget < len(NAMED) + 1:
        raise UserError(f"--budget: must be at least {len(NAMED) + 1} (the named strategies and one more)")
    if settings.time_s is not None and not settings.time_s > 0:
        raise UserError(f"--time: must be > 0 seconds (got {settings.time_s})")
    check_jobs(settings.jobs)
    if scenario.prune.method != "none":
        raise UserError(
            f"prune.method: {scenario.prune.method}: dsim optimize searches splits of the unpruned model; "
            "set prune.method: none (pruning is not part of the search space yet)"
        )
    if len(scenario.devices) < 2:
        raise UserError("devices: dsim optimize needs at least 2 devices to split over")


def base(scenario: Scenario) -> Base:
    """Prepare the scenario once (torch): the model, its graph and its frames."""
    sc = calibrated(scenario)
    sc = sc.model_copy(update={"baseline": "none", "deploy": None})
    prepared = prepare(sc)
    images = prepared.images or []
    return Base(sc, prepared.graph, images, [{} for _ in images])


def memory_mb(graph: FlowGraph, parts: Partition, n_devices: int, batch: int) -> tuple[float, ...]:
    """Per device: float32 weights held (filters owned, with their bias) plus the largest share of one
    layer's output held at once (for the batch), in MB (1e6 bytes).

    >>> from sim.workload.graph import Layer
    """
    weights = np.zeros(n_devices)
    peak = np.zeros(n_devices)
    for layer in graph.layers():
        owned = np.bincount(parts[layer.name], minlength=n_devices)
        per_filter = (
            layer.in_channels * layer.in_spatial
            if layer.op == "linear"
            else layer.in_channels // layer.groups * layer.kernel_elems
        )
        weights += owned * (per_filter + 1) * 4
        peak = np.maximum(peak, owned * layer.out_spatial * batch * 4)
    return tuple(float(x) for x in (weights + peak) / 1e6)


def _objective(summary: dict[str, Any], objective: str) -> float:
    if objective == "latency":
        return float(summary["latency_s"])
    if objective == "throughput":
        return -float(summary["throughput_fps"])
    if objective == "bytes":
        return float(summary["bytes_total"])
    if "energy_j" not in summary:
        raise UserError("--objective energy: no device has a power setting; give devices[i].power first")
    return float(summary["energy_j"])


_BASE: Base | None = None  # the shared base in worker processes (inherited at fork)
_OBJECTIVE = "latency"


def _evaluate(job: tuple[int, Candidate]) -> Evaluation:
    """Plan, size and simulate one candidate against the module's :data:`_BASE`."""
    index, candidate = job
    assert _BASE is not None, "optimize: the base is set before any candidate is evaluated"
    sc, graph = _BASE.scenario, _BASE.graph
    _, workload = sized_workload(sc, graph, candidate.partition, _BASE.images, _BASE.cache)
    summary = point_summary(sc, BuiltWorkload(workload), None, run_engine(sc, workload))  # no tables: the lean path
    memory = memory_mb(graph, candidate.partition, len(sc.devices), sc.inputs.batch_size)
    limits = [d.memory_mb for d in sc.devices]
    feasible = all(limit is None or used <= limit for used, limit in zip(memory, limits))
    return Evaluation(
        index,
        candidate,
        _objective(summary, _OBJECTIVE),
        float(summary["latency_s"]),
        float(summary["throughput_fps"]),
        int(summary["bytes_total"]),
        memory,
        feasible,
    )


def shares_partition(graph: FlowGraph, shares: Sequence[Sequence[float]]) -> Partition:
    """The partition giving layer ``i`` (in :meth:`FlowGraph.layers` order) channels in proportion to
    ``shares[i]`` (:func:`sim.model.partition.proportional_split`; a zero share owns nothing)."""
    return {l.name: proportional_split(l.out_channels, s) for l, s in zip(graph.layers(), shares)}


def _fmt(shares: Sequence[float]) -> str:
    return ":".join(f"{s:.3g}" for s in shares)


def compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Every way to write ``total`` as an ordered sum of ``parts`` non-negative integers.

    >>> list(compositions(2, 2))
    [(0, 2), (1, 1), (2, 0)]
    """
    for cuts in itertools.combinations(range(total + parts - 1), parts - 1):
        bounds = (-1, *cuts, total + parts - 1)
        yield tuple(bounds[i + 1] - bounds[i] - 1 for i in range(parts))


def balanced_cuts(costs_s: Sequence[Sequence[float]]) -> tuple[int, ...]:
    """Split layers ``0..L-1`` into ``D`` contiguous non-empty stages, stage ``d`` on device ``d``, so that
    the slowest stage is as fast as possible; ``costs_s[d][l]`` is layer ``l``'s time on device ``d``.
    Returns the first layer of stages ``1..D-1`` (dynamic programming, ``O(D L^2)``).

    >>> balanced_cuts([[1, 1, 1, 1], [1, 1, 1, 1]])
    (2,)
    >>> balanced_cuts([[1, 1, 1, 1], [3, 3, 3, 3]])
    (3,)
    """
    n_dev, n_layers = len(costs_s), len(costs_s[0])
    prefix = [np.concatenate([[0.0], np.cumsum(c)]) for c in costs_s]
    inf = math.inf
    best = [[inf] * (n_layers + 1) for _ in range(n_dev + 1)]  # best[d][j]: layers < j on devices < d
    back = [[0] * (n_layers + 1) for _ in range(n_dev + 1)]
    best[0][0] = 0.0
    for d in range(1, n_dev + 1):
        for j in range(d, n_layers - (n_dev - d) + 1):
            for i in range(d - 1, j):
                stage = prefix[d - 1][j] - prefix[d - 1][i]
                value = max(best[d - 1][i], stage)
                if value < best[d][j]:
                    best[d][j], back[d][j] = value, i
    cuts, j = [], n_layers
    for d in range(n_dev, 1, -1):
        j = back[d][j]
        cuts.append(j)
    return tuple(reversed(cuts))


def _stages(n_layers: int, cuts: Sequence[int], n_devices: int) -> list[list[float]]:
    """One-hot share vectors of the stages that start at ``cuts``."""
    bounds = (0, *cuts, n_layers)
    shares = []
    for d in range(len(bounds) - 1):
        for _ in range(bounds[d], bounds[d + 1]):
            shares.append([1.0 if k == d else 0.0 for k in range(n_devices)])
    return shares


class Search:
    """The search of one scenario: proposes candidates batch by batch and keeps every evaluation."""

    def __init__(
        self, base_: Base, settings: SearchSettings, evaluate_batch: Callable[[list[Candidate]], list[Evaluation]]
    ):
        self.base, self.settings, self.evaluate_batch = base_, settings, evaluate_batch
        sc = base_.scenario
        self.rng = np.random.default_rng(sc.seed if settings.seed is None else settings.seed)
        self.rates = np.array(assemble.compute_rates(sc), dtype=float)
        self.layers = base_.graph.layers()
        self.n_dev = len(sc.devices)
        self.evaluations: list[Evaluation] = []
        self.seen: set[str] = set()
        self.deadline = None if settings.time_s is None else time.monotonic() + settings.time_s

    @property
    def left(self) -> int:
        """Candidates the budget still allows."""
        return self.settings.budget - len(self.evaluations)

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def run(self, candidates: list[Candidate], again: bool = False) -> list[Evaluation]:
        """Evaluate the new ones of ``candidates`` (every one with ``again``) within the budget, in
        batches of :data:`BATCH`."""
        fresh = []
        for c in candidates:
            key = repr(sorted((k, v.tobytes()) for k, v in c.partition.items()))
            if again or key not in self.seen:
                self.seen.add(key)
                fresh.append(c)
        out: list[Evaluation] = []
        for start in range(0, len(fresh), BATCH):
            if self.left <= 0 or (self.out_of_time() and self.evaluations):
                break
            batch = fresh[start : start + BATCH][: self.left]
            done = self.evaluate_batch(batch)
            self.evaluations.extend(done)
            out.extend(done)
        return out

    def named(self) -> None:
        sc, graph = self.base.scenario, self.base.graph
        seed = sc.partition.seed if sc.partition.seed is not None else sc.seed
        self.run(
            [
                Candidate("named", name, make_partition(graph, name, self.n_dev, seed, list(self.rates)))
                for name in NAMED
            ],
            again=True,  # each is listed, even when two strategies give the same split
        )

    def shares(self, shares: Sequence[Sequence[float]], space: str, description: str) -> Candidate:
        return Candidate(space, description, shares_partition(self.base.graph, shares))

    def filters(self, share: int) -> None:
        """Shares proportional to the rates, then an exhaustive grid of common shares in steps of 1/k, with
        k as fine as ``share`` of the budget allows."""
        start = self.rates / self.rates.sum()
        found = [self.shares([start] * len(self.layers), "filters", f"shares {_fmt(start)} (rates)")]
        k = 1
        while math.comb(k + 1 + self.n_dev - 1, self.n_dev - 1) <= share:
            k += 1
        for parts in compositions(k, self.n_dev):
            s = [p / k for p in parts]
            found.append(self.shares([s] * len(self.layers), "filters", f"shares {_fmt(s)}"))
        self.run(found)

    def pipeline(self, share: int) -> None:
        """Every placement of the stage cuts when they fit ``share``, else the balanced cuts."""
        n_layers = len(self.layers)
        if n_layers < self.n_dev:
            return
        batch = self.base.scenario.inputs.batch_size
        costs = [[l.flops(l.out_channels, batch) / r for l in self.layers] for r in self.rates]
        placements = math.comb(n_layers - 1, self.n_dev - 1)
        every = itertools.combinations(range(1, n_layers), self.n_dev - 1) if placements <= share else iter(())
        found = [self._stage_candidate(balanced_cuts(costs), "balanced")]
        found += [self._stage_candidate(cuts, "") for cuts in every]
        self.run(found)

    def _stage_candidate(self, cuts: Sequence[int], how: str) -> Candidate:
        names = [self.layers[c].name for c in cuts]
        text = "pipeline " + ("(" + how + ") " if how else "") + "stages from " + ", ".join(names)
        return self.shares(_stages(len(self.layers), cuts, self.n_dev), "pipeline", text)

    def _neighbour(self, shares: list[list[float]], quantum: float) -> tuple[list[list[float]], str]:
        """One random move from ``shares`` (a copy is changed)."""
        out = [list(s) for s in shares]
        layer = int(self.rng.integers(len(out)))
        move = int(self.rng.integers(3))
        name = self.layers[layer].name
        if move == 0:  # a quantum of share from one device to another
            a, b = (int(x) for x in self.rng.choice(self.n_dev, size=2, replace=False))
            step = min(quantum, out[layer][a])
            out[layer][a] -= step
            out[layer][b] += step
            return out, f"{name}: {step:.3g} from device {a} to {b}"
        if move == 1:  # the whole layer on one device
            d = int(self.rng.integers(self.n_dev))
            out[layer] = [1.0 if k == d else 0.0 for k in range(self.n_dev)]
            return out, f"{name}: whole on device {d}"
        other = layer - 1 if layer > 0 else min(layer + 1, len(out) - 1)  # copy a neighbour's shares
        out[layer] = list(out[other])
        return out, f"{name}: shares of {self.layers[other].name}"

    def hybrid(self) -> None:
        """Simulated annealing over per-layer share vectors from the best shares-based candidate so far."""
        start = min(
            (e for e in self.evaluations if e.feasible and e.candidate.space in ("filters", "pipeline")),
            key=lambda e: (e.objective, e.index),
            default=None,
        )
        if start is None:
            return
        shares = [
            list(np.bincount(start.candidate.partition[l.name], minlength=self.n_dev) / l.out_channels)
            for l in self.layers
        ]
        current, temperature = start.objective, 0.05  # relative worsening accepted with probability 1/e
        quantum = 1.0 / (2 * self.n_dev)
        step, idle = 0, 0
        while self.left > 0 and not self.out_of_time() and idle < 20:
            step += 1
            proposals = [self._neighbour(shares, quantum) for _ in range(min(BATCH, self.left))]
            cands = [self.shares(s, "hybrid", f"anneal {step}.{i}: {what}") for i, (s, what) in enumerate(proposals)]
            done = {e.candidate.description: e for e in self.run(cands)}
            idle = 0 if done else idle + 1  # every proposal seen before: finer moves, and stop when none is new
            if not done:
                quantum = max(quantum / 2, 1e-3)
            for (s, _), cand in zip(proposals, cands):
                e = done.get(cand.description)
                if e is None or not e.feasible:
                    continue
                worse = (e.objective - current) / max(abs(current), 1e-12)
                if worse <= 0 or self.rng.random() < math.exp(-worse / temperature):
                    shares, current = s, e.objective
            temperature *= 0.9


def optimize(scenario: Scenario, settings: SearchSettings, progress: bool = True) -> SearchResult:
    """Search the splits of ``scenario`` for the lowest ``settings.objective``.

    Parameters
    ----------
    scenario
        A loaded scenario (:func:`sim.config.load.load`); its own partition is ignored.
    settings
        Objective, spaces, budget, time limit, seed and worker processes (:class:`SearchSettings`).
    progress
        Show a progress bar on a terminal (and log a line per batch).

    Returns
    -------
    SearchResult
        Every candidate evaluated, in order; ``result.best`` is the feasible one with the lowest objective.

    Raises
    ------
    sim.errors.UserError
        A setting the search cannot honour, or no feasible split within the budget.

    Examples
    --------
    >>> from sim.config.load import load
    >>> result = optimize(load("scenarios/quickstart.yaml"), SearchSettings(budget=12))  # doctest: +SKIP
    >>> len(result.evaluations)  # doctest: +SKIP
    12
    """
    global _BASE, _OBJECTIVE
    check_settings(scenario, settings)
    _BASE, _OBJECTIVE = base(scenario), settings.objective
    with Progress(settings.budget, "optimize", "candidates", enabled=progress) as bar:

        def evaluate_batch(batch: list[Candidate]) -> list[Evaluation]:
            first = len(search.evaluations)
            jobs = [(first + i, c) for i, c in enumerate(batch)]
            done = sorted(
                map_items(_evaluate, jobs, settings.jobs, start_forked_worker, (), "", "", False), key=lambda e: e.index
            )
            for _ in done:
                bar.step()
            return done

        search = Search(_BASE, settings, evaluate_batch)
        search.named()
        rest = max(0, search.left)
        shaped = [s for s in ("filters", "pipeline") if s in settings.spaces]
        share = rest // (len(shaped) + ("hybrid" in settings.spaces)) if shaped else 0
        if "filters" in settings.spaces:
            search.filters(share)
        if "pipeline" in settings.spaces:
            search.pipeline(share)
        if "hybrid" in settings.spaces:
            search.hybrid()
    result = SearchResult(_BASE.scenario, _BASE.graph, search.evaluations)
    if not any(e.feasible for e in result.evaluations):
        need = min(max(e.memory_mb) for e in result.evaluations)
        raise UserError(
            f"devices[*].memory_mb: no split of the {len(result.evaluations)} evaluated fits the devices' memory "
            f"(the smallest needs {need:.3g} MB on its fullest device); raise memory_mb or add devices"
        )
    return result


def search_table(result: SearchResult) -> pd.DataFrame:
    """``search.csv``: one row per candidate, in evaluation order (:meth:`Evaluation.row`)."""
    devices = result.scenario.device_names
    return pd.DataFrame([e.row(devices) for e in result.evaluations])


def best_scenario(scenario: Scenario, partition_file: str) -> dict[str, Any]:
    """``scenario`` (as loaded, every default filled) with its partition read from ``partition_file`` and
    its other files named by absolute path, so the written ``best.yaml`` runs from any folder."""
    data = scenario.resolved()
    paths = scenario.setup.paths
    data["name"] = f"{scenario.name}-optimized"
    data["partition"] = {"file": partition_file}
    if paths.checkpoint is not None:
        data["model"]["checkpoint"] = str(paths.checkpoint)
    if paths.dataset is not None:
        data["inputs"]["path"] = str(paths.dataset)
    if paths.graphml is not None:
        data["network"]["graphml"] = str(paths.graphml)
    for device in data["devices"]:
        if device.get("profile") is not None:
            device["profile"] = str(paths.profile(device["name"]))
    return data


def save_search(result: SearchResult, scenario: Scenario, out: str | Path) -> list[Path]:
    """Write ``best.json`` (the best partition), ``best.yaml`` (``scenario`` with it), ``search.csv`` and
    ``pareto.png`` into ``out``, all made before any replaces a file there."""
    table = search_table(result)
    best = result.best
    with staged_directory(out) as stage:
        write_csv(table, stage / "search.csv")
        save_partition(stage / "best.json", scenario.model.name, scenario.device_names, best.candidate.partition)
        text = yaml.safe_dump(best_scenario(scenario, "best.json"), sort_keys=False)
        (stage / "best.yaml").write_text(text, encoding="utf-8")
        plot_search(table, stage / "pareto.png", title=scenario.name)
        names = sorted(p.name for p in stage.iterdir())
    return [Path(out) / name for name in names]
