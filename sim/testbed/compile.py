"""A prepared workload compiled into one :class:`~sim.testbed.program.DeviceProgram` per device.

Each program holds the model's fx nodes as :class:`~sim.testbed.program.Step` records, the weight shard of
every layer the device computes (:func:`sim.model.shards.layer_shard`: the rows of the filters it owns,
the columns of the input channels they use), copies of the channel-wise modules, the channels it owns of
the image and of every add, the messages it sends and receives (every frame), and the images when it owns
image channels.

A plan with rows-split layers (docs/design.md §3b; rows bands, tile grids, fused tiles and hybrids) adds,
per stage the device computes, an :class:`~sim.testbed.program.Area`: the channels and the block of
positions it computes (:attr:`sim.workload.spatial.SpatialPlacement.computes`), for a conv the blocks
exactly covering them, each with the input block it reads and the padding that block gets at the image
border. A rows-split layer's shard is then the whole layer (every filter at the device's positions), a
``filters`` layer's its filters, as the workload's ``weights_bytes`` counts them. Its messages carry the
positions the plan's messages list (halos).

Example::

    >>> programs = build_programs(prepare(load("scenarios/quickstart.yaml")))   # doctest: +SKIP
    >>> [p.name for p in programs]                                              # doctest: +SKIP
    ['cam', 'd1', 'd2', 'd3']
"""

from __future__ import annotations

import copy
import operator
from typing import Any, cast

import numpy as np
import torch
import torch.fx as fx

from sim.errors import UserError
from sim.model.flowgraph import layer_module
from sim.model.shards import layer_shard
from sim.pipeline.prepare import Prepared
from sim.testbed.program import Area, DeviceProgram, FunctionName, MessageSpec, Piece, Ref, Step
from sim.workload import wire
from sim.workload.spatial import Box, cover, hw, window_crop


def build_programs(prep: Prepared) -> list[DeviceProgram]:
    """One program per device: its steps, weight shards, owned channels and messages."""
    sc, graph, plan, workload = prep.scenario, prep.graph, prep.plan, prep.workload
    gm: fx.GraphModule = graph.module
    steps, modules = _steps(prep)
    targets = {n.name: str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    per_plan = len(plan.messages)
    if len(workload.messages) != per_plan * workload.frames:
        raise RuntimeError("the workload's messages do not follow its plan")
    spec = wire.WireSpec(sc.transfer.dtype, sc.transfer.index_bits)
    images = prep.images or []
    layers = [n for n in graph.order if graph.kind(n) == "layer"]
    sp = plan.spatial
    programs = []
    for d in range(plan.n_devices):
        computed = {n: plan.ownership[n] == d if sp is None else sp.computes[n][d].any(axis=1) for n in layers}
        shards = {
            n: layer_shard(
                layer_module(gm, targets[n]),
                graph.layer(n).uses,
                np.flatnonzero(computed[n]),
                graph.layer(n).in_spatial,
            )
            for n in layers
        }
        owned = {n: np.flatnonzero(plan.ownership[n] == d) for n in graph.order if graph.kind(n) in ("add", "input")}
        programs.append(
            DeviceProgram(
                index=d,
                name=workload.devices[d],
                frames=workload.frames,
                batch=sc.inputs.batch_size,
                interval_s=sc.setup.interval_s,
                steps=steps,
                shards=shards,
                modules=modules,
                owned=owned,
                messages=_messages(prep, d),
                images=list(images) if len(owned[graph.input_node()]) else [],
                spec=spec,
                index_bits=sc.transfer.index_bits,
                channel_header=sc.transfer.channel_header,
                sink=d == plan.sink,
                output=graph.output_tensor(),
                names=tuple(workload.devices),
                threads=sc.devices[d].threads or 1,
                areas=None if sp is None else _areas(prep, d),
                stages=frozenset() if sp is None else frozenset(sp.stages) - {graph.input_node()},
            )
        )
    return programs


def _areas(prep: Prepared, d: int) -> dict[str, Area]:
    """What device ``d`` computes of each stage of a plan with rows (module docstring)."""
    graph, sp = prep.graph, prep.plan.spatial
    assert sp is not None
    areas = {}
    for stage in sp.stages:
        computes = sp.computes.get(stage)
        if computes is None or graph.kind(stage) == "input" or not computes[d].any():
            continue
        node, mine = graph.node(stage), computes[d]
        channels = np.flatnonzero(mine.any(axis=1))
        if node.rank != 4:  # a vector (a linear layer's output): whole channels
            areas[stage] = Area(channels, Box(0, 1, 0, node.spatial))
            continue
        box = Box.bounding(mine.any(axis=0).reshape(hw(node)))
        source = graph.args(stage)[0]
        reads = np.flatnonzero(sp.reads(graph, stage)[d].any(axis=0))
        pieces: tuple[Piece, ...] = ()
        if graph.kind(stage) == "layer":
            assert node.window is not None
            blocks = cover(mine.any(axis=0).reshape(hw(node)))
            pieces = tuple(Piece(b, *window_crop(node.window, b, hw(graph.node(source)))) for b in blocks)
        areas[stage] = Area(channels, box, pieces, reads)
    return areas


def _steps(prep: Prepared) -> tuple[list[Step], dict[str, Any]]:
    """The fx nodes as steps, and copies of the modules of the channel-wise ones (by module path)."""
    graph = prep.graph
    gm: fx.GraphModule = graph.module
    steps, modules = [], {}
    grid: dict[str, tuple[int, int]] = {}
    for node in gm.graph.nodes:
        name = node.name
        args = fx.node.map_arg(node.args, lambda a: cast(Any, Ref(a.name)))
        kwargs = fx.node.map_arg(node.kwargs, lambda a: cast(Any, Ref(a.name)))
        if node.op == "get_attr":
            raise UserError(f"model.name: dsim execute cannot run fx node {name} (a get_attr); use a zoo model")
        target = _function_name(node.target) if node.op == "call_function" else str(node.target)
        if name not in graph.nodes:
            steps.append(Step(name, "helper", node.op, target, args, kwargs))
            continue
        rec = graph.node(name)
        if node.op == "call_module" and rec.kind != "layer":
            modules[str(node.target)] = copy.deepcopy(gm.get_submodule(str(node.target))).eval()
        if rec.rank == 4:
            grid[name] = hw(rec)
        else:  # a flattened tensor keeps its source's grid; a vector has one position per channel
            source = grid.get(rec.args[0]) if rec.args else None
            grid[name] = source if source is not None and source[0] * source[1] == rec.spatial else (1, rec.spatial)
        shape = tuple(rec.shape)
        steps.append(
            Step(name, rec.kind, node.op, target, args, kwargs, rec.rank, shape, rec.channels, rec.spatial, grid[name])
        )
    return steps, modules


def _messages(prep: Prepared, d: int) -> list[MessageSpec]:
    """The messages device ``d`` sends or receives, every frame, with how each is encoded."""
    graph, plan, workload = prep.graph, prep.plan, prep.workload
    per_plan = len(plan.messages)
    messages = []
    for k, wm in enumerate(workload.messages):
        pm = plan.messages[k % per_plan]
        if d not in (pm.src, pm.dst):
            continue
        if (pm.src, pm.dst, pm.tensor) != (wm.src, wm.dst, wm.tensor):
            raise RuntimeError("the workload's messages do not follow its plan")
        node = graph.node(pm.tensor)
        per_channel = tuple(node.shape[1:]) if node.rank == 4 else (node.spatial,)
        if pm.positions is not None:  # rows form: those positions of each channel
            per_channel = (len(pm.positions),)
        waiters = tuple(t.stage for t in pm.needed_by) + (("output",) if pm.final else ())
        messages.append(
            MessageSpec(
                k,
                wm.frame,
                pm.src,
                pm.dst,
                pm.tensor,
                np.asarray(pm.channels),
                node.channels,
                node.rank,
                per_channel,
                wm.format,
                wm.header_bytes,
                waiters,
                None if pm.positions is None else np.asarray(pm.positions),
            )
        )
    return messages


def _function_name(fn: Any) -> FunctionName:
    """A picklable name for an fx call_function target (some torch functions are local closures)."""
    for module in (torch.nn.functional, torch, operator):
        for attr in dir(module):
            if getattr(module, attr, None) is fn:
                return FunctionName(module.__name__, attr)
    raise UserError(f"model.name: dsim execute cannot run the function {getattr(fn, '__name__', fn)}; use a zoo model")
