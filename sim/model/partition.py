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

Partition files (``partitions/*.json``) store ``{"model", "devices", "layers": {layer: [device, ...]}}``
with device names, one per output channel.

Example::

    >>> contiguous_split(10, 4).tolist()
    [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
    >>> proportional_split(10, [1.0, 4.0]).tolist()
    [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sim.errors import UserError, first_line
from sim.fileio import read_limited, write_text
from sim.model.flowgraph import FlowGraph
from sim.workload.graph import residual_groups
from sim.workload.types import Partition

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


def save_partition(path: str | Path, model: str, devices: Sequence[str], parts: Partition) -> None:
    """Write a partition file (JSON, device names per channel), atomically."""
    layers = ",\n".join(
        f"    {json.dumps(name)}: {json.dumps([devices[d] for d in owner])}" for name, owner in parts.items()
    )
    text = f'{{\n  "model": {json.dumps(model)},\n  "devices": {json.dumps(list(devices))},\n  "layers": {{\n{layers}\n  }}\n}}\n'
    write_text(path, text)


def load_partition(path: str | Path, graph: FlowGraph, model: str, devices: Sequence[str]) -> Partition:
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
    expected = {l.name: l.out_channels for l in graph.layers()}
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
    parts: dict[str, np.ndarray] = {}
    for name, channels in expected.items():
        owners = given[name]
        if not isinstance(owners, list):
            raise UserError(
                f"{where}: layer '{name}' must be a list of {channels} device names (one per channel), "
                f"not a {type(owners).__name__}"
            )
        if len(owners) != channels:
            raise UserError(
                f"{where}: layer '{name}' has {len(owners)} entries; expected {channels} (one device per channel)"
            )
        unknown = [o for o in owners if not isinstance(o, str) or o not in index]
        if unknown:
            raise UserError(
                f"{where}: layer '{name}' names unknown device '{unknown[0]}'; devices are {', '.join(devices)}"
            )
        parts[name] = np.array([index[o] for o in owners], dtype=np.int64)
    return parts
