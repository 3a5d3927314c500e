"""Parameter sweeps: the cartesian product of scenario settings, run in parallel, as one tidy table.

A sweep sets dotted keys of a scenario (``network.bandwidth_mbps``, ``transfer.format``,
``devices.0.gflops``; a number indexes a list) to each combination of the given values, re-validates every
point with :func:`sim.config.load.parse_scenario`, and runs it. Points with equal
:func:`sim.pipeline.evaluate.workload_key` share one built workload: the model is traced, pruned and run once per
distinct key, and only the engine runs per point. A point that fails (an invalid value, a build error)
keeps its row with the message in ``error``; the others complete.

The table (``sweep.csv``) has one row per point: ``point`` (its index in the cartesian order),
``scenario`` (the swept scenario's name), the swept keys as columns, then :data:`SUMMARY_COLUMNS` (seconds, bytes, FLOPs; ``bytes_<format>`` is the
total had every message been sent in that format, ``bytes_auto`` the smallest per message;
``latency_{compute,transfer,waiting}_s`` split the latency along the critical path, see
:mod:`sim.analysis.critical_path`; ``baseline_latency_s`` and ``speedup`` come from the scenario's ``baseline: single``,
the whole model on the source device alone) and ``error``.

From Python, ``sim.sweep`` is :func:`sweep`::

    >>> import sim
    >>> table = sim.sweep("scenarios/quickstart.yaml", {"network.bandwidth_mbps": [1, 10, 100]})  # doctest: +SKIP
    >>> table[["network.bandwidth_mbps", "latency_s"]]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sim.analysis.critical_path import latency_breakdown
from sim.analysis.curves import BASELINE_COLUMNS, OPTIONAL_COLUMNS, SUMMARY_COLUMNS
from sim.analysis.summary import RunSummary
from sim.config.overrides import sweep_points
from sim.config.schema import Scenario
from sim.engine.simulate import Timeline
from sim.errors import UserError
from sim.fileio import write_csv
from sim.pipeline.cache import Build, CacheReport, build
from sim.pipeline.evaluate import BuiltWorkload, baseline_scenario, point_summary, run_engine, workload_key
from sim.pipeline.store import Store, weights_digest
from sim.progress import Progress
from sim.workload.types import Workload


def summary_row(s: RunSummary, workload: Workload, timeline: Timeline) -> dict[str, Any]:
    """The :data:`SUMMARY_COLUMNS` of a run with summary ``s`` (:func:`sim.pipeline.evaluate.point_summary`
    or a whole run's), from ``workload`` and its ``timeline`` (NaN where the run has no such figure); and,
    not sweep columns, ``kept_kernels_per_conv`` when pruned (``dsim compare`` writes it to
    ``kept_kernels.csv``), ``weights_bytes_max`` and ``redundant_flops`` (``dsim compare`` shows them)."""
    row: dict[str, Any] = {
        "devices": len(workload.devices),
        "frames": s.frames,
        "latency_s": s.latency_s,
        "latency_p50_s": s.latency_p50_s,
        "latency_p95_s": s.latency_p95_s,
        "latency_p99_s": s.latency_p99_s,
        "throughput_fps": s.throughput_fps,
        "keeps_up": s.keeps_up,
        "service_latency_s": s.latency_s if s.service_latency_s is None else s.service_latency_s,
        "makespan_s": s.makespan_s,
        "bytes_total": s.bytes_total,
        **{f"bytes_{fmt}": n for fmt, n in s.bytes_by_format.items()},
        "messages": s.messages,
        "elements_hops": s.elements_hops,
        "elements_hops_max_link": s.elements_hops_max_link,
        "flops_total": s.flops_total,
        "compute_s_total": s.compute_s_total,
        **latency_breakdown(workload, timeline),
    }
    optional = {
        "deadline_miss_rate": s.deadline_miss_rate,
        "retransmissions": s.retransmissions,
        "kept_kernels": s.kept_kernels,
        "accuracy": s.accuracy,
        "energy_j": s.energy_j,
        "energy_j_per_frame": s.energy_j_per_frame,
    }
    row.update({k: v for k, v in optional.items() if v is not None})
    if s.baseline is not None:
        base = s.baseline
        row.update(
            baseline_latency_s=base.latency_s,
            baseline_service_latency_s=base.service_latency_s,
            baseline_throughput_fps=base.throughput_fps,
            speedup=base.speedup,
            service_speedup=base.service_speedup,
            throughput_speedup=base.throughput_speedup,
        )
    out = {k: row.get(k, math.nan) for k in SUMMARY_COLUMNS}
    if s.kept_kernels_per_conv is not None:
        out["kept_kernels_per_conv"] = s.kept_kernels_per_conv
    if workload.weights_bytes:  # memory per device
        out["weights_bytes_max"] = max(workload.weights_bytes)
    if s.redundant_flops is not None:
        out["redundant_flops"] = s.redundant_flops
    return out


_WORKLOADS: dict[str, Any] = {}  # workload key -> built workload, in sweep worker processes


def _init_worker(workloads: dict[str, Any]) -> None:
    global _WORKLOADS
    _WORKLOADS = workloads


def _start_worker(workloads: dict[str, Any]) -> None:
    """Pool initializer: hold the workloads; leave Ctrl-C to the parent, which stops the pool (with
    SIGTERM, which must end a worker quietly even if the parent turned it into an interrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _init_worker(workloads)


_BUILD_THREADS: int | None = None  # torch threads of a build (1 in build worker processes)


def _start_builder() -> None:
    """Pool initializer of build workers: one torch thread each (the pool uses the cores), no Ctrl-C, and
    the default SIGTERM (the pool's way to stop them)."""
    global _BUILD_THREADS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _BUILD_THREADS = 1


def build_weights(scenarios: Sequence[Scenario], store: Store | None) -> list[float]:
    """The expected cost of each build, in passes over a training split, for the time estimate
    (:class:`sim.progress.Progress`): 1 for tracing, partitioning and sizing the workload, plus every epoch
    it trains: ``model.train_epochs`` (with a cache ``store``, only for the first build of given weights:
    the others read them back), ``prune.finetune_epochs``, and the ADMM methods' epochs and retraining.
    A rough scale (a pruned model's epochs cost less than the dense model's), not a prediction.

    >>> from sim.config.load import parse_scenario
    >>> def sc(prune): return parse_scenario({"name": "x", "model": {"name": "lenet5", "train_epochs": 15},
    ...     "devices": [{"name": "a", "gflops": 1}], "source": "a", "sink": "a", "prune": prune})
    >>> build_weights([sc({}), sc({"method": "ln_structured", "amount": 0.5, "finetune_epochs": 10})], None)
    [16.0, 26.0]
    """
    weights, trained = [], set()
    for sc in scenarios:
        epochs = sc.prune.finetune_epochs
        if sc.prune.method in ("admm", "admm_comm"):
            epochs += sc.prune.admm.epochs + sc.prune.admm.retrain_epochs
        if sc.model.train_epochs:
            key = weights_digest(sc) if store is not None else None
            if key is None or key not in trained:
                epochs += sc.model.train_epochs
            trained.add(key)
        weights.append(1.0 + epochs)
    return weights


@dataclass(frozen=True)
class BuildJob:
    """One distinct workload to build: its :func:`~sim.pipeline.evaluate.workload_key`, a scenario that
    builds it, and the build cache."""

    key: str
    scenario: Scenario
    store: Store | None


@dataclass(frozen=True)
class BuildOutcome:
    """What a :class:`BuildJob` gave: the build, or the message of the :class:`UserError` that refused it."""

    key: str
    build: Build | None
    error: str | None = None


@dataclass(frozen=True)
class PointJob:
    """One point to simulate: its index in the sweep, its scenario, and the keys of its built workload and
    of its single-device baseline's (None without ``baseline: single``)."""

    index: int
    scenario: Scenario
    key: str
    baseline_key: str | None


def _build(job: BuildJob) -> BuildOutcome:
    """The job's build, or the message of the error that refused its scenario."""
    try:
        return BuildOutcome(job.key, build(job.scenario, job.store, threads=_BUILD_THREADS))
    except UserError as exc:
        return BuildOutcome(job.key, None, str(exc))


def simulate_point(
    index: int, scenario: Scenario, built: BuiltWorkload, baseline: BuiltWorkload | None
) -> tuple[int, dict[str, Any]]:
    """``(index, row)`` of one point, from its built workload and its single-device baseline's: the lean
    path (:func:`sim.pipeline.evaluate.point_summary`, no tables)."""
    try:
        run = run_engine(scenario, built.workload)
        return index, summary_row(point_summary(scenario, built, baseline, run), built.workload, run.timeline)
    except UserError as exc:
        return index, {"error": str(exc)}


def _simulate(job: PointJob) -> tuple[int, dict[str, Any]]:
    """:func:`simulate_point` with the workloads looked up by key in this worker's copy."""
    base = None if job.baseline_key is None else _WORKLOADS[job.baseline_key]
    return simulate_point(job.index, job.scenario, _WORKLOADS[job.key], base)


def map_items(
    fn: Any,
    items: list[Any],
    jobs: int,
    initializer: Any,
    initargs: tuple[Any, ...],
    desc: str,
    unit: str,
    progress: bool,
    weights: Mapping[Any, float] | None = None,
    key: Callable[[Any], Any] | None = None,
) -> Iterator[Any]:
    """``fn`` over ``items`` on up to ``jobs`` processes (in this one for a single job or item), yielding
    results as they finish, with a log line per item and a progress bar on a terminal
    (:class:`sim.progress.Progress`); the pool is stopped on exit or interrupt. ``weights`` maps a
    result's ``key`` (a function of the result) to the item's expected cost (default: 1 each)."""
    if not items:
        return
    jobs = max(1, min(jobs, len(items)))
    weigh = (lambda result: 1.0) if weights is None or key is None else (lambda result: weights[key(result)])
    total = None if weights is None else sum(weights.values())
    with Progress(len(items), desc, unit, enabled=progress, weight=total) as bar:
        if jobs == 1:
            for item in items:
                result = fn(item)
                bar.step(weigh(result))
                yield result
            return
        pool = multiprocessing.get_context().Pool(jobs, initializer=initializer, initargs=initargs)
        try:
            for result in pool.imap_unordered(fn, items):
                bar.step(weigh(result))
                yield result
        finally:
            pool.terminate()
            pool.join()


def check_jobs(jobs: int | None) -> None:
    """Refuse a number of worker processes below 1 (``None`` means all cores).

    >>> check_jobs(0)
    Traceback (most recent call last):
    sim.errors.UserError: --jobs: must be >= 1 (got 0)
    """
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs: must be >= 1 (got {jobs})")


def iter_points(
    scenarios: Sequence[Scenario | UserError],
    jobs: int | None = None,
    progress: bool = True,
    store: Store | None = None,
    report: CacheReport | None = None,
    scheduler: str | None = None,
    what: str = "point",
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run the scenarios, yielding ``(index, row)`` as each finishes (in any order).

    Each distinct workload (:func:`sim.pipeline.evaluate.workload_key`), and each distinct
    single-device workload of the points with ``baseline: single``
    (:func:`sim.pipeline.evaluate.baseline_scenario`), is built once (or read from ``store``, the build
    cache; ``report`` counts what came from it), then the engine runs each point; both phases use ``jobs``
    processes (default: all cores). With ``scheduler`` (a Dask scheduler address, or ``"local"``), the
    points run on that Dask cluster instead (:func:`iter_points_dask`). A row is :func:`summary_row` or
    ``{"error": message}``. With ``progress``, each finished build and each finished point (named ``what``
    in the log line) is logged (:mod:`sim.progress`).
    """
    check_jobs(jobs)
    jobs = jobs or os.cpu_count() or 1
    todo: list[tuple[int, Scenario, str]] = []
    for index, sc in enumerate(scenarios):
        if isinstance(sc, UserError):
            yield index, {"error": str(sc)}
        else:
            todo.append((index, sc, workload_key(sc)))
    builds: dict[str, Scenario] = {}  # workload key -> a scenario that builds it
    baseline_of: dict[str, str | UserError] = {}  # workload key -> key of its baseline: single, or why none
    for _, sc, key in todo:
        builds.setdefault(key, sc)
        if sc.baseline == "single" and key not in baseline_of:
            try:
                single = baseline_scenario(sc)
            except UserError as exc:
                baseline_of[key] = exc
                continue
            single_key = workload_key(single)
            baseline_of[key] = single_key
            builds.setdefault(single_key, single)
    workloads: dict[str, BuiltWorkload] = {}
    failed: dict[str, str] = {}
    build_jobs = [BuildJob(key, sc, store) for key, sc in builds.items()]
    weights = dict(zip(builds, build_weights(list(builds.values()), store)))
    outcomes = map_items(
        _build, build_jobs, jobs, _start_builder, (), "build", "workload", progress, weights, key=lambda b: b.key
    )
    for done in outcomes:
        if done.build is None:
            failed[done.key] = done.error or "build failed"
        else:
            workloads[done.key] = done.build.built
            if report is not None:
                report.add(done.build)
    runnable: list[PointJob] = []
    for index, sc, key in todo:
        base = baseline_of[key] if sc.baseline == "single" else None
        if key in failed:
            yield index, {"error": failed[key]}
        elif isinstance(base, UserError) or (base is not None and base in failed):
            yield index, {"error": f"baseline: {base if isinstance(base, UserError) else failed[str(base)]}"}
        else:
            runnable.append(PointJob(index, sc, key, base))
    if scheduler is not None:
        yield from iter_points_dask(runnable, workloads, scheduler, jobs, progress, what)
        return
    _init_worker(workloads)
    try:
        yield from map_items(_simulate, runnable, jobs, _start_worker, (workloads,), what, "point", progress)
    finally:
        _init_worker({})


RETRIES = 3  # times a task is resubmitted after its Dask worker was lost


@contextmanager
def dask_client(scheduler: str, jobs: int) -> Iterator[Any]:
    """A ``dask.distributed.Client`` of ``scheduler``: a scheduler address (``tcp://host:8786``) or
    ``"local"`` (a LocalCluster of ``jobs`` single-threaded worker processes), closed on exit."""
    from dask.distributed import Client, LocalCluster  # dask: only for --scheduler

    cluster = None
    try:
        if scheduler == "local":
            cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
        else:
            client = Client(scheduler, timeout=30)
    except OSError as exc:
        raise UserError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def dask_map(
    client: Any,
    fn: Callable[..., Any],
    items: Sequence[Any],
    args: Callable[[Any], tuple[Any, ...]],
    lost: Callable[[Any, BaseException | None], Any],
    progress: bool = True,
    what: str = "point",
    unit: str = "point",
) -> Iterator[Any]:
    """``fn(*args(item))`` for every item as a task on the Dask ``client``, yielding results as they
    finish, with a log line per finished item (named ``what``) and a bar, as on the process pool
    (:class:`sim.progress.Progress`). Data every task reads is scattered once by the caller and named in
    ``args`` by its future. A task whose worker is lost is resubmitted up to :data:`RETRIES` times (Dask
    itself also reschedules tasks of a worker that dies); after that ``lost(item, exception)`` is its result.
    """
    from dask.distributed import as_completed  # dask: only for --scheduler

    futures: dict[Any, Any] = {}
    tries: dict[int, int] = {}

    def submit(position: int) -> Any:
        future = client.submit(fn, *args(items[position]), pure=False)
        futures[future] = position
        return future

    pending = as_completed([submit(i) for i in range(len(items))])
    with Progress(len(items), what, unit, enabled=progress) as bar:
        for future in pending:
            position = futures.pop(future)
            if future.status == "finished":
                bar.step()
                yield future.result()
                continue
            tries[position] = tries.get(position, 0) + 1
            if tries[position] <= RETRIES:
                pending.add(submit(position))
            else:
                bar.step()
                yield lost(items[position], future.exception())


def iter_points_dask(
    runnable: Sequence[PointJob],
    workloads: Mapping[str, BuiltWorkload],
    scheduler: str,
    jobs: int,
    progress: bool = True,
    what: str = "point",
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run the points on a Dask cluster (:func:`dask_client`, :func:`dask_map`), yielding ``(index, row)``
    as they finish. The built workloads are scattered to the workers once; each point is a task that
    reads them there. A point lost more than :data:`RETRIES` times is kept as an error row."""
    with dask_client(scheduler, jobs) as client:
        keys = list(workloads)
        scattered = dict(zip(keys, client.scatter([workloads[k] for k in keys], broadcast=True)))

        def args(point: PointJob) -> tuple[Any, ...]:
            base = None if point.baseline_key is None else scattered[point.baseline_key]
            return point.index, point.scenario, scattered[point.key], base

        def lost(point: PointJob, exc: BaseException | None) -> tuple[int, dict[str, Any]]:
            return point.index, {"error": f"lost on the Dask cluster {RETRIES + 1} times ({exc!r})"}

        yield from dask_map(client, simulate_point, runnable, args, lost, progress, what)


def run_points(
    scenarios: Sequence[Scenario | UserError],
    jobs: int | None = None,
    progress: bool = True,
    store: Store | None = None,
    report: CacheReport | None = None,
    what: str = "point",
) -> list[dict[str, Any]]:
    """Rows of :func:`iter_points` in scenario order."""
    rows: dict[int, dict[str, Any]] = dict(iter_points(scenarios, jobs, progress, store, report, None, what))
    return [rows[i] for i in range(len(scenarios))]


def _table(
    keys: Sequence[str], values: list[dict[str, Any]], rows: dict[int, dict[str, Any]], name: str
) -> pd.DataFrame:
    """The tidy sweep table of the finished points, in point order; ``accuracy`` and the baseline columns
    only if some row has them. ``name`` (the swept scenario's) fills the ``scenario`` column."""
    columns = ["point", "scenario", *keys, *SUMMARY_COLUMNS, "error"]
    records = [
        {"point": i, "scenario": name, **values[i], **{k: math.nan for k in SUMMARY_COLUMNS}, "error": "", **rows[i]}
        for i in sorted(rows)
    ]
    table = pd.DataFrame(records, columns=columns)
    optional = [c for c in (*BASELINE_COLUMNS, *OPTIONAL_COLUMNS) if table[c].isna().all()]
    return table.drop(columns=optional)


def sweep(
    scenario: Scenario | str | Path | Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    baseline: bool = False,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    out: str | Path | None = None,
    jobs: int | None = None,
    progress: bool = True,
    store: Store | None = None,
    report: CacheReport | None = None,
    scheduler: str | None = None,
) -> pd.DataFrame:
    """Run every combination of ``grid`` on ``scenario`` and return one row per point.

    Points that share a model, inputs, partition, pruning and wire settings share one built workload, so a
    bandwidth or device-speed point costs only an engine run. A bad value fails only its own row (its
    message is in the ``error`` column).

    Parameters
    ----------
    scenario
        A path to a YAML file, a dict, or a loaded :class:`~sim.config.schema.Scenario`.
    grid
        Dotted scenario keys and the values each takes (``{"network.bandwidth_mbps": [1, 10]}``; a number
        indexes a list: ``devices.0.gflops``). The points are the cartesian product.
    baseline
        Set ``baseline: single`` on every point: adds the whole model on the source device alone
        (columns ``baseline_latency_s``, ``speedup``, ...).
    variants
        Names mapped to settings applied together (``{"pruned": {"prune.method": "ln_structured",
        "prune.amount": 0.5}}``), each run over the whole grid; their names fill the ``variant`` column.
    out
        A folder to write ``sweep.csv`` into as points finish, so an interrupted sweep keeps its finished
        rows. Nothing is written until a point has a result (not an error), so a sweep that fails or is
        stopped before that leaves an earlier ``sweep.csv`` as it was.
    jobs
        Worker processes for builds and points (default: the number of cores).
    progress
        Log a line per finished build and point (with a time estimate), and a bar on a terminal.
    store
        The build cache (:class:`~sim.pipeline.store.Store`); ``None`` builds everything.
    report
        When given, counts what came from the cache.
    scheduler
        The address of a Dask scheduler to run the points on, or ``"local"`` for a local cluster of
        ``jobs`` workers (:func:`iter_points`).

    Returns
    -------
    pandas.DataFrame
        One row per point, in point order: ``point``, the swept keys (and ``variant``), ``latency_s``,
        ``bytes_total`` and the other summary columns, and ``error``.

    Raises
    ------
    UserError
        A misspelt key, a bad ``jobs``, an unreachable scheduler, or every point failing (with the first
        point's error); raised before anything is written.

    Examples
    --------
    >>> tiny = {"name": "tiny", "model": {"name": "lenet5"}, "inputs": {"dataset": "synthetic"},
    ...         "devices": [{"name": "a", "gflops": 1}, {"name": "b", "gflops": 1}], "source": "a", "sink": "a"}
    >>> table = sweep(tiny, {"network.bandwidth_mbps": [1, 100]}, jobs=1, progress=False)
    >>> table[["network.bandwidth_mbps", "bytes_total"]].values.tolist()
    [[1, 11236], [100, 11236]]
    >>> bool(table["latency_s"][0] > table["latency_s"][1])  # the same bytes, on a slower link
    True
    """
    check_jobs(jobs)
    grid = dict(grid or {})
    todo = sweep_points(scenario, grid, baseline, variants)
    values = [v for v, _ in todo]
    name = next((sc.name for _, sc in todo if isinstance(sc, Scenario)), "")
    keys = ["variant", *grid] if variants else list(grid)
    rows: dict[int, dict[str, Any]] = {}
    path = None if out is None else Path(out) / "sweep.csv"
    written, ran = 0.0, False  # ran: some point has a result (sweep.csv is written only then)
    try:
        for index, row in iter_points([sc for _, sc in todo], jobs, progress, store, report, scheduler):
            rows[index] = row
            ran = ran or "error" not in row
            if path is not None and ran and time.monotonic() - written > 1.0:
                write_csv(_table(keys, values, rows, name), path)
                written = time.monotonic()
    finally:
        if path is not None and ran:
            write_csv(_table(keys, values, rows, name), path)
    return _table(keys, values, rows, name)
