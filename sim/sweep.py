"""Parameter sweeps: the cartesian product of scenario settings, run in parallel, as one tidy table.

A sweep sets dotted keys of a scenario (``network.bandwidth_mbps``, ``transfer.format``,
``devices.0.gflops``; a number indexes a list) to each combination of the given values, re-validates every
point with :func:`sim.scenario.parse_scenario`, and runs it. Points with equal
:func:`sim.runner.workload_key` share one built workload: the model is traced, pruned and run once per
distinct key, and only the engine runs per point. A point that fails (an invalid value, a build error)
keeps its row with the message in ``error``; the others complete.

The table (``sweep.csv``) has one row per point: ``point`` (its index in the cartesian order), the
swept keys as columns, then :data:`SUMMARY_COLUMNS` (seconds, bytes, FLOPs; ``bytes_<format>`` is the
total had every message been sent in that format, ``bytes_auto`` the smallest per message;
``latency_{compute,transfer,waiting}_s`` split the latency along the critical path, see
:mod:`sim.compare`; ``baseline_latency_s`` and ``speedup`` come from the scenario's ``baseline: single``,
the whole model on the source device alone) and ``error``.

``sim.sweep`` is this module, and calling it calls :func:`sweep`::

    >>> import sim
    >>> table = sim.sweep("scenarios/quickstart.yaml", {"network.bandwidth_mbps": [1, 10, 100]})  # doctest: +SKIP
    >>> table[["network.bandwidth_mbps", "latency_s"]]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import itertools
import math
import multiprocessing
import os
import signal
import sys
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from sim.errors import UserError
from sim.results import write_csv
from sim.scenario import Scenario, parse_scenario

SUMMARY_COLUMNS = (
    "devices", "latency_s", "latency_p50_s", "latency_p99_s", "throughput_fps", "makespan_s", "bytes_total",
    "bytes_dense", "bytes_csr", "bytes_coo", "bytes_bitmap", "bytes_auto", "messages", "flops_total",
    "compute_s_total", "latency_compute_s", "latency_transfer_s", "latency_waiting_s", "baseline_latency_s",
    "speedup", "accuracy",
)  # fmt: skip
META_COLUMNS = ("point", "error")
BANDWIDTH_KEY = "network.bandwidth_mbps"
MAX_LOGSPACE = 10_000  # values of one --logspace (each is a simulation)
SINGLE = "single device"  # label of the baseline curves


def parse_set(text: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2,...`` (from ``--set``) as the key and its values, each parsed as a YAML scalar.

    >>> parse_set("transfer.format=dense,csr")
    ('transfer.format', ['dense', 'csr'])
    >>> parse_set("network.bandwidth_mbps=1,2.5,1e3")
    ('network.bandwidth_mbps', [1, 2.5, 1000.0])
    """
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise UserError(f"--set {text}: expected KEY=V1,V2,... (e.g. network.bandwidth_mbps=1,10,100)")
    if any(not v.strip() for v in values.split(",")):
        raise UserError(f"--set {text}: a value is empty; remove the stray comma (e.g. network.bandwidth_mbps=1,10)")
    try:
        parsed = [_number(yaml.safe_load(v)) for v in values.split(",")]
    except yaml.YAMLError:
        raise UserError(f"--set {text}: values must be YAML scalars separated by commas") from None
    return key.strip(), parsed


def _number(value: Any) -> Any:
    """``1e3`` is a string to YAML 1.1; read it as the number the user meant."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_logspace(text: str) -> tuple[str, list[float]]:
    """``KEY=LO:HI:N`` (from ``--logspace``) as the key and ``N`` log-spaced values from LO to HI.

    >>> parse_logspace("network.bandwidth_mbps=1:100:3")
    ('network.bandwidth_mbps', [1.0, 10.0, 100.0])
    """
    key, sep, spec = text.partition("=")
    parts = spec.split(":")
    try:
        lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
        if len(parts) != 3 or not (0 < lo < math.inf and 0 < hi < math.inf) or n < 1:
            raise ValueError
    except (ValueError, IndexError):
        raise UserError(f"--logspace {text}: expected KEY=LO:HI:N with finite 0 < LO <= HI and N >= 1") from None
    if lo > hi:
        raise UserError(f"--logspace {text}: LO ({lo:g}) is above HI ({hi:g}); give them in increasing order")
    if n > MAX_LOGSPACE:
        raise UserError(f"--logspace {text}: N = {n} values is too many for a sweep; use at most {MAX_LOGSPACE}")
    if not sep or not key.strip():
        raise UserError(f"--logspace {text}: expected KEY=LO:HI:N")
    return key.strip(), [float(v) for v in np.geomspace(lo, hi, n)]


def _check_key(resolved: dict[str, Any], key: str, flag: str = "--set") -> None:
    """Refuse a dotted key that names no scenario field (a ``None`` section may take any sub-key);
    ``flag`` names the option that gave it in the message."""
    node: Any = resolved
    for part in key.split("."):
        if node is None:
            return
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"{flag} {key}: '{part}' must be a list index below {len(node)}")
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise UserError(f"{flag} {key}: no such scenario field; see `dsim schema` for the keys")


def _assign(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` of plain scenario data to ``value``, creating missing sections."""
    parts = key.split(".")
    node: Any = data
    for part, nxt in zip(parts, parts[1:]):
        if isinstance(node, list):
            node = node[int(part)]
        else:
            if node.get(part) is None:
                node[part] = [] if nxt.isdigit() else {}
            node = node[part]
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


def _plain(scenario: Scenario | str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The scenario as plain data holding only what its author set, and its origin for messages."""
    from sim.runner import as_scenario

    if isinstance(scenario, (str, Path)):
        as_scenario(scenario)  # refuses a bad file before any work
        return yaml.safe_load(Path(scenario).read_text(encoding="utf-8")), str(scenario)
    if isinstance(scenario, Scenario):
        return scenario.model_dump(mode="json", exclude_unset=True), "scenario"
    parse_scenario(dict(scenario))
    return copy.deepcopy(dict(scenario)), "scenario"


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:KEY=V,KEY=V`` (from ``--variant``) as the name and its settings (YAML scalars).

    >>> parse_variant("pruned:prune.method=ln_structured,prune.amount=0.5")
    ('pruned', {'prune.method': 'ln_structured', 'prune.amount': 0.5})
    """
    name, sep, rest = text.partition(":")
    settings: dict[str, Any] = {}
    for part in rest.split(",") if rest.strip() else []:
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            break
        try:
            settings[key.strip()] = _number(yaml.safe_load(value))
        except yaml.YAMLError:
            break
    else:
        if sep and name.strip():
            return name.strip(), settings
    raise UserError(f"--variant {text}: expected NAME:KEY=V,KEY=V (e.g. pruned:prune.method=ln_structured)")


def points(
    scenario: Scenario | str | Path | Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    baseline: bool = False,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[tuple[dict[str, Any], Scenario | UserError]]:
    """Every point of the sweep: its swept values and its scenario, or the error that refused it.

    Points are the cartesian product of ``grid``, times each of the named ``variants`` (a set of
    settings applied together, shown in a ``variant`` column). The keys are checked first (a misspelt key
    refuses the whole sweep); a bad value fails its point only. ``baseline`` sets ``baseline: single``.
    """
    data, origin = _plain(scenario)
    if baseline:
        data["baseline"] = "single"
    resolved = parse_scenario(data, origin).resolved()
    for key, values in grid.items():
        _check_key(resolved, key)
        if len(values) == 0:
            raise UserError(f"--set {key}: give at least one value")
    for name, settings in (variants or {}).items():
        for key in settings:
            _check_key(resolved, key, f"--variant {name}:")
            if key in grid:
                raise UserError(f"--variant {name}: {key} is also swept by --set; set it in one place")
    keys = list(grid)
    named: list[tuple[str | None, Mapping[str, Any]]] = list((variants or {None: {}}).items())
    out: list[tuple[dict[str, Any], Scenario | UserError]] = []
    for (name, settings), combo in itertools.product(named, itertools.product(*(grid[k] for k in keys))):
        point = copy.deepcopy(data)
        for key, value in [*settings.items(), *zip(keys, combo)]:
            _assign(point, key, value)
        values = ({} if name is None else {"variant": name}) | dict(zip(keys, combo))
        try:
            out.append((values, parse_scenario(point, origin)))
        except UserError as exc:
            out.append((values, exc))
    return out


def summary_row(result: Any) -> dict[str, Any]:
    """The :data:`SUMMARY_COLUMNS` of one :class:`sim.results.RunResult`."""
    from sim.compare import latency_breakdown

    s = result.summary
    row: dict[str, Any] = {k: s[k] for k in SUMMARY_COLUMNS if k in s}
    row["devices"] = len(result.workload.devices)
    row.update({f"bytes_{fmt}": n for fmt, n in s["bytes_by_format"].items()})
    row.update(latency_breakdown(result.workload, result.timeline))
    if "baseline" in s:
        row.update(baseline_latency_s=s["baseline"]["latency_s"], speedup=s["baseline"]["speedup"])
    return {k: row.get(k, math.nan) for k in SUMMARY_COLUMNS}


_WORKLOADS: dict[str, Any] = {}  # workload key -> built workload, in sweep worker processes


def _init_worker(workloads: dict[str, Any]) -> None:
    global _WORKLOADS
    _WORKLOADS = workloads


def _start_worker(workloads: dict[str, Any]) -> None:
    """Pool initializer: hold the workloads; leave Ctrl-C to the parent, which stops the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(workloads)


def _start_builder() -> None:
    """Pool initializer of build workers: one torch thread each (the pool uses the cores), no Ctrl-C."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


def _build(job: tuple[str, Scenario]) -> tuple[str, Any, str | None]:
    """``(key, workload, None)``, or ``(key, None, message)`` when the build refuses the scenario."""
    from sim import runner

    key, scenario = job
    try:
        return key, runner.build(scenario).workload, None
    except UserError as exc:
        return key, None, str(exc)


def _simulate(job: tuple[int, Scenario, str, str | None]) -> tuple[int, dict[str, Any]]:
    """``(index, row)`` of one point, from its workload and its single-device baseline's (by key)."""
    from sim.runner import simulate

    index, scenario, key, base = job
    try:
        return index, summary_row(simulate(scenario, _WORKLOADS[key], None if base is None else _WORKLOADS[base]))
    except UserError as exc:
        return index, {"error": str(exc)}


def _map(fn: Any, items: list[Any], jobs: int, initializer: Any, initargs: tuple[Any, ...], desc: str,
         unit: str, progress: bool) -> Iterator[Any]:  # fmt: skip
    """``fn`` over ``items`` on up to ``jobs`` processes (in this one for a single job or item), yielding
    results as they finish with a progress bar (on a terminal); the pool is stopped on exit or interrupt."""
    jobs = max(1, min(jobs, len(items)))
    with tqdm(total=len(items), desc=desc, unit=unit, disable=None if progress else True) as bar:
        if jobs == 1:
            for item in items:
                result = fn(item)
                bar.update()
                yield result
            return
        pool = multiprocessing.get_context().Pool(jobs, initializer=initializer, initargs=initargs)
        try:
            for result in pool.imap_unordered(fn, items):
                bar.update()
                yield result
        finally:
            pool.terminate()
            pool.join()


def iter_points(
    scenarios: Sequence[Scenario | UserError], jobs: int | None = None, progress: bool = True
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run the scenarios, yielding ``(index, row)`` as each finishes (in any order).

    Each distinct workload (:func:`sim.runner.workload_key`), and each distinct single-device workload
    of the points with ``baseline: single`` (:func:`sim.runner.baseline_scenario`), is built once, then
    the engine runs each point; both phases use ``jobs`` processes (default: all cores). A row is
    :func:`summary_row` or ``{"error": message}``.
    """
    from sim import runner

    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs: must be >= 1 (got {jobs})")
    jobs = jobs or os.cpu_count() or 1
    todo: list[tuple[int, Scenario, str]] = []
    for index, sc in enumerate(scenarios):
        if isinstance(sc, UserError):
            yield index, {"error": str(sc)}
        else:
            todo.append((index, sc, runner.workload_key(sc)))
    builds: dict[str, Scenario] = {}  # workload key -> a scenario that builds it
    baseline_of: dict[str, str | UserError] = {}  # workload key -> key of its baseline: single, or why none
    for _, sc, key in todo:
        builds.setdefault(key, sc)
        if sc.baseline == "single" and key not in baseline_of:
            try:
                single = runner.baseline_scenario(sc)
            except UserError as exc:
                baseline_of[key] = exc
                continue
            baseline_of[key] = runner.workload_key(single)
            builds.setdefault(baseline_of[key], single)
    workloads: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for key, workload, error in _map(_build, list(builds.items()), jobs, _start_builder, (), "build",
                                     "workload", progress):  # fmt: skip
        if error is None:
            workloads[key] = workload
        else:
            failed[key] = error
    runnable = []
    for index, sc, key in todo:
        base = baseline_of[key] if sc.baseline == "single" else None
        if key in failed:
            yield index, {"error": failed[key]}
        elif isinstance(base, UserError) or base in failed:
            yield index, {"error": f"baseline: {base if isinstance(base, UserError) else failed[base]}"}
        else:
            runnable.append((index, sc, key, base))
    _init_worker(workloads)
    try:
        yield from _map(_simulate, runnable, jobs, _start_worker, (workloads,), "simulate", "point", progress)
    finally:
        _init_worker({})


def run_points(
    scenarios: Sequence[Scenario | UserError], jobs: int | None = None, progress: bool = True
) -> list[dict[str, Any]]:
    """Rows of :func:`iter_points` in scenario order."""
    rows: dict[int, dict[str, Any]] = dict(iter_points(scenarios, jobs, progress))
    return [rows[i] for i in range(len(scenarios))]


def _table(keys: Sequence[str], values: list[dict[str, Any]], rows: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """The tidy sweep table of the finished points, in point order; ``accuracy`` only if some row has it."""
    columns = ["point", *keys, *SUMMARY_COLUMNS, "error"]
    records = [
        {"point": i, **values[i], **{k: math.nan for k in SUMMARY_COLUMNS}, "error": "", **rows[i]}
        for i in sorted(rows)
    ]
    table = pd.DataFrame(records, columns=columns)
    optional = [c for c in ("accuracy", "baseline_latency_s", "speedup") if table[c].isna().all()]
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
) -> pd.DataFrame:
    """Run every combination of ``grid`` (dotted key -> values) on ``scenario``; one row per point.

    ``variants`` maps names to settings applied together (``{"pruned": {"prune.method": "ln_structured",
    "prune.amount": 0.5}}``), each run over the whole grid. ``baseline`` sets ``baseline: single``
    (columns ``baseline_latency_s``, ``speedup``). With ``out``, ``sweep.csv`` is written there as points
    finish, so an interrupted sweep keeps its finished rows. ``jobs`` defaults to the number of cores.

    Example::

        >>> grid = {"network.bandwidth_mbps": [1, 10], "transfer.format": ["dense", "auto"]}
        >>> sweep("scenarios/quickstart.yaml", grid, baseline=True, out="results/qs-sweep")  # doctest: +SKIP
    """
    grid = dict(grid or {})
    todo = points(scenario, grid, baseline, variants)
    values = [v for v, _ in todo]
    keys = ["variant", *grid] if variants else list(grid)
    rows: dict[int, dict[str, Any]] = {}
    path = None if out is None else Path(out) / "sweep.csv"
    written = 0.0
    try:
        for index, row in iter_points([sc for _, sc in todo], jobs, progress):
            rows[index] = row
            if path is not None and time.monotonic() - written > 1.0:
                write_csv(_table(keys, values, rows), path)
                written = time.monotonic()
    finally:
        if path is not None:
            write_csv(_table(keys, values, rows), path)
    return _table(keys, values, rows)


def _errors(table: pd.DataFrame) -> pd.Series:
    """The ``error`` column as strings, ``""`` for points that ran (empty cells read back as NaN)."""
    if "error" not in table.columns:
        return pd.Series("", index=table.index)
    return table["error"].astype("string").fillna("").astype(str)


def swept_columns(table: pd.DataFrame) -> list[str]:
    """The columns of a sweep table that hold swept settings."""
    fixed = set(SUMMARY_COLUMNS) | set(META_COLUMNS)
    return [c for c in table.columns if c not in fixed]


def lines(table: pd.DataFrame, x: str) -> list[tuple[str, list[str], pd.DataFrame]]:
    """The sweep's curves over ``x``: one per combination of the other swept settings.

    Each is ``(label, settings, rows sorted by x)``, e.g. ``("4 devices, format=csr", ["format=csr"],
    rows)``; rows with errors are left out.
    """
    ok = table[_errors(table) == ""]
    others = [c for c in swept_columns(table) if c != x]
    named = [c for c in others if table[c].nunique(dropna=False) > 1]  # a single value names no line
    out = []
    groups = ok.groupby(others, sort=False, dropna=False) if others else [((), ok)] if len(ok) else []
    for _, group in groups:
        first = group.iloc[0]
        settings = [_setting(c, first[c]) for c in named]
        head = [] if "variant" in named else [f"{int(first['devices'])} devices"]
        out.append((", ".join([*head, *settings]), settings, group.sort_values(x)))
    return out


def _setting(column: str, value: Any) -> str:
    """A swept value as a line label: the variant's name, or ``format=csr``, ``amount=0.5``."""
    if column == "variant":
        return str(value)
    name = column.rsplit(".", 1)[-1]
    return f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"


def baselines(table: pd.DataFrame, x: str) -> list[tuple[str, pd.DataFrame]]:
    """The distinct single-device curves (``baseline_latency_s`` over ``x``) of the sweep's lines.

    Lines with the same baseline (formats, bandwidths: nothing a lone device reads) share one, labelled
    ``single device``, or ``single device (for A, B)`` naming its lines when the lines have several.
    """
    if "baseline_latency_s" not in table.columns:
        return []
    found: dict[tuple[Any, ...], tuple[list[str], pd.DataFrame]] = {}
    for label, _, rows in lines(table, x):
        rows = rows[rows["baseline_latency_s"].notna()]
        if len(rows):
            key = (tuple(rows[x]), tuple(rows["baseline_latency_s"]))
            found.setdefault(key, ([], rows))[0].append(label)
    if len(found) == 1:
        return [(SINGLE, rows) for _, rows in found.values()]
    return [(f"{SINGLE} (for {', '.join(labels)})", rows) for labels, rows in found.values()]


def _crossings(x: np.ndarray, gap: np.ndarray) -> list[float]:
    """Where ``gap`` (sampled at increasing ``x``) changes sign, interpolated linearly in log ``x``."""
    sign, found = np.sign(gap), []
    for k in range(len(x) - 1):
        if sign[k] == 0 and 0 < k and sign[k - 1] * sign[k + 1] < 0:
            found.append(float(x[k]))
        elif sign[k] * sign[k + 1] < 0:
            t = gap[k] / (gap[k] - gap[k + 1])
            found.append(float(np.exp(np.log(x[k]) + t * (np.log(x[k + 1]) - np.log(x[k])))))
    return found


def crossovers(table: pd.DataFrame, x: str = BANDWIDTH_KEY) -> pd.DataFrame:
    """Values of ``x`` where one line of :func:`lines` crosses another or its own single-device baseline
    (equal ``latency_s``), as a table ``line, versus, <x>``.

    Between samples the crossing is interpolated linearly in ``log x``.
    """
    curves = lines(table, x)
    records = []
    for label, _, rows in curves:
        if "baseline_latency_s" in rows.columns and rows["baseline_latency_s"].notna().all():
            gap = rows["latency_s"].to_numpy(dtype=float) - rows["baseline_latency_s"].to_numpy(dtype=float)
            for value in _crossings(rows[x].to_numpy(dtype=float), gap):
                records.append({"line": label, "versus": SINGLE, x: value})
    for (label_a, _, a), (label_b, _, b) in itertools.combinations(curves, 2):
        xs = a[x].to_numpy(dtype=float)
        yb = np.interp(np.log(xs), np.log(b[x].to_numpy(dtype=float)), b["latency_s"].to_numpy(dtype=float))
        for value in _crossings(xs, a["latency_s"].to_numpy(dtype=float) - yb):
            records.append({"line": label_a, "versus": label_b, x: value})
    return pd.DataFrame(records, columns=["line", "versus", x])


def format_table(table: pd.DataFrame, max_rows: int = 40) -> str:
    """The sweep for the terminal: swept settings, latency in ms, bytes sent in kB (1 kB = 1e3 bytes),
    errors, and the bandwidth crossovers when a bandwidth was swept (at most ``max_rows`` rows)."""
    shown = table[swept_columns(table)].copy()
    shown["latency ms"] = (table["latency_s"] * 1e3).round(3)
    if "baseline_latency_s" in table.columns:
        shown["1-device ms"] = (table["baseline_latency_s"] * 1e3).round(3)
    shown["sent kB"] = (table["bytes_total"] / 1e3).round(3)
    shown["error"] = _errors(table)
    text = shown.head(max_rows).to_string(index=False)
    if len(shown) > max_rows:
        text += f"\n... {len(shown) - max_rows} more rows in sweep.csv"
    bandwidth = next((c for c in swept_columns(table) if c.endswith("bandwidth_mbps")), None)
    if bandwidth is not None:
        for _, c in crossovers(table, bandwidth).iterrows():
            text += f"\ncrossover: {c['line']} = {c['versus']} at {c[bandwidth]:.3g} Mbps"
    return text


class _CallableModule(types.ModuleType):
    """Lets ``sim.sweep(...)`` call :func:`sweep` although ``sim.sweep`` is this module."""

    def __call__(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
