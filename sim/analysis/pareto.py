"""Pareto fronts of a sweep or comparison: which designs no other design beats on every objective at once.

The objectives are latency per frame (lower is better), bytes sent per frame (lower) and, when measured,
accuracy (higher). A row *dominates* another when it is at least as good on every objective and strictly
better on one; the non-dominated rows form the front that split-DNN studies report.

Example::

    >>> import pandas as pd
    >>> t = pd.DataFrame({"latency_s": [1.0, 2.0, 3.0], "bytes_total": [30, 10, 40], "frames": 1})
    >>> list(pareto_table(t, ["a", "b", "c"])["pareto"])
    [True, True, False]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.analysis import curves


@dataclass(frozen=True)
class Objective:
    """A column to optimise: lower is better unless ``maximize``."""

    column: str
    maximize: bool = False


PARETO_COLUMNS = ["label", "latency_s", "bytes_per_frame", "accuracy", "pareto"]


def non_dominated(table: pd.DataFrame, objectives: Sequence[Objective]) -> np.ndarray:
    """A boolean array: True for each row of ``table`` that no other row dominates on ``objectives``.

    A row with a missing value in some objective is never on the front and dominates nothing. Equal rows
    do not dominate each other (both stay on the front).

    Example::

        >>> t = pd.DataFrame({"lat": [1.0, 1.0, 2.0], "acc": [0.9, 0.8, 0.95]})
        >>> non_dominated(t, [Objective("lat"), Objective("acc", maximize=True)]).tolist()
        [True, False, True]
    """
    values = np.column_stack(
        [table[o.column].to_numpy(dtype=float) * (-1.0 if o.maximize else 1.0) for o in objectives]
    )  # every objective as "lower is better"
    ok = np.asarray(~np.isnan(values).any(axis=1), dtype=bool)
    front: np.ndarray = ok.copy()
    for i in np.flatnonzero(ok):
        others = values[ok]
        dominated_by = (others <= values[i]).all(axis=1) & (others < values[i]).any(axis=1)
        front[i] = not dominated_by.any()
    return front


ENVIRONMENT_PREFIXES = ("network.", "devices.", "inputs.")  # swept settings a design does not choose


def environment_columns(table: pd.DataFrame) -> list[str]:
    """The swept columns of a sweep table that describe the conditions (links, devices, arrivals), not the
    design: a design is compared only with designs under the same conditions."""
    return [c for c in curves.swept_columns(table) if c.startswith(ENVIRONMENT_PREFIXES)]


def pareto_table(table: pd.DataFrame, labels: Sequence[str], within: Sequence[str] = ()) -> pd.DataFrame:
    """One row per successful row of ``table`` (a sweep or comparison table): ``label`` (from ``labels``,
    one per row of ``table``), ``latency_s`` (mean per frame), ``bytes_per_frame`` (``bytes_total`` /
    ``frames``; ``frames`` taken as 1 when the table has no such column), ``accuracy`` (NaN when not
    measured) and ``pareto`` (non-dominated on latency, bytes per frame and, when every row has it,
    accuracy), sorted by latency then bytes."""
    ok = (curves.errors(table) == "").to_numpy()
    rows = table[ok]
    frames = rows["frames"].astype(float) if "frames" in rows.columns else 1.0
    out = pd.DataFrame(
        {
            "label": [str(label) for label, keep in zip(labels, ok) if keep],
            "latency_s": rows["latency_s"].astype(float).to_numpy(),
            "bytes_per_frame": (rows["bytes_total"].astype(float) / frames).to_numpy(),
            "accuracy": rows["accuracy"].astype(float).to_numpy() if "accuracy" in rows.columns else np.nan,
        }
    )
    objectives = [Objective("latency_s"), Objective("bytes_per_frame")]
    if len(out) and out["accuracy"].notna().all():
        objectives.append(Objective("accuracy", maximize=True))
    for k, column in enumerate(within):  # the conditions, beside the label
        out.insert(1 + k, column, rows[column].to_numpy())
    out["pareto"] = False
    groups = rows.groupby(list(within), sort=False, dropna=False).indices.values() if within else [range(len(out))]
    for members in groups:
        part = out.iloc[list(members)]
        out.loc[part.index, "pareto"] = non_dominated(part, objectives)
    columns = ["label", *within, *PARETO_COLUMNS[1:]]
    return out.sort_values(["latency_s", "bytes_per_frame"], kind="stable").reset_index(drop=True)[columns]


ENERGY_PARETO_COLUMNS = ["label", "latency_s", "energy_j_per_frame", "pareto"]


def energy_pareto_table(table: pd.DataFrame, labels: Sequence[str]) -> pd.DataFrame:
    """The latency-against-energy front of a comparison table: one row per successful row with energy
    figures, :data:`ENERGY_PARETO_COLUMNS` (``label`` from ``labels``, one per row of ``table``; seconds and
    joules per frame; ``pareto`` when no other row is at least as fast and as frugal and better on one),
    sorted by latency then energy.

    Example::

        >>> t = pd.DataFrame({"latency_s": [1.0, 2.0, 3.0], "energy_j_per_frame": [5.0, 1.0, 2.0]})
        >>> energy_pareto_table(t, ["a", "b", "c"])["pareto"].tolist()
        [True, True, False]
    """
    ok = (curves.errors(table) == "").to_numpy() & table["energy_j_per_frame"].notna().to_numpy()
    rows = table[ok]
    out = pd.DataFrame(
        {
            "label": [str(label) for label, keep in zip(labels, ok) if keep],
            "latency_s": rows["latency_s"].astype(float).to_numpy(),
            "energy_j_per_frame": rows["energy_j_per_frame"].astype(float).to_numpy(),
        }
    )
    out["pareto"] = non_dominated(out, [Objective("latency_s"), Objective("energy_j_per_frame")])
    return out.sort_values(["latency_s", "energy_j_per_frame"], kind="stable").reset_index(drop=True)


def sweep_labels(table: pd.DataFrame, leave_out: Sequence[str] = ()) -> list[str]:
    """A short label per row of a sweep table: its swept settings that vary (``auto, bandwidth_mbps=10``),
    but for the columns ``leave_out`` (say, the conditions of :func:`environment_columns`)."""
    named = [c for c in curves.swept_columns(table) if table[c].nunique(dropna=False) > 1 and c not in leave_out]
    if not named:
        return [f"point {p}" for p in table.get("point", range(len(table)))]
    return [", ".join(curves.setting(c, row[c]) for c in named) for _, row in table.iterrows()]
