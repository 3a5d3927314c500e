"""Runs one device's program on tensors, frame by frame: the model's fx nodes in order, each on the channels
this device holds, with its layer shards (:func:`sim.model.shards.run_shard`).

Values are held *compactly*: a tensor node's value on a device is a tensor of only the channels it holds
(dim 1; a flattened ``(B, C*S)`` tensor has ``S`` features per channel) beside ``held``, those channels
ascending. Channel-wise ops run on what a device holds, a layer on the input channels its shard reads, an
add on the channels the device owns. The messages a stage waits for are merged into their tensors just
before it (all of one tensor in one concatenation); a message is sent as soon as the node producing its
channels has run. Sending and receiving are the :class:`Link`'s.

Example::

    >>> interp = Interpreter(program)                                    # doctest: +SKIP
    >>> interp.frame(0, link, report, arrival=None, keep_values=True)      # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from sim.model.shards import channel_features, run_shard
from sim.testbed.program import DeviceProgram, DeviceReport, MessageSpec, Ref, Step, TaskTime, UsedValue


class Link(Protocol):
    """What the interpreter needs from the network: send a message, take the messages a stage waits for."""

    def send(self, m: MessageSpec, matrix: np.ndarray) -> None:
        """Put message ``m`` (its payload matrix) on the wire."""

    def receive(self, ms: Sequence[MessageSpec]) -> list[torch.Tensor]:
        """The values of messages ``ms`` ((B, k, ...) each), waiting for them."""

    def merged(self, ks: Sequence[int], cpu_s: float) -> None:
        """Charge the CPU time of merging messages ``ks`` to them."""


class Interpreter:
    """One device's program, ready to run frames (its sends and waits indexed once)."""

    def __init__(self, program: DeviceProgram):
        self.p = program
        self.steps = {s.name: s for s in program.steps}
        self.functions: dict[Any, Any] = {}
        self.sends: dict[tuple[int, str], list[MessageSpec]] = {}
        self.waits: dict[tuple[int, str], list[MessageSpec]] = {}
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
        merged: set[int] = set()
        task: tuple[str, float] | None = None
        sending = 0.0  # seconds the open task's device spent handing messages to sockets (not its compute)
        for step in p.steps:
            kind = step.kind
            if kind in ("layer", "add", "output"):
                if task is not None:
                    report.tasks.append(TaskTime(f, task[0], task[1], time.monotonic() - sending))
                    task, sending = None, 0.0
                incoming = [m for m in self.waits.get((f, step.name), ()) if m.k not in merged]
                if incoming:
                    values = link.receive(incoming)
                    cpu = time.thread_time()
                    self._merge(env, held, incoming, values)
                    link.merged([m.k for m in incoming], time.thread_time() - cpu)
                    merged.update(m.k for m in incoming)
                if kind == "output":
                    if p.sink:
                        if len(held[p.output]) != step.channels:
                            raise RuntimeError("the sink does not hold every model output")
                        report.done_s.append(time.monotonic())
                        report.outputs.append(env[p.output].numpy().copy())
                    continue
                start = time.monotonic()
                if kind == "add":
                    value, chans = self._add(f, step, env, held, report if keep_values else None)
                else:
                    value, chans = self._layer(f, step, env, held, report if keep_values else None)
                if len(chans):
                    task, sending = (step.name, start), 0.0
            elif kind == "input":
                while arrival is not None and (left := arrival - time.monotonic()) > 0:
                    time.sleep(min(0.005, left))
                chans = p.owned[step.name]
                value = p.images[f][:, torch.from_numpy(chans)] if len(chans) else _empty(step, p.batch)
            elif kind == "helper":
                env[step.name] = self._call(step, _subst(step.args, env), _subst(step.kwargs, env))
                continue
            else:
                value, chans = self._channelwise(step, env, held)
            env[step.name], held[step.name] = value, chans
            for m in self.sends.get((f, step.name), ()):
                before = time.monotonic()
                link.send(m, _as_matrix(_select(value, chans, m.channels, m.rank), m.rank))
                sending += time.monotonic() - before
        if task is not None:
            report.tasks.append(TaskTime(f, task[0], task[1], time.monotonic() - sending))

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
            return _batch_norm(module, x, per), chans
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


def _batch_norm(module: Any, x: torch.Tensor, index: np.ndarray) -> torch.Tensor:
    """A batch-norm module (eval mode) on the channels (or features) ``index`` only."""
    i = torch.from_numpy(index)
    rm, rv = module.running_mean, module.running_var
    w = None if module.weight is None else module.weight[i]
    b = None if module.bias is None else module.bias[i]
    return F.batch_norm(x, None if rm is None else rm[i], None if rv is None else rv[i], w, b, False, 0.0, module.eps)


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


def _as_matrix(value: torch.Tensor, rank: int) -> np.ndarray:
    """A message's payload matrix (sim.workload.sizing.message_matrix): (B*k, H*W) or (B, k*S)."""
    v = value.numpy()
    return v.reshape(v.shape[0] * v.shape[1], -1) if rank == 4 else v.reshape(v.shape[0], -1)
