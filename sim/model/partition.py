"""Partition strategies and partition files: which device owns each output channel of every layer.

A partition maps a layer label (as in :class:`~sim.model.flowgraph.FlowGraph`) to an integer array, one entry
per output channel, holding the index of the owning device in scenario order.

Strategies (random ones take a ``seed``):

``contiguous``
    each layer's channels split in order with ``numpy.array_split`` (docs/design.md §4).
``round_robin``
    channel ``c`` to device ``c mod n``.
``random``
    the contiguous shares, shuffled over the channels by a seeded generator.
``balanced``
    contiguous runs whose lengths are proportional to each device's compute rate (largest remainder),
    so heterogeneous devices finish a layer together.
``aligned``
    like ``random``, but every residual stream (the layers tied by residual adds) shares one assignment,
    so a residual add never needs a transfer of its own.

Split strategies (docs/design.md §3b; they return a :class:`~sim.workload.types.Split`):

``spatial``
    every conv's output rows in bands with ``numpy.array_split`` over the devices in order (``tiles: [R,
    C]``: an R x C grid of blocks, block ``r*C + c`` on device ``(r*C + c) mod n``); ``fused`` fuses each
    run of them (DeepThings' FTP). Linear layers, which rows cannot split, run whole on the sink.
``pipeline``
    contiguous stages of layers in topological order, one per device in order (a device may get none),
    chosen by dynamic programming so that the slowest stage, at the devices' rates, is as fast as
    possible (:func:`pipeline_stages`).

Partition files (``partitions/*.json``) store ``{"model", "devices", "layers": {layer: FORM}}`` with
device names; FORM is a list (one device per output channel), ``{"rows": [device per output row]}`` (or a
list of lists: one device per output position, a tile grid) or ``{"device": name}`` (the whole layer).
An optional top-level ``"fused": true`` fuses the runs of rows-split convs.

Example::

    >>> contiguous_split(10, 4).tolist()
    [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
    >>> proportional_split(10, [1.0, 4.0]).tolist()
    [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    >>> pipeline_stages([4.0, 1.0, 1.0, 2.0], [1.0, 1.0])  # stage of each layer: 4 | 1+1+2
    [0, 1, 1, 1]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from sim.errors import UserError, first_line
from sim.fileio import read_limited, write_text
from sim.model.flowgraph import FlowGraph
from sim.workload.graph import Node, residual_groups
from sim.workload.types import Partition, Split

MAX_PARTITION_BYTES = 64 * 2**20  # a partition of a ResNet is well under a megabyte


def contiguous_split(channels: int, n_devices: int) -> np.ndarray:
    """Split ``channels`` in order into ``n_devices`` nearly equal runs (``numpy.array_split``)."""
    parts = np.array_split(np.arange(channels), n_devices)
    return np.concatenate([np.full(len(p), d, dtype=np.int64) for d, p in enumerate(parts)])


def proportional_split(channels: int, weights: Sequence[float]) -> np.ndarray:
    """Contiguous runs with lengths proportional to ``weights`` (largest-remainder rounding, ties to the
    earlier device)."""
    w = np.asarray(weights, dtype=float)
    exact = channels * w / w.sum()
    counts = np.floor(exact).astype(np.int64)
    remainder = exact - counts
    for d in sorted(range(len(w)), key=lambda i: (-remainder[i], i))[: channels - counts.sum()]:
        counts[d] += 1
    return np.repeat(np.arange(len(w), dtype=np.int64), counts)


def make_partition(
    graph: FlowGraph, strategy: str, n_devices: int, seed: int = 0, rates: Sequence[float] | None = None
) -> Partition:
    """Assign every layer's output channels with ``strategy`` (see the module docstring).

    ``rates`` (FLOP/s per device) is used by ``balanced``; ``seed`` by ``random`` and ``aligned``.
    """
    layers = graph.layers()
    if strategy == "contiguous":
        return {l.name: contiguous_split(l.out_channels, n_devices) for l in layers}
    if strategy == "round_robin":
        return {l.name: np.arange(l.out_channels, dtype=np.int64) % n_devices for l in layers}
    if strategy == "balanced":
        weights = rates if rates is not None else [1.0] * n_devices
        return {l.name: proportional_split(l.out_channels, weights) for l in layers}
    rng = np.random.default_rng(seed)
    if strategy == "random":
        return {l.name: rng.permutation(contiguous_split(l.out_channels, n_devices)) for l in layers}
    # aligned (the schema and the CLI accept only sim.config.vocab.STRATEGIES)
    by_name = {l.name: l for l in layers}
    out: dict[str, np.ndarray] = {}
    for group in residual_groups(graph):
        shared = rng.permutation(contiguous_split(by_name[group[0]].out_channels, n_devices))
        out.update({name: shared for name in group})
    for l in layers:
        if l.name not in out:
            out[l.name] = rng.permutation(contiguous_split(l.out_channels, n_devices))
    return {l.name: out[l.name] for l in layers}


def spatial_split(
    graph: FlowGraph, n_devices: int, sink: int, *, fused: bool = False, tiles: Sequence[int] | None = None
) -> Split:
    """The ``spatial`` strategy (module docstring): row bands (or a tile grid) for every conv, every
    linear layer whole on ``sink``."""
    rows: dict[str, np.ndarray] = {}
    filters: dict[str, np.ndarray] = {}
    whole: set[str] = set()
    for node in (n for n in graph.order if graph.kind(n) == "layer"):
        layer = graph.layer(node)
        if layer.op == "linear":
            filters[layer.name] = np.full(layer.out_channels, sink, dtype=np.int64)
            whole.add(layer.name)
            continue
        height, width = graph.node(node).shape[1:]
        grid_rows, grid_cols = (n_devices, 1) if tiles is None else (int(tiles[0]), int(tiles[1]))
        band_y = contiguous_split(height, grid_rows)
        band_x = contiguous_split(width, grid_cols)
        owner = (band_y[:, None] * grid_cols + band_x[None, :]) % n_devices
        rows[layer.name] = owner.astype(np.int64)
        filters[layer.name] = np.full(layer.out_channels, owner[0, 0], dtype=np.int64)
    return Split(filters, rows, frozenset(whole), fused)


def pipeline_stages(costs: Sequence[float], rates: Sequence[float]) -> list[int]:
    """Contiguous stages of layers (``costs``, FLOPs in topological order) over devices in order
    (``rates``, FLOP/s) minimising the slowest stage's time; the stage (device) of each layer.

    Dynamic programming over (devices used, layers placed): ``best[j][i]`` is the smallest slowest-stage
    time of the first ``i`` layers on the first ``j`` devices (a device may take no layer); ties go to the
    earliest cut. O(devices * layers^2).
    """
    n, count = len(rates), len(costs)
    prefix = np.concatenate([[0.0], np.cumsum(np.asarray(costs, dtype=float))])
    best = np.full((n + 1, count + 1), np.inf)
    cut = np.zeros((n + 1, count + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for j in range(1, n + 1):
        for i in range(count + 1):
            for k in range(i + 1):
                value = max(best[j - 1, k], (prefix[i] - prefix[k]) / rates[j - 1])
                if value < best[j, i]:
                    best[j, i], cut[j, i] = value, k
    stages, i = [0] * count, count
    for j in range(n, 0, -1):
        k = int(cut[j, i])
        stages[k:i] = [j - 1] * (i - k)
        i = k
    return stages


def pipeline_split(graph: FlowGraph, rates: Sequence[float], batch: int = 1) -> Split:
    """The ``pipeline`` strategy: every layer whole, on the device of its stage (:func:`pipeline_stages`
    of each layer's FLOPs)."""
    layers = graph.layers()
    stages = pipeline_stages([l.flops(l.out_channels, batch) for l in layers], rates)
    filters = {l.name: np.full(l.out_channels, d, dtype=np.int64) for l, d in zip(layers, stages)}
    return Split(filters, whole=frozenset(filters))


def imbalance(graph: FlowGraph, parts: Partition, rates: Sequence[float]) -> float:
    """Mean over layers of (slowest device's compute time / mean device compute time); 1.0 is perfect.

    ``rates`` are FLOP/s per device. Devices owning no filters of a layer count as taking no time.
    """
    ratios = []
    for layer in graph.layers():
        owner = parts[layer.name]
        times = np.array([layer.flops(int((owner == d).sum()), 1) / r for d, r in enumerate(rates)])
        ratios.append(times.max() / times.mean())
    return float(np.mean(ratios))


def make_split(
    graph: FlowGraph,
    strategy: str,
    n_devices: int,
    *,
    seed: int = 0,
    rates: Sequence[float] | None = None,
    sink: int = 0,
    fused: bool = False,
    tiles: Sequence[int] | None = None,
) -> Split:
    """Any strategy as a :class:`Split`: ``spatial`` and ``pipeline`` as above, the others as filters
    (:func:`make_partition`)."""
    if strategy == "spatial":
        return spatial_split(graph, n_devices, sink, fused=fused, tiles=tiles)
    if strategy == "pipeline":
        return pipeline_split(graph, rates if rates is not None else [1.0] * n_devices)
    return Split(make_partition(graph, strategy, n_devices, seed=seed, rates=rates))


def save_partition(path: str | Path, model: str, devices: Sequence[str], parts: Partition | Split) -> None:
    """Write a partition file (JSON, device names; module docstring), atomically."""
    split = parts if isinstance(parts, Split) else Split(parts)

    def form(name: str, owner: np.ndarray) -> str:
        if name in split.rows:
            grid = split.rows[name]
            given = grid[:, 0] if (grid == grid[:, :1]).all() else grid  # one device per row when it can
            return json.dumps({"rows": np.vectorize(lambda d: devices[d], otypes=[object])(given).tolist()})
        if name in split.whole:
            return json.dumps({"device": devices[int(owner[0])]})
        return json.dumps([devices[d] for d in owner])

    layers = ",\n".join(f"    {json.dumps(name)}: {form(name, owner)}" for name, owner in split.filters.items())
    fused = '  "fused": true,\n' if split.fused else ""
    text = f'{{\n  "model": {json.dumps(model)},\n  "devices": {json.dumps(list(devices))},\n{fused}  "layers": {{\n{layers}\n  }}\n}}\n'
    write_text(path, text)


def load_partition(path: str | Path, graph: FlowGraph, model: str, devices: Sequence[str]) -> Split:
    """Read a partition file and check it against the model's layers and the scenario's devices."""
    path = Path(path)
    where = f"partition.file: {path}"
    if not path.exists():
        raise UserError(f"{where}: no such file; write one with `dsim partition`")
    text = read_limited(path, MAX_PARTITION_BYTES, "partition.file")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # bad JSON, or nested thousands deep
        raise UserError(f"{where}: not a readable JSON partition file ({first_line(exc, 100)})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("layers"), dict):
        raise UserError(f"{where}: expected an object with a 'layers' mapping of layer -> device per channel")
    if doc.get("model") not in (None, model):
        raise UserError(f"{where}: written for model '{doc.get('model')}', but the scenario uses '{model}'")
    if doc.get("fused", False) not in (True, False):
        raise UserError(f"{where}: 'fused' must be true or false")
    nodes = {graph.label(n): graph.node(n) for n in graph.order if graph.kind(n) == "layer"}
    expected = {name: node.channels for name, node in nodes.items()}
    given = doc["layers"]
    missing = [n for n in expected if n not in given]
    extra = [n for n in given if n not in expected]
    if missing:
        raise UserError(
            f"{where}: layer '{missing[0]}' is missing ({len(missing)} missing); expected layers {', '.join(expected)}"
        )
    if extra:
        raise UserError(f"{where}: layer '{extra[0]}' is not in model '{model}'; expected layers {', '.join(expected)}")
    index = {name: i for i, name in enumerate(devices)}

    def device_of(name: str, value: object) -> int:
        if not isinstance(value, str) or value not in index:
            raise UserError(f"{where}: layer '{name}' names unknown device '{value}'; devices are {', '.join(devices)}")
        return index[value]

    parts: dict[str, np.ndarray] = {}
    rows: dict[str, np.ndarray] = {}
    whole: set[str] = set()
    for name, channels in expected.items():
        owners = given[name]
        if isinstance(owners, dict) and set(owners) == {"device"}:
            parts[name] = np.full(channels, device_of(name, owners["device"]), dtype=np.int64)
            whole.add(name)
            continue
        if isinstance(owners, dict) and set(owners) == {"rows"}:
            rows[name] = _rows_form(where, name, nodes[name], owners["rows"], device_of)
            parts[name] = np.full(channels, rows[name][0, 0], dtype=np.int64)
            continue
        if not isinstance(owners, list):
            raise UserError(
                f"{where}: layer '{name}' must be a list of {channels} device names (one per channel), "
                f'{{"rows": [device per output row]}} or {{"device": name}}, not a {type(owners).__name__}'
            )
        if len(owners) != channels:
            raise UserError(
                f"{where}: layer '{name}' has {len(owners)} entries; expected {channels} (one device per channel)"
            )
        parts[name] = np.array([device_of(name, o) for o in owners], dtype=np.int64)
    return Split(parts, rows, frozenset(whole), bool(doc.get("fused", False)))


def _rows_form(where: str, name: str, node: Node, given: object, device_of: Callable[[str, object], int]) -> np.ndarray:
    """The ``(H_out, W_out)`` owner grid of a ``{"rows": ...}`` entry (a list per row, or per position)."""
    if node.window is None or node.rank != 4 or node.layer is None or node.layer.op != "conv":
        raise UserError(f"{where}: layer '{name}' is not a conv; only convs can be split by rows")
    height, width = node.shape[1:]
    if not isinstance(given, list) or len(given) != height:
        raise UserError(f"{where}: layer '{name}' rows must list {height} devices (one per output row)")
    if all(isinstance(g, list) for g in given):
        if any(len(g) != width for g in given):
            raise UserError(f"{where}: layer '{name}' tile rows must each list {width} devices (one per column)")
        return np.array([[device_of(name, d) for d in g] for g in given], dtype=np.int64)
    return np.repeat(np.array([device_of(name, d) for d in given], dtype=np.int64)[:, None], width, axis=1)
