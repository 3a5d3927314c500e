"""Real split runs (``dsim execute``): the scenario's split model run by one OS process per device, the
workload's messages encoded in the chosen wire format and sent over TCP, every compute and message timed.

Every split form runs (docs/design.md §3b): filters, whole layers (pipelines), row bands, tile grids, fused
tiles and hybrids of them. The torch side is :func:`sim.pipeline.prepare.prepare` as for ``dsim run``. Then:

* :mod:`sim.testbed.compile` turns the prepared workload into one program per device (its weight shards,
  the messages it sends and receives; records in :mod:`sim.testbed.program`);
* :mod:`sim.testbed.launcher` runs one process per device (:mod:`sim.testbed.worker`: multiprocessing
  *spawn*; ``torch.set_num_threads`` is the device's ``threads``, default 1), each interpreting its program
  (:mod:`sim.testbed.interpreter`) and talking over :mod:`sim.testbed.transport`: over loopback
  (127.0.0.1) by default, or with ``shape`` from a network namespace of :func:`sim.testbed.netns.testbed`,
  over veth links shaped to the scenario's rates;
* :mod:`sim.testbed.measure` turns the reports into ``dsim run``'s tables and summary.

Each run starts with an untimed check pass (frame 0, every layer input each device used kept and compared
with the unsplit model: ``summary["execution"]["check"]``); the timed runs then keep only the sink's
outputs (also compared), so no copy made for the check is timed. All processes time on ``time.monotonic``
(CLOCK_MONOTONIC, one clock for every process of a host), from a common start ``t0``.

Only ``transfer.exchange: inputs`` is executed (partial sums are refused with one line). A run that fails
(a device process killed or stopped, a link down, ``timeout_s`` passed) ends in one
:class:`sim.errors.RunFailure` line naming the device or link and what was cleaned up.

Example::

    >>> runs = execute("scenarios/quickstart.yaml")          # doctest: +SKIP
    >>> runs[0].summary["execution"]["check"]["ok"]          # doctest: +SKIP
    True
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from sim.analysis.result import RunResult
from sim.config.load import load
from sim.config.schema import Scenario
from sim.engine import assemble
from sim.errors import UserError
from sim.pipeline.calibrate import calibrated
from sim.pipeline.prepare import Prepared, prepare
from sim.testbed import netns
from sim.testbed.compile import build_programs
from sim.testbed.launcher import run_devices, terminating
from sim.testbed.measure import Check, check_values, measured_result, measured_timeline

__all__ = [
    "Check",
    "build_programs",
    "check_values",
    "default_timeout_s",
    "execute",
    "measured_result",
    "measured_timeline",
    "run_devices",
]


def execute(
    scenario: Scenario | str | Path,
    *,
    shape: bool = False,
    repeats: int = 1,
    timeout_s: float | None = None,
    prepared: Prepared | None = None,
) -> list[RunResult]:
    """Run the scenario's split model for real ``repeats`` times; one :class:`RunResult` per run.

    One operating-system process per device holds only its weight shard and exchanges the workload's
    messages, encoded in the scenario's wire format, over TCP (see ``docs/how-to/real-runs.md``). Every
    value a device used is checked against the unsplit model. Deployment and the single-device baseline are
    not executed (inference only).

    Parameters
    ----------
    scenario
        A scenario, or the path of its YAML file.
    shape
        Over shaped veths in network namespaces (Linux, root), built once for all repeats and always
        removed; else over loopback, unshaped.
    repeats
        Timed runs, after one untimed check pass.
    timeout_s
        Seconds one run may last (default :func:`default_timeout_s`); past it the run fails.
    prepared
        The scenario already prepared (:func:`sim.pipeline.prepare.prepare`), to skip that step.

    Returns
    -------
    list of RunResult
        One per timed run, with ``dsim run``'s tables; each ``summary`` adds ``execution`` (the network,
        the load average, the late start and the value check).

    Raises
    ------
    sim.errors.UserError
        A scenario it cannot run (``repeats`` below 1, a bad ``timeout_s``, ``shape`` where namespaces
        cannot be made, ``transfer.exchange`` other than ``inputs``, a model the testbed cannot run).
    sim.errors.RunFailure
        A device, a link or the time limit failed the run (one line).
    RuntimeError
        A value differs from the unsplit model beyond tolerance.

    Examples
    --------
    Two timed runs over loopback (the model is built and the processes started, so it takes seconds):

    >>> runs = execute("scenarios/quickstart.yaml", repeats=2)   # doctest: +SKIP
    >>> [round(r.summary["latency_s"] * 1e3, 1) for r in runs]   # doctest: +SKIP
    [6.1, 5.9]
    """
    sc = load(scenario)
    if repeats < 1:
        raise UserError(f"--repeats: must be >= 1 (got {repeats})")
    if timeout_s is not None and not timeout_s > 0:
        raise UserError(f"--timeout: must be > 0 seconds (got {timeout_s})")
    if shape:
        netns.check_available()
    if sc.deploy is not None or sc.baseline != "none":
        sc = sc.model_copy(update={"deploy": None, "baseline": "none"})  # inference only is executed
    prep = prepared if prepared is not None else prepare(calibrated(sc))
    if prep.plan.partial_layers():
        raise UserError("transfer.exchange: dsim execute runs exchange: inputs only; set transfer.exchange: inputs")
    programs = build_programs(prep)
    limit = timeout_s if timeout_s is not None else default_timeout_s(sc, prep)
    with terminating():
        bed_context = netns.testbed(sc, _burst_bytes(sc)) if shape else nullcontext(None)
        with bed_context as bed:
            rounds = run_devices(programs, bed, limit, repeats)
            return [measured_result(prep, reports, bed) for reports in rounds]


def _burst_bytes(sc: Scenario) -> int:
    """The tbf burst: the scenario's ``network.shaper.burst_bytes`` when it has one, else the default."""
    shaper = sc.network.shaper
    return shaper.burst_bytes if shaper is not None else netns.DEFAULT_BURST_BYTES


def default_timeout_s(sc: Scenario, prep: Prepared) -> float:
    """A generous bound for one run: 60 s, plus 20 times every byte at the slowest link rate, plus the
    frames' arrival times."""
    rates = [link.bandwidth_bps for link in assemble.network(sc).links()] or [1e9]
    total = sum(m.bytes for m in prep.workload.messages)
    return 60.0 + 20 * total * 8 / min(rates) + sc.inputs.frames * sc.setup.interval_s
