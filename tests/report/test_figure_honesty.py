"""Figures that do not mislead (issue 25, item 3), checked on the matplotlib artists they draw."""

from __future__ import annotations

import colorsys
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

import sim
from sim.analysis.tables import hop_table
from sim.report.plots import plot_pareto, plot_timeline
from tests.helpers import scenario_dict


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
            "label": ["quadrant-B", "quadrant-A", "quadrant-D", "quadrant-C", "quadrant-baseline"],
            "latency_s": [0.007940344, 0.0079429684, 0.008080132, 0.008082852, 0.008087012],
            "bytes_per_frame": [12564.5, 12708.5, 23075.5, 23451.7, 22708.6],
            "accuracy": [0.8078, 0.9582, 0.9526, 0.9610, 0.9666],
            "pareto": [True, True, False, True, True],
        }
    )
    fig = plot_pareto(front, tmp_path / "pareto.png", title="5 scenarios")
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


def _spans(collection) -> list[tuple[float, float]]:
    """The (left, right) of every bar of a broken_barh collection, in data units, left to right."""
    return sorted((float(p.vertices[:, 0].min()), float(p.vertices[:, 0].max())) for p in collection.get_paths())


def _bars_at(ax, centre: float, height: float):
    """The broken_barh collection of bars centred at ``centre`` with ``height`` (data units)."""
    for c in ax.collections:
        ys = np.concatenate([p.vertices[:, 1] for p in c.get_paths()]) if c.get_paths() else np.zeros(0)
        if len(ys) and np.isclose(ys.min(), centre - height / 2) and np.isclose(ys.max(), centre + height / 2):
            yield c


def _run_two_devices():
    data = scenario_dict(2, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 1})
    data["network"] = {"topology": "mesh", "bandwidth_mbps": 20, "latency_ms": 1.0}
    return sim.run(data)


def test_timeline_draws_link_latency_the_whole_critical_path_and_the_whole_latency(tmp_path: Path) -> None:
    result = _run_two_devices()
    latency_ms = result.summary["latency_s"] * 1e3
    hops = hop_table(result.workload, result.timeline)
    fig = plot_timeline(result.transfers, result.compute, tmp_path / "t.png", hops=hops,
                        critical=result.summary["critical_path"])  # fmt: skip
    ax = fig.axes[0]
    assert ax.get_xlim()[1] >= latency_ms  # the axis reaches the end of the frame
    # the top lane: the critical path's steps end to end (short ones widened to a pixel), 0 to the latency
    (lane,) = _bars_at(ax, 0.275, 0.45)
    spans = _spans(lane)
    pixel_ms = np.diff(ax.get_xlim())[0] / 1000
    assert spans[0][0] == 0.0 and latency_ms <= spans[-1][1] <= latency_ms + 2 * pixel_ms
    assert all(a[1] >= b[0] - 1e-12 for a, b in itertools.pairwise(spans))  # no gap
    # every transmission is followed by a thin bar of the link's 1 ms latency
    thin = [s for c in ax.collections for p in c.get_paths() if np.isclose(np.ptp(p.vertices[:, 1]), 0.12)
            for s in [(p.vertices[:, 0].min(), p.vertices[:, 0].max())]]  # fmt: skip
    assert len(thin) == len(hops) and all(np.isclose(b - a, 1.0) for a, b in thin)


def test_neighbouring_layers_get_colours_of_different_hues(tmp_path: Path) -> None:
    result = _run_two_devices()
    fig = plot_timeline(result.transfers, result.compute, tmp_path / "t.png")
    legend = fig.axes[1].get_legend()
    colours = [h.get_facecolor()[:3] for h in legend.legend_handles]
    assert len(colours) >= 6
    for a, b in itertools.pairwise(colours):
        (ha, _, sa), (hb, _, sb) = colorsys.rgb_to_hls(*a), colorsys.rgb_to_hls(*b)
        grey = min(sa, sb) < 0.1
        assert grey or min(abs(ha - hb), 1 - abs(ha - hb)) > 0.04, (a, b)


def test_single_device_baselines_look_different_and_unlike_crossovers(tmp_path: Path) -> None:
    from sim.report.plots import plot_latency_vs_bandwidth  # the sweep figure

    mbps = [1.0, 10.0, 100.0]
    rows = [
        {"point": i, "scenario": "s", "variant": v, "network.bandwidth_mbps": b, "devices.0.gflops": g,
         "latency_s": lat / b + 0.001, "baseline_latency_s": 0.004 / g, "bytes_total": 1000, "error": ""}
        for i, (v, g, b, lat) in enumerate((v, g, b, lat) for v, lat in (("a", 0.05), ("b", 0.02))
                                           for g in (1.0, 2.0, 4.0) for b in mbps)
    ]  # fmt: skip
    fig = plot_latency_vs_bandwidth(pd.DataFrame(rows), tmp_path / "l.png")
    ax = fig.axes[0]
    baselines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_") and ln.get_marker() != "o"]
    assert len(baselines) >= 3
    styles = {(str(ln.get_color()), ln.get_linestyle(), ln.get_marker()) for ln in baselines}
    assert len(styles) == len(baselines)
    assert all(ln.get_linestyle() != ":" for ln in baselines)  # dotted lines are crossovers


def test_breakdown_title_fits_the_figure(tmp_path: Path) -> None:
    from sim.report.plots import plot_breakdown  # the compare figure

    table = pd.DataFrame({"scenario": ["a-rather-long-scenario-name", "b"], "latency_compute_s": [0.001, 0.002],
                          "latency_transfer_s": [0.003, 0.001], "latency_waiting_s": [0.0, 0.0005]})  # fmt: skip
    fig = plot_breakdown(table, tmp_path / "b.png", title="3 scenarios: quadrant-A, quadrant-B, quadrant-C")
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # a renderer to measure the title

    renderer = FigureCanvasAgg(fig).get_renderer()
    box, page = fig.axes[0].title.get_window_extent(renderer), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1


def test_validation_figure_says_when_links_were_not_shaped(tmp_path: Path) -> None:
    from sim.report.validation import network_words, plot_validation  # the validate figure

    loopback = network_words({"network": "loopback (127.0.0.1), unshaped", "latency_applied": False})
    no_netem = network_words({"network": "shaped veths in network namespaces", "latency_applied": False})
    shaped = network_words({"network": "shaped veths in network namespaces", "latency_applied": True})
    assert "NOT shaped" in loopback and "WITHOUT its latency" in no_netem and "NOT" not in shaped
    table = pd.DataFrame({"kind": ["end_to_end"], "measured_median_s": [0.010], "measured_p10_s": [0.009],
                          "measured_p90_s": [0.012], "predicted_s": [0.008]})  # fmt: skip
    fig = plot_validation(table, tmp_path / "v.png", title="quickstart", network=loopback)
    assert fig._suptitle is not None and fig._suptitle.get_text() == f"quickstart\n{loopback}"


def test_breakdown_adds_up_to_a_measured_latency_whose_sink_finishes_late() -> None:
    import dataclasses  # a measured run's timeline: the same, with the sink done 2 ms after the last arrival

    from sim.analysis.critical_path import frame_breakdown

    result = _run_two_devices()
    timeline = result.timeline
    late = dataclasses.replace(timeline, frame_done_s=[d + 0.002 for d in timeline.frame_done_s])
    parts = frame_breakdown(result.workload, late, 0)
    latency_s = late.frame_done_s[0] - late.frame_arrival_s[0]
    assert abs(parts.compute_s + parts.transfer_s + parts.waiting_s - latency_s) < 1e-12
    simulated = frame_breakdown(result.workload, timeline, 0)
    assert abs(parts.waiting_s - simulated.waiting_s - 0.002) < 1e-12
