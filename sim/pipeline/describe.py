"""``dsim describe``: what a scenario's partition means, layer by layer, before any simulation.

For frame 0 of the workload: each partitionable layer's shapes and FLOPs per device, the bytes each
layer's outputs cause per device pair, and the device-by-device traffic matrix.
"""

from __future__ import annotations

import pandas as pd

from sim.analysis.result import RunResult
from sim.analysis.tables import traffic_matrix
from sim.engine import assemble
from sim.model.partition import imbalance
from sim.pipeline.prepare import Prepared


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def layer_table(built: Prepared) -> pd.DataFrame:
    """One row per partitionable layer: input and output shape (per image), and FLOPs per device."""
    g, wl = built.graph, built.workload
    flops: dict[str, dict[str, float]] = {}
    for t in wl.tasks:
        if t.frame == 0 and t.op != "add":
            flops.setdefault(t.layer, {})[wl.devices[t.device]] = t.flops
    rows = []
    for node in g.order:
        if g.kind(node) != "layer":
            continue
        rec = g.node(node)
        row: dict[str, str | float] = {
            "layer": rec.label,
            "op": g.layer(node).op,
            "input": _shape(g.node(rec.args[0]).shape),
            "output": _shape(rec.shape),
        }
        row.update({d: flops.get(rec.label, {}).get(d, 0.0) for d in wl.devices})
        rows.append(row)
    return pd.DataFrame(rows)


def pair_bytes(transfers: pd.DataFrame) -> pd.DataFrame:
    """Bytes sent per producing layer (rows) and device pair (columns ``src->dst``), for frame 0."""
    first = transfers[transfers["frame"] == 0]
    pairs = first.assign(pair=first["src"] + "->" + first["dst"])
    table = pairs.pivot_table(index="layer", columns="pair", values="bytes", aggfunc="sum", fill_value=0, sort=False)
    return table.reindex(list(dict.fromkeys(first["layer"])))


def describe(built: Prepared, result: RunResult) -> str:
    """The three tables as text for the terminal (``result`` is the simulation of ``built``)."""
    wl = built.workload
    first = result.transfers[result.transfers["frame"] == 0]
    parts = [
        f"scenario {built.scenario.name}: model {built.scenario.model.name}, {len(wl.devices)} devices, "
        f"partition {built.scenario.partition.file or built.scenario.partition.strategy}, compute imbalance "
        f"{imbalance(built.graph, built.plan.partition, assemble.compute_rates(built.scenario)):.3f} "
        "(mean over layers of slowest / mean device time; 1 is even)",
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
