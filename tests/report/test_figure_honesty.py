"""Figures that do not mislead (issue 25, item 3), checked on the matplotlib artists they draw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sim.report.plots import plot_pareto


def _nearest_point(fig, ax, note, points) -> int:
    """The index of the point nearest (in pixels) to the label's box."""
    box = note.get_window_extent(fig.canvas.get_renderer())
    pixels = ax.transData.transform(np.array(points))
    dx = np.maximum.reduce([box.x0 - pixels[:, 0], np.zeros(len(pixels)), pixels[:, 0] - box.x1])
    dy = np.maximum.reduce([box.y0 - pixels[:, 1], np.zeros(len(pixels)), pixels[:, 1] - box.y1])
    return int(np.argmin(np.hypot(dx, dy)))


def test_pareto_labels_sit_nearest_their_own_marker(tmp_path: Path) -> None:
    # five designs, two of them close together (the quadrants' front: C's label used to sit on the baseline)
    front = pd.DataFrame(
        {
            "label": ["B", "A", "D", "C", "baseline"],
            "latency_s": [0.007940344, 0.0079429684, 0.008080132, 0.008082852, 0.008087012],
            "bytes_per_frame": [12564.5, 12708.5, 23075.5, 23451.7, 22708.6],
            "accuracy": [0.8078, 0.9582, 0.9526, 0.9610, 0.9666],
            "pareto": [True, True, False, True, True],
        }
    )
    fig = plot_pareto(front, tmp_path / "pareto.png")
    ax = fig.axes[0]
    points = list(zip(front["bytes_per_frame"] / 1e3, front["latency_s"] * 1e3))
    notes = [t for t in ax.texts if t.get_text() in set(front["label"])]
    assert len(notes) >= 3
    for note in notes:
        own = list(front["label"]).index(note.get_text())
        assert note.xy == points[own]  # anchored at its own point...
        assert _nearest_point(fig, ax, note, points) == own, note.get_text()  # ...and nearest it on the page


def test_pareto_names_a_design_at_its_fastest_point(tmp_path: Path) -> None:
    front = pd.DataFrame(
        {
            "label": ["x", "x", "y"],
            "latency_s": [0.009, 0.002, 0.005],
            "bytes_per_frame": [1000.0, 5000.0, 3000.0],
            "accuracy": [np.nan] * 3,
            "pareto": [False, True, True],
        }
    )
    ax = plot_pareto(front, tmp_path / "p.png").axes[0]
    (x,) = [t for t in ax.texts if t.get_text() == "x"]
    assert x.xy == (5.0, 2.0)
