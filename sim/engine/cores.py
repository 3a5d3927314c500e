"""Processor sharing: the cores of a host time-sliced between every job that runs on it (SimPy, no torch).

While ``n`` jobs run on ``cores`` cores, each advances at ``min(1, cores / n)`` seconds of work per second,
as an operating system shares cores between processes: two processes on one core each take twice as long,
four processes on two cores each take twice as long, and a job alone runs at full speed.

Example::

    >>> env = simpy.Environment()
    >>> cpu = SharedCores(env, cores=1)
    >>> a, b = cpu.run(0.001), cpu.run(0.001)   # two 1 ms jobs together on one core
    >>> env.run()
    >>> env.now                                  # both end at 2 ms
    0.002
"""

from __future__ import annotations

import itertools

import simpy

DONE_S = 1e-12  # a job with at most this much work left (seconds) is done (floating-point residue)


class SharedCores:
    """``cores`` cores shared by every job that runs (:meth:`run`), each at ``min(1, cores / jobs)``."""

    def __init__(self, env: simpy.Environment, cores: int):
        self.env, self.cores = env, cores
        self._jobs: dict[int, list] = {}  # job id -> [work left in s, the event that fires when done]
        self._ids = itertools.count()
        self._since = env.now  # when the work left was last brought up to date
        self._version = 0  # the completion scheduled last; older ones are stale

    def _speed(self) -> float:
        return min(1.0, self.cores / len(self._jobs)) if self._jobs else 1.0

    def _advance(self) -> None:
        done = (self.env.now - self._since) * self._speed()
        for job in self._jobs.values():
            job[0] -= done
        self._since = self.env.now

    def run(self, seconds: float) -> simpy.Event:
        """Start a job of ``seconds`` of work now; the event fires when it is done."""
        self._advance()
        event = self.env.event()
        if seconds <= 0:
            event.succeed()
            return event
        self._jobs[next(self._ids)] = [seconds, event]
        self._schedule()
        return event

    def _schedule(self) -> None:
        self._version += 1
        if not self._jobs:
            return
        first = min(job[0] for job in self._jobs.values())
        version = self._version
        timer = self.env.timeout(max(0.0, first / self._speed()))
        timer.callbacks.append(lambda _event: self._finish(version))

    def _finish(self, version: int) -> None:
        if version != self._version:
            return  # a job started or ended since this completion was scheduled
        self._advance()
        for key in [k for k, job in self._jobs.items() if job[0] <= DONE_S]:
            self._jobs.pop(key)[1].succeed()
        self._schedule()
