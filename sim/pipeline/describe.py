"""``dsim describe``: what a scenario's partition means, layer by layer, before any simulation.

For frame 0 of the workload: each partitionable layer's shapes, form (``filters``, ``rows`` or ``whole``,
docs/design.md §3b), devices and FLOPs per device, the bytes each layer's outputs cause per device pair, and the
device-by-device traffic matrix. :func:`ownership_table` gives who owns what share of every layer (the data
of :func:`sim.report.plots.plot_ownership`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.analysis.result import RunResult
from sim.analysis.tables import traffic_matrix
from sim.engine import assemble
from sim.model.partition import imbalance
from sim.pipeline.prepare import Prepared
from sim.workload.types import Split


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def layer_table(built: Prepared) -> pd.DataFrame:
    """One row per partitionable layer: input and output shape (per image), its form, the devices that
    compute some of it, and FLOPs per device."""
    g, wl = built.graph, built.workload
    flops: dict[str, dict[str, float]] = {}
    for t in wl.tasks:
        if t.frame == 0 and t.op != "add":
            flops.setdefault(t.layer, {})[wl.devices[t.device]] = t.flops
    rows, owners = [], ownership_table(built)
    for node in g.order:
        if g.kind(node) != "layer":
            continue
        rec = g.node(node)
        mine = owners[owners["layer"] == rec.label]
        row: dict[str, str | float] = {
            "layer": rec.label,
            "op": g.layer(node).op,
            "input": _shape(g.node(rec.args[0]).shape),
            "output": _shape(rec.shape),
            "form": str(mine["form"].iloc[0]),
            "devices": ",".join(d for d in wl.devices if flops.get(rec.label, {}).get(d, 0.0) > 0),
        }
        row.update({d: flops.get(rec.label, {}).get(d, 0.0) for d in wl.devices})
        rows.append(row)
    return pd.DataFrame(rows)


def ownership_table(built: Prepared) -> pd.DataFrame:
    """One row per (partitionable layer, device): the layer's ``form`` and the ``share`` of its output
    elements the device owns (channels for ``filters``, positions for ``rows``, all or nothing for
    ``whole``). In a fused run the owned rows are those of the run's last conv; earlier convs are computed
    where needed (their owned share is as listed in the partition)."""
    plan, g, names = built.plan, built.graph, built.workload.devices
    split = plan.split if plan.split is not None else Split(plan.partition)
    rows = []
    for node in (n for n in g.order if g.kind(n) == "layer"):
        label = g.label(node)
        form = split.form(label)
        owner = split.rows[label].reshape(-1) if form == "rows" else np.asarray(plan.partition[label])
        for d, name in enumerate(names):
            rows.append({"layer": label, "form": form, "device": name, "share": float((owner == d).mean())})
    return pd.DataFrame(rows, columns=["layer", "form", "device", "share"])


def pair_bytes(transfers: pd.DataFrame) -> pd.DataFrame:
    """Bytes sent per producing layer (rows) and device pair (columns ``src->dst``), for frame 0."""
    first = transfers[transfers["frame"] == 0]
    pairs = first.assign(pair=first["src"] + "->" + first["dst"])
    table = pairs.pivot_table(index="layer", columns="pair", values="bytes", aggfunc="sum", fill_value=0, sort=False)
    return table.reindex(list(dict.fromkeys(first["layer"])))


def _imbalance(built: Prepared) -> float:
    """:func:`sim.model.partition.imbalance` of the channel partition; for a rows split, the same measure
    from the FLOPs of frame 0's conv and linear tasks."""
    rates = assemble.compute_rates(built.scenario)
    if built.plan.spatial is None:
        return imbalance(built.graph, built.plan.partition, rates)
    wl, ratios = built.workload, []
    for layer in dict.fromkeys(t.layer for t in wl.tasks if t.frame == 0 and t.op in ("conv", "linear")):
        times = np.zeros(len(rates))
        for t in wl.tasks:
            if t.frame == 0 and t.layer == layer:
                times[t.device] += t.flops / rates[t.device]
        ratios.append(times.max() / times.mean())
    return float(np.mean(ratios))


def describe(built: Prepared, result: RunResult) -> str:
    """The three tables as text for the terminal (``result`` is the simulation of ``built``)."""
    wl = built.workload
    first = result.transfers[result.transfers["frame"] == 0]
    parts = [
        f"scenario {built.scenario.name}: model {built.scenario.model.name}, {len(wl.devices)} devices, "
        f"partition {built.scenario.partition.file or built.scenario.partition.strategy}, compute imbalance "
        f"{_imbalance(built):.3f} (mean over layers of slowest / mean device time; 1 is even)",
        "",
        "FLOPs per device (one frame):",
        layer_table(built).to_string(index=False, float_format=lambda x: f"{x:,.0f}"),
        "",
        "bytes per producing layer and device pair (one frame):",
        pair_bytes(result.transfers).to_string(),
        "",
        "traffic matrix, bytes (one frame; rows send, columns receive):",
        traffic_matrix(first, list(wl.devices)).to_string(),
    ]
    return "\n".join(parts)
