"""Figures drawn from result tables (matplotlib, headless). Each is written atomically as PNG.

Every plot function reads only the saved CSV tables, so ``dsim plot`` can redraw without re-running
(:func:`redraw`). The functions after :func:`timeline` return the :class:`~matplotlib.figure.Figure`
they saved (already closed), so callers and tests can inspect its axes.

Example::

    >>> from sim import plots, sweeps
    >>> table = sweeps.sweep("scenarios/bandwidth.yaml", {"network.bandwidth_mbps": [1, 10, 100]})  # doctest: +SKIP
    >>> plots.latency_vs_bandwidth(table, "latency_vs_bandwidth.png")                              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import json  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from sim.errors import UserError, first_line  # noqa: E402
from sim.fileio import atomic_path  # noqa: E402


def timeline(transfers: pd.DataFrame, compute: pd.DataFrame, path: str | Path, title: str = "",
             frame: int = 0, hops: pd.DataFrame | None = None, critical: dict | None = None) -> None:  # fmt: skip
    """Gantt chart of one frame: a row per device (compute) and per device pair (transfers), in ms.

    With ``hops`` (:func:`sim.counters.hop_table`) the transfer rows are the link queues instead, each
    transmission drawn where it held the link (its busy time). With ``critical`` (the summary's
    ``critical_path``) of this frame, the compute and transmissions on the critical path are outlined in red.
    """
    comp = compute[compute["frame"] == frame]
    xfer = transfers[transfers["frame"] == frame]
    devices = list(dict.fromkeys(comp["device"]))
    if hops is not None:
        busy = hops[hops["frame"] == frame]
        xfer = pd.DataFrame({"row": busy["link"], "start_s": busy["start_s"], "end_s": busy["end_s"],
                             "src": busy["src"], "dst": busy["dst"], "layer": busy["layer"]})  # fmt: skip
    else:
        xfer = xfer.assign(row=xfer["src"] + " → " + xfer["dst"])
    pairs = list(dict.fromkeys(xfer["row"]))
    rows = devices + pairs
    on_path: set[tuple] = set()
    if critical and critical.get("frame") == frame:
        on_path = {(s["device"], s["layer"]) for s in critical["steps"] if s["kind"] == "compute"}
        on_path |= {(s["src"], s["dst"], s["layer"]) for s in critical["steps"] if s["kind"] == "transfer"}
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.35 * max(1, len(rows))))
    layers = list(dict.fromkeys(comp["layer"]))
    cmap = plt.get_cmap("tab20")
    for _, r in comp.iterrows():
        y = rows.index(r["device"])
        colour = cmap(layers.index(r["layer"]) % 20)
        hot = (r["device"], r["layer"]) in on_path
        ax.barh(y, (r["end_s"] - r["start_s"]) * 1e3, left=r["start_s"] * 1e3, color=colour,
                edgecolor="red" if hot else "black", linewidth=1.5 if hot else 0.3)  # fmt: skip
    for _, r in xfer.iterrows():
        y = rows.index(r["row"])
        hot = any((r["src"], d, r["layer"]) in on_path for d in str(r["dst"]).split(","))
        ax.barh(y, (r["end_s"] - r["start_s"]) * 1e3, left=r["start_s"] * 1e3, color="tab:gray", alpha=0.7,
                edgecolor="red" if hot else "black", linewidth=1.5 if hot else 0.3)  # fmt: skip
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("device / link")
    what = "colour = layer, grey = link busy" + (", red = critical path" if on_path else "")
    ax.set_title(f"{title}: frame {frame} timeline ({what})" if title else "timeline")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i % 20)) for i in range(len(layers))]
    if layers:
        ax.legend(handles, layers, fontsize=6, ncol=min(6, len(layers)), loc="upper center",
                  bbox_to_anchor=(0.5, -0.25 if len(rows) < 8 else -0.1), frameon=False)  # fmt: skip
    _save(fig, path)


BREAKDOWN_COLOURS = {"compute": "tab:blue", "transfer": "tab:orange", "waiting": "tab:gray"}


def _save(fig: Figure, path: str | Path) -> Figure:
    """Write ``fig`` as PNG atomically, close it, and return it for inspection."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return fig


def _axis_label(key: str) -> str:
    """A readable axis label for a swept scenario key, with its unit."""
    units = {"_mbps": "Mbps", "_ms": "ms", "gflops": "GFLOP/s"}
    unit = next((u for suffix, u in units.items() if key.endswith(suffix)), "")
    name = key.rsplit(".", 1)[-1].replace("_mbps", "").replace("_ms", "").replace("_", " ")
    if key.endswith("bandwidth_mbps"):
        name = "link bandwidth"
    return f"{name} ({unit})" if unit else name


def latency_vs_bandwidth(table: pd.DataFrame, path: str | Path, x: str = "network.bandwidth_mbps",
                         title: str = "") -> Figure:  # fmt: skip
    """Mean frame latency against ``x`` (log axes) from a sweep table: one line per variant
    (:func:`sim.sweeps.lines`), the single-device baseline(s) dashed (:func:`sim.sweeps.baselines`), and
    the crossovers (:func:`sim.sweeps.crossovers`) marked by dotted vertical lines labelled with their ``x``:
    those with the baseline when the sweep has one, else those between lines."""
    from sim import sweeps

    curves = sweeps.lines(table, x)
    if not curves:
        raise UserError(f"{path}: no successful sweep points to plot")
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, _, rows in curves:
        ax.plot(rows[x].to_numpy(dtype=float), rows["latency_s"].to_numpy(dtype=float) * 1e3, marker="o",
                markersize=3, label=label)  # fmt: skip
    for k, (label, rows) in enumerate(sweeps.baselines(table, x)):
        ax.plot(rows[x].to_numpy(dtype=float), rows["baseline_latency_s"].to_numpy(dtype=float) * 1e3,
                color="black", linestyle=("--", "-.", ":")[k % 3], linewidth=1.5, label=label)  # fmt: skip
    cross = sweeps.crossovers(table, x)
    if (cross["versus"] == sweeps.SINGLE).any():  # with a baseline, mark where the split wins or loses
        cross = cross[cross["versus"] == sweeps.SINGLE]
    for _, c in cross.iterrows():
        ax.axvline(c[x], color="tab:red", linestyle=":", linewidth=1, label="_crossover")
        ax.annotate(f"{c[x]:.3g}", (c[x], 0), xycoords=ax.get_xaxis_transform(), xytext=(2, 4),
                    textcoords="offset points", fontsize=8, color="tab:red", rotation=90, va="bottom")  # fmt: skip
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


def latency_breakdown(table: pd.DataFrame, path: str | Path, label: str = "scenario", title: str = "") -> Figure:
    """Stacked horizontal bars of each row's mean frame latency: compute, transfer and waiting along
    the critical path (:mod:`sim.compare`), in ms, one bar per row labelled by column ``label``."""
    rows = table.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 1.8 + 0.5 * len(rows)))
    left = np.zeros(len(rows))
    for part, colour in BREAKDOWN_COLOURS.items():
        width = rows[f"latency_{part}_s"].to_numpy(dtype=float) * 1e3
        ax.barh(range(len(rows)), width, left=left, color=colour, label=part, edgecolor="black", linewidth=0.3)
        left += width
    for i, total in enumerate(left):
        ax.annotate(f"{total:.3g} ms", (total, i), xytext=(3, 0), textcoords="offset points", va="center",
                    fontsize=8)  # fmt: skip
    ax.set_yticks(range(len(rows)), rows[label].astype(str))
    ax.invert_yaxis()
    ax.set_xlim(0, max(left.max(), 1e-9) * 1.18)
    ax.set_xlabel("mean latency per frame (ms)")
    ax.set_ylabel(label)
    ax.set_title(title or "Where the latency goes (critical path: compute, transfer, waiting)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.5 / (1 + 0.3 * len(rows))), ncol=3, fontsize=8,
              frameon=False)  # fmt: skip
    return _save(fig, path)


def traffic_heatmap(transfers: pd.DataFrame, path: str | Path, devices: list[str] | None = None,
                    title: str = "") -> Figure:  # fmt: skip
    """Bytes sent from each device (rows) to each device (columns) over the whole run, in kB
    (1 kB = 1e3 bytes), as sent (``bytes`` column: in the chosen wire format)."""
    from sim.results import traffic_matrix

    names = devices or list(dict.fromkeys([*transfers["src"], *transfers["dst"]]))
    matrix = traffic_matrix(transfers, names).to_numpy(dtype=float) / 1e3
    frames = int(transfers["frame"].nunique()) if len(transfers) else 0
    size = 2.5 + 0.55 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
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


def accuracy_vs_bytes(table: pd.DataFrame, path: str | Path, amount: str = "prune.amount",
                      title: str = "") -> Figure:  # fmt: skip
    """Accuracy (%) against cross-device bytes (kB) for a pruning sweep: one line per variant over
    ``amount`` (:func:`sim.sweeps.lines`), each point labelled with its pruning amount."""
    from sim import sweeps

    if "accuracy" not in table.columns or table["accuracy"].isna().all():
        raise UserError(f"{path}: the sweep has no accuracy column; sweep a scenario that measures accuracy")
    if amount not in table.columns:
        raise UserError(f"{path}: the sweep has no '{amount}' column; sweep it with --set {amount}=0,0.25,0.5")
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, _, rows in sweeps.lines(table, amount):
        rows = rows[rows["accuracy"].notna()]
        kb, acc = rows["bytes_total"].to_numpy(dtype=float) / 1e3, rows["accuracy"].to_numpy(dtype=float) * 100
        ax.plot(kb, acc, marker="o", label=label)
        for xk, yk, a in zip(kb, acc, rows[amount]):
            ax.annotate(f"{a:g}" if isinstance(a, float) else str(a), (xk, yk), xytext=(4, 4),
                        textcoords="offset points", fontsize=7)  # fmt: skip
    ax.set_xlabel("cross-device bytes per run (kB)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{title or 'Accuracy vs traffic'}; points labelled with {amount}")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


@contextmanager
def _reading(where: str | Path) -> Iterator[None]:
    """Turn what a malformed or foreign table raises while it is read and drawn (empty file, bad CSV or
    JSON, a missing column) into a one-line :class:`UserError` naming ``where``."""
    try:
        yield
    except UserError:
        raise
    except KeyError as exc:
        raise UserError(f"{where}: no column {exc}; not a table written by dsim (re-run the command that "
                        "wrote it)") from None  # fmt: skip
    except (ValueError, TypeError) as exc:  # pandas EmptyDataError/ParserError, JSON and bad-value errors
        raise UserError(f"{where}: not a table written by dsim ({first_line(exc, 100)}); re-run the command that "
                        "wrote it") from None  # fmt: skip


def redraw(directory: str | Path) -> list[Path]:
    """Redraw every figure a results directory's CSVs support, without re-running anything.

    ``sweep.csv`` -> ``latency_vs_bandwidth.png`` (when a bandwidth was swept) and ``accuracy_vs_bytes.png``
    (when accuracy and ``prune.amount`` are present); ``comparison.csv`` -> ``breakdown.png``;
    ``transfers.csv`` + ``compute.csv`` (a run) -> ``timeline.png`` (critical path from ``summary.json``;
    link-queue rows only when a ``hops.csv`` was saved, else one row per device pair) and ``traffic.png``.
    """
    from sim import sweeps

    d = Path(directory)
    if not d.is_dir():
        what = "it is a file, not a results folder" if d.exists() else "no such results folder"
        raise UserError(f"{d}: nothing to plot, {what}; give the --out folder of dsim run, sweep or compare")
    written: list[Path] = []
    if (d / "sweep.csv").is_file():
        with _reading(d / "sweep.csv"):
            table = pd.read_csv(d / "sweep.csv")
            swept = sweeps.swept_columns(table)
            bandwidth = next((c for c in swept if c.endswith("bandwidth_mbps")), None)
            if bandwidth is not None:
                latency_vs_bandwidth(table, d / "latency_vs_bandwidth.png", x=bandwidth, title=f"Latency vs link "
                                     f"bandwidth ({d.name})")  # fmt: skip
                written.append(d / "latency_vs_bandwidth.png")
            if "accuracy" in table.columns and "prune.amount" in swept and table["accuracy"].notna().any():
                accuracy_vs_bytes(table, d / "accuracy_vs_bytes.png", title=f"Accuracy vs traffic ({d.name})")
                written.append(d / "accuracy_vs_bytes.png")
    if (d / "comparison.csv").is_file():
        with _reading(d / "comparison.csv"):
            latency_breakdown(pd.read_csv(d / "comparison.csv"), d / "breakdown.png")
        written.append(d / "breakdown.png")
    if (d / "transfers.csv").is_file() and (d / "compute.csv").is_file():
        with _reading(f"{d} (transfers.csv, compute.csv, hops.csv, summary.json)"):
            transfers, compute = pd.read_csv(d / "transfers.csv"), pd.read_csv(d / "compute.csv")
            name, devices, critical = d.name, None, None
            if (d / "summary.json").is_file():
                summary = json.loads((d / "summary.json").read_text(encoding="utf-8"))
                name, critical = summary.get("name", name), summary.get("critical_path")
                devices = [dev["name"] for dev in summary.get("scenario", {}).get("devices", [])] or None
            hops = pd.read_csv(d / "hops.csv") if (d / "hops.csv").is_file() else None
            timeline(transfers, compute, d / "timeline.png", title=name, hops=hops, critical=critical)
            traffic_heatmap(transfers, d / "traffic.png", devices=devices, title=name)
        written += [d / "timeline.png", d / "traffic.png"]
    if not written and not (d / "sweep.csv").is_file():
        raise UserError(f"{d}: nothing to plot; expected sweep.csv, comparison.csv or transfers.csv + compute.csv")
    return written
