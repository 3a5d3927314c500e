"""Text for the terminal: a run's summary, a sweep table and a comparison table, aligned, units in the headers."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sim.analysis import curves
from sim.analysis.critical_path import BREAKDOWN_COLUMNS


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
        rows.append(
            ("stream", f"CANNOT KEEP UP: latency grows {summary['latency_growth_s_per_frame'] * 1e3:.3f} ms per frame")
        )
    if summary.get("critical_path", {}).get("steps"):
        cp = summary["critical_path"]
        rows.append(
            (
                "critical path",
                f"frame {cp['frame']}: compute {cp['compute_s'] * 1e3:.3f} ms, transfer "
                f"{cp['transfer_s'] * 1e3:.3f} ms, wait {cp['wait_s'] * 1e3:.3f} ms",
            )
        )
    if summary.get("links"):
        busiest = max(summary["links"], key=lambda r: r["utilisation"])
        rows.append(("busiest link", f"{busiest['link']} ({busiest['utilisation'] * 100:.1f} % busy)"))
    if "compute_times" in summary:  # devices with a profile: where task times came from
        counts = {k: sum(d[k] for d in summary["compute_times"].values()) for k in ("table", "fit", "rate")}
        rows.append(
            ("compute times", f"{counts['table']} measured, {counts['fit']} fitted, {counts['rate']} from gflops")
        )
    if "baseline" in summary:
        base = summary["baseline"]
        rows.append(
            (
                "single device",
                f"{base['latency_s'] * 1e3:.3f} ms on {base['device']} alone (split speed-up {base['speedup']:.2f}x)",
            )
        )
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


def format_sweep(table: pd.DataFrame, max_rows: int = 40) -> str:
    """The sweep for the terminal: swept settings, latency in ms, bytes sent in kB (1 kB = 1e3 bytes),
    errors, and the bandwidth crossovers when a bandwidth was swept (at most ``max_rows`` rows)."""
    shown = table[curves.swept_columns(table)].copy()
    shown["latency ms"] = (table["latency_s"] * 1e3).round(3)
    if "baseline_latency_s" in table.columns:
        shown["1-device ms"] = (table["baseline_latency_s"] * 1e3).round(3)
    shown["sent kB"] = (table["bytes_total"] / 1e3).round(3)
    shown["error"] = curves.errors(table)
    text = shown.head(max_rows).to_string(index=False)
    if len(shown) > max_rows:
        text += f"\n... {len(shown) - max_rows} more rows in sweep.csv"
    bandwidth = next((c for c in curves.swept_columns(table) if c.endswith("bandwidth_mbps")), None)
    if bandwidth is not None:
        for _, c in curves.crossovers(table, bandwidth).iterrows():
            text += f"\ncrossover: {c['line']} = {c['versus']} at {c[bandwidth]:.3g} Mbps"
    return text


def format_comparison(table: pd.DataFrame) -> str:
    """The comparison as an aligned text table: latencies in ms, bytes in kB (1 kB = 1e3 bytes)."""
    shown = pd.DataFrame({"scenario": table["scenario"]})
    if "accuracy" in table.columns:
        shown["accuracy %"] = (table["accuracy"] * 100).round(2)
    shown["MFLOP"] = (table["flops_total"] / 1e6).round(3)
    for col, name in (("bytes_total", "sent kB"), ("dense_bytes", "dense kB"), ("packed_bytes", "packed kB")):
        shown[name] = (table[col] / 1e3).round(3)
    if "kept_kernels" in table.columns:
        shown["kernels %"] = (table["kept_kernels"] * 100).round(1)
    shown["elem x hops"] = table["elements_hops"]
    shown["max link elem"] = table["elements_hops_max_link"]
    shown["latency ms"] = (table["latency_s"] * 1e3).round(3)
    for col in BREAKDOWN_COLUMNS:
        shown[col.split("_")[1] + " ms"] = (table[col] * 1e3).round(3)
    return shown.to_string(index=False)
