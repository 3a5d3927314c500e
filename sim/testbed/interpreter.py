"""Runs one device's program on tensors, frame by frame: the model's fx nodes in order, each on the channels
this device holds, with its layer shards (:func:`sim.model.shards.run_shard`).

Values are held *compactly*: a tensor node's value on a device is a tensor of only the channels it holds
(dim 1; a flattened ``(B, C*S)`` tensor has ``S`` features per channel) beside ``held``, those channels
ascending. Channel-wise ops run on what a device holds, a layer on the input channels its shard reads, an
add on the channels the device owns. The messages a stage waits for are merged into their tensors just
before it (all of one tensor in one concatenation); a message is sent as soon as the node producing its
channels has run. Sending and receiving are the :class:`Link`'s.

A plan with rows (docs/design.md §3b: row bands, tile grids, fused tiles, hybrids) holds each value as the
channels a device holds at a *block* of positions (:class:`sim.workload.spatial.Box`, the smallest block
holding what it computed and received; a flattened tensor keeps its source's grid). A stage computes its
:class:`~sim.testbed.program.Area`: a conv each block of output positions it owns (one for a band or a
tile) from the input block that block reads, zero-padded where it meets the image border
(:func:`sim.model.shards.run_shard`), an add its block of both operands, a banded pool its block of the
pool over its input placed in the image's grid (pools are cheap), a linear layer whole channels. Messages carry the positions the plan lists (halos),
and merging one grows the block of its tensor.

Example::

    >>> interp = Interpreter(program)                                    # doctest: +SKIP
    >>> interp.frame(0, link, report, arrival=None, keep_values=True)      # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from sim.model.shards import channel_features, run_shard
from sim.testbed.blocks import NOWHERE, at, crop
from sim.testbed.program import Area, DeviceProgram, DeviceReport, MessageSpec, Ref, Step, TaskTime, UsedValue
from sim.workload.spatial import Box


class Link(Protocol):
    """What the interpreter needs from the network: send a message, take the messages a stage waits for."""

    def send(self, m: MessageSpec, matrix: np.ndarray) -> None:
        """Put message ``m`` (its payload matrix) on the wire."""

    def receive(self, ms: Sequence[MessageSpec]) -> list[torch.Tensor]:
        """The values of messages ``ms`` ((B, k, ...) each), waiting for them."""

    def merged(self, ks: Sequence[int], cpu_s: float) -> None:
        """Charge the CPU time of merging messages ``ks`` to them."""

    def drain(self) -> None:
        """Read, without waiting, what has arrived (between tasks, so that arrivals are timed closely)."""


class Interpreter:
    """One device's program, ready to run frames (its sends and waits indexed once)."""

    def __init__(self, program: DeviceProgram):
        self.p = program
        self.steps = {s.name: s for s in program.steps}
        self.functions: dict[Any, Any] = {}
        self.norms: dict[tuple[str, bytes], _NormShard] = {}  # per batch norm and channels held
        self.sends: dict[tuple[int, str], list[MessageSpec]] = {}
        self.waits: dict[tuple[int, str], list[MessageSpec]] = {}
        self.arrivals: dict[int, float] = {}  # later frames whose inputs go out once they arrive (monotonic s)
        self.inputs_sent: set[int] = set()  # frames whose inputs went out early
        for m in program.messages:
            if m.src == program.index:
                self.sends.setdefault((m.frame, m.tensor), []).append(m)
            else:
                for w in m.waiters:
                    self.waits.setdefault((m.frame, w), []).append(m)

    def frame(self, f: int, link: Link, report: DeviceReport, arrival: float | None, keep_values: bool) -> None:
        """Run frame ``f``: wait until ``arrival`` (``time.monotonic``; None: at once) for the image, append
        the task times (``time.monotonic``) to ``report``, and with ``keep_values`` every value used.

        A task's end leaves out the time its device spent in :meth:`Link.send` meanwhile (measured
        separately, per message), so that its duration is the compute alone."""
        p = self.p
        env: dict[str, Any] = {}
        held: dict[str, np.ndarray] = {}
        boxes: dict[str, Box] | None = None if p.areas is None else {}  # a plan with rows: each value's block
        merged: set[int] = set()
        task: tuple[str, float, float] | None = None  # the open task: stage, start (monotonic s), thread CPU s
        sending = sending_cpu = 0.0  # wall and CPU s the open task's device spent handing messages to sockets
        for step in p.steps:
            kind = step.kind
            if kind in ("layer", "add", "output") or step.name in p.stages:
                if task is not None:
                    report.tasks.append(_ended(f, task, sending, sending_cpu))
                    task, sending, sending_cpu = None, 0.0, 0.0
                    link.drain()
                self._send_arrived_inputs(link)
                incoming = [m for m in self.waits.get((f, step.name), ()) if m.k not in merged]
                if incoming:
                    values = link.receive(incoming)
                    cpu = time.thread_time()
                    if boxes is None:
                        self._merge(env, held, incoming, values)
                    else:
                        self._merge_rows(env, held, boxes, incoming, values)
                    link.merged([m.k for m in incoming], time.thread_time() - cpu)
                    merged.update(m.k for m in incoming)
                if kind == "output":
                    if p.sink:
                        whole = boxes is None or boxes[p.output] == _grid(self.steps[p.output])
                        if len(held[p.output]) != step.channels or not whole:
                            raise RuntimeError("the sink does not hold every model output")
                        report.done_s.append(time.monotonic())
                        report.outputs.append(env[p.output].numpy().copy())
                    continue
                start, start_cpu = time.monotonic(), time.thread_time()
                keep = report if keep_values else None
                if boxes is not None:
                    value, chans, boxes[step.name] = self._stage_rows(f, step, env, held, boxes, keep)
                elif kind == "add":
                    value, chans = self._add(f, step, env, held, keep)
                else:
                    value, chans = self._layer(f, step, env, held, keep)
                if len(chans):
                    task, sending, sending_cpu = (step.name, start, start_cpu), 0.0, 0.0
            elif kind == "input":
                while arrival is not None and (left := arrival - time.monotonic()) > 0:
                    time.sleep(min(0.005, left))
                value, chans = self._input(f, step)
                if boxes is not None:
                    boxes[step.name] = _grid(step) if len(chans) else NOWHERE
                env[step.name], held[step.name] = value, chans
                self.arrivals.pop(f, None)  # sent now if not yet
                if f not in self.inputs_sent:
                    self._send_input(f, step, link, value, chans)
                continue
            elif kind == "helper":
                env[step.name] = self._call(step, _subst(step.args, env), _subst(step.kwargs, env))
                continue
            else:
                value, chans = self._channelwise(step, env, held)
                if boxes is not None:
                    boxes[step.name] = self._box_after(step, held, boxes) if len(chans) else NOWHERE
            env[step.name], held[step.name] = value, chans
            for m in self.sends.get((f, step.name), ()):
                before, before_cpu = time.monotonic(), time.thread_time()
                if boxes is None:
                    payload = _select(value, chans, m.channels, m.rank)
                else:
                    payload = _positions(value, chans, boxes[step.name], m, step)
                link.send(m, _as_matrix(payload, m.rank))
                sending += time.monotonic() - before
                sending_cpu += time.thread_time() - before_cpu
        if task is not None:
            report.tasks.append(_ended(f, task, sending, sending_cpu))

    def _input(self, f: int, step: Step) -> tuple[torch.Tensor, np.ndarray]:
        """The image channels of frame ``f`` this device owns, and their indices."""
        chans = self.p.owned[step.name]
        return (self.p.images[f][:, torch.from_numpy(chans)] if len(chans) else _empty(step, self.p.batch)), chans

    def _send_input(self, f: int, step: Step, link: Link, value: torch.Tensor, chans: np.ndarray) -> None:
        """Send the messages of frame ``f``'s image channels ``chans`` (``value``, input ``step``) this device
        owns."""
        for m in self.sends.get((f, step.name), ()):
            if self.p.areas is None:
                payload = _select(value, chans, m.channels, m.rank)
            else:
                payload = _positions(value, chans, _grid(step) if len(chans) else NOWHERE, m, step)
            link.send(m, _as_matrix(payload, m.rank))

    def _send_arrived_inputs(self, link: Link) -> None:
        """Between tasks: send the image messages of every later frame that has arrived (the engine sends a
        frame's inputs when it arrives, not when its source gets to it)."""
        now = time.monotonic()
        for g in [g for g, t in self.arrivals.items() if t <= now]:
            del self.arrivals[g]
            self.inputs_sent.add(g)
            for step in self.p.steps:
                if step.kind == "input":
                    self._send_input(g, step, link, *self._input(g, step))

    def _merge(
        self, env: dict[str, Any], held: dict[str, np.ndarray], ms: Sequence[MessageSpec], values: list[torch.Tensor]
    ) -> None:
        """Merge received channels into their tensors: per tensor, the pieces in channel order, one ``cat``
        (and one reorder only when the pieces interleave)."""
        for tensor in dict.fromkeys(m.tensor for m in ms):
            have = held[tensor]
            pieces = [(have, _channels(env[tensor], len(have)))] if len(have) else []
            pieces += [(m.channels, v) for m, v in zip(ms, values) if m.tensor == tensor]
            pieces.sort(key=lambda piece: int(piece[0][0]) if len(piece[0]) else -1)
            chans = np.concatenate([c for c, _ in pieces])
            value = pieces[0][1] if len(pieces) == 1 else torch.cat([v for _, v in pieces], dim=1)
            if len(chans) > 1 and not (np.diff(chans) > 0).all():
                order = np.argsort(chans, kind="stable")
                chans, value = chans[order], value.index_select(1, torch.from_numpy(order))
            env[tensor], held[tensor] = _unchannels(value, self.steps[tensor].rank), chans

    def _merge_rows(
        self,
        env: dict[str, Any],
        held: dict[str, np.ndarray],
        boxes: dict[str, Box],
        ms: Sequence[MessageSpec],
        values: list[torch.Tensor],
    ) -> None:
        """Merge received elements into their tensors (a plan with rows): per tensor, one new value over the
        channels and the block holding what was held and what arrived."""
        for tensor in dict.fromkeys(m.tensor for m in ms):
            step = self.steps[tensor]
            mine = [(m, v) for m, v in zip(ms, values) if m.tensor == tensor]
            chans, box = held[tensor], boxes[tensor]
            for m, _ in mine:
                chans = np.union1d(chans, m.channels)
                box = box.union(_grid(step) if m.positions is None else Box.holding(m.positions, step.hw[1]))
            out = crop(env[tensor], held[tensor], boxes[tensor], chans, box, copy=True)
            flat = out.reshape(out.shape[0], len(chans), -1)
            for m, v in mine:
                rows = torch.from_numpy(np.searchsorted(chans, m.channels))
                every = _grid(step).positions(step.hw[1]) if m.positions is None else m.positions
                cols = torch.from_numpy(box.relative(every, step.hw[1]))
                flat[:, rows[:, None], cols[None, :]] = v.reshape(v.shape[0], len(m.channels), -1)
            env[tensor], held[tensor], boxes[tensor] = _unchannels(out, step.rank), chans, box

    def _stage_rows(
        self,
        f: int,
        step: Step,
        env: dict[str, Any],
        held: dict[str, np.ndarray],
        boxes: dict[str, Box],
        report: DeviceReport | None,
    ) -> tuple[torch.Tensor, np.ndarray, Box]:
        """A stage of a plan with rows on this device (module docstring): (its value, channels, block)."""
        assert self.p.areas is not None
        area = self.p.areas.get(step.name)
        if area is None:
            return _empty(step, self.p.batch), np.zeros(0, dtype=np.int64), NOWHERE
        refs = list(dict.fromkeys(r.name for r in _refs(step.args)))
        if step.kind == "layer" and not area.pieces:  # linear: whole channels, as in a filters plan
            if any(len(held[r]) and boxes[r] != _grid(self.steps[r]) for r in refs):
                raise RuntimeError(f"{step.name} reads whole channels that are held in part")
            value, chans = self._layer(f, step, env, held, report)
            return value, chans, area.box
        if step.kind == "layer":
            return self._conv_rows(f, step, refs[0], area, env[refs[0]], held[refs[0]], boxes[refs[0]], report)
        if step.kind == "add":
            chosen = {r: crop(env[r], held[r], boxes[r], area.channels, area.box) for r in refs}
            if report is not None and area.reads is not None:  # copies: an in-place add may change an operand
                operands = [at(v, area.box, area.reads, step.hw[1]).numpy().copy() for v in chosen.values()]
                report.inputs.append(UsedValue(f, step.name, area.channels, np.stack(operands), area.reads))
            shaped = {r: _unchannels(v, self.steps[r].rank) for r, v in chosen.items()}
            return self._call(step, _subst(step.args, shaped), _subst(step.kwargs, shaped)), area.channels, area.box
        # a banded pool: over its input placed in the image's grid, then its own block
        source = refs[0]
        canvas = crop(env[source], held[source], boxes[source], area.channels, _grid(self.steps[source]))
        pooled = self._call(step, _subst(step.args, {source: canvas}), _subst(step.kwargs, {source: canvas}))
        return pooled[:, :, area.box.y0 : area.box.y1, area.box.x0 : area.box.x1], area.channels, area.box

    def _conv_rows(
        self,
        f: int,
        step: Step,
        source: str,
        area: Area,
        value: torch.Tensor,
        have: np.ndarray,
        box: Box,
        report: DeviceReport | None,
    ) -> tuple[torch.Tensor, np.ndarray, Box]:
        """A conv's pieces on this device (:func:`sim.model.shards.run_shard` on each input block, padded at
        the image border), placed in the block of the positions it computes."""
        shard = self.p.shards[step.name]
        lacking = np.setdiff1d(shard.needed, have)
        if len(lacking):
            raise RuntimeError(f"channels {lacking.tolist()} of {source} are not held for {step.name}")
        if report is not None and area.reads is not None:
            reads = Box.holding(area.reads, self.steps[source].hw[1])
            used = at(crop(value, have, box, shard.needed, reads), reads, area.reads, self.steps[source].hw[1])
            report.inputs.append(UsedValue(f, step.name, shard.needed, used.numpy().copy(), area.reads))
        runs = [
            (piece, run_shard(shard, crop(value, have, box, shard.inputs, piece.in_box), piece.pad))
            for piece in area.pieces
        ]
        if len(runs) == 1 and runs[0][0].box == area.box:
            return runs[0][1], shard.filters, area.box
        out = torch.zeros((runs[0][1].shape[0], len(shard.filters), *area.box.hw), dtype=runs[0][1].dtype)
        for piece, y in runs:
            b = piece.box
            out[:, :, b.y0 - area.box.y0 : b.y1 - area.box.y0, b.x0 - area.box.x0 : b.x1 - area.box.x0] = y
        return out, shard.filters, area.box

    def _box_after(self, step: Step, held: dict[str, np.ndarray], boxes: dict[str, Box]) -> Box:
        """The block of a channel-wise op's value (a plan with rows): its input's, or the whole grid of an op
        that changes the grid (a pool of whole channels), whose input must be whole."""
        refs = [r.name for r in _refs(step.args if step.kind != "cat" else step.args[0]) if len(held[r.name])]
        box = boxes[refs[0]]
        if any(boxes[r] != box for r in refs):
            raise RuntimeError(f"{step.name} joins values held over different blocks")
        if self.steps[refs[0]].hw == step.hw:
            return box
        if box != _grid(self.steps[refs[0]]):
            raise RuntimeError(f"{step.name} changes the grid of a value held in part")
        return _grid(step)

    def _layer(
        self, f: int, step: Step, env: dict[str, Any], held: dict[str, np.ndarray], report: DeviceReport | None
    ) -> tuple[torch.Tensor, np.ndarray]:
        """A conv or linear layer's shard on this device: (its output, the filters it holds)."""
        shard = self.p.shards[step.name]
        if not len(shard.filters):
            return _empty(step, self.p.batch), shard.filters
        source = step.args[0].name
        rank = self.steps[source].rank
        if report is not None:
            used = _select(env[source], held[source], shard.needed, rank)
            report.inputs.append(UsedValue(f, step.name, shard.needed, used.numpy().copy()))
        x = _gather(env[source], held[source], shard.inputs, shard.needed, rank)
        return run_shard(shard, x), shard.filters

    def _add(
        self, f: int, step: Step, env: dict[str, Any], held: dict[str, np.ndarray], report: DeviceReport | None
    ) -> tuple[torch.Tensor, np.ndarray]:
        """An add on the channels this device owns."""
        owned = self.p.owned[step.name]
        if not len(owned):
            return _empty(step, self.p.batch), owned
        chosen = {r.name: _select(env[r.name], held[r.name], owned, step.rank) for r in _refs(step.args)}
        if report is not None:  # copies: an in-place add may change an operand
            operands = np.stack([v.numpy().copy() for v in chosen.values()])
            report.inputs.append(UsedValue(f, step.name, owned, operands))
        return self._call(step, _subst(step.args, chosen), _subst(step.kwargs, chosen)), owned

    def _channelwise(self, step: Step, env: dict[str, Any], held: dict[str, np.ndarray]) -> tuple[Any, np.ndarray]:
        """Pointwise ops, flatten and cat on the channels this device holds."""
        if step.kind == "cat":
            parts, pieces, offset = _refs(step.args[0]), [], 0
            for a in parts:
                pieces.append(held[a.name] + offset)
                offset += self.steps[a.name].channels
            return torch.cat([env[a.name] for a in parts], dim=1), np.concatenate(pieces)
        source = next(a.name for a in _refs(step.args))
        chans = held[source]
        x = env[source]
        if not len(chans):  # none of it here (a pipeline stage on another device): pooling cannot take 0 channels
            return _empty(step, self.p.batch), chans
        if step.kind == "flatten":
            return torch.flatten(x, 1), chans
        module = self.p.modules.get(step.target) if step.op == "call_module" else None
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            per = chans if step.rank == 4 else channel_features(chans, step.spatial)
            key = (step.name, per.tobytes())
            if key not in self.norms:  # the same channels every frame: sliced once
                self.norms[key] = _NormShard.of(module, per)
            return self.norms[key](x), chans
        return self._call(step, _subst(step.args, env), _subst(step.kwargs, env)), chans

    def _call(self, step: Step, args: Any, kwargs: Any) -> Any:
        if step.op == "call_module":
            return self.p.modules[step.target](*args, **kwargs)
        if step.op == "call_function":
            if step.target not in self.functions:
                self.functions[step.target] = step.target.resolve()
            return self.functions[step.target](*args, **kwargs)
        if step.op == "call_method":
            return getattr(args[0], step.target)(*args[1:], **kwargs)
        raise RuntimeError(f"cannot run fx node {step.name} ({step.op})")


def _ended(f: int, task: tuple[str, float, float], sending_s: float, sending_cpu_s: float) -> TaskTime:
    """The :class:`TaskTime` of frame ``f``'s open ``task`` (stage, start monotonic s, start thread CPU s)
    ending now, less the wall and CPU seconds its device spent in :meth:`Link.send` meanwhile."""
    stage, start_s, start_cpu_s = task
    end_s, cpu_s = time.monotonic() - sending_s, time.thread_time() - start_cpu_s - sending_cpu_s
    return TaskTime(f, stage, start_s, end_s, max(0.0, cpu_s))


@dataclass(frozen=True)
class _NormShard:
    """A batch-norm module (eval mode) on some of its channels (or features): their statistics and affine
    parameters, sliced once."""

    mean: torch.Tensor | None
    var: torch.Tensor | None
    weight: torch.Tensor | None
    bias: torch.Tensor | None
    eps: float

    @classmethod
    def of(cls, module: Any, index: np.ndarray) -> _NormShard:
        i = torch.from_numpy(index)
        parts = (module.running_mean, module.running_var, module.weight, module.bias)
        mean, var, weight, bias = (None if p is None else p.detach()[i] for p in parts)
        return cls(mean, var, weight, bias, module.eps)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.mean, self.var, self.weight, self.bias, False, 0.0, self.eps)


def _refs(args: Any) -> list[Ref]:
    """The references inside a step's (nested) arguments, in order."""
    found: list[Ref] = []
    fx.node.map_aggregate(args, lambda a: found.append(a) if isinstance(a, Ref) else None)
    return found


def _subst(args: Any, env: dict[str, Any]) -> Any:
    """A step's arguments with each reference replaced by its value."""
    return fx.node.map_aggregate(args, lambda a: env[a.name] if isinstance(a, Ref) else a)


def _empty(step: Step, batch: int) -> torch.Tensor:
    rest = step.shape[1:] if step.rank == 4 else ()
    return torch.zeros((batch, 0, *rest))


def _channels(value: torch.Tensor, k: int) -> torch.Tensor:
    """``value`` with channels on dim 1: (B, k, H, W) as is, a flattened (B, k*S) as (B, k, S)."""
    return value if value.ndim == 4 else value.reshape(value.shape[0], k, -1)


def _unchannels(value: torch.Tensor, rank: int) -> torch.Tensor:
    return value if rank == 4 else value.reshape(value.shape[0], -1)


def _select(value: torch.Tensor, have: np.ndarray, want: np.ndarray, rank: int) -> torch.Tensor:
    """The channels ``want`` (ascending) of a compact value holding ``have``; a RuntimeError when not held."""
    if len(want) == len(have) and np.array_equal(want, have):
        return value
    pos = np.searchsorted(have, want)
    if (pos >= len(have)).any() or not np.array_equal(have[np.minimum(pos, len(have) - 1)], want):
        raise RuntimeError(f"channels {np.setdiff1d(want, have).tolist()} are not held")
    out = _channels(value, len(have)).index_select(1, torch.from_numpy(pos))
    return _unchannels(out, rank)


def _gather(value: torch.Tensor, have: np.ndarray, inputs: np.ndarray, needed: np.ndarray, rank: int) -> torch.Tensor:
    """The channels ``inputs`` a shard reads, from a compact value holding ``have`` (at least ``needed``);
    zeros in channels of ``inputs`` not held (their weights are zero)."""
    both = np.isin(inputs, have)
    if both.all():
        return _select(value, have, inputs, rank)
    _select(value, have, needed, rank)  # raises when a needed channel is not held
    full = torch.zeros((value.shape[0], len(inputs), *value.shape[2:]), dtype=value.dtype)
    full[:, torch.from_numpy(np.flatnonzero(both))] = _select(value, have, inputs[both], rank)
    return full


def _grid(step: Step) -> Box:
    """The whole grid of a step's value."""
    return Box(0, step.hw[0], 0, step.hw[1])


def _positions(value: torch.Tensor, have: np.ndarray, box: Box, m: MessageSpec, step: Step) -> torch.Tensor:
    """A message's payload in a plan with rows: its channels at its positions, ``(B, k, positions)``."""
    lacking = np.setdiff1d(m.channels, have)
    if len(lacking):
        raise RuntimeError(f"channels {lacking.tolist()} of {m.tensor} are not held")
    every = _grid(step).positions(step.hw[1]) if m.positions is None else m.positions
    return at(crop(value, have, box, m.channels, box), box, every, step.hw[1])


def _as_matrix(value: torch.Tensor, rank: int) -> np.ndarray:
    """A message's payload matrix (sim.workload.sizing.message_matrix): (B*k, H*W) or (B, k*S)."""
    v = value.numpy()
    return v.reshape(v.shape[0] * v.shape[1], -1) if rank == 4 else v.reshape(v.shape[0], -1)
