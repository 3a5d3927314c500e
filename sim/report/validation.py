"""The files of ``dsim validate``: ``validation.csv``, ``validation.png`` (predicted vs measured, log-log, one
panel per component kind, with the 5% and 10% bands), and the simulated and measured runs beside them.

Example::

    >>> plot_validation(pd.read_csv("results/v/validation.csv"), "validation.png")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim.analysis.result import RunResult
from sim.fileio import atomic_path, staged_directory, write_csv
from sim.report.save import save_run

KIND_TITLES = {"compute": "compute (layer on device)", "message": "message classes", "end_to_end": "end to end"}
KINDS = (*KIND_TITLES, "first_frame", "interval")  # the component kinds of validation.csv, in its order
# (frame 0's latency and the time between departures are reported, not plotted: one point each)


def network_words(execution: dict[str, Any]) -> str:
    """How the measured run's links ran, for the figure (from its summary's ``execution``): unshaped
    loopback, shaped without the scenario's latency (no netem), or shaped as the scenario says.

    >>> network_words({"network": "loopback (127.0.0.1), unshaped", "latency_applied": False})
    "links NOT shaped (loopback): message and end-to-end predictions use the scenario's rates"
    """
    if not str(execution.get("network", "")).startswith("shaped"):
        return "links NOT shaped (loopback): message and end-to-end predictions use the scenario's rates"
    if not execution.get("latency_applied", False):
        return "links shaped to the scenario's rates WITHOUT its latency (no netem); simulated with latency 0"
    return "links shaped to the scenario's rates and latency"


def plot_validation(table: pd.DataFrame, path: str | Path, title: str = "", network: str = "") -> Figure:
    """Predicted against measured median (ms, log-log) per component kind, whiskers from p10 to p90, the
    diagonal and its 5% and 10% bands; ``network`` (:func:`network_words`) says under the title how the
    links ran. Written atomically to ``path``."""
    kinds = [k for k in KIND_TITLES if (table["kind"] == k).any()]
    fig = Figure(figsize=(4.2 * max(1, len(kinds)), 4.4))
    axes = fig.subplots(1, max(1, len(kinds)), squeeze=False)[0]
    for ax, kind in zip(axes, kinds):
        g = table[table["kind"] == kind]
        meas, pred = g["measured_median_s"].to_numpy() * 1e3, g["predicted_s"].to_numpy() * 1e3
        lo, hi = g["measured_p10_s"].to_numpy() * 1e3, g["measured_p90_s"].to_numpy() * 1e3
        values = np.concatenate([meas, pred, lo, hi])
        values = values[values > 0]
        if len(values) == 0:
            continue
        a, b = values.min() / 1.5, values.max() * 1.5
        x = np.geomspace(a, b, 50)
        ax.fill_between(x, x * 0.9, x * 1.1, color="tab:green", alpha=0.12, lw=0, label="±10%")
        ax.fill_between(x, x * 0.95, x * 1.05, color="tab:green", alpha=0.25, lw=0, label="±5%")
        ax.plot(x, x, color="tab:green", lw=1)
        ax.errorbar(
            meas, pred, xerr=[np.maximum(meas - lo, 0), np.maximum(hi - meas, 0)], fmt="o", ms=4, lw=0.8, alpha=0.8
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(a, b)
        ax.set_ylim(a, b)
        ax.set_xlabel("measured median (ms; p10-p90)")
        ax.set_ylabel("predicted (ms)")
        ax.set_title(f"{KIND_TITLES[kind]} ({len(g)})", fontsize=10)
        ax.grid(True, which="both", alpha=0.2)
        ax.legend(loc="upper left", fontsize=8)
    if title or network:
        fig.suptitle("\n".join(t for t in (title, network) if t), fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return fig


def save_validation(
    table: pd.DataFrame,
    predicted: RunResult,
    measured: list[RunResult],
    out: str | Path,
    notes: list[str],
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``validation.csv``, ``validation.png`` and ``validation.json`` (notes, per-run latencies, ``extra``) into
    ``out`` (all or nothing), the simulated run into ``out/predicted`` and the measured run of median
    latency into ``out/measured`` (each all or nothing)."""
    latencies = [r.record.latency_s for r in measured]
    median_run = measured[int(np.argsort(latencies)[len(latencies) // 2])]
    written = save_run(predicted, Path(out) / "predicted") + save_run(median_run, Path(out) / "measured")
    with staged_directory(out) as stage:
        write_csv(table, stage / "validation.csv")
        words = network_words(median_run.record.execution or {})
        plot_validation(table, stage / "validation.png", title=predicted.record.name, network=words)
        info = {
            "name": predicted.record.name,
            "notes": notes,
            "measured_latency_s": latencies,
            "predicted_latency_s": predicted.record.latency_s,
            "execution": median_run.record.execution,
            **(extra or {}),
        }
        (stage / "validation.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        names = sorted(p.name for p in stage.iterdir())
    return [Path(out) / n for n in names] + written


def error_distribution(table: pd.DataFrame, min_message_bytes: int = 4000) -> pd.DataFrame:
    """Per kind (and ``message >=4KB`` for messages of at least ``min_message_bytes``): how many components,
    the median and 90th percentile of ``|error_pct|``, and the share within 5% and 10%."""
    groups = [(k, table[table["kind"] == k]) for k in KINDS]
    big = table[(table["kind"] == "message") & (table["bytes"] >= min_message_bytes)]
    groups.insert(2, (f"message >={min_message_bytes // 1000}KB", big))
    rows = []
    for name, g in groups:
        err = g["error_pct"].abs().dropna().to_numpy()
        if len(err) == 0:
            continue
        rows.append(
            (
                name,
                len(err),
                float(np.median(g["error_pct"].dropna())),
                float(np.median(err)),
                float(np.percentile(err, 90)),
                float((err <= 5).mean() * 100),
                float((err <= 10).mean() * 100),
            )
        )
    cols = [
        "kind",
        "components",
        "median_error_pct",
        "median_abs_error_pct",
        "p90_abs_error_pct",
        "within_5pct",
        "within_10pct",
    ]
    return pd.DataFrame(rows, columns=cols)


def format_validation(table: pd.DataFrame, notes: list[str]) -> str:
    """The terminal text of ``dsim validate``: the end-to-end error and the per-kind error distribution."""
    lines = []
    titles = {"end_to_end": "end to end", "first_frame": "frame 0 latency", "interval": "between departures"}
    for kind, title in titles.items():
        rows = table[table["kind"] == kind]
        if not len(rows):
            continue
        row = rows.iloc[0]
        lines.append(
            f"{title:<18} measured median {row['measured_median_s'] * 1e3:.2f} ms "
            f"(p10 {row['measured_p10_s'] * 1e3:.2f}, p90 {row['measured_p90_s'] * 1e3:.2f}), "
            f"predicted {row['predicted_s'] * 1e3:.2f} ms, error {row['error_pct']:+.1f} %"
        )
    dist = error_distribution(table)
    lines.append(
        f"{'kind':<16} {'n':>4} {'median err':>11} {'median |err|':>13} {'p90 |err|':>10} {'<=5%':>6} {'<=10%':>6}"
    )
    for r in dist.itertuples(index=False):
        lines.append(
            f"{r.kind:<16} {r.components:>4} {r.median_error_pct:>+10.1f}% {r.median_abs_error_pct:>12.1f}% "
            f"{r.p90_abs_error_pct:>9.1f}% {r.within_5pct:>5.0f}% {r.within_10pct:>5.0f}%"
        )
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)
