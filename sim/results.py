"""Results of a run: the tables and summary of DESIGN section 5, and writing them to a directory.

``transfers`` has one row per message, ``compute`` one row per task; ``summary`` holds the headline
figures (seconds, bytes, frames per second) and the resolved scenario.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim import wire
from sim.engine import Timeline
from sim.fileio import atomic_path, staged_directory
from sim.workload import Workload

TRANSFER_COLUMNS = [
    "frame", "layer", "src", "dst", "channels", "elements", "nnz", "dense_bytes", "csr_bytes", "coo_bytes",
    "bitmap_bytes", "format", "bytes", "hops", "start_s", "end_s", "header_bytes", "multicast_copy",
]  # fmt: skip
# multicast_copy: the row's payload rode on an earlier row's multicast transmission, so its ``bytes`` is 0
COMPUTE_COLUMNS = ["frame", "layer", "device", "flops", "start_s", "end_s"]


@dataclass
class RunResult:
    """Everything one run produced. ``timeline`` and ``workload`` are kept for plots and traces."""

    transfers: pd.DataFrame
    compute: pd.DataFrame
    summary: dict[str, Any]
    workload: Workload
    timeline: Timeline
    links: pd.DataFrame | None = None  # sim.counters.link_table: one row per link queue
    devices: pd.DataFrame | None = None  # sim.counters.device_table: one row per device

    def save(self, out: str | Path) -> list[Path]:
        """Write transfers.csv, compute.csv, hops.csv, traffic.csv, links.csv, devices.csv, summary.json,
        trace.json, timeline.png and traffic.png into ``out``; all are made before any replaces a file of
        ``out`` (:func:`sim.fileio.staged_directory`)."""
        from sim import counters, plots, trace

        hops = counters.hop_table(self.workload, self.timeline)
        tables = [("transfers.csv", self.transfers), ("compute.csv", self.compute), ("hops.csv", hops)]
        tables += [(n, t) for n, t in (("links.csv", self.links), ("devices.csv", self.devices)) if t is not None]
        critical = self.summary.get("critical_path")
        with staged_directory(out) as stage:
            for name, frame in tables:
                write_csv(frame, stage / name)
            traffic_matrix(self.transfers, list(self.workload.devices)).to_csv(stage / "traffic.csv")
            (stage / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n", encoding="utf-8")
            chrome = trace.chrome_trace(self.workload, self.timeline, critical)
            (stage / "trace.json").write_text(json.dumps(chrome) + "\n", encoding="utf-8")
            plots.timeline(self.transfers, self.compute, stage / "timeline.png", title=self.summary["name"],
                           hops=hops, critical=critical)  # fmt: skip
            plots.traffic_heatmap(self.transfers, stage / "traffic.png", devices=list(self.workload.devices),
                                  title=self.summary["name"])  # fmt: skip
            names = sorted(p.name for p in stage.iterdir())
        return [Path(out) / name for name in names]


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """Write a result table atomically, without its index, floats to 9 significant digits."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.9g")


def transfers_table(workload: Workload, timeline: Timeline) -> pd.DataFrame:
    """One row per message, in creation order (DESIGN section 5)."""
    names = workload.devices
    copy = [k < len(timeline.carried_by) and timeline.carried_by[k] != k for k in range(len(workload.messages))]
    rows = [
        (m.frame, m.layer, names[m.src], names[m.dst], m.channels, m.elements, m.nnz,
         *(m.sizes.get(f, np.nan) for f in wire.FORMATS), m.format, 0 if copy[k] else m.bytes,
         timeline.message_hops[k], timeline.message_start_s[k], timeline.message_end_s[k], m.header_bytes, copy[k])
        for k, m in enumerate(workload.messages)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=TRANSFER_COLUMNS)


def compute_table(workload: Workload, timeline: Timeline) -> pd.DataFrame:
    """One row per task, in workload order."""
    names = workload.devices
    rows = [
        (t.frame, t.layer, names[t.device], t.flops, timeline.task_start_s[k], timeline.task_end_s[k])
        for k, t in enumerate(workload.tasks)
    ]
    return pd.DataFrame(rows, columns=COMPUTE_COLUMNS)


def traffic_matrix(transfers: pd.DataFrame, devices: list[str]) -> pd.DataFrame:
    """Bytes sent from each device (rows, ``src``) to each device (columns, ``dst``) in ``transfers``."""
    matrix = transfers.pivot_table(index="src", columns="dst", values="bytes", aggfunc="sum", fill_value=0)
    matrix = matrix.reindex(index=devices, columns=devices, fill_value=0).astype("int64")
    matrix.index.name, matrix.columns.name = "src", "dst"
    return matrix


def bytes_by_format(transfers: pd.DataFrame) -> dict[str, int]:
    """Total bytes had every message been sent in each format; ``auto`` is the smallest per message.

    A format some message cannot use (too narrow indices) has no total. Channel headers
    (``header_bytes``) are on the wire in every format, so each total includes them.
    """
    if "multicast_copy" in transfers:
        transfers = transfers[~transfers["multicast_copy"].astype(bool)]  # a multicast payload counts once
    sizes = transfers[[f"{f}_bytes" for f in wire.FORMATS]]
    headers = int(transfers["header_bytes"].sum()) if "header_bytes" in transfers else 0
    totals = {
        f: int(sizes[f"{f}_bytes"].sum()) + headers for f in wire.FORMATS if sizes[f"{f}_bytes"].notna().all()
    }
    totals["auto"] = int(sizes.min(axis=1, skipna=True).sum()) + headers
    return totals


def auto_saving(totals: dict[str, int]) -> float:
    """The fraction of the dense bytes that ``auto`` saves: ``1 - auto/dense`` (0 when nothing is sent)."""
    return 1.0 - totals["auto"] / totals["dense"] if totals.get("dense") else 0.0


def summarize(name: str, resolved: dict[str, Any], transfers: pd.DataFrame, compute: pd.DataFrame,
              timeline: Timeline) -> dict[str, Any]:  # fmt: skip
    """Headline figures: latency statistics over frames, throughput, bytes and compute time."""
    from sim.counters import makespan_s, stream_stats

    latency = np.asarray(timeline.latency_s)
    stream = stream_stats(timeline)
    totals = bytes_by_format(transfers)
    return {
        "name": name,
        "frames": len(latency),
        "latency_s": float(latency.mean()),
        "latency_p50_s": float(np.percentile(latency, 50)),
        "latency_p99_s": float(np.percentile(latency, 99)),
        **stream,  # throughput_fps (sustained), departure_interval_s, offered_fps, keeps_up, latency growth
        "makespan_s": float(makespan_s(timeline)),
        "bytes_total": int(transfers["bytes"].sum()),
        "bytes_by_format": totals,
        "auto_saving": auto_saving(totals),
        "header_bytes": int(transfers["header_bytes"].sum()),
        "messages": int(len(transfers)),
        "flops_total": float(compute["flops"].sum()),
        "compute_s_total": float((compute["end_s"] - compute["start_s"]).sum()),
        "frame_latency_s": [float(x) for x in latency],
        "scenario": resolved,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A short, aligned, human-readable summary for the terminal."""
    rows = [
        ("scenario", summary["name"]),
        ("frames", f"{summary['frames']}"),
        ("latency (mean)", f"{summary['latency_s'] * 1e3:.3f} ms"),
        ("latency p50 / p99", f"{summary['latency_p50_s'] * 1e3:.3f} / {summary['latency_p99_s'] * 1e3:.3f} ms"),
        ("throughput", f"{summary['throughput_fps']:.2f} frames/s"),
        ("bytes sent", f"{summary['bytes_total']:,} B in {summary['messages']} messages"),
        ("compute", f"{summary['flops_total'] / 1e6:.3f} MFLOP, {summary['compute_s_total'] * 1e3:.3f} ms busy"),
    ]
    if summary.get("keeps_up") is False:
        rows.append(("stream", f"CANNOT KEEP UP: latency grows {summary['latency_growth_s_per_frame'] * 1e3:.3f} "
                               f"ms per frame"))  # fmt: skip
    if summary.get("critical_path", {}).get("steps"):
        cp = summary["critical_path"]
        rows.append(("critical path", f"frame {cp['frame']}: compute {cp['compute_s'] * 1e3:.3f} ms, transfer "
                                      f"{cp['transfer_s'] * 1e3:.3f} ms, wait {cp['wait_s'] * 1e3:.3f} ms"))  # fmt: skip
    if summary.get("links"):
        busiest = max(summary["links"], key=lambda r: r["utilisation"])
        rows.append(("busiest link", f"{busiest['link']} ({busiest['utilisation'] * 100:.1f} % busy)"))
    if "baseline" in summary:
        base = summary["baseline"]
        rows.append(("single device", f"{base['latency_s'] * 1e3:.3f} ms on {base['device']} alone "
                                      f"(split speed-up {base['speedup']:.2f}x)"))  # fmt: skip
    if "accuracy" in summary:
        model = summary["scenario"]["model"]
        untrained = model.get("checkpoint") is None and not model.get("train_epochs")
        note = " (untrained: seeded random weights; set model.train_epochs or a checkpoint)" if untrained else ""
        rows.append(("test accuracy", f"{summary['accuracy'] * 100:.2f} %{note}"))
    if "deploy_s" in summary:
        deployed = f"{summary['deploy_bytes']:,} B in {summary['deploy_s'] * 1e3:.3f} ms, before inference"
        rows.append(("deployment", deployed))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
