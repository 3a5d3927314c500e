"""The figure check: every kind of figure, drawn from bundled scenarios or tables like theirs, within size
bounds, with units on its axes and a legend (or colour scale) that says what the colours mean.

The cheap cases (LeNet-5) run in the default suite; every bundled scenario's run figures are drawn in a
slow case. Sizes are read from the PNG header (pixels at the default 120 dpi).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pandas as pd
import pytest
import yaml

import sim
from sim import cli
from sim.analysis.pareto import pareto_table, sweep_labels
from sim.errors import UserError
from sim.report import plots
from sim.report.redraw import parse_frames, redraw
from sim.report.save import save_run
from tests.helpers import scenario_dict

ROOT = Path(__file__).resolve().parents[2]
MAX_W, MAX_H = 1700, 1600  # a screen: every figure must fit, whatever the device count
UNIT = re.compile(r"\((ms|kB|Mbps|%|GFLOP/s|kB per frame)\)")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height in pixels, from the PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def check_figure(path: Path, fig, min_px: tuple[int, int] = (500, 250)) -> None:
    """Size within bounds; the main axes labelled with units; a legend or a colour scale present."""
    w, h = png_size(path)
    assert min_px[0] <= w <= MAX_W and min_px[1] <= h <= MAX_H, f"{path.name}: {w}x{h} px"
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel(), f"{path.name}: an axis without a label"
    labels = [label for a in fig.axes for label in (a.get_xlabel(), a.get_ylabel())]  # colour bars too
    assert any(UNIT.search(label) for label in labels), f"{path.name}: no unit in {labels}"
    assert ax.get_title(), f"{path.name}: no title"
    keyed = any(a.get_legend() is not None for a in fig.axes) or len(fig.axes) > 1  # legend or colour bar
    assert keyed, f"{path.name}: nothing says what the colours mean"


def _timeline_tables(devices: int, links_per_device: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A hand-made run: each device computes 3 layers of 1 ms; after each of the first two, it sends its
    output to the next ``links_per_device`` devices, each transmission 0.5 ms on its own link."""
    names = [f"n{i}" for i in range(devices)]
    compute, hops = [], []
    for k, layer in enumerate(("conv1", "conv2", "fc")):
        t = k * 2e-3
        compute += [(0, layer, n, 1e6, t, t + 1e-3) for n in names]
        if k < 2:
            for i, n in enumerate(names):
                for j in range(1, links_per_device + 1):
                    dst = names[(i + j) % devices]
                    hops.append((0, layer, f"{n}->{dst}", n, dst, 1000, t + 1e-3, t + 1.5e-3, n))
    compute_t = pd.DataFrame(compute, columns=["frame", "layer", "device", "flops", "start_s", "end_s"])
    columns = ["frame", "layer", "link", "src", "dst", "bytes", "start_s", "end_s", "sender"]
    return compute_t, pd.DataFrame(hops, columns=columns)


@pytest.mark.parametrize("devices", [4, 16, 64, 200])
def test_timeline_height_is_bounded_for_any_device_count(tmp_path, devices):
    compute, hops = _timeline_tables(devices, links_per_device=min(devices - 1, 15))
    path = tmp_path / "timeline.png"
    fig = plots.plot_timeline(pd.DataFrame(), compute, path, title="t", hops=hops)
    check_figure(path, fig)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    if devices == 4:  # few lanes: one per link, named by the receiver, under each device
        assert ticks[:4] == ["n0", "→ n1", "→ n2", "→ n3"] and len(ticks) == 16
    else:  # many: one merged lane per device, labelled by the device row only
        assert ticks == [f"n{i}" for i in range(devices)]
    # the legend names the layers: compute and transfers share their colours
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["conv1", "conv2", "fc"]


def test_timeline_frame_range_and_the_plot_command(tmp_path, capsys):
    inputs = {"dataset": "digits", "batch_size": 1, "frames": 4, "interval_ms": 2.0}
    out = tmp_path / "run"
    save_run(sim.run(scenario_dict(4, inputs=inputs)), out)
    assert cli.main(["plot", str(out), "--frames", "1:3"]) == 0
    fig = plots.plot_timeline(
        pd.read_csv(out / "transfers.csv"), pd.read_csv(out / "compute.csv"), out / "t.png", frames=range(1, 3)
    )
    assert "frames 1-2" in fig.axes[0].get_title()
    events = pd.concat([pd.read_csv(out / "compute.csv"), pd.read_csv(out / "transfers.csv")])
    shown = events[events["frame"].isin([1, 2])]
    lo, hi = fig.axes[0].get_xlim()  # frame 1 arrives at 2 ms; nothing of it starts before
    assert lo == pytest.approx(shown["start_s"].min() * 1e3) and lo >= 2.0
    assert hi >= shown["end_s"].max() * 1e3
    assert cli.main(["plot", str(out), "--frames", "7:9"]) == 2
    assert "the run has frames 0..3" in capsys.readouterr().err
    assert cli.main(["plot", str(out), "--frames", "x"]) == 2
    assert "--frames x: expected START:STOP" in capsys.readouterr().err
    with pytest.raises(UserError, match="START < STOP"):
        parse_frames("3:1")
    assert list(parse_frames("2")) == [2] and list(parse_frames(":2")) == [0, 1]


def test_every_figure_kind_of_the_quick_start(tmp_path):
    """Run, stream, sweep (bandwidth, pruning), compare: each figure within bounds, units, legends."""
    run = tmp_path / "run"
    save_run(sim.run(ROOT / "scenarios" / "quickstart.yaml"), run)
    assert {p.name for p in redraw(run)} == {"timeline.png", "traffic.png"}
    transfers, compute = pd.read_csv(run / "transfers.csv"), pd.read_csv(run / "compute.csv")
    check_figure(run / "timeline.png", plots.plot_timeline(transfers, compute, run / "timeline.png", title="q"))
    check_figure(run / "traffic.png", plots.plot_traffic(transfers, run / "traffic.png", title="q"))

    sweep = tmp_path / "sweep"
    assert (
        cli.main(
            [
                "sweep",
                str(ROOT / "scenarios" / "quickstart.yaml"),
                "--set",
                "network.bandwidth_mbps=1,100",
                "--set",
                "prune.amount=0,0.5",
                "--variant",
                "ln:prune.method=ln_structured",
                "--variant",
                "l1:prune.method=l1_unstructured",
                "--baseline",
                "--out",
                str(sweep),
                "--jobs",
                "1",
            ]
        )
        == 0
    )
    table = pd.read_csv(sweep / "sweep.csv")
    assert set(table["scenario"]) == {"quickstart"}
    fig = plots.plot_latency_vs_bandwidth(table, sweep / "l.png", x="network.bandwidth_mbps", title="quickstart")
    check_figure(sweep / "l.png", fig)
    check_figure(sweep / "a.png", plots.plot_accuracy_vs_bytes(table, sweep / "a.png"))
    front = pareto_table(table, sweep_labels(table), within=["network.bandwidth_mbps"])
    check_figure(sweep / "p.png", plots.plot_pareto(front, sweep / "p.png"))
    for name in ("latency_vs_bandwidth.png", "accuracy_vs_bytes.png", "pareto.png"):
        assert png_size(sweep / name)[1] <= MAX_H

    files = []
    for name, fps in (("calm", 50), ("flood", 2000)):
        path = tmp_path / f"{name}.yaml"
        inputs = {"dataset": "digits", "batch_size": 1, "frames": 3, "fps": fps}
        path.write_text(yaml.safe_dump(scenario_dict(4, name=name, inputs=inputs, baseline="single")))
        files.append(str(path))
    cmp = tmp_path / "cmp"
    assert cli.main(["compare", *files, "--out", str(cmp), "--jobs", "1"]) == 0
    table = pd.read_csv(cmp / "comparison.csv")
    check_figure(cmp / "b.png", plots.plot_breakdown(table, cmp / "b.png", title="calm vs flood"))
    check_figure(cmp / "p.png", plots.plot_pareto(pareto_table(table, list(table["scenario"])), cmp / "p.png"))


BUNDLED = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scenarios").rglob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("scenario", BUNDLED)
def test_run_figures_of_every_bundled_scenario(tmp_path, scenario):
    result = sim.run(ROOT / scenario)
    save_run(result, tmp_path)
    transfers, compute = pd.read_csv(tmp_path / "transfers.csv"), pd.read_csv(tmp_path / "compute.csv")
    hops = pd.read_csv(tmp_path / "hops.csv")
    fig = plots.plot_timeline(transfers, compute, tmp_path / "timeline.png", hops=hops, title=scenario)
    check_figure(tmp_path / "timeline.png", fig)
    if len(transfers):
        check_figure(tmp_path / "traffic.png", plots.plot_traffic(transfers, tmp_path / "traffic.png"))


def test_trace_keeps_a_track_per_link_when_the_timeline_merges_them(tmp_path):
    save_run(sim.run(scenario_dict(10)), tmp_path)  # LeNet-5 on 10 devices: more link lanes than fit
    hops = pd.read_csv(tmp_path / "hops.csv")
    assert hops["link"].nunique() + 10 > plots.TIMELINE_LANE_LIMIT
    fig = plots.plot_timeline(
        pd.read_csv(tmp_path / "transfers.csv"), pd.read_csv(tmp_path / "compute.csv"), tmp_path / "t.png", hops=hops
    )
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [f"d{i}" for i in range(10)]  # merged lanes
    trace = json.loads((tmp_path / "trace.json").read_text())
    tracks = {e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "thread_name"}
    assert set(hops["link"]) | {f"d{i}" for i in range(10)} <= tracks
    assert hops.groupby("link")["sender"].nunique().max() == 1  # a full-duplex queue has one sender
