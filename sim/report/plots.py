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
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.transforms import Bbox

from sim.analysis import curves
from sim.analysis.pareto import PARETO_COLUMNS, Objective, non_dominated
from sim.analysis.tables import traffic_matrix
from sim.errors import UserError
from sim.fileio import atomic_path

MAX_TIMELINE_PLOT_IN = 10.0  # inches of bars at most (1200 px at the default 120 dpi), whatever the device count
TIMELINE_LANE_LIMIT = 48  # more lanes than this: one merged lane per device for its outgoing links
MAX_LEGEND_LAYERS = 18  # more layers than this: a colour scale over layer order instead of a legend
DPI = 120
PATH_COLOURS = {"compute": "darkred", "transfer": "lightcoral", "wait": "0.75"}  # the critical path's lane


def _senders(transfers: pd.DataFrame, hops: pd.DataFrame | None, frames: Sequence[int]) -> pd.DataFrame:
    """The transmissions of ``frames``: ``sender`` (node that put it on the wire), ``lane`` (the link queue,
    or the receiving device without ``hops``), ``layer``, ``src``, ``dst``, ``start_s``, ``end_s`` and
    ``arrive_s`` (``end_s`` plus the link latency; ``end_s`` without ``hops``, whose messages end on arrival,
    or from a ``hops.csv`` written before the column existed)."""
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
                "arrive_s": busy["arrive_s"] if "arrive_s" in busy.columns else busy["end_s"],
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
            "arrive_s": sent["end_s"],
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
    :mod:`sim.report.trace`, keeps a track per link). Bars are drawn at least one pixel wide. A link's
    latency (propagation) follows its transmission as a thin bar of the same colour. With ``critical``
    (the summary's ``critical_path``) of a frame shown, its compute and transfer steps are outlined in red,
    and a top lane draws the whole path from the frame's arrival to its end: compute and transfer steps in
    red, waits in grey, so every moment of the latency is accounted for. The time axis covers every frame
    shown to its end (the last arrival at the sink). ``devices`` orders the rows (default: order of first
    compute).
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
    path_steps = critical["steps"] if critical and critical.get("frame") in shown else []
    # y layout in lane units: a compute lane is 1 unit, a link lane 0.55, a gap 0.45 between devices
    y_compute: dict[str, float] = {}
    y_link: dict[tuple[str, str], float] = {}
    ticks: list[tuple[float, str]] = []
    y = 0.0
    if path_steps:  # the critical path's own lane on top
        ticks.append((0.275, f"critical path (frame {critical['frame']})" if critical else ""))
        y = 1.0
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
    first = (
        pd.concat([tx[["layer", "start_s"]], comp[["layer", "start_s"]]]).groupby("layer", sort=False)["start_s"].min()
    )
    layers = list(first.sort_values(kind="stable").index)
    many = len(layers) > MAX_LEGEND_LAYERS
    scale = mpl.colormaps["viridis"]  # no red in either palette: red outlines the critical path
    # tab10's nine distinct colours first (neighbouring layers must not look alike), then tab20's light ones
    palette = [mpl.colormaps["tab10"](k) for k in range(10) if k != 3]
    palette += [mpl.colormaps["tab20"](k) for k in range(1, 20, 2) if k != 7]
    colour = {
        name: scale(k / max(1, len(layers) - 1)) if many else palette[k % len(palette)] for k, name in enumerate(layers)
    }
    legend_rows = 0.22 if many else 0.22 * math.ceil(len(layers) / 6) + 0.2  # a colour strip, or legend rows
    plot_in = units * unit_in
    fig = Figure(figsize=(11, 1.3 + plot_in + legend_rows + (0.8 if many else 0.0)))  # + the strip's names
    ax, key = fig.subplots(2, 1, gridspec_kw={"height_ratios": [plot_in, legend_rows]})
    on_path: set[tuple] = set()
    on_path = {(s["device"], s["layer"]) for s in path_steps if s["kind"] == "compute"}
    on_path |= {(s["src"], s["dst"], s["layer"]) for s in path_steps if s["kind"] == "transfer"}
    # a message's end_s is its arrival (a transfers table may be empty: transmissions drawn from hops only)
    arrived = list(transfers.loc[transfers["frame"].isin(shown), "end_s"]) if "frame" in transfers.columns else []
    t0 = min([*comp["start_s"], *tx["start_s"], *(s["start_s"] for s in path_steps)])
    t1 = max([*comp["end_s"], *tx["arrive_s"], *arrived, *(s["end_s"] for s in path_steps)])
    min_w = max(t1 - t0, 1e-12) * 1e3 / 1300  # about one pixel of the bar area
    bars: dict[tuple[float, float], list[tuple[float, float, Any, bool]]] = {}
    for r in comp.to_dict("records"):
        hot = (r["device"], r["layer"]) in on_path
        bars.setdefault((y_compute[str(r["device"])], 0.8), []).append(
            (r["start_s"] * 1e3, (r["end_s"] - r["start_s"]) * 1e3, colour[r["layer"]], hot)
        )
    for r in tx.to_dict("records"):
        hot = any((r["src"], d, r["layer"]) in on_path for d in str(r["dst"]).split(","))
        lane = y_link[(r["sender"], r["lane"] if per_link else "all")]
        bars.setdefault((lane, 0.45), []).append(
            (r["start_s"] * 1e3, (r["end_s"] - r["start_s"]) * 1e3, colour[r["layer"]], hot)
        )
        if r["arrive_s"] > r["end_s"]:  # the link's latency: a thin bar after the transmission
            bars.setdefault((lane, 0.12), []).append(
                (r["end_s"] * 1e3, (r["arrive_s"] - r["end_s"]) * 1e3, colour[r["layer"]], hot)
            )
    for step in path_steps:
        bars.setdefault((0.275, 0.45), []).append(
            (step["start_s"] * 1e3, (step["end_s"] - step["start_s"]) * 1e3, PATH_COLOURS[step["kind"]], False)
        )
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
    legend = [
        "colour = layer (its compute, and the transfers carrying its output)",
        f"under each device, {lanes_what}",
        "thin bar after a transmission = link latency",
    ]
    if path_steps:
        legend += ["red outline = on the critical path", "top lane = the critical path (dark red: compute, "
                   "light red: transfer, grey: waiting)"]  # fmt: skip
    ax.set_title(
        f"{title + ': ' if title else ''}{_frame_words(shown)}, {len(names)} nodes\n"
        + "\n".join(textwrap.wrap("; ".join(legend), 150, break_long_words=False)),
        fontsize=9,
    )
    if many:
        key.imshow(
            np.arange(len(layers))[None, :], aspect="auto", cmap=mpl.colors.ListedColormap([colour[n] for n in layers])
        )
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


BASELINE_GREYS = ("black", "0.45", "0.7")  # single-device baselines: greys, each its own marker and dashes
BASELINE_MARKERS = ("s", "^", "D", "v", "P", "X")
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


def box_distance(box: Bbox, point: Any) -> float:
    """Distance in pixels from ``point`` (display coordinates) to the nearest edge of ``box`` (0 inside).

    >>> box_distance(Bbox.from_extents(0, 0, 10, 10), (13, 14))
    5.0
    """
    dx = max(box.x0 - point[0], 0.0, point[0] - box.x1)
    dy = max(box.y0 - point[1], 0.0, point[1] - box.y1)
    return float(math.hypot(dx, dy))


def place_labels(
    fig: Figure, ax: Any, points: Sequence[tuple[float, float]], texts: Sequence[str], **style: Any
) -> list[Any]:
    """Annotate ``points`` (data coordinates) with ``texts`` so that no label covers another label or any
    point, each stays inside the axes, and each is nearer its own point than any other point (so a reader
    pairs it with the right marker): each label tries a few offsets around its point and takes the first
    that passes; a label with no such place is left out (its point stays drawn). Returns the annotations
    placed."""
    FigureCanvasAgg(fig)  # a renderer to measure the text with
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    offsets = [(6, 5), (6, -12), (-7, 5), (-7, -12), (9, -3), (-10, -3), (0, 8), (0, -16)]
    offsets += [(6, 15), (6, -22), (-7, 15), (-7, -22)]
    placed: list[Any] = []
    taken: list[Any] = []  # the points' markers, then each label placed: nothing may cover them
    area = ax.get_window_extent(renderer)  # labels stay inside the axes
    pixels = [ax.transData.transform((x, y)) for x, y in points]
    for px, py in pixels:
        taken.append(Bbox.from_extents(px - 5, py - 5, px + 5, py + 5))
    for (x, y), (px, py), text in zip(points, pixels, texts):
        for dx, dy in offsets:
            note = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                fontsize=7,
                **style,
            )
            box = note.get_window_extent(renderer).expanded(1.05, 1.1)
            inside = area.contains(box.x0, box.y0) and area.contains(box.x1, box.y1)
            own = box_distance(box, ax.transData.transform((x, y)))
            nearest = all(own < box_distance(box, p) for p in pixels if not np.array_equal(p, (px, py)))
            if inside and nearest and not any(box.overlaps(other) for other in taken):
                taken.append(box)
                placed.append(note)
                break
            note.remove()
    return placed


MAX_LINES = 12  # lines a latency-vs-bandwidth figure draws; beyond, the fastest and the range of all


def plot_latency_vs_bandwidth(
    table: pd.DataFrame, path: str | Path, x: str = "network.bandwidth_mbps", title: str = ""
) -> Figure:
    """Mean frame latency against ``x`` (log axes) from a sweep table: one line per variant
    (:func:`sim.analysis.curves.lines`), the single-device baseline(s) in black
    (:func:`sim.analysis.curves.baselines`), and each crossover (:func:`sim.analysis.curves.crossover_report`:
    with the baseline when the sweep has one, else between lines) as a dotted vertical line and a ring on
    the curve in its line's colour, named in the legend with its ``x``; a line with no crossover in the
    swept range says so in the legend: each line's entry names its crossovers with its baseline (or that
    it has none in the swept range); crossovers between lines have entries of their own.

    A sweep of more than :data:`MAX_LINES` lines draws the :data:`MAX_LINES` with the lowest mean latency
    and, in grey, the range (lowest to highest latency at each ``x``) of all of them; the title says so."""
    lines = curves.lines(table, x)
    if not lines:
        raise UserError(f"{path}: no successful sweep points to plot")
    fig = Figure(figsize=(9, 5.5))
    ax = fig.subplots()
    unit = _axis_label(x).split(" (")[-1].rstrip(")") if "(" in _axis_label(x) else ""
    drawn_note = ""
    if len(lines) > MAX_LINES:
        ok = table[curves.errors(table) == ""]
        band = ok.groupby(x)["latency_s"].agg(["min", "max"]).sort_index()
        ax.fill_between(
            band.index.to_numpy(dtype=float),
            band["min"].to_numpy(dtype=float) * 1e3,
            band["max"].to_numpy(dtype=float) * 1e3,
            color="0.85",
            label=f"all {len(lines)} lines: lowest to highest latency",
        )
        fastest = sorted(range(len(lines)), key=lambda k: float(lines[k][2]["latency_s"].mean()))[:MAX_LINES]
        drawn_note = f" ({MAX_LINES} fastest of {len(lines)} lines)"
        lines = [lines[k] for k in sorted(fastest)]
        table = pd.concat([rows for _, _, rows in lines])  # the baselines of the lines drawn
    shown = {label for label, _, _ in lines}
    report = curves.crossover_report(table, x)
    report = report[report["line"].isin(shown) & (report["versus"].isin(shown) | (report["versus"] == curves.SINGLE))]
    notes: dict[str, list[str]] = {}  # line -> what its legend entry adds: its crossovers with its baseline
    for c in report[report["versus"] == curves.SINGLE].to_dict("records"):
        note = (
            f"= {c['versus']} at {c['at']:.3g} {unit}"
            if c["crosses"]
            else f"no crossover in [{c['lo']:.4g}, {c['hi']:.4g}] {unit}"
        )
        notes.setdefault(c["line"], []).append(note if c["crosses"] else f"{note}, {c['faster']} faster")
    colours: dict[str, Any] = {}
    for k, (label, _, rows) in enumerate(lines):
        colours[label] = f"C{k % 10}"
        ax.plot(
            rows[x].to_numpy(dtype=float),
            rows["latency_s"].to_numpy(dtype=float) * 1e3,
            marker="o",
            markersize=3,
            color=colours[label],
            label=_wrap(f"{label} ({'; '.join(notes[label])})" if label in notes else label),
        )
    for k, (label, rows) in enumerate(curves.baselines(table, x)):  # never dotted: crossovers are
        ax.plot(
            rows[x].to_numpy(dtype=float),
            rows["baseline_latency_s"].to_numpy(dtype=float) * 1e3,
            color=BASELINE_GREYS[k % len(BASELINE_GREYS)],
            linestyle=("--", "-.")[k % 2],
            marker=BASELINE_MARKERS[k % len(BASELINE_MARKERS)],
            markersize=4,
            linewidth=1.5,
            label=_wrap(label),
        )
    by_line = {label: rows for label, _, rows in lines}
    for c in report.to_dict("records"):
        colour = colours.get(c["line"], "black")
        if c["crosses"]:
            rows = by_line[c["line"]]
            at_ms = np.interp(np.log(c["at"]), np.log(rows[x].to_numpy(float)), rows["latency_s"].to_numpy(float)) * 1e3
            ax.axvline(c["at"], color=colour, linestyle=":", linewidth=1.2, label="_crossover")
            ax.plot([c["at"]], [at_ms], marker="o", markersize=9, markerfacecolor="none", color=colour, label="_ring")
            if c["versus"] != curves.SINGLE:  # between two lines: an entry of its own
                ax.plot(
                    [],
                    [],
                    color=colour,
                    linestyle=":",
                    label=_wrap(f"{c['line']} = {c['versus']} at {c['at']:.3g} {unit}"),
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_axis_label(x) + ", log scale")
    ax.set_ylabel("mean latency per frame (ms), log scale")
    ax.set_title(f"{title + ': ' if title else ''}latency vs {_axis_label(x).split(' (')[0]}{drawn_note}", fontsize=11)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    ax.grid(True, which="both", alpha=0.3)
    entries = sum(1 + label.count("\n") for label in ax.get_legend_handles_labels()[1])
    fig.set_figheight(4.5 + 0.14 * (entries + 1) / 2)  # room for the legend under the axes
    return _save(fig, path)


PERCENTILE_STYLES = (("latency_p50_s", "p50", ":"), ("latency_p95_s", "p95", "-"), ("latency_p99_s", "p99", "--"))


def plot_latency_vs_loss(table: pd.DataFrame, path: str | Path, x: str, title: str = "") -> Figure:
    """Frame-latency percentiles (p50 dotted, p95 solid, p99 dashed; ms, log scale) against a swept loss
    rate ``x`` (in %, linear), one colour per line of the sweep (:func:`sim.analysis.curves.lines`), and
    the single-device baseline's mean latency in black when the sweep has one."""
    lines = curves.lines(table, x)
    if not lines:
        raise UserError(f"{path}: no successful sweep points to plot")
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    for k, (label, _, rows) in enumerate(lines):
        for column, name, style in PERCENTILE_STYLES:
            if column in rows.columns and rows[column].notna().any():
                ax.plot(
                    rows[x].to_numpy(dtype=float) * 100,
                    rows[column].to_numpy(dtype=float) * 1e3,
                    marker="o",
                    markersize=3,
                    color=f"C{k % 10}",
                    linestyle=style,
                    label=_wrap(f"{label}: {name}"),
                )
    for k, (label, rows) in enumerate(curves.baselines(table, x)):
        ax.plot(
            rows[x].to_numpy(dtype=float) * 100,
            rows["baseline_latency_s"].to_numpy(dtype=float) * 1e3,
            color="black",
            linestyle=("-", "-.", ":")[k % 3],
            linewidth=1.5,
            label=_wrap(f"{label} (no links): mean"),
        )
    ax.set_yscale("log")
    ax.set_xlabel(f"{x.rsplit('.', 1)[-1]}: loss rate (%)")
    ax.set_ylabel("frame latency (ms), log scale")
    ax.set_title(f"{title + ': ' if title else ''}latency percentiles vs {x}", fontsize=11)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False)
    ax.grid(True, which="both", alpha=0.3)
    fig.set_figheight(4.5 + 0.14 * (3 * len(lines) + 2) / 3)
    return _save(fig, path)


def _wrap(label: str, width: int = 62) -> str:
    """A legend label wrapped to lines of at most ``width`` characters, so two columns fit the figure."""
    return "\n".join(textwrap.wrap(label, width, break_long_words=False)) or label


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
    what = "where the latency goes (critical path: compute, transfer, waiting)"
    ax.set_title(_wrap(f"{title}: {what}" if title else what[0].upper() + what[1:], 64), fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / (1 + 0.3 * len(rows))), ncol=3, fontsize=8, frameon=False)
    return _save(fig, path)


def plot_traffic(
    transfers: pd.DataFrame, path: str | Path, devices: list[str] | None = None, title: str = ""
) -> Figure:
    """Bytes sent from each device (rows) to each device (columns) per frame (the run's total over its
    frames), in kB (1 kB = 1e3 bytes), as sent (``bytes`` column: in the chosen wire format)."""
    names = devices or list(dict.fromkeys([*transfers["src"], *transfers["dst"]]))
    frames = int(transfers["frame"].nunique()) if len(transfers) else 0
    matrix = traffic_matrix(transfers, names).to_numpy(dtype=float) / 1e3 / max(frames, 1)
    size = min(2.5 + 0.55 * len(names), 12.0)  # inches; capped so that 64 devices still fit a screen
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="viridis")
    fig.colorbar(image, ax=ax, label="bytes sent per frame (kB)")
    peak = matrix.max() if matrix.size else 0.0
    for i in range(len(names)):
        for j in range(len(names)):
            if matrix[i, j] > 0:
                colour = "black" if matrix[i, j] > 0.6 * peak else "white"
                ax.text(j, i, f"{matrix[i, j]:.3g}", ha="center", va="center", fontsize=7, color=colour)
    ticks = 10 if len(names) <= 16 else 5  # font size: a name per row still fits under the cap
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=ticks)
    ax.set_yticks(range(len(names)), names, fontsize=ticks)
    ax.set_xlabel("receiving device")
    ax.set_ylabel("sending device")
    what = "one frame" if frames == 1 else f"mean over {frames} frames"
    ax.set_title(f"{title + ': ' if title else ''}traffic between devices (kB per frame, {what})", fontsize=10)
    if len(names) > 16:  # too small to read: the colour says it
        for note in list(ax.texts):
            note.remove()
    return _save(fig, path)


def plot_ownership(table: pd.DataFrame, path: str | Path, title: str = "") -> Figure:
    """Who computes what, per layer (docs/design.md §3b): one bar per partitionable layer, top to bottom in
    order, split by the ``share`` of its output each device owns, labelled with the layer's ``form``
    (``filters``: channels, ``rows``: output rows or tiles, ``whole``: the layer). ``table`` has columns
    ``layer, form, device, share`` (:func:`sim.pipeline.describe.ownership_table`)."""
    layers = list(dict.fromkeys(table["layer"]))
    devices = list(dict.fromkeys(table["device"]))
    colours = mpl.colormaps["tab10"]
    hatch = {"filters": "", "rows": "//", "whole": ".."}
    fig = Figure(figsize=(7.5, 1.2 + 0.28 * len(layers)))
    ax = fig.subplots()
    for y, layer in enumerate(layers):
        rows = table[table["layer"] == layer]
        left = 0.0
        for _, row in rows.iterrows():
            k = devices.index(row["device"])
            ax.barh(
                y,
                row["share"],
                left=left,
                color=colours(k % 10),
                hatch=hatch.get(row["form"], ""),
                edgecolor="white",
                linewidth=0.5,
            )
            left += row["share"]
    forms = [table.loc[table["layer"] == layer, "form"].iloc[0] for layer in layers]
    ax.set_yticks(range(len(layers)), [f"{layer} [{form}]" for layer, form in zip(layers, forms)], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the layer's output owned (channels, rows or all)")
    handles = [Rectangle((0, 0), 1, 1, color=colours(k % 10)) for k in range(len(devices))]
    ax.legend(
        handles,
        devices,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=min(len(devices), 8),
        fontsize=8,
        frameon=False,
    )
    what = "who computes what, per layer"
    fig.suptitle(f"{title}: {what}" if title else what, fontsize=10, y=0.995)
    return _save(fig, path)


def _per_frame(table: pd.DataFrame, column: str) -> np.ndarray:
    """``column`` divided by the row's ``frames`` (a table without that column: as is)."""
    frames = table["frames"].to_numpy(dtype=float) if "frames" in table.columns else 1.0
    return table[column].to_numpy(dtype=float) / frames


def plot_accuracy_vs_bytes(
    table: pd.DataFrame, path: str | Path, amount: str = "prune.amount", title: str = ""
) -> Figure:
    """Accuracy (%) against bytes sent per frame (kB) for a pruning sweep: one line per variant
    (:func:`sim.analysis.curves.lines` over ``amount``), its points joined in order of bytes, each labelled
    with its pruning amount where the label fits (:func:`place_labels`). Swept link, device or arrival
    settings change neither bytes nor accuracy: the figure draws the first value of each, named in the title."""
    if "accuracy" not in table.columns or table["accuracy"].isna().all():
        raise UserError(f"{path}: the sweep has no accuracy column; sweep a scenario that measures accuracy")
    if amount not in table.columns:
        raise UserError(f"{path}: the sweep has no '{amount}' column; sweep it with --set {amount}=0,0.25,0.5")
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    points: list[tuple[float, float]] = []
    texts: list[str] = []
    fixed = []  # bandwidth, devices, arrivals: they change neither bytes nor accuracy; draw one value of each
    for column in (c for c in curves.swept_columns(table) if c.startswith(("network.", "devices.", "inputs."))):
        if column != amount and table[column].nunique() > 1:
            first = table[curves.errors(table) == ""][column].iloc[0]
            table = table[table[column] == first]
            fixed.append(curves.setting(column, first))
    for k, (label, _, rows) in enumerate(curves.lines(table, amount)):
        rows = rows[rows["accuracy"].notna()]
        kb = _per_frame(rows, "bytes_total") / 1e3
        order = np.argsort(kb, kind="stable")
        kb, acc = kb[order], rows["accuracy"].to_numpy(dtype=float)[order] * 100
        ax.plot(kb, acc, marker="o", label=label, color=f"C{k % 10}")
        points += list(zip(kb, acc))
        texts += [f"{a:g}" if isinstance(a, float) else str(a) for a in rows[amount].to_numpy()[order]]
    ax.set_xlabel("bytes sent per frame (kB)")
    ax.set_ylabel("test accuracy (%)")
    at = f" (at {', '.join(fixed)})" if fixed else ""
    ax.set_title(f"{title + ': ' if title else ''}accuracy vs traffic{at}; points labelled with {amount}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    place_labels(fig, ax, points, texts)
    return _save(fig, path)


def plot_pareto(front: pd.DataFrame, path: str | Path, title: str = "", max_labels: int = 30) -> Figure:
    """Latency per frame (ms) against bytes sent per frame (kB) of every design in ``front``
    (:func:`sim.analysis.pareto.pareto_table`), coloured by accuracy when measured; the non-dominated
    designs are ringed in black (not joined: with accuracy, or compared under separate conditions, the
    front is not a line in this plane). Each design (label) is named once, at its fastest point, when there
    are at most ``max_labels``, else only the non-dominated ones; where the label fits."""
    if not len(front):
        raise UserError(f"{path}: no successful rows to draw a Pareto front from")
    fig = Figure(figsize=(9, 5.5))
    ax = fig.subplots()
    kb, ms = front["bytes_per_frame"].to_numpy(float) / 1e3, front["latency_s"].to_numpy(float) * 1e3
    best = front["pareto"].to_numpy(bool)
    accuracy = front["accuracy"].to_numpy(float)
    measured = bool(np.isfinite(accuracy).all()) and np.unique(accuracy).size > 1  # one value: nothing to colour
    same = f"; accuracy {accuracy[0] * 100:.2f} % for all" if np.isfinite(accuracy).all() and not measured else ""
    style: dict[str, Any] = {"c": accuracy * 100, "cmap": "viridis"} if measured else {"color": "tab:blue"}
    art = ax.scatter(kb[~best], ms[~best], s=22, alpha=0.6, label="dominated", **_subset(style, ~best))
    art = ax.scatter(
        kb[best],
        ms[best],
        s=70,
        edgecolors="black",
        linewidths=1.5,
        label="non-dominated (Pareto front)",
        **_subset(style, best),
    )
    if measured:
        fig.colorbar(art, ax=ax, label="test accuracy (%)")
    _axes(ax, kb, ms, "bytes sent per frame (kB)", "mean latency per frame (ms)")
    goals = "latency, bytes per frame" + (" and accuracy" if np.isfinite(accuracy).all() else "")
    within = [c.rsplit(".", 1)[-1] for c in front.columns if c not in PARETO_COLUMNS]
    under = f"\ndesigns compared at equal {', '.join(within)}" if within else ""
    ax.set_title(f"{title + ': ' if title else ''}Pareto front ({goals}){same}{under}", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(True, which="both", alpha=0.3)
    labelled = front.sort_values("latency_s", kind="stable").drop_duplicates("label")  # once, at its fastest
    if len(labelled) > max_labels:  # too many: only the non-dominated ones
        labelled = front[best].drop_duplicates("label").head(max_labels)
    place_labels(
        fig, ax, list(zip(labelled["bytes_per_frame"] / 1e3, labelled["latency_s"] * 1e3)), list(labelled["label"])
    )
    return _save(fig, path)


def plot_energy_pareto(front: pd.DataFrame, path: str | Path, title: str = "") -> Figure:
    """Energy per frame (J) against mean latency per frame (ms) of every design in ``front``
    (:func:`sim.analysis.pareto.energy_pareto_table`); the non-dominated ones ringed in black and joined in
    latency order, each design named where its label fits."""
    if not len(front):
        raise UserError(f"{path}: no rows with energy figures to draw a Pareto front from")
    fig = Figure(figsize=(8, 5))
    ax = fig.subplots()
    ms, joules = front["latency_s"].to_numpy(float) * 1e3, front["energy_j_per_frame"].to_numpy(float)
    best = front["pareto"].to_numpy(bool)
    ax.scatter(ms[~best], joules[~best], s=22, alpha=0.6, color="tab:blue", label="dominated")
    ax.plot(ms[best], joules[best], color="black", linewidth=0.8, alpha=0.5)
    ax.scatter(ms[best], joules[best], s=70, color="tab:orange", edgecolors="black", linewidths=1.5,
               label="non-dominated (Pareto front)")  # fmt: skip
    _axes(ax, ms, joules, "mean latency per frame (ms)", "energy per frame (J), devices with power")
    ax.set_title(f"{title + ': ' if title else ''}latency against energy", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(True, which="both", alpha=0.3)
    place_labels(fig, ax, list(zip(ms, joules)), list(front["label"]))
    return _save(fig, path)


def _axes(ax: Axes, x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str) -> None:
    """Label ``ax``'s axes, each on a log scale (said in its label) when its values span more than 30x."""
    for values, scale, label, name in (
        (x, ax.set_xscale, ax.set_xlabel, xlabel),
        (y, ax.set_yscale, ax.set_ylabel, ylabel),
    ):
        log = _spread(values) > 30
        if log:
            scale("log")
        label(f"{name}, log scale" if log else name)


def _spread(values: np.ndarray) -> float:
    """Largest over smallest positive value (1 with fewer than two): when above 30, an axis goes log."""
    positive = values[values > 0]
    return float(positive.max() / positive.min()) if len(positive) > 1 else 1.0


def _subset(style: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    """Scatter keyword arguments for the rows ``keep`` (a per-point colour array is cut to them)."""
    out = dict(style)
    if "c" in out:
        out["c"] = np.asarray(out["c"])[keep]
        out.setdefault("vmin", float(np.nanmin(style["c"])))
        out.setdefault("vmax", float(np.nanmax(style["c"])))
    return out


def plot_search(table: pd.DataFrame, path: str | Path, title: str = "") -> Figure:
    """The candidates of ``dsim optimize`` (``search.csv``): latency (ms) against bytes sent (kB), and
    latency against throughput (frames/s), each candidate a dot coloured by its search space; the fronts
    (non-dominated on each pair) ringed in black, the named strategies labelled and the best starred."""
    if not len(table):
        raise UserError(f"{path}: no candidates to draw")
    fig = Figure(figsize=(11, 4.8))
    left, right = fig.subplots(1, 2)
    ok = table[table["feasible"]]
    best = ok.sort_values(["objective", "index"]).iloc[0]
    spaces = list(dict.fromkeys(table["space"]))
    colours = {s: mpl.colormaps["tab10"](i) for i, s in enumerate(spaces)}
    pairs = (
        (left, "bytes_total", 1e-3, "bytes sent per run (kB)", False),
        (right, "throughput_fps", 1.0, "throughput (frames/s)", True),
    )
    for ax, column, scale, label, maximize in pairs:
        x, y = table[column].to_numpy(float) * scale, table["latency_s"].to_numpy(float) * 1e3
        for s in spaces:
            rows = (table["space"] == s).to_numpy()
            ax.scatter(x[rows], y[rows], s=18, alpha=0.7, color=colours[s], label=s)
        front = non_dominated(ok, [Objective("latency_s"), Objective(column, maximize)])
        ax.scatter(
            ok[column].to_numpy(float)[front] * scale,
            ok["latency_s"].to_numpy(float)[front] * 1e3,
            s=60,
            facecolors="none",
            edgecolors="black",
            label="front",
        )
        ax.scatter([best[column] * scale], [best["latency_s"] * 1e3], marker="*", s=220, color="gold", ec="black")
        named = table[table["space"] == "named"]
        place_labels(
            fig,
            ax,
            list(zip(named[column].to_numpy(float) * scale, named["latency_s"].to_numpy(float) * 1e3)),
            list(named["description"]),
        )
        ax.set_xlabel(label)
        ax.set_ylabel("mean latency per frame (ms)")
        ax.grid(True, alpha=0.3)
    left.legend(fontsize=8, loc="best")
    fig.suptitle(
        f"{title + ': ' if title else ''}{len(table)} candidates; best (star): {best['description']}", fontsize=10
    )
    return _save(fig, path)
