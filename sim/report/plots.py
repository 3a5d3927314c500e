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

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

MAX_TIMELINE_PLOT_IN = 10.0  # inches of bars at most (1200 px at the default 120 dpi), whatever the device count
TIMELINE_LANE_LIMIT = 48  # more lanes than this: one merged lane per device for its outgoing links
MAX_LEGEND_LAYERS = 18  # more layers than this: a colour scale over layer order instead of a legend
DPI = 120


def _senders(transfers: pd.DataFrame, hops: pd.DataFrame | None, frames: Sequence[int]) -> pd.DataFrame:
    """The transmissions of ``frames``: ``sender`` (node that put it on the wire), ``lane`` (the link queue,
    or the receiving device without ``hops``), ``layer``, ``src``, ``dst``, ``start_s``, ``end_s``."""
    if hops is not None:
        busy = hops[hops["frame"].isin(frames)]
        if "sender" in busy.columns:
            sender = busy["sender"].astype(str)
        else:  # hops.csv written before the column existed: the queue's name says who sends on it
            link = busy["link"].astype(str)
            sender = link.where(~link.str.contains("->") | link.str.contains("<->"), link.str.split("->").str[0])
            sender = sender.where(sender != link, busy["src"].astype(str))
        return pd.DataFrame(
            {
                "sender": sender,
                "lane": busy["link"].astype(str),
                "layer": busy["layer"].astype(str),
                "src": busy["src"].astype(str),
                "dst": busy["dst"].astype(str),
                "start_s": busy["start_s"],
                "end_s": busy["end_s"],
            }
        )
    sent = transfers[transfers["frame"].isin(frames)]
    if "multicast_copy" in sent.columns:
        sent = sent[~sent["multicast_copy"].astype(bool)]
    return pd.DataFrame(
        {
            "sender": sent["src"].astype(str),
            "lane": sent["src"].astype(str) + "->" + sent["dst"].astype(str),
            "layer": sent["layer"].astype(str),
            "src": sent["src"].astype(str),
            "dst": sent["dst"].astype(str),
            "start_s": sent["start_s"],
            "end_s": sent["end_s"],
        }
    )


def _frame_words(frames: Sequence[int]) -> str:
    """``frame 0`` or ``frames 0-2``."""
    if len(frames) == 1:
        return f"frame {frames[0]}"
    return f"frames {min(frames)}-{max(frames)}"


def plot_timeline(
    transfers: pd.DataFrame,
    compute: pd.DataFrame,
    path: str | Path,
    title: str = "",
    frame: int = 0,
    hops: pd.DataFrame | None = None,
    critical: dict | None = None,
    frames: Sequence[int] | None = None,
    devices: Sequence[str] | None = None,
) -> Figure:
    """Gantt chart of some frames, in ms: a row per device, its compute on top and, under it, the
    transmissions it puts on its outgoing links (idle links are not drawn).

    ``frames`` (default ``[frame]``) picks the frames shown, e.g. ``range(0, 3)``. Bars are coloured by
    layer, the same colour for a layer's compute and for the transfers carrying its output (``input``:
    the image; ``output``: the final gather), with a legend, or with a colour scale over layer order when
    there are more than :data:`MAX_LEGEND_LAYERS` layers. With ``hops``
    (:func:`sim.analysis.tables.hop_table`) a transfer bar is a transmission's busy time on one link queue,
    drawn under the node that sent it (a switch that forwards gets a row of its own); without, a message
    from its start to its arrival under its source. Each device's outgoing traffic gets one thin lane per
    link when all lanes fit in :data:`TIMELINE_LANE_LIMIT`, else one merged lane, so the figure is at most
    :data:`MAX_TIMELINE_PLOT_IN` inches of bars tall for any number of devices (the Perfetto trace,
    :mod:`sim.report.trace`, keeps a track per link). Bars are drawn at least one pixel wide. With
    ``critical`` (the summary's ``critical_path``) of a frame shown, its steps are outlined in red.
    ``devices`` orders the rows (default: order of first compute).
    """
    shown = list(frames) if frames is not None else [frame]
    comp = compute[compute["frame"].isin(shown)]
    tx = _senders(transfers, hops, shown)
    if not len(comp) and not len(tx):
        have = sorted(set(compute["frame"]))
        raise UserError(
            f"{path}: no compute or transfer in {_frame_words(shown)}; the run has frames {have[0]}..{have[-1]}"
            if have
            else f"{path}: the run has no compute to draw"
        )
    names = [str(d) for d in (devices or dict.fromkeys(comp["device"]))]
    names += [n for n in dict.fromkeys([*comp["device"].astype(str), *tx["sender"]]) if n not in names]
    out_lanes: dict[str, list[str]] = {n: [] for n in names}
    order = {n: k for k, n in enumerate(names)}
    for sender, group in tx.groupby("sender", sort=False):
        lanes = list(dict.fromkeys(group["lane"]))
        out_lanes[str(sender)] = sorted(lanes, key=lambda q: (order.get(q.split("->")[-1], len(order)), q))
    per_link = sum(len(v) for v in out_lanes.values()) + len(names) <= TIMELINE_LANE_LIMIT
    # y layout in lane units: a compute lane is 1 unit, a link lane 0.55, a gap 0.45 between devices
    y_compute: dict[str, float] = {}
    y_link: dict[tuple[str, str], float] = {}
    ticks: list[tuple[float, str]] = []
    y = 0.0
    computing = set(comp["device"].astype(str))
    for n in names:
        if n in computing or n in (devices or ()):
            y_compute[n] = y + 0.5
            ticks.append((y + 0.5, n))
            y += 1.0
        lanes = out_lanes[n] if per_link else (["all"] if out_lanes[n] else [])
        for q in lanes:
            y_link[(n, q)] = y + 0.275
            if per_link:
                ticks.append((y + 0.275, ("→ " + q.split("->", 1)[1]) if q.startswith(n + "->") else q))
            elif n not in y_compute:
                ticks.append((y + 0.275, f"{n} (sends)"))
            y += 0.55
        y += 0.45
    units = max(y, 1.0)
    unit_in = min(0.3, MAX_TIMELINE_PLOT_IN / units)
    # colours: layers in order of first appearance in time, shared by compute and transfers
    first = pd.concat([tx[["layer", "start_s"]], comp[["layer", "start_s"]]]).groupby("layer", sort=False)["start_s"].min()
    layers = list(first.sort_values(kind="stable").index)
    many = len(layers) > MAX_LEGEND_LAYERS
    scale = mpl.colormaps["viridis"]  # no red in either palette: red outlines the critical path
    palette = [mpl.colormaps["tab20"](k) for k in range(20) if k not in (6, 7)]
    colour = {
        name: scale(k / max(1, len(layers) - 1)) if many else palette[k % len(palette)]
        for k, name in enumerate(layers)
    }
    legend_rows = 0.95 if many else 0.22 * math.ceil(len(layers) / 6) + 0.2
    plot_in = units * unit_in
    fig = Figure(figsize=(11, 1.3 + plot_in + legend_rows))
    ax, key = fig.subplots(2, 1, gridspec_kw={"height_ratios": [plot_in, legend_rows]})
    on_path: set[tuple] = set()
    if critical and critical.get("frame") in shown:
        on_path = {(s["device"], s["layer"]) for s in critical["steps"] if s["kind"] == "compute"}
        on_path |= {(s["src"], s["dst"], s["layer"]) for s in critical["steps"] if s["kind"] == "transfer"}
    t0 = min([*comp["start_s"], *tx["start_s"]])
    t1 = max([*comp["end_s"], *tx["end_s"]])
    min_w = max(t1 - t0, 1e-12) * 1e3 / 1300  # about one pixel of the bar area
    bars: dict[tuple[float, float], list[tuple[float, float, Any, bool]]] = {}
    for r in comp.itertuples(index=False):
        hot = (r.device, r.layer) in on_path
        bars.setdefault((y_compute[str(r.device)], 0.8), []).append(
            (r.start_s * 1e3, (r.end_s - r.start_s) * 1e3, colour[r.layer], hot)
        )
    for r in tx.itertuples(index=False):
        hot = any((r.src, d, r.layer) in on_path for d in str(r.dst).split(","))
        lane = y_link[(r.sender, r.lane if per_link else "all")]
        bars.setdefault((lane, 0.45), []).append((r.start_s * 1e3, (r.end_s - r.start_s) * 1e3, colour[r.layer], hot))
    for (centre, height), items in bars.items():
        ax.broken_barh(
            [(left, max(width, min_w)) for left, width, _, _ in items],
            (centre - height / 2, height),
            facecolors=[c for _, _, c, _ in items],
            edgecolors=["red" if hot else "none" for *_, hot in items],
            linewidths=[1.2 if hot else 0 for *_, hot in items],
        )
    ax.set_ylim(units, 0)
    ax.set_xlim(t0 * 1e3, t1 * 1e3 + (t1 - t0) * 1e3 * 0.01)
    tick_font = 8 if unit_in * DPI >= 14 else 6
    ax.set_yticks([t for t, _ in ticks], [label for _, label in ticks], fontsize=tick_font)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("device (compute) and its outgoing links")
    ax.grid(True, axis="x", alpha=0.3)
    lanes_what = "a thin lane per outgoing link" if per_link else "one thin lane for all its outgoing links"
    ax.set_title(
        f"{title + ': ' if title else ''}{_frame_words(shown)}, {len(names)} nodes\n"
        f"colour = layer (its compute, and the transfers carrying its output); under each device, {lanes_what}"
        + ("; red outline = critical path" if on_path else ""),
        fontsize=9,
    )
    if many:
        key.imshow(np.arange(len(layers))[None, :], aspect="auto", cmap=mpl.colors.ListedColormap([colour[n] for n in layers]))
        step = max(1, math.ceil(len(layers) / 12))
        picks = list(range(0, len(layers), step))
        key.set_xticks(picks, [layers[k] for k in picks], rotation=30, ha="right", fontsize=8)
        key.set_yticks([])
        key.set_title(f"layer colour, in order of first appearance ({len(layers)} layers)", fontsize=9)
    else:
        key.axis("off")
        handles = [Rectangle((0, 0), 1, 1, color=colour[n]) for n in layers]
        key.legend(handles, layers, fontsize=8, ncol=6, loc="center", frameon=False, title="layer", title_fontsize=9)
    return _save(fig, path)


BREAKDOWN_COLOURS = {"compute": "tab:blue", "transfer": "tab:orange", "waiting": "tab:gray"}


def _save(fig: Figure, path: str | Path) -> Figure:
    """Write ``fig`` as PNG atomically, close it, and return it for inspection."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
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
