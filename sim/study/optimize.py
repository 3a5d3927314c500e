"""``dsim optimize``: search for the best split of a scenario, with the simulator as the cost model.

The model is traced and its frames run once (:class:`Base`); every candidate split is then planned, sized
(the unsplit model's tensor values are cached per frame) and simulated, on one or several processes, or on
a Dask cluster (``--scheduler``, the sweep's :func:`sim.study.sweep.dask_map`).

Most candidates are a :class:`Layout`: per partitionable layer, a **share vector** (the fraction of the
layer's output channels, or with ``rows`` of its output rows, that each device owns, turned into
contiguous runs by :func:`sim.model.partition.proportional_split`) and the layer's form (docs/design.md
§3b). A one-hot share vector puts the whole layer on one device. The search spaces are:

``filters``
    one share vector for every layer, from an exhaustive grid over the devices' shares when it fits the
    budget (shares in steps of ``1/k``), plus the start proportional to the devices' rates;
``rows``
    every conv split into row bands, the linear layers whole on the sink, each band split also fused
    (DeepThings' fused tiles): every per-conv choice of bands when they fit the budget, else one share
    vector for every conv on a grid of ``1/k`` (the start proportional to the rates), and the tile grids
    ``R x C`` with ``R*C`` the number of devices, plain and fused;
``pipeline``
    contiguous stages of whole layers in topological order, one device per stage: the cuts that balance
    the stages' compute (:func:`sim.model.partition.pipeline_stages`, the same dynamic programme as the
    ``pipeline`` strategy) for every order of the devices when the budget allows, then every placement of
    the cuts with the devices in scenario order (a device may get none) when they fit the budget;
``hybrid``
    simulated annealing over layouts (move a quantum of one layer's share between two devices, put a layer
    whole on one device, copy a neighbour's shares and form, switch a conv between rows and filters, fuse
    or unfuse the rows), started from the best layout so far, and restarted from the best layout not yet
    started from whenever it stalls.

The named strategies (:data:`NAMED`: the channel strategies, ``spatial`` and ``pipeline``) are always
evaluated, so the printed table says how far each is from the best. Everything is seeded (``--seed``,
default the scenario's) and the result does not depend on ``--jobs`` or ``--scheduler``: candidates are
proposed in fixed batches and their results are read in proposal order. Ctrl-C stops the search; the
candidates evaluated so far are kept (:attr:`SearchResult.interrupted`).

With unstructured pruning in the scenario, the prune amount is a dimension too (:func:`prune_amounts`):
one base per amount, the budget shared among the amounts whose test accuracy reaches ``--min-accuracy``.

Memory per device (``devices[i].memory_mb``, 1 MB = 1e6 bytes) bounds the float32 weights the device holds
(:func:`sim.workload.cost.weights_bytes`) plus the largest output it computes at once (for the batch); a
split that needs more is infeasible and never chosen.

Example::

    >>> from sim.config.load import load
    >>> result = optimize(load("scenarios/quickstart.yaml"), SearchSettings(budget=20))  # doctest: +SKIP
    >>> result.best.candidate.description  # doctest: +SKIP
    'shares 0.25:0.25:0.25:0.25'
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from sim.analysis.summary import RunSummary
from sim.config.schema import PruneSpec, Scenario
from sim.config.vocab import UNSTRUCTURED
from sim.engine import assemble
from sim.errors import UserError
from sim.fileio import staged_directory, write_csv
from sim.model.flowgraph import FlowGraph
from sim.model.partition import make_split, pipeline_stages, proportional_split, save_partition, spatial_split
from sim.pipeline.calibrate import calibrated
from sim.pipeline.evaluate import BuiltWorkload, point_summary, run_engine
from sim.pipeline.prepare import prepare, sized_workload, start_forked_worker
from sim.progress import Progress
from sim.report.plots import plot_search
from sim.study.sweep import RETRIES, check_jobs, dask_client, dask_map, map_items
from sim.workload.cost import weights_bytes
from sim.workload.plan import WorkloadPlan
from sim.workload.types import FLOAT32_BYTES, Split

OBJECTIVES = ("latency", "throughput", "bytes", "energy")
SPACES = ("filters", "rows", "pipeline", "hybrid")
NAMED = ("contiguous", "balanced", "round_robin", "aligned", "random", "spatial", "pipeline")
BATCH = 8  # candidates proposed together (evaluated in parallel); fixed, so results do not depend on --jobs
SEARCH_COLUMNS = (  # then memory_mb_<device> per device
    "index",
    "space",
    "description",
    "layout",
    "feasible",
    "objective",
    "latency_s",
    "throughput_fps",
    "bytes_total",
    "energy_j_per_frame",
    "memory_mb_max",
    "prune_amount",
    "accuracy",
)


@dataclass(frozen=True)
class SearchSettings:
    """What to optimise and how long to search.

    ``budget`` bounds the candidates evaluated (the named strategies included); ``time_s``, when given,
    stops the search at the first batch that ends after it (seconds of wall time). ``seed`` ``None`` takes
    the scenario's. ``scheduler``: a Dask scheduler address or ``"local"`` to evaluate on, instead of
    ``jobs`` local processes. ``min_accuracy``: the test accuracy (0 to 1) a pruned model must keep; prune
    amounts below it are not searched.
    """

    objective: str = "latency"
    spaces: tuple[str, ...] = SPACES
    budget: int = 200
    time_s: float | None = None
    seed: int | None = None
    jobs: int = 1
    scheduler: str | None = None
    min_accuracy: float | None = None


@dataclass(frozen=True)
class Layout:
    """A split as the search moves through it: per partitionable layer (in :meth:`FlowGraph.layers` order)
    the share each device owns (``shares[i]``, summing to 1) of its output channels, or with ``rows[i]`` of
    its output rows (a conv only); ``fused`` fuses each run of rows convs (docs/design.md §3b).

    >>> Layout(((0.5, 0.5), (1.0, 0.0)), (True, False)).fused
    False
    """

    shares: tuple[tuple[float, ...], ...]
    rows: tuple[bool, ...]
    fused: bool = False


@dataclass(frozen=True)
class Candidate:
    """One split to evaluate: how it was found (``space``: ``named`` or a search space), the split, and
    the layout it was made from (``None`` for the named strategies and tile grids)."""

    space: str
    description: str
    split: Split
    layout: Layout | None = None


@dataclass(frozen=True)
class Evaluation:
    """A candidate's figures: the objective (lower is better: throughput enters negated), the run's
    latency (s, mean over frames), throughput (frames/s), bytes on the wire, energy per frame (J, ``None``
    when no device has a power setting), and memory per device (MB)."""

    index: int
    candidate: Candidate
    objective: float
    latency_s: float
    throughput_fps: float
    bytes_total: int
    energy_j_per_frame: float | None
    memory_mb: tuple[float, ...]
    feasible: bool
    prune_amount: float = 0.0
    accuracy: float | None = None

    def row(self, devices: Sequence[str], layers: Sequence[str]) -> dict[str, Any]:
        """The candidate's row of ``search.csv`` (``layers``: the partitionable layers' names, in order)."""
        layout = self.candidate.layout
        out: dict[str, Any] = {
            "index": self.index,
            "space": self.candidate.space,
            "description": self.candidate.description,
            "layout": "" if layout is None else layout_text(layout, layers, devices),
            "feasible": self.feasible,
            "objective": self.objective,
            "latency_s": self.latency_s,
            "throughput_fps": self.throughput_fps,
            "bytes_total": self.bytes_total,
            "energy_j_per_frame": self.energy_j_per_frame,
            "memory_mb_max": max(self.memory_mb),
            "prune_amount": self.prune_amount,
            "accuracy": self.accuracy,
        }
        out.update({f"memory_mb_{d}": m for d, m in zip(devices, self.memory_mb)})
        return out


@dataclass
class SearchResult:
    """Every evaluated candidate in order, the best feasible one, and the named strategies' evaluations.
    ``interrupted``: the search was stopped by Ctrl-C (the evaluations are those finished before)."""

    scenario: Scenario
    graph: FlowGraph
    evaluations: list[Evaluation] = field(default_factory=list)
    interrupted: bool = False

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
    the frames' image batches, the cache of the unsplit model's tensor values (one dict per frame), the
    prune amount (0 unpruned) and the model's test accuracy (``None`` without labels)."""

    scenario: Scenario
    graph: FlowGraph
    images: list[Any]
    cache: list[dict[str, np.ndarray]]
    prune_amount: float = 0.0
    accuracy: float | None = None


def rows_allowed(scenario: Scenario) -> bool:
    """Row splits need ``transfer.exchange: inputs`` (partial sums are defined for filters only)."""
    return scenario.transfer.exchange == "inputs"


def named_strategies(scenario: Scenario) -> tuple[str, ...]:
    """The named strategies evaluated for ``scenario``: :data:`NAMED`, without ``spatial`` when rows are not
    allowed (:func:`rows_allowed`)."""
    return tuple(n for n in NAMED if n != "spatial" or rows_allowed(scenario))


def check_settings(scenario: Scenario, settings: SearchSettings) -> None:
    """Refuse, in one line each, what the search cannot do for ``scenario``."""
    if settings.objective not in OBJECTIVES:
        raise UserError(f"--objective: '{settings.objective}' is not one of {', '.join(OBJECTIVES)}")
    unknown = [s for s in settings.spaces if s not in SPACES]
    if unknown or not settings.spaces:
        raise UserError(f"--space: '{','.join(unknown) or '(empty)'}' is not a list of {', '.join(SPACES)}")
    if "rows" in settings.spaces and not rows_allowed(scenario):
        raise UserError(
            f"--space rows: transfer.exchange is {scenario.transfer.exchange}, but row splits need inputs; "
            "set transfer.exchange: inputs or leave rows out of --space"
        )
    if scenario.prune.method not in ("none", *UNSTRUCTURED):
        raise UserError(
            f"prune.method: {scenario.prune.method}: dsim optimize searches the amounts of unstructured pruning "
            f"({', '.join(UNSTRUCTURED)}), which keeps every channel; use one of them or none"
        )
    minimum = (len(named_strategies(scenario)) + 1) * len(prune_amounts(scenario.prune))
    if settings.budget < minimum:
        raise UserError(
            f"--budget: must be at least {minimum} (the named strategies and one more, for each of "
            f"{len(prune_amounts(scenario.prune))} prune amounts)"
        )
    if settings.min_accuracy is not None and not 0 < settings.min_accuracy <= 1:
        raise UserError(f"--min-accuracy: must be in (0, 1], a fraction of the test set (got {settings.min_accuracy})")
    if settings.time_s is not None and not settings.time_s > 0:
        raise UserError(f"--time: must be > 0 seconds (got {settings.time_s})")
    check_jobs(settings.jobs)
    if settings.objective == "energy" and all(d.power is None for d in scenario.devices):
        raise UserError(
            "--objective energy: no device has a power setting; give devices[i].power "
            "(e.g. power: wifi-pi4) or choose another objective"
        )
    if len(scenario.devices) < 2:
        raise UserError("devices: dsim optimize needs at least 2 devices to split over")


def base(scenario: Scenario) -> Base:
    """Prepare the scenario once (torch): the model, its graph and its frames."""
    sc = calibrated(scenario)
    sc = sc.model_copy(update={"baseline": "none", "deploy": None})
    prepared = prepare(sc)
    images = prepared.images or []
    amount = sc.prune.amount if sc.prune.method != "none" else 0.0
    return Base(sc, prepared.graph, images, [{} for _ in images], amount, prepared.built.accuracy)


def prune_amounts(prune: PruneSpec) -> tuple[float, ...]:
    """The prune amounts searched: 0 alone without pruning (``method: none``), else 0, 0.25, 0.5, 0.75 and
    the scenario's ``prune.amount``, in increasing order.

    >>> prune_amounts(PruneSpec(method="l1_unstructured", amount=0.6))
    (0.0, 0.25, 0.5, 0.6, 0.75)
    """
    if prune.method == "none":
        return (0.0,)
    return tuple(sorted({0.0, 0.25, 0.5, 0.75, prune.amount}))


def pruned(scenario: Scenario, amount: float) -> Scenario:
    """``scenario`` with ``prune.amount`` set to ``amount`` (no pruning at 0)."""
    if amount == 0.0:
        return scenario.model_copy(
            update={"prune": scenario.prune.model_copy(update={"method": "none", "amount": 0.0})}
        )
    return scenario.model_copy(update={"prune": scenario.prune.model_copy(update={"amount": amount})})


def memory_mb(plan: WorkloadPlan, batch: int) -> tuple[float, ...]:
    """Per device, in MB (1e6 bytes): the float32 weights it holds (:func:`sim.workload.cost.weights_bytes`)
    plus the largest output of one layer it computes at once, for the batch (its channels of the layer's
    output, or with rows every channel of the positions it computes, a fused run's overlap included)."""
    g, sp, n_dev = plan.graph, plan.spatial, plan.n_devices
    rows = plan.split.rows if plan.split is not None else {}
    peak = np.zeros(n_dev)
    for node in (n for n in g.order if g.kind(n) == "layer"):
        layer = g.layer(node)
        if sp is not None and g.label(node) in rows:
            held = sp.computes[node].reshape(n_dev, -1).sum(axis=1)  # (device, channel, position) elements
        else:
            held = np.bincount(plan.ownership[node], minlength=n_dev) * layer.out_spatial
        peak = np.maximum(peak, held * batch * FLOAT32_BYTES)
    return tuple(float(x) for x in (np.asarray(weights_bytes(plan)) + peak) / 1e6)


def _objective(summary: RunSummary, objective: str) -> float:
    if objective == "latency":
        return summary.latency_s
    if objective == "throughput":
        return -summary.throughput_fps
    if objective == "bytes":
        return float(summary.bytes_total)
    assert summary.energy_j_per_frame is not None, "check_settings refuses energy without a powered device"
    return summary.energy_j_per_frame


def evaluate(base_: Base, objective: str, job: tuple[int, Candidate]) -> Evaluation:
    """Plan, size and simulate one candidate (``job``: its index and itself) against ``base_``."""
    index, candidate = job
    sc, graph = base_.scenario, base_.graph
    plan, workload = sized_workload(sc, graph, candidate.split, base_.images, base_.cache)
    summary = point_summary(sc, BuiltWorkload(workload), None, run_engine(sc, workload))  # no tables: the lean path
    memory = memory_mb(plan, sc.inputs.batch_size)
    limits = [d.memory_mb for d in sc.devices]
    feasible = all(limit is None or used <= limit for used, limit in zip(memory, limits))
    return Evaluation(
        index,
        candidate,
        _objective(summary, objective),
        summary.latency_s,
        summary.throughput_fps,
        summary.bytes_total,
        summary.energy_j_per_frame,
        memory,
        feasible,
        base_.prune_amount,
        base_.accuracy,
    )


_BASE: Base | None = None  # the shared base in worker processes (inherited at fork)
_OBJECTIVE = "latency"


def _evaluate(job: tuple[int, Candidate]) -> Evaluation:
    """:func:`evaluate` against the module's :data:`_BASE` (the process pool's path)."""
    assert _BASE is not None, "optimize: the base is set before any candidate is evaluated"
    return evaluate(_BASE, _OBJECTIVE, job)


def row_shapes(graph: FlowGraph) -> dict[str, tuple[int, int]]:
    """``(H_out, W_out)`` of every conv that rows can split, by layer name."""
    out = {}
    for node in (n for n in graph.order if graph.kind(n) == "layer"):
        info = graph.node(node)
        if info.layer is not None and info.layer.op == "conv" and info.window is not None and info.rank == 4:
            out[graph.label(node)] = (int(info.shape[1]), int(info.shape[2]))
    return out


def layout_split(graph: FlowGraph, shapes: dict[str, tuple[int, int]], layout: Layout) -> Split:
    """The :class:`Split` of ``layout``: rows layers in contiguous bands of output rows, the others in
    contiguous runs of channels (whole when one device owns every channel or row), both proportional to the
    shares (:func:`sim.model.partition.proportional_split`; a zero share owns nothing). ``shapes``:
    :func:`row_shapes`."""
    filters: dict[str, np.ndarray] = {}
    rows: dict[str, np.ndarray] = {}
    whole = set()
    for layer, shares, by_rows in zip(graph.layers(), layout.shares, layout.rows):
        band = proportional_split(shapes[layer.name][0], shares) if by_rows else None
        if band is not None and band.min() < band.max():  # rows all on one device: the layer whole instead
            rows[layer.name] = np.repeat(band[:, None], shapes[layer.name][1], axis=1)
            filters[layer.name] = np.full(layer.out_channels, band[0], dtype=np.int64)
            continue
        if band is not None:
            filters[layer.name] = np.full(layer.out_channels, band[0], dtype=np.int64)
        else:
            filters[layer.name] = proportional_split(layer.out_channels, shares)
        if filters[layer.name].min() == filters[layer.name].max():
            whole.add(layer.name)
    return Split(filters, rows, frozenset(whole), layout.fused and bool(rows))


def _fmt(shares: Sequence[float]) -> str:
    return ":".join(f"{s:.3g}" for s in shares)


def layout_text(layout: Layout, layers: Sequence[str], devices: Sequence[str]) -> str:
    """``layout`` in one line: each layer's form and shares, as :func:`layout_split` reads them.

    >>> layout_text(Layout(((0.5, 0.5), (0.25, 0.75), (0.0, 1.0)), (True, False, True), True), ["c1", "c2", "fc"], ["a", "b"])
    'c1 rows 0.5:0.5, c2 filters 0.25:0.75, fc whole b; fused'
    """
    parts = []
    for name, shares, by_rows in zip(layers, layout.shares, layout.rows):
        if max(shares) == sum(shares):
            parts.append(f"{name} whole {devices[int(np.argmax(shares))]}")
        else:
            parts.append(f"{name} {'rows' if by_rows else 'filters'} {_fmt(shares)}")
    fused = layout.fused and any(r and max(s) < sum(s) for s, r in zip(layout.shares, layout.rows))
    return ", ".join(parts) + ("; fused" if fused else "")


def compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Every way to write ``total`` as an ordered sum of ``parts`` non-negative integers.

    >>> list(compositions(2, 2))
    [(0, 2), (1, 1), (2, 0)]
    """
    for cuts in itertools.combinations(range(total + parts - 1), parts - 1):
        bounds = (-1, *cuts, total + parts - 1)
        yield tuple(bounds[i + 1] - bounds[i] - 1 for i in range(parts))


def _finest_grid(parts: int, room: int, per_point: int = 1) -> int:
    """The largest ``k`` whose grid of shares in steps of ``1/k`` over ``parts`` devices, ``per_point``
    candidates each, fits ``room`` candidates (at least 1).

    >>> _finest_grid(2, 10), _finest_grid(2, 10, per_point=2), _finest_grid(3, 1)
    (9, 4, 1)
    """
    k = 1
    while per_point * math.comb(k + 1 + parts - 1, parts - 1) <= room:
        k += 1
    return k


class Search:
    """The search of one scenario: proposes candidates batch by batch and keeps every evaluation."""

    def __init__(
        self,
        base_: Base,
        settings: SearchSettings,
        evaluate_batch: Callable[[list[Candidate]], list[Evaluation]],
        rng: np.random.Generator | None = None,
    ):
        self.base, self.settings, self.evaluate_batch = base_, settings, evaluate_batch
        sc = base_.scenario
        self.rng = (
            rng if rng is not None else np.random.default_rng(sc.seed if settings.seed is None else settings.seed)
        )
        self.rates = np.array(assemble.compute_rates(sc), dtype=float)
        self.layers = base_.graph.layers()
        self.shapes = row_shapes(base_.graph)
        self.rows_ok = rows_allowed(sc) and bool(self.shapes)
        self.names = sc.device_names
        self.n_dev = len(sc.devices)
        self.sink = self.names.index(sc.sink)
        self.evaluations: list[Evaluation] = []
        self.seen: set[bytes] = set()
        self.deadline = None if settings.time_s is None else time.monotonic() + settings.time_s

    @property
    def left(self) -> int:
        """Candidates the budget still allows."""
        return self.settings.budget - len(self.evaluations)

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    @staticmethod
    def _key(split: Split) -> bytes:
        """Equal for equal splits (the same owner of every channel and row, fused or not)."""
        parts = [name.encode() + owner.tobytes() for name, owner in sorted(split.filters.items())]
        parts += [b"rows " + name.encode() + grid.tobytes() for name, grid in sorted(split.rows.items())]
        return b"|".join(parts) + (b"|fused" if split.fused else b"")

    def run(self, candidates: list[Candidate], again: bool = False) -> list[Evaluation]:
        """Evaluate the new ones of ``candidates`` (every one with ``again``) within the budget, in
        batches of :data:`BATCH`."""
        fresh = []
        for c in candidates:
            key = self._key(c.split)
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
        rates = list(self.rates)
        self.run(
            [
                Candidate("named", name, make_split(graph, name, self.n_dev, seed=seed, rates=rates, sink=self.sink))
                for name in named_strategies(sc)
            ],
            again=True,  # each is listed, even when two strategies give the same split
        )

    def layout(self, layout: Layout, space: str, description: str) -> Candidate:
        return Candidate(space, description, layout_split(self.base.graph, self.shapes, layout), layout)

    def common(self, shares: Sequence[float], by_rows: bool, fused: bool = False) -> Layout:
        """``shares`` for every layer (with ``by_rows``: every rows-splittable conv by rows, the other layers
        whole on the sink)."""
        sink = tuple(1.0 if d == self.sink else 0.0 for d in range(self.n_dev))
        if not by_rows:
            return Layout(tuple(tuple(shares) for _ in self.layers), (False,) * len(self.layers))
        rows = tuple(l.name in self.shapes for l in self.layers)
        return Layout(tuple(tuple(shares) if r else sink for r in rows), rows, fused)

    def filters(self, share: int) -> None:
        """Shares proportional to the rates, then an exhaustive grid of common shares in steps of 1/k, with
        k as fine as ``share`` of the budget allows."""
        start = self.rates / self.rates.sum()
        found = [self.layout(self.common(start, False), "filters", f"shares {_fmt(start)} (rates)")]
        k = _finest_grid(self.n_dev, share)
        for parts in compositions(k, self.n_dev):
            s = [p / k for p in parts]
            found.append(self.layout(self.common(s, False), "filters", f"shares {_fmt(s)}"))
        self.run(found)

    def rows(self, share: int) -> None:
        """Row bands (each plain and fused): from shares proportional to the rates; then every per-conv
        choice of bands when they fit ``share``, else a grid of common shares in steps of 1/k; then the
        tile grids."""
        if not self.rows_ok:
            return
        convs = [l.name for l in self.layers if l.name in self.shapes]
        start = self.rates / self.rates.sum()
        found = [
            self.layout(self.common(start, True, fused), "rows", f"rows {_fmt(start)} (rates){' fused' * fused}")
            for fused in (False, True)
        ]
        grids = [(r, self.n_dev // r) for r in range(1, self.n_dev + 1) if self.n_dev % r == 0 and r < self.n_dev]
        room = share - len(found) - 2 * len(grids)
        every = 2 * math.prod(math.comb(self.shapes[c][0] + self.n_dev - 1, self.n_dev - 1) for c in convs)
        if every <= room:
            for choice in itertools.product(*(compositions(self.shapes[c][0], self.n_dev) for c in convs)):
                by_conv = dict(zip(convs, choice))
                layout = self.common(start, True)
                shares = tuple(
                    tuple(n / self.shapes[l.name][0] for n in by_conv[l.name]) if l.name in by_conv else s
                    for l, s in zip(self.layers, layout.shares)
                )
                text = "rows " + " ".join(f"{c} {':'.join(map(str, by_conv[c]))}" for c in convs)
                found += [
                    self.layout(Layout(shares, layout.rows, fused), "rows", text + " fused" * fused)
                    for fused in (False, True)
                ]
        else:
            k = _finest_grid(self.n_dev, room, per_point=2)
            for parts in compositions(k, self.n_dev):
                s = [p / k for p in parts]
                found += [
                    self.layout(self.common(s, True, fused), "rows", f"rows {_fmt(s)}{' fused' * fused}")
                    for fused in (False, True)
                ]
        for grid in grids:
            for fused in (False, True):
                split = spatial_split(self.base.graph, self.n_dev, self.sink, fused=fused, tiles=grid)
                found.append(Candidate("rows", f"tiles {grid[0]}x{grid[1]}{' fused' * fused}", split))
        self.run(found)

    def pipeline(self, share: int) -> None:
        """The stages that balance compute (the ``pipeline`` strategy's dynamic programme) for every order of
        the devices when half of ``share`` allows (else the scenario's order and fastest first), then every
        placement of the stage cuts in the scenario's order when the rest of ``share`` allows."""
        n_layers = len(self.layers)
        batch = self.base.scenario.inputs.batch_size
        costs = [l.flops(l.out_channels, batch) for l in self.layers]
        if math.factorial(self.n_dev) <= share // 2:
            orders = list(itertools.permutations(range(self.n_dev)))
        else:
            orders = [tuple(range(self.n_dev)), tuple(int(d) for d in np.argsort(-self.rates, kind="stable"))]
        found = []
        for order in orders:
            stages = pipeline_stages(costs, [float(self.rates[d]) for d in order])
            found.append(self._stages([order[s] for s in stages], "balanced"))
        if math.comb(n_layers + self.n_dev - 1, self.n_dev - 1) <= share - len(found):
            for cuts in itertools.combinations_with_replacement(range(n_layers + 1), self.n_dev - 1):
                bounds = (0, *cuts, n_layers)
                found.append(self._stages([d for d in range(self.n_dev) for _ in range(bounds[d], bounds[d + 1])], ""))
        self.run(found)

    def _stages(self, stages: Sequence[int], how: str) -> Candidate:
        """The pipeline whose layer ``i`` runs whole on device ``stages[i]``."""
        runs = [list(group) for _, group in itertools.groupby(range(len(stages)), key=lambda i: stages[i])]
        text = ", ".join(
            f"{self.layers[r[0]].name}-{self.layers[r[-1]].name} on {self.names[stages[r[0]]]}" for r in runs
        )
        one_hot = tuple(tuple(1.0 if k == d else 0.0 for k in range(self.n_dev)) for d in stages)
        layout = Layout(one_hot, (False,) * len(stages))
        return self.layout(layout, "pipeline", f"pipeline{' (' + how + ')' if how else ''} {text}")

    def _neighbour(self, layout: Layout, quantum: float) -> tuple[Layout, str]:
        """One random move from ``layout``."""
        shares = [list(s) for s in layout.shares]
        rows = list(layout.rows)
        layer = int(self.rng.integers(len(shares)))
        move = int(self.rng.integers(5 if self.rows_ok else 3))
        name = self.layers[layer].name
        if move == 3 and name in self.shapes:  # rows <-> filters, same shares
            rows[layer] = not rows[layer]
            what = f"{name}: by {'rows' if rows[layer] else 'filters'}"
        elif move == 4:
            return Layout(layout.shares, layout.rows, not layout.fused), "fused" if not layout.fused else "unfused"
        elif move == 1:  # the whole layer on one device
            d = int(self.rng.integers(self.n_dev))
            shares[layer] = [1.0 if k == d else 0.0 for k in range(self.n_dev)]
            rows[layer] = False
            what = f"{name}: whole on {self.names[d]}"
        elif move == 2:  # a neighbour's shares and form
            other = layer - 1 if layer > 0 else min(layer + 1, len(shares) - 1)
            shares[layer] = list(shares[other])
            rows[layer] = rows[other] and name in self.shapes
            what = f"{name}: as {self.layers[other].name}"
        else:  # a quantum of share from one device to another
            a, b = (int(x) for x in self.rng.choice(self.n_dev, size=2, replace=False))
            step = min(quantum, shares[layer][a])
            shares[layer][a] -= step
            shares[layer][b] += step
            what = f"{name}: {step:.3g} from {self.names[a]} to {self.names[b]}"
        return Layout(tuple(tuple(s) for s in shares), tuple(rows), layout.fused), what

    def hybrid(self) -> None:
        """Simulated annealing over layouts from the best layout so far; when a run stalls (20 batches in a
        row propose only splits already tried), again from the best layout not yet started from, until the
        budget or the time is spent or every layout evaluated has been a start."""
        started: set[int] = set()
        step = 0
        while self.left > 0 and not self.out_of_time():
            start = min(
                (
                    e
                    for e in self.evaluations
                    if e.feasible and e.candidate.layout is not None and e.index not in started
                ),
                key=lambda e: (e.objective, e.index),
                default=None,
            )
            if start is None or start.candidate.layout is None:
                return
            started.add(start.index)
            step = self._anneal(start.candidate.layout, start.objective, step)

    def _anneal(self, layout: Layout, current: float, step: int) -> int:
        """One annealing run from ``layout`` (objective ``current``) until it stalls; returns the last step
        number (steps are numbered across runs, so every description is new)."""
        temperature = 0.05  # relative worsening accepted with probability 1/e
        quantum = 1.0 / (2 * self.n_dev)
        idle = 0
        while self.left > 0 and not self.out_of_time() and idle < 20:
            step += 1
            proposals = [self._neighbour(layout, quantum) for _ in range(min(BATCH, self.left))]
            cands = [self.layout(s, "hybrid", f"anneal {step}.{i}: {what}") for i, (s, what) in enumerate(proposals)]
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
                    layout, current = s, e.objective
            temperature *= 0.9
        return step


def optimize(scenario: Scenario, settings: SearchSettings, progress: bool = True) -> SearchResult:
    """Search the splits of ``scenario`` for the lowest ``settings.objective``.

    Parameters
    ----------
    scenario
        A loaded scenario (:func:`sim.config.load.load`); its own partition is ignored.
    settings
        Objective, spaces, budget, time limit, seed, and worker processes or Dask scheduler
        (:class:`SearchSettings`).
    progress
        Show a progress bar on a terminal and log a line per candidate (:mod:`sim.progress`).

    Returns
    -------
    SearchResult
        Every candidate evaluated, in order; ``result.best`` is the feasible one with the lowest objective.
        After Ctrl-C, the candidates of the batches finished before it, with ``interrupted`` set.

    Raises
    ------
    sim.errors.UserError
        A setting the search cannot honour, or no feasible split within the budget.
    KeyboardInterrupt
        Ctrl-C before any candidate was evaluated.

    Examples
    --------
    >>> from sim.config.load import load
    >>> result = optimize(load("scenarios/quickstart.yaml"), SearchSettings(budget=12))  # doctest: +SKIP
    >>> len(result.evaluations)  # doctest: +SKIP
    12
    """
    global _BASE, _OBJECTIVE
    check_settings(scenario, settings)
    _OBJECTIVE = settings.objective
    rng = np.random.default_rng(scenario.seed if settings.seed is None else settings.seed)
    deadline = None if settings.time_s is None else time.monotonic() + settings.time_s
    bases = [base(pruned(scenario, amount)) for amount in prune_amounts(scenario.prune)]
    floor = settings.min_accuracy
    kept = [b for b in bases if floor is None or (b.accuracy or 0.0) >= floor]
    if not kept:
        refused = ", ".join(f"{b.prune_amount:g} ({_percent(b.accuracy)})" for b in bases)
        raise UserError(
            f"--min-accuracy {floor:g}: no prune amount keeps it (amount (accuracy): {refused}); "
            "lower the floor or set prune.method: none"
        )
    evaluations: list[Evaluation] = []
    interrupted = False
    with ExitStack() as stack:
        bar = stack.enter_context(Progress(settings.budget, "optimize", "candidate", enabled=progress))
        client = (
            None if settings.scheduler is None else stack.enter_context(dask_client(settings.scheduler, settings.jobs))
        )
        batches = _Batches(settings, client, bar)
        search: Search | None = None
        try:
            for k, shared in enumerate(kept):  # the budget left, shared equally among the amounts left
                _BASE = shared
                batches.use(shared)
                share = (settings.budget - len(evaluations)) // (len(kept) - k)
                search = Search(shared, replace(settings, budget=share), batches, rng)
                search.deadline = deadline
                _search_spaces(search, settings.spaces)
                evaluations.extend(search.evaluations)
                search = None
        except KeyboardInterrupt:
            if search is not None:
                evaluations.extend(search.evaluations)
            if not evaluations:
                raise
            interrupted = True
    result = SearchResult(scenario, kept[0].graph, evaluations, interrupted)
    if not any(e.feasible for e in result.evaluations):
        need = min(max(e.memory_mb) for e in result.evaluations)
        raise UserError(
            f"devices[*].memory_mb: no split of the {len(result.evaluations)} evaluated fits the devices' memory "
            f"(the smallest needs {need:.3g} MB on its fullest device); raise memory_mb or add devices"
        )
    return result


class _Batches:
    """Evaluate batches of candidates against the current base (:meth:`use`), on the process pool or the
    Dask ``client``, numbering them in evaluation order and stepping ``bar`` per candidate."""

    def __init__(self, settings: SearchSettings, client: Any, bar: Progress) -> None:
        self.settings, self.client, self.bar = settings, client, bar
        self.count = 0
        self.on_cluster: Any = None

    def use(self, base_: Base) -> None:
        """Evaluate against ``base_`` from now on (scattered once to the cluster's workers)."""
        if self.client is not None:
            self.on_cluster = self.client.scatter(base_, broadcast=True)

    def args(self, job: tuple[int, Candidate]) -> tuple[Any, ...]:
        """:func:`evaluate`'s arguments for ``job`` on the cluster."""
        return self.on_cluster, self.settings.objective, job

    def lost(self, job: tuple[int, Candidate], exc: BaseException | None) -> Evaluation:
        raise UserError(
            f"--scheduler {self.settings.scheduler}: candidate {job[0]} was lost on the Dask cluster "
            f"{RETRIES + 1} times ({exc!r}); check the workers"
        )

    def __call__(self, batch: list[Candidate]) -> list[Evaluation]:
        jobs = [(self.count + i, c) for i, c in enumerate(batch)]
        settings = self.settings
        if self.client is None:
            results = map_items(_evaluate, jobs, settings.jobs, start_forked_worker, (), "", "", False)
        else:
            results = dask_map(self.client, evaluate, jobs, self.args, self.lost, False)
        done = sorted(results, key=lambda e: e.index)
        for _ in done:
            self.bar.step()
        self.count += len(done)
        return done


def _percent(accuracy: float | None) -> str:
    return "no labels" if accuracy is None else f"{accuracy * 100:.1f} %"


def _search_spaces(search: Search, spaces: Sequence[str]) -> None:
    """The named strategies, then each space asked for, in the order of :data:`SPACES`."""
    search.named()
    shaped = [s for s in ("filters", "rows", "pipeline") if s in spaces]
    for i, space in enumerate(shaped):  # an equal share of what is left; what one leaves, the next gets
        getattr(search, space)(max(0, search.left) // (len(shaped) - i + ("hybrid" in spaces)))
    if "hybrid" in spaces:
        search.hybrid()


def search_table(result: SearchResult) -> pd.DataFrame:
    """``search.csv``: one row per candidate, in evaluation order (:meth:`Evaluation.row`)."""
    devices, layers = result.scenario.device_names, [l.name for l in result.graph.layers()]
    columns = [*SEARCH_COLUMNS, *(f"memory_mb_{d}" for d in devices)]
    return pd.DataFrame([e.row(devices, layers) for e in result.evaluations], columns=columns)


def best_scenario(scenario: Scenario, partition_file: str, prune_amount: float = 0.0) -> dict[str, Any]:
    """``scenario`` (as loaded, every default filled) with its partition read from ``partition_file``, its
    prune amount set to ``prune_amount`` (no pruning at 0) and its other files named by absolute path, so
    the written ``best.yaml`` runs from any folder."""
    data = scenario.resolved()
    paths = scenario.setup.paths
    data["name"] = f"{scenario.name}-optimized"
    data["partition"] = {"file": partition_file}
    if scenario.prune.method != "none":
        data["prune"] = pruned(scenario, prune_amount).prune.model_dump(mode="json")
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
        save_partition(stage / "best.json", scenario.model.name, scenario.device_names, best.candidate.split)
        text = yaml.safe_dump(best_scenario(scenario, "best.json", best.prune_amount), sort_keys=False)
        (stage / "best.yaml").write_text(text, encoding="utf-8")
        plot_search(table, stage / "pareto.png", title=scenario.name)
        names = sorted(p.name for p in stage.iterdir())
    return [Path(out) / name for name in names]
