"""Each figure: a non-empty PNG, labelled axes with units, and one series per variant / part / device."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sim
from sim import cli
from sim.errors import UserError
from sim.report import plots
from sim.report.redraw import redraw
from sim.report.save import save_run
from sim.study import sweep as sweeps
from tests.helpers import scenario_dict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG_MAGIC)


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _sweep_table() -> pd.DataFrame:
    """Two formats over three bandwidths with a 2 ms single-device baseline, latencies in seconds."""
    table = pd.DataFrame(
        [
            {
                "transfer.format": fmt,
                "network.bandwidth_mbps": mbps,
                "devices": 4,
                "latency_s": lat,
                "baseline_latency_s": 0.002,
            }
            for fmt, lats in (("dense", (0.010, 0.004, 0.001)), ("csr", (0.008, 0.003, 0.0009)))
            for mbps, lat in zip((1.0, 10.0, 100.0), lats)
        ]
    )
    table.insert(0, "point", range(len(table)))
    table["error"] = ""
    return table


def test_latency_vs_bandwidth(tmp_path):
    path = tmp_path / "lat.png"
    fig = plots.plot_latency_vs_bandwidth(_sweep_table(), path)
    assert _is_png(path)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and "bandwidth (Mbps)" in ax.get_xlabel() and "(ms)" in ax.get_ylabel()
    assert ax.get_title()
    # two split lines and the baseline; each split line crosses the 2 ms baseline once between 10 and 100 Mbps:
    # dense: gap +2 ms at 10 Mbps, -1 ms at 100 Mbps -> 10**(1 + 2/3); csr: +1, -1.1 -> 10**(1 + 1/2.1)
    dense_x, csr_x = 10 ** (5 / 3), 10 ** (1 + 1 / 2.1)
    dense_label = f"4 devices, format=dense (= single device at {dense_x:.3g} Mbps)"
    csr_label = f"4 devices, format=csr (= single device at {csr_x:.3g} Mbps)"
    assert _legend(ax) == [dense_label, csr_label, "single device"]
    lines = {line.get_label(): line for line in ax.get_lines()}
    dense = lines[dense_label]
    assert list(dense.get_xdata()) == [1.0, 10.0, 100.0] and list(dense.get_ydata()) == pytest.approx([10, 4, 1])
    marks = [line for line in ax.get_lines() if line.get_label() == "_crossover"]
    assert [m.get_xdata()[0] for m in marks] == pytest.approx([dense_x, csr_x])
    # each crossover in its line's colour
    assert [m.get_color() for m in marks] == [lines[dense_label].get_color(), lines[csr_label].get_color()]
    assert marks[0].get_color() != marks[1].get_color()


def test_latency_vs_bandwidth_names_lines_without_a_crossover(tmp_path):
    table = _sweep_table()
    table["baseline_latency_s"] = 0.0005  # below every point: the split never wins in [1, 100] Mbps
    fig = plots.plot_latency_vs_bandwidth(table, tmp_path / "lat.png")
    labels = [label.replace("\n", " ") for label in _legend(fig.axes[0])]  # long labels are wrapped
    assert "4 devices, format=dense (no crossover in [1, 100] Mbps, single device faster)" in labels
    assert not [line for line in fig.axes[0].get_lines() if line.get_label() == "_crossover"]


def test_latency_vs_bandwidth_draws_the_fastest_lines_of_a_big_sweep_and_the_range_of_all(tmp_path):
    # 20 lines (device speed g = 1..20), latency 1/g + 1/mbps: the 12 fastest are g = 9..20
    table = pd.DataFrame(
        [
            {"devices.1.gflops": float(g), "network.bandwidth_mbps": mbps, "devices": 4, "latency_s": 1 / g + 1 / mbps}
            for g in range(1, 21)
            for mbps in (1.0, 10.0, 100.0)
        ]
    )
    table.insert(0, "point", range(len(table)))
    table["error"] = ""
    (ax,) = plots.plot_latency_vs_bandwidth(table, tmp_path / "lat.png").axes
    assert "(12 fastest of 20 lines)" in ax.get_title()
    drawn = [line.get_label() for line in ax.get_lines()]
    assert drawn == [f"4 devices, gflops={g}" for g in range(9, 21)]
    band = ax.collections[0].get_paths()[0].vertices  # lowest (g = 20) to highest (g = 1) latency, in ms
    assert band[:, 1].min() == pytest.approx((1 / 20 + 1 / 100) * 1e3)
    assert band[:, 1].max() == pytest.approx((1 + 1) * 1e3)


def test_latency_breakdown(tmp_path):
    table = pd.DataFrame(
        {
            "scenario": ["a", "b"],
            "latency_compute_s": [0.001, 0.002],
            "latency_transfer_s": [0.003, 0.0],
            "latency_waiting_s": [0.0005, 0.0],
        }
    )
    path = tmp_path / "bd.png"
    fig = plots.plot_breakdown(table, path)
    assert _is_png(path)
    (ax,) = fig.axes
    assert "(ms)" in ax.get_xlabel() and ax.get_title()
    assert _legend(ax) == ["compute", "transfer", "waiting"]
    assert len(ax.containers) == 3 and all(len(c) == 2 for c in ax.containers)
    transfer = ax.containers[1]
    assert [bar.get_width() for bar in transfer] == pytest.approx([3.0, 0.0])
    assert [bar.get_x() for bar in transfer] == pytest.approx([1.0, 2.0])  # stacked after compute
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]


def test_traffic_heatmap(tmp_path):
    transfers = pd.DataFrame(
        {"frame": [0, 0, 1], "src": ["a", "b", "a"], "dst": ["b", "a", "b"], "bytes": [1000, 500, 3000]}
    )
    path = tmp_path / "heat.png"
    fig = plots.plot_traffic(transfers, path, devices=["a", "b", "c"])
    assert _is_png(path)
    ax, colorbar = fig.axes
    assert ax.get_xlabel() == "receiving device" and ax.get_ylabel() == "sending device"
    assert "per frame (kB)" in colorbar.get_ylabel() and "mean over 2 frames" in ax.get_title()
    # per frame: a->b 4000 B and b->a 500 B over 2 frames
    np.testing.assert_allclose(ax.get_images()[0].get_array(), [[0, 2.0, 0], [0.25, 0, 0], [0, 0, 0]])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]


def test_accuracy_vs_bytes(tmp_path):
    table = pd.DataFrame(
        {
            "point": range(4),
            "devices": 4,
            "prune.method": ["l1", "l1", "ln", "ln"],
            "prune.amount": [0.0, 0.5, 0.0, 0.5],
            "frames": 2,
            "bytes_total": [4000, 3000, 4000, 1500],
            "accuracy": [0.95, 0.93, 0.95, 0.80],
            "latency_s": 0.01,
            "error": "",
        }
    )
    path = tmp_path / "acc.png"
    fig = plots.plot_accuracy_vs_bytes(table, path)
    assert _is_png(path)
    (ax,) = fig.axes
    assert "per frame (kB)" in ax.get_xlabel() and "(%)" in ax.get_ylabel() and ax.get_title()
    assert _legend(ax) == ["4 devices, method=l1", "4 devices, method=ln"]
    ln = ax.get_lines()[1]  # per frame (2 frames), joined in order of bytes
    assert list(ln.get_xdata()) == [0.75, 2.0] and list(ln.get_ydata()) == pytest.approx([80.0, 95.0])
    assert sorted(t.get_text() for t in ax.texts) == ["0", "0", "0.5", "0.5"]
    with pytest.raises(UserError, match="no accuracy"):
        plots.plot_accuracy_vs_bytes(table.drop(columns="accuracy"), path)


def test_timeline_writes_png_with_a_row_per_device_and_its_links(tmp_path):
    result = sim.run(scenario_dict(2))
    path = tmp_path / "timeline.png"
    fig = plots.plot_timeline(result.transfers, result.compute, path, title="t")
    assert _is_png(path)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (ms)"
    # each device, then a thin lane for each of its outgoing links that carried data
    assert [t.get_text() for t in ax.get_yticklabels()] == ["d0", "→ d1", "d1", "→ d0"]


def test_redraw_from_saved_csvs(tmp_path):
    run_dir = tmp_path / "run"
    save_run(sim.run(scenario_dict(3)), run_dir)
    (run_dir / "timeline.png").unlink()
    written = redraw(run_dir)
    assert {p.name for p in written} == {"timeline.png", "traffic.png"} and all(_is_png(p) for p in written)
    sweep_dir = tmp_path / "sweep"
    sweeps.sweep(
        scenario_dict(2), {"network.bandwidth_mbps": [1, 10]}, baseline=True, out=sweep_dir, jobs=1, progress=False
    )
    assert [p.name for p in redraw(sweep_dir)] == ["latency_vs_bandwidth.png", "pareto.csv", "pareto.png"]
    with pytest.raises(UserError, match="nothing to plot"):
        redraw(tmp_path / "empty")
    assert cli.main(["plot", str(tmp_path / "empty")]) == 2
    assert cli.main(["plot", str(sweep_dir)]) == 0
