"""Figures drawn from result tables (matplotlib, headless). Each is written atomically as PNG.

Every plot function reads only the saved CSV tables, so ``dsim plot`` can redraw without re-running.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sim.fileio import atomic_path  # noqa: E402


def timeline(transfers: pd.DataFrame, compute: pd.DataFrame, path: str | Path, title: str = "",
             frame: int = 0) -> None:  # fmt: skip
    """Gantt chart of one frame: a row per device (compute) and per device pair (transfers), in ms."""
    comp = compute[compute["frame"] == frame]
    xfer = transfers[transfers["frame"] == frame]
    devices = list(dict.fromkeys(comp["device"]))
    pairs = list(dict.fromkeys(xfer["src"] + " → " + xfer["dst"]))
    rows = devices + pairs
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.35 * max(1, len(rows))))
    layers = list(dict.fromkeys(comp["layer"]))
    cmap = plt.get_cmap("tab20")
    for _, r in comp.iterrows():
        y = rows.index(r["device"])
        colour = cmap(layers.index(r["layer"]) % 20)
        ax.barh(y, (r["end_s"] - r["start_s"]) * 1e3, left=r["start_s"] * 1e3, color=colour, edgecolor="black",
                linewidth=0.3)  # fmt: skip
    for _, r in xfer.iterrows():
        y = rows.index(f"{r['src']} → {r['dst']}")
        ax.barh(y, (r["end_s"] - r["start_s"]) * 1e3, left=r["start_s"] * 1e3, color="tab:gray", alpha=0.7,
                edgecolor="black", linewidth=0.3)  # fmt: skip
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("device / link")
    ax.set_title(f"{title}: frame {frame} timeline (colour = layer, grey = transfer)" if title else "timeline")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i % 20)) for i in range(len(layers))]
    if layers:
        ax.legend(handles, layers, fontsize=6, ncol=min(6, len(layers)), loc="upper center",
                  bbox_to_anchor=(0.5, -0.25 if len(rows) < 8 else -0.1), frameon=False)  # fmt: skip
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
