"""Figures drawn from result tables (matplotlib, headless). Each is written atomically as PNG.

Every plot function reads only the saved CSV tables, so ``dsim plot`` can redraw without re-running
(:func:`sim.report.redraw.redraw`). Each function returns the :class:`~matplotlib.figure.Figure`
it saved, so callers and tests can inspect its axes.

Example::

    >>> import sim
    >>> table = sim.sweep("scenarios/bandwidth.yaml", {"network.bandwidth_mbps": [1, 10, 100]})  # doctest: +SKIP
    >>> plot_latency_vs_bandwidth(table, "latency_vs_bandwidth.png")                            # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from sim.analysis import curves
from sim.analysis.tables import traffic_matrix
from sim.errors import UserError
from sim.fileio import atomic_path


def plot_timeline(
    transfers: pd.DataFrame,
    compute: pd.DataFrame,
    path: str | Path,
    title: str = "",
    frame: int = 0,
    hops: pd.DataFrame | None = None,
    critical: dict | None = None,
) -> Figure:
    """Gantt chart of one frame: a row per device (compute) and per device pair (transfers), in ms.

    With ``hops`` (:func:`sim.analysis.tables.hop_table`) the transfer rows are the link queues instead, each
    transmission drawn where it held the link (its busy time). With ``critical`` (the summary's
    ``critical_path``) of this frame, the compute and transmissions on the critical path are outlined in red.
    """
    comp = compute[compute["frame"] == frame]
    xfer = transfers[transfers["frame"] == frame]
    devices = list(dict.fromkeys(comp["device"]))
    if hops is not None:
        busy = hops[hops["frame"] == frame]
        xfer = pd.DataFrame(
            {
                "row": busy["link"],
                "start_s": busy["start_s"],
                "end_s": busy["end_s"],
                "src": busy["src"],
                "dst": busy["dst"],
                "layer": busy["layer"],
            }
        )
    else:
        xfer = xfer.assign(row=xfer["src"] + " → " + xfer["dst"])
    pairs = list(dict.fromkeys(xfer["row"]))
    rows = devices + pairs
    on_path: set[tuple] = set()
    if critical and critical.get("frame") == frame:
        on_path = {(s["device"], s["layer"]) for s in critical["steps"] if s["kind"] == "compute"}
        on_path |= {(s["src"], s["dst"], s["layer"]) for s in critical["steps"] if s["kind"] == "transfer"}
    fig = Figure(figsize=(10, 1.2 + 0.35 * max(1, len(rows))))
    ax = fig.subplots()
    layers = list(dict.fromkeys(comp["layer"]))
    cmap = mpl.colormaps["tab20"]
    for _, r in comp.iterrows():
        y = rows.index(r["device"])
        colour = cmap(layers.index(r["layer"]) % 20)
        hot = (r["device"], r["layer"]) in on_path
        ax.barh(
            y,
            (r["end_s"] - r["start_s"]) * 1e3,
            left=r["start_s"] * 1e3,
            color=colour,
            edgecolor="red" if hot else "black",
            linewidth=1.5 if hot else 0.3,
        )
    for _, r in xfer.iterrows():
        y = rows.index(r["row"])
        hot = any((r["src"], d, r["layer"]) in on_path for d in str(r["dst"]).split(","))
        ax.barh(
            y,
            (r["end_s"] - r["start_s"]) * 1e3,
            left=r["start_s"] * 1e3,
            color="tab:gray",
            alpha=0.7,
            edgecolor="red" if hot else "black",
            linewidth=1.5 if hot else 0.3,
        )
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("device / link")
    what = "colour = layer, grey = link busy" + (", red = critical path" if on_path else "")
    ax.set_title(f"{title}: frame {frame} timeline ({what})" if title else "timeline")
    handles = [Rectangle((0, 0), 1, 1, color=cmap(i % 20)) for i in range(len(layers))]
    if layers:
        ax.legend(
            handles,
            layers,
            fontsize=6,
            ncol=min(6, len(layers)),
            loc="upper center",
            bbox_to_anchor=(0.5, -0.25 if len(rows) < 8 else -0.1),
            frameon=False,
        )
    return _save(fig, path)


BREAKDOWN_COLOURS = {"compute": "tab:blue", "transfer": "tab:orange", "waiting": "tab:gray"}


def _save(fig: Figure, path: str | Path) -> Figure:
    """Write ``fig`` as PNG atomically, close it, and return it for inspection."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    return fig


def _axis_label(key: str) -> str:
    """A readable axis label for a swept scenario key, with its unit."""
    units = {"_mbps": "Mbps", "_ms": "ms", "gflops": "GFLOP/s"}
    unit = next((u for suffix, u in units.items() if key.endswith(suffix)), "")
    name = key.rsplit(".", 1)[-1].replace("_mbps", "").replace("_ms", "").replace("_", " ")
    if key.endswith("bandwidth_mbps"):
        name = "link bandwidth"
    return f"{name} ({unit})" if unit else name


def plot_latency_vs_bandwidth(
    table: pd.DataFrame, path: str | Path, x: str = "network.bandwidth_mbps", title: str = ""
) -> Figure:
    """Mean frame latency against ``x`` (log axes) from a sweep table: one line per variant
    (:func:`sim.analysis.curves.lines`), the single-device baseline(s) dashed (:func:`sim.analysis.curves.baselines`), and
    the crossovers (:func:`sim.analysis.curves.crossovers`) marked by dotted vertical lines labelled with their ``x``:
    those with the baseline when the sweep has one, else those between lines."""
    lines = curves.lines(table, x)
    if not lines:
        raise UserError(f"{path}: no successful sweep points to plot")
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for label, _, rows in lines:
        ax.plot(
            rows[x].to_numpy(dtype=float),
            rows["latency_s"].to_numpy(dtype=float) * 1e3,
            marker="o",
            markersize=3,
            label=label,
        )
    for k, (label, rows) in enumerate(curves.baselines(table, x)):
        ax.plot(
            rows[x].to_numpy(dtype=float),
            rows["baseline_latency_s"].to_numpy(dtype=float) * 1e3,
            color="black",
            linestyle=("--", "-.", ":")[k % 3],
            linewidth=1.5,
            label=label,
        )
    cross = curves.crossovers(table, x)
    if (cross["versus"] == curves.SINGLE).any():  # with a baseline, mark where the split wins or loses
        cross = cross[cross["versus"] == curves.SINGLE]
    for _, c in cross.iterrows():
        ax.axvline(c[x], color="tab:red", linestyle=":", linewidth=1, label="_crossover")
        ax.annotate(
            f"{c[x]:.3g}",
            (c[x], 0),
            xycoords=ax.get_xaxis_transform(),
            xytext=(2, 4),
            textcoords="offset points",
            fontsize=8,
            color="tab:red",
            rotation=90,
            va="bottom",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_axis_label(x) + ", log scale")
    ax.set_ylabel("latency per frame (ms), log scale")
    ax.set_title(title or f"Latency vs {_axis_label(x)}")
    handles, labels = ax.get_legend_handles_labels()
    if len(cross):
        handles.append(Line2D([], [], color="tab:red", linestyle=":"))
        labels.append(f"crossover ({_axis_label(x).split(' (')[-1].rstrip(')')})")
    ax.legend(handles, labels, fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return _save(fig, path)


def plot_breakdown(table: pd.DataFrame, path: str | Path, label: str = "scenario", title: str = "") -> Figure:
    """Stacked horizontal bars of each row's mean frame latency: compute, transfer and waiting along
    the critical path (:mod:`sim.analysis.critical_path`), in ms, one bar per row labelled by column ``label``."""
    rows = table.reset_index(drop=True)
    fig = Figure(figsize=(8, 1.8 + 0.5 * len(rows)))
    ax = fig.subplots()
    left = np.zeros(len(rows))
    for part, colour in BREAKDOWN_COLOURS.items():
        width = rows[f"latency_{part}_s"].to_numpy(dtype=float) * 1e3
        ax.barh(range(len(rows)), width, left=left, color=colour, label=part, edgecolor="black", linewidth=0.3)
        left += width
    for i, total in enumerate(left):
        ax.annotate(f"{total:.3g} ms", (total, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), rows[label].astype(str))
    ax.invert_yaxis()
    ax.set_xlim(0, max(left.max(), 1e-9) * 1.18)
    ax.set_xlabel("mean latency per frame (ms)")
    ax.set_ylabel(label)
    ax.set_title(title or "Where the latency goes (critical path: compute, transfer, waiting)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / (1 + 0.3 * len(rows))), ncol=3, fontsize=8, frameon=False)
    return _save(fig, path)


def plot_traffic(
    transfers: pd.DataFrame, path: str | Path, devices: list[str] | None = None, title: str = ""
) -> Figure:
    """Bytes sent from each device (rows) to each device (columns) over the whole run, in kB
    (1 kB = 1e3 bytes), as sent (``bytes`` column: in the chosen wire format)."""
    names = devices or list(dict.fromkeys([*transfers["src"], *transfers["dst"]]))
    matrix = traffic_matrix(transfers, names).to_numpy(dtype=float) / 1e3
    frames = int(transfers["frame"].nunique()) if len(transfers) else 0
    size = 2.5 + 0.55 * len(names)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="viridis")
    fig.colorbar(image, ax=ax, label="bytes sent (kB)")
    peak = matrix.max() if matrix.size else 0.0
    for i in range(len(names)):
        for j in range(len(names)):
            if matrix[i, j] > 0:
                colour = "black" if matrix[i, j] > 0.6 * peak else "white"
                ax.text(j, i, f"{matrix[i, j]:.3g}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("receiving device")
    ax.set_ylabel("sending device")
    what = f"{frames} frame{'s' if frames != 1 else ''}"
    ax.set_title(f"{title + ': ' if title else ''}traffic between devices ({what}, kB)")
    return _save(fig, path)


def plot_accuracy_vs_bytes(
    table: pd.DataFrame, path: str | Path, amount: str = "prune.amount", title: str = ""
) -> Figure:
    """Accuracy (%) against cross-device bytes (kB) for a pruning sweep: one line per variant over
    ``amount`` (:func:`sim.analysis.curves.lines`), each point labelled with its pruning amount."""
    if "accuracy" not in table.columns or table["accuracy"].isna().all():
        raise UserError(f"{path}: the sweep has no accuracy column; sweep a scenario that measures accuracy")
    if amount not in table.columns:
        raise UserError(f"{path}: the sweep has no '{amount}' column; sweep it with --set {amount}=0,0.25,0.5")
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for label, _, rows in curves.lines(table, amount):
        rows = rows[rows["accuracy"].notna()]
        kb, acc = rows["bytes_total"].to_numpy(dtype=float) / 1e3, rows["accuracy"].to_numpy(dtype=float) * 100
        ax.plot(kb, acc, marker="o", label=label)
        for xk, yk, a in zip(kb, acc, rows[amount]):
            ax.annotate(
                f"{a:g}" if isinstance(a, float) else str(a),
                (xk, yk),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=7,
            )
    ax.set_xlabel("cross-device bytes per run (kB)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{title or 'Accuracy vs traffic'}; points labelled with {amount}")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)
