"""Text for the terminal: a run's summary, a sweep table and a comparison table, aligned, units in the headers."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sim.analysis import curves
from sim.analysis.critical_path import BREAKDOWN_COLUMNS
from sim.analysis.summary import RunSummary


def format_summary(summary: RunSummary) -> str:
    """A short, aligned, human-readable summary for the terminal."""
    s = summary
    rows = [
        ("scenario", s.name),
        ("frames", f"{s.frames}"),
        ("latency (mean)", f"{s.latency_s * 1e3:.3f} ms"),
        ("latency p50 / p99", f"{s.latency_p50_s * 1e3:.3f} / {s.latency_p99_s * 1e3:.3f} ms"),
        ("throughput", f"{s.throughput_fps:.2f} frames/s"),
        ("bytes sent", f"{s.bytes_total:,} B in {s.messages} messages"),
        ("compute", f"{s.flops_total / 1e6:.3f} MFLOP, {s.compute_s_total * 1e3:.3f} ms busy"),
    ]
    if s.retransmissions is not None:  # some link loses packets
        p95 = f"latency p95 {s.latency_p95_s * 1e3:.3f} ms"
        rows.append(("lossy links", f"{s.retransmissions} transmissions lost and sent again; {p95}"))
    if s.deadline_miss_rate is not None:
        deadline_ms = s.scenario["inputs"]["deadline_ms"]
        rows.append(("deadline", f"{s.deadline_miss_rate * 100:.1f} % of frames miss {deadline_ms:g} ms"))
    if s.keeps_up is False:
        rows.append(("stream", f"CANNOT KEEP UP: latency grows {s.latency_growth_s_per_frame * 1e3:.3f} ms per frame"))
    cp = s.critical_path
    if cp is not None and cp.get("steps"):
        rows.append(
            (
                "critical path",
                f"frame {cp['frame']}: compute {cp['compute_s'] * 1e3:.3f} ms, transfer "
                f"{cp['transfer_s'] * 1e3:.3f} ms, wait {cp['wait_s'] * 1e3:.3f} ms",
            )
        )
    if s.links:
        busiest = max(s.links, key=lambda r: r["utilisation"])
        rows.append(("busiest link", f"{busiest['link']} ({busiest['utilisation'] * 100:.1f} % busy)"))
    if s.compute_times is not None:  # devices with a profile: where task times came from
        counts = {k: sum(d.get(k, 0) for d in s.compute_times.values()) for k in ("table", "scaled", "fit", "rate")}
        scaled = f"{counts['scaled']} scaled from the layer measured in another split, " if counts["scaled"] else ""
        rows.append(
            (
                "compute times",
                f"{counts['table']} measured, {scaled}{counts['fit']} fitted, {counts['rate']} from gflops",
            )
        )
    if s.baseline is not None:
        base = s.baseline
        rows.append(
            (
                "single device",
                f"{base.latency_s * 1e3:.3f} ms on {base.device} alone (split speed-up {base.speedup:.2f}x)",
            )
        )
    if s.accuracy is not None:
        model = s.scenario["model"]
        untrained = model.get("checkpoint") is None and not model.get("train_epochs")
        note = " (untrained: seeded random weights; set model.train_epochs or a checkpoint)" if untrained else ""
        rows.append(("test accuracy", f"{s.accuracy * 100:.2f} %{note}"))
    if s.energy_j is not None and s.energy_j_per_frame is not None:
        rows.append(("energy", f"{s.energy_j_per_frame:.4g} J per frame ({s.energy_j:.4g} J over the run)"))
    if s.deployment is not None:
        deployed = f"{s.deployment.deploy_bytes:,} B in {s.deployment.deploy_s * 1e3:.3f} ms, before inference"
        rows.append(("deployment", deployed))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _cells(values: pd.Series, scale: float, digits: int, style: str = "f") -> pd.Series:
    """Numbers scaled and rounded for a text table (``digits`` decimals, or significant digits with
    ``style="g"``); missing ones as ``-``."""
    return values.map(lambda v: "-" if v is None or pd.isna(v) else f"{float(v) * scale:.{digits}{style}}")


CLASSES = 10  # classes of every bundled labelled dataset (digits, fashion_mnist, cifar10)


def chance_notes(names: pd.Series, accuracy: pd.Series, classes: int = CLASSES) -> list[str]:
    """A note for each row whose test accuracy is at most twice chance (``1/classes``): a model that did not
    learn (untrained weights, a diverged training), whose other figures are probably not meaningful.

    >>> chance_notes(pd.Series(["a", "b"]), pd.Series([0.09, 0.95]))
    ['note: a: accuracy 9.00 % is near chance (10 % for 10 classes); is the model trained? (model.train_epochs or model.checkpoint)']
    """
    return [
        f"note: {name}: accuracy {acc * 100:.2f} % is near chance ({100 / classes:.0f} % for {classes} classes); "
        "is the model trained? (model.train_epochs or model.checkpoint)"
        for name, acc in zip(names, accuracy)
        if acc is not None and not pd.isna(acc) and acc <= 2 / classes
    ]


def _yes_no(values: pd.Series) -> pd.Series:
    """A keeps-up column for a text table: ``yes``, ``NO``, or ``-`` (one frame: nothing to keep up with)."""

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return "-"
        return "yes" if str(v).lower() in ("true", "1", "1.0") else "NO"

    return values.map(cell)


def _frames(table: pd.DataFrame) -> pd.Series:
    """Frames per row (1 for tables written before the column existed)."""
    return table["frames"].astype(float) if "frames" in table.columns else pd.Series(1.0, index=table.index)


def sweep_lines_summary(table: pd.DataFrame, x: str) -> str:
    """One line per curve of a sweep (:func:`sim.analysis.curves.lines` over ``x``): its points, the range
    of ``x``, latency per frame at the lowest and highest ``x`` and bytes sent per frame."""
    shown = []
    for label, _, rows in curves.lines(table, x):
        kb = rows["bytes_total"] / _frames(rows) / 1e3
        first, last = rows.iloc[0], rows.iloc[-1]
        shown.append(
            {
                "line": label,
                "points": len(rows),
                x: f"{first[x]:g} .. {last[x]:g}",
                "latency ms (first .. last)": f"{first['latency_s'] * 1e3:.3f} .. {last['latency_s'] * 1e3:.3f}",
                "sent kB/frame": f"{kb.min():.3f}" if kb.min() == kb.max() else f"{kb.min():.3f} .. {kb.max():.3f}",
            }
        )
    return pd.DataFrame(shown).to_string(index=False) if shown else "(no successful points)"


def format_sweep(table: pd.DataFrame, max_rows: int = 40, max_crossovers: int = 24) -> str:
    """The sweep for the terminal: every row (swept settings, latency per frame in ms, for a loss sweep its
    p95 and p99 too, bytes sent per frame in kB, 1 kB = 1e3 bytes, errors) when there are at most
    ``max_rows``, else one summary line per curve
    (variant); then, when a bandwidth was swept, every crossover and every line with none in the swept
    range (:func:`sim.analysis.curves.crossover_report`), the first ``max_crossovers`` of them when there
    are more."""
    swept = curves.swept_columns(table)
    bandwidth = next((c for c in swept if c.endswith("bandwidth_mbps")), None)
    if len(table) <= max_rows:
        shown = table[swept].copy()
        shown["latency ms"] = (table["latency_s"] * 1e3).round(3)
        if "baseline_latency_s" in table.columns:
            shown["1-device ms"] = (table["baseline_latency_s"] * 1e3).round(3)
        if curves.loss_column(table) is not None and "latency_p95_s" in table.columns:  # a loss sweep: the tail
            shown["p95 ms"] = (table["latency_p95_s"] * 1e3).round(3)
            shown["p99 ms"] = (table["latency_p99_s"] * 1e3).round(3)
        shown["sent kB/frame"] = (table["bytes_total"] / _frames(table) / 1e3).round(3)
        if "accuracy" in table.columns:
            shown["accuracy %"] = _cells(table["accuracy"], 100, 2)
        if "energy_j_per_frame" in table.columns:
            shown["energy J/frame"] = _cells(table["energy_j_per_frame"], 1, 4, "g")
        shown["error"] = curves.errors(table)
        if (shown["error"] == "").all():
            shown = shown.drop(columns="error")
        text = shown.to_string(index=False)
    else:
        x = bandwidth or next((c for c in swept if c != "variant"), swept[0] if swept else "point")
        failed = int((curves.errors(table) != "").sum())
        text = f"{len(table)} points; one line per curve over {x} (every row is in sweep.csv"
        text += f"; {failed} failed)" if failed else ")"
        text += "\n" + sweep_lines_summary(table, x)
    if "accuracy" in table.columns:
        labels = pd.Series(
            [", ".join(f"{c}={row[c]}" for c in swept) for _, row in table.iterrows()] if swept else table["scenario"]
        )
        text += "".join(f"\n{note}" for note in chance_notes(labels, table["accuracy"]))
    if bandwidth is not None:
        report = curves.crossover_report(table, bandwidth)
        if len(report) > max_crossovers:
            text += f"\n{len(report)} crossover entries; the first {max_crossovers}:"
        for c in report.head(max_crossovers).itertuples(index=False):
            if c.crosses:
                text += f"\ncrossover: {c.line} = {c.versus} at {c.at:.3g} Mbps"
            else:
                text += (
                    f"\nno crossover in [{c.lo:.4g}, {c.hi:.4g}] Mbps: {c.line} vs {c.versus} "
                    f"({c.faster} is faster throughout)"
                )
    return text


def format_comparison(table: pd.DataFrame) -> str:
    """The comparison as aligned text tables, units in every header: what each scenario costs per frame
    (MFLOP, kB with 1 kB = 1e3 bytes), its timing (ms, frames/s, whether it keeps up with the arrivals) and,
    when some scenario has ``baseline: single``, the single device's figures and the speed-ups."""
    frames = _frames(table)
    cost = pd.DataFrame({"scenario": table["scenario"], "frames": frames.astype(int)})
    if "accuracy" in table.columns:
        cost["accuracy %"] = _cells(table["accuracy"], 100, 2)
    cost["MFLOP/frame"] = _cells(table["flops_total"] / frames, 1e-6, 3)
    for col, name in (
        ("bytes_total", "sent kB/frame"),
        ("dense_bytes_total", "dense kB/frame"),
        ("packed_bytes_total", "packed kB/frame"),
    ):
        cost[name] = _cells(table[col] / frames, 1e-3, 3)
    for col, name in (
        ("elements_hops", "elem x hops/frame"),
        ("elements_hops_max_link", "busiest link elem/frame"),
    ):
        if col in table.columns:
            cost[name] = _cells(table[col] / frames, 1, 0)
    if "redundant_flops" in table.columns:
        cost["redundant MFLOP/frame"] = _cells(table["redundant_flops"] / frames, 1e-6, 3)
    if "weights_bytes_max" in table.columns:
        cost["weights MB/device (max)"] = _cells(table["weights_bytes_max"], 1e-6, 3)
    if "kept_kernels" in table.columns:
        cost["kernels %"] = _cells(table["kept_kernels"], 100, 1)
    if "energy_j_per_frame" in table.columns:
        cost["energy J/frame"] = _cells(table["energy_j_per_frame"], 1, 4, "g")
    timing = pd.DataFrame({"scenario": table["scenario"], "latency ms": _cells(table["latency_s"], 1e3, 3)})
    for col in BREAKDOWN_COLUMNS:
        timing[col.split("_")[1] + " ms"] = _cells(table[col], 1e3, 3)
    if "service_latency_s" in table.columns:
        timing["service ms"] = _cells(table["service_latency_s"], 1e3, 3)
    timing["throughput fps"] = _cells(table["throughput_fps"], 1, 2)
    if "keeps_up" in table.columns:
        timing["keeps up"] = _yes_no(table["keeps_up"])
    blocks = [
        "per frame (totals over all frames are in comparison.csv):\n" + cost.to_string(index=False),
        "time (latency: mean per frame over the run, queueing included; its breakdown along the critical "
        "path;\n      service: one frame alone in the system):\n" + timing.to_string(index=False),
    ]
    if "baseline_latency_s" in table.columns:
        base = pd.DataFrame({"scenario": table["scenario"]})
        base["1-device ms"] = _cells(table["baseline_latency_s"], 1e3, 3)
        if "baseline_service_latency_s" in table.columns:
            base["1-device service ms"] = _cells(table["baseline_service_latency_s"], 1e3, 3)
        if "baseline_throughput_fps" in table.columns:
            base["1-device fps"] = _cells(table["baseline_throughput_fps"], 1, 2)
        base["speedup (latency)"] = _cells(table["speedup"], 1, 3, "g")
        for col, name in (("service_speedup", "service speedup"), ("throughput_speedup", "throughput speedup")):
            if col in table.columns:
                base[name] = _cells(table[col], 1, 3, "g")
        blocks.append(
            "against the source device alone (baseline: single; speedup = 1-device latency / split latency):\n"
            + base.to_string(index=False)
        )
    notes = chance_notes(table["scenario"], table["accuracy"]) if "accuracy" in table.columns else []
    if notes:
        blocks.append("\n".join(notes))
    return "\n\n".join(blocks)


def format_search(table: pd.DataFrame, objective: str) -> str:
    """The best candidate of ``dsim optimize`` (``search.csv``) against every named strategy: latency,
    throughput, bytes, memory of the fullest device, and how much worse than the best each one's objective is.

    >>> t = pd.DataFrame({"index": [0, 1], "space": ["named", "filters"], "description": ["contiguous", "shares 0.5:0.5"],
    ...     "feasible": [True, True], "objective": [2.0, 1.0], "latency_s": [2.0, 1.0],
    ...     "throughput_fps": [0.5, 1.0], "bytes_total": [100, 80], "memory_mb_max": [1.0, 1.0]})
    >>> print(format_search(t, "latency").splitlines()[2].split())
    ['best', 'shares', '0.5:0.5', '1000.000', '1.00', '0.080', '1.000', '0.0']
    """
    ok = table[table["feasible"]]
    best = ok.sort_values(["objective", "index"]).head(1)
    named = table[table["space"] == "named"]
    rows = pd.concat([best.assign(description="best " + best["description"]), named])
    lowest = best["objective"].iloc[0]
    worse = (rows["objective"] - lowest) / abs(lowest) * 100 if lowest != 0 else rows["objective"] * float("nan")
    columns = {
        "candidate": rows["description"],
        "latency ms": _cells(rows["latency_s"], 1e3, 3),
        "throughput fps": _cells(rows["throughput_fps"], 1, 2),
        "kB": _cells(rows["bytes_total"], 1e-3, 3),
        "max memory MB": _cells(rows["memory_mb_max"], 1, 3),
    }
    if "energy_j_per_frame" in rows and rows["energy_j_per_frame"].notna().any():
        columns["mJ/frame"] = _cells(rows["energy_j_per_frame"], 1e3, 3)
    if "prune_amount" in rows and table["prune_amount"].nunique() > 1:  # pruning searched: its amount, accuracy
        columns["prune"] = _cells(rows["prune_amount"], 1, 2)
        columns["accuracy %"] = _cells(rows["accuracy"], 100, 1)
    columns[f"{objective} vs best %"] = _cells(worse, 1, 1)  # '-' when the best is 0 (bytes: nothing sent)
    out = pd.DataFrame(columns)
    infeasible = int((~table["feasible"]).sum())
    head = f"{len(table)} candidates evaluated ({infeasible} over a device's memory_mb); objective: {objective}"
    return head + "\n" + out.to_string(index=False)
