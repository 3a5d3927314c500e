"""Curves of a sweep table: its lines over a swept key, their single-device baselines, and where they cross.

A sweep table (``sweep.csv``) has one row per point: ``point``, the swept keys, :data:`SUMMARY_COLUMNS`
and ``error``.

Example::

    >>> import pandas as pd
    >>> t = pd.DataFrame({"point": [0, 1], "network.bandwidth_mbps": [1.0, 100.0], "devices": [2, 2],
    ...                   "latency_s": [2.0, 0.5], "baseline_latency_s": [1.0, 1.0], "error": ["", ""]})
    >>> round(float(crossovers(t)["network.bandwidth_mbps"][0]), 3)
    21.544
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

BASELINE_COLUMNS = (
    "baseline_latency_s",
    "baseline_service_latency_s",
    "baseline_throughput_fps",
    "speedup",
    "service_speedup",
    "throughput_speedup",
)  # present only when the points have ``baseline: single``
SUMMARY_COLUMNS = (
    "devices",
    "frames",
    "latency_s",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "deadline_miss_rate",
    "throughput_fps",
    "keeps_up",
    "service_latency_s",
    "makespan_s",
    "bytes_total",
    "bytes_dense",
    "bytes_csr",
    "bytes_coo",
    "bytes_bitmap",
    "bytes_auto",
    "messages",
    "retransmissions",
    "elements_hops",
    "elements_hops_max_link",
    "kept_kernels",
    "flops_total",
    "compute_s_total",
    "latency_compute_s",
    "latency_transfer_s",
    "latency_waiting_s",
    *BASELINE_COLUMNS,
    "accuracy",
    "energy_j",
    "energy_j_per_frame",
)
OPTIONAL_COLUMNS = ("accuracy", "kept_kernels", "energy_j", "energy_j_per_frame")  # dropped when no row has them
META_COLUMNS = ("point", "scenario", "error")
BANDWIDTH_KEY = "network.bandwidth_mbps"
LOSS_FIELDS = ("p", "p_good_bad", "loss_good", "loss_bad")  # loss settings a loss sweep draws against
SINGLE = "single device"  # label of the baseline curves


def loss_column(table: pd.DataFrame) -> str | None:
    """The first swept loss rate of a sweep table (``network.loss.p``, ``network.links.0.loss.p_good_bad``,
    ...), or None.

    >>> loss_column(pd.DataFrame(columns=["point", "network.loss.p", "latency_s"]))
    'network.loss.p'
    """
    for column in swept_columns(table):
        parts = column.split(".")
        if len(parts) >= 2 and parts[-2] == "loss" and parts[-1] in LOSS_FIELDS:
            return column
    return None


def errors(table: pd.DataFrame) -> pd.Series:
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
    ok = table[errors(table) == ""]
    others = [c for c in swept_columns(table) if c != x]
    named = [c for c in others if table[c].nunique(dropna=False) > 1]  # a single value names no line
    out = []
    groups = ok.groupby(others, sort=False, dropna=False) if others else [((), ok)] if len(ok) else []
    for _, group in groups:
        first = group.iloc[0]
        settings = [setting(c, first[c]) for c in named]
        head = [] if "variant" in named else [f"{int(first['devices'])} devices"]
        out.append((", ".join([*head, *settings]), settings, group.sort_values(x)))
    return out


def setting(column: str, value: Any) -> str:
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


Curve = tuple[str, list[str], pd.DataFrame]  # a line of :func:`lines`: label, settings, rows sorted by x


def line_pairs(curves: list[Curve]) -> list[tuple[int, int]]:
    """The pairs ``(i, j)``, ``i < j``, of lines that differ in exactly one swept setting, in
    :func:`itertools.combinations` order: every pair when one setting names the lines (a sweep over
    variants, or over one key besides ``x``).

    Lines are grouped once by their settings with each one left out, so the cost grows with the pairs
    found, not with the square of the lines.

    >>> line_pairs([("a", ["f=1", "g=1"], None), ("b", ["f=2", "g=1"], None), ("c", ["f=2", "g=2"], None)])
    [(0, 1), (1, 2)]
    """
    buckets: dict[tuple[int, tuple[str, ...]], list[int]] = {}
    for i, (_, settings, _) in enumerate(curves):
        for p in range(len(settings)):
            buckets.setdefault((p, tuple(settings[:p] + settings[p + 1 :])), []).append(i)
    pairs = {pair for members in buckets.values() for pair in itertools.combinations(members, 2)}
    return sorted(pairs)


def _baseline_crossings(curves: list[Curve], x: str) -> list[dict[str, Any]]:
    """Crossings of each line with its own single-device baseline (lines without one: none)."""
    records = []
    for label, _, rows in curves:
        if "baseline_latency_s" in rows.columns and rows["baseline_latency_s"].notna().all():
            gap = rows["latency_s"].to_numpy(dtype=float) - rows["baseline_latency_s"].to_numpy(dtype=float)
            for value in _crossings(rows[x].to_numpy(dtype=float), gap):
                records.append({"line": label, "versus": SINGLE, x: value})
    return records


def _pair_crossings(curves: list[Curve], x: str, pairs: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Crossings between the lines of each pair: the second interpolated (in log ``x``) at the first's samples."""
    records = []
    for i, j in pairs:
        (label_a, _, a), (label_b, _, b) = curves[i], curves[j]
        xs = a[x].to_numpy(dtype=float)
        yb = np.interp(np.log(xs), np.log(b[x].to_numpy(dtype=float)), b["latency_s"].to_numpy(dtype=float))
        for value in _crossings(xs, a["latency_s"].to_numpy(dtype=float) - yb):
            records.append({"line": label_a, "versus": label_b, x: value})
    return records


def crossovers(table: pd.DataFrame, x: str = BANDWIDTH_KEY) -> pd.DataFrame:
    """Values of ``x`` where a line of :func:`lines` crosses its own single-device baseline, or a line that
    differs from it in one setting (:func:`line_pairs`) (equal ``latency_s``), as a table ``line, versus,
    <x>``.

    Between samples the crossing is interpolated linearly in ``log x``.
    """
    curves = lines(table, x)
    records = _baseline_crossings(curves, x) + _pair_crossings(curves, x, line_pairs(curves))
    return pd.DataFrame(records, columns=["line", "versus", x])


def crossover_report(table: pd.DataFrame, x: str = BANDWIDTH_KEY) -> pd.DataFrame:
    """Every crossover of :func:`crossovers`, and every pair of curves that does not cross in the swept range.

    With single-device baselines only the lines against their baseline are reported, else every pair of
    lines that differ in one setting (:func:`line_pairs`). Columns: ``line``, ``versus``, ``crosses``
    (bool), ``at`` (the crossing ``x``; NaN when none), ``lo`` and ``hi`` (the ``x`` range both curves were
    sampled over) and ``faster`` (when they do not cross: the one with the lower latency throughout,
    ``line`` or ``versus`` by name; ``""`` when they cross).

    Example::

        >>> t = pd.DataFrame({"point": [0, 1], "network.bandwidth_mbps": [1.0, 10.0], "devices": [2, 2],
        ...                   "latency_s": [2.0, 1.5], "baseline_latency_s": [1.0, 1.0], "error": ["", ""]})
        >>> r = crossover_report(t).iloc[0]
        >>> (bool(r["crosses"]), float(r["lo"]), float(r["hi"]), r["faster"])
        (False, 1.0, 10.0, 'single device')
    """
    curves = lines(table, x)
    single = "baseline_latency_s" in table.columns and table["baseline_latency_s"].notna().any()
    pairs: list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]] = []  # line, versus, x, y_line, y_versus
    if single:
        found = _baseline_crossings(curves, x)
        for label, _, rows in curves:
            rows = rows[rows["baseline_latency_s"].notna()]
            xs = rows[x].to_numpy(dtype=float)
            pairs.append(
                (label, SINGLE, xs, rows["latency_s"].to_numpy(float), rows["baseline_latency_s"].to_numpy(float))
            )
    else:
        indices = line_pairs(curves)
        found = _pair_crossings(curves, x, indices)
        for i, j in indices:
            (label_a, _, a), (label_b, _, b) = curves[i], curves[j]
            xa, xb = a[x].to_numpy(dtype=float), b[x].to_numpy(dtype=float)
            xs = xa[(xa >= xb.min()) & (xa <= xb.max())]
            yb = np.interp(np.log(xs), np.log(xb), b["latency_s"].to_numpy(dtype=float))
            ya = np.interp(np.log(xs), np.log(xa), a["latency_s"].to_numpy(dtype=float))
            pairs.append((label_a, label_b, xs, ya, yb))
    hits: dict[tuple[str, str], list[float]] = {}  # (line, versus) -> where they cross, grouped once
    for record in found:
        hits.setdefault((record["line"], record["versus"]), []).append(record[x])
    records: list[dict[str, Any]] = []
    for line, versus, xs, ya, yb in pairs:
        if not len(xs):
            continue
        base = {"line": line, "versus": versus, "lo": float(xs.min()), "hi": float(xs.max())}
        at = hits.get((line, versus), [])
        if at:
            records += [{**base, "crosses": True, "at": float(v), "faster": ""} for v in at]
        else:
            records.append({**base, "crosses": False, "at": np.nan, "faster": line if (ya <= yb).all() else versus})
    return pd.DataFrame(records, columns=["line", "versus", "crosses", "at", "lo", "hi", "faster"])
