"""``dsim validate``: the same scenario executed for real (:mod:`sim.testbed.execute`) and simulated,
compared component by component.

Components (one row of ``validation.csv`` each; durations in seconds):

* ``compute``: one layer (or add) on one device: ``end_s - start_s`` of its ``compute.csv`` rows;
* ``message``: one message class, the messages of one ``layer`` from ``src`` to ``dst``: their transit,
  ``end_s - start_s`` of their ``transfers.csv`` rows (from the first byte handed to the socket to the last
  byte's arrival, for a measured run; from the start of the first hop to the arrival, for a simulated one);
* ``end_to_end``: a frame's latency (every frame);
* ``first_frame``: frame 0's latency (no frame before it to queue behind);
* ``interval``: with a stream (more than one frame), the steady time between departures: when the sink
  holds frame ``f`` minus when it held frame ``f - 1``, for ``f >= 1``.

Measured samples are pooled over frames and repeats (median, 10th and 90th percentile); the prediction is the
median over frames of the (deterministic) simulation. ``error_pct = (predicted - measured median) /
measured median * 100``.

With ``fit_compute`` the devices' rates and overheads are fitted to the measured layer times first. With
``runtime_profile`` (``--profile FILE``, written by ``dsim profile --execute``, usually for another rate,
topology, device count or model) the prediction takes every task's and message's CPU time from that profile
(the scenario's top-level ``profile:``), with the device processes sharing this machine's cores; what
differs between the profiled run and this one is recorded in ``validation.json`` (``profile``). A
predicted message arrives its transit delay after its wire time (``transit_s``), as a measured message's
transit (to its last byte's arrival) holds what it took beyond the wire; with a version-1 profile (no transit
line: its receive time held it) the predicted duration includes the receive CPU time (``recv_cpu_s``).

On loopback (no ``--shape``) the links are not shaped, so the message and end-to-end predictions, made at the
scenario's rates, are not expected to match: the compute rows are the comparison there. With ``--shape`` and a
kernel without ``netem``, links have no added delay, so the simulation is given ``latency_ms: 0`` too.

Example::

    >>> v = validate("scenarios/quickstart.yaml", repeats=3)          # doctest: +SKIP
    >>> v.table[v.table.kind == "end_to_end"].error_pct.iloc[0]       # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.analysis.result import RunResult
from sim.config.load import load, parse_scenario, with_network
from sim.config.schema import HostSpec, Scenario
from sim.config.setup import graphml_links
from sim.engine import assemble
from sim.engine.replay import link_free_starts, route_delays
from sim.errors import UserError
from sim.pipeline.calibrate import calibrated
from sim.pipeline.evaluate import evaluate
from sim.pipeline.prepare import prepare
from sim.report.validation import KINDS, error_distribution, format_validation
from sim.testbed.execute import execute
from sim.workload.runtime import RuntimeProfile, read_runtime_profile

__all__ = [
    "KINDS",
    "VALIDATION_COLUMNS",
    "Validation",
    "compare_runs",
    "error_distribution",
    "fit_devices",
    "format_validation",
    "validate",
    "zero_latency",
]
VALIDATION_COLUMNS = [
    "kind",
    "component",
    "layer",
    "src",
    "dst",
    "bytes",
    "samples",
    "measured_median_s",
    "measured_p10_s",
    "measured_p90_s",
    "predicted_s",
    "error_pct",
]


@dataclass
class Validation:
    """A validation: the comparison table, the simulated run, the measured runs and notes on the setup."""

    table: pd.DataFrame
    predicted: RunResult
    measured: list[RunResult]
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # for validation.json


def zero_latency(sc: Scenario) -> Scenario:
    """The scenario with every link's latency set to 0 (the shaped network when the kernel has no netem).

    A GraphML file's edges become ``network.links`` entries with ``latency_ms: 0`` (an entry overrides the
    edge with the same ends and keeps the edge order), so their latency is zeroed too."""
    net = sc.network
    graphml = sc.setup.paths.graphml
    from_file = [] if graphml is None else graphml_links(graphml, sc.device_names)
    links = [link.model_copy(update={"latency_ms": 0.0}) for link in [*net.links, *from_file]]
    return with_network(sc, net.model_copy(update={"latency_ms": 0.0, "links": links}))


LOOPBACK_MBPS = 1e5  # loopback links as the simulation sees them: 100 Gbit/s, no delay (software time is profiled)


def loopback(sc: Scenario) -> Scenario:
    """The scenario on loopback as a runtime profile sees it: every link at :data:`LOOPBACK_MBPS`, no
    latency, packets or shaper (what a message costs beyond the wire is its profiled CPU time)."""
    net = sc.network
    plain = {"bandwidth_mbps": None, "up_mbps": None, "down_mbps": None, "protocol": None, "shaper": None}
    links = [link.model_copy(update={**plain, "latency_ms": 0.0}) for link in net.links]
    update = {"bandwidth_mbps": LOOPBACK_MBPS, "latency_ms": 0.0, "links": links}
    return with_network(sc, net.model_copy(update={**update, "protocol": None, "shaper": None, "chunk_kB": None}))


def this_machine_cores() -> int:
    """The cores this process may run on (its CPU affinity), which every device process of a real run shares."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def with_runtime_profile(sc: Scenario, path: Path) -> Scenario:
    """The scenario predicted from the runtime profile at ``path`` (its top-level ``profile:``); without
    ``hosts``, every device shares one host of :func:`this_machine_cores` cores, as a real run's processes do."""
    update: dict[str, Any] = {"profile": path.resolve()}
    if not sc.hosts:
        update["hosts"] = [HostSpec(name="this-machine", cores=this_machine_cores())]
        update["devices"] = [d.model_copy(update={"host": "this-machine"}) for d in sc.devices]
    data = sc.model_copy(update=update).model_dump(mode="json", by_alias=True, exclude_none=True)
    return parse_scenario(data, origin=sc.name, base_dir=sc.setup.base_dir)


def profile_differences(sc: Scenario, profile: RuntimeProfile) -> list[str]:
    """What differs between the profiled run and the scenario: model, device count, topology, rate, frames."""
    run = profile.run
    pairs = [
        ("model", profile.model, sc.model.name),
        ("devices", profile.sharing.processes, len(sc.devices)),
        ("topology", run.get("topology"), sc.network.topology),
        ("bandwidth_mbps", run.get("bandwidth_mbps"), sc.network.bandwidth_mbps),
        ("frames", run.get("frames"), sc.inputs.frames),
    ]
    return [f"{name} {was} -> {now}" for name, was, now in pairs if was != now]


def validate(
    scenario: Scenario | str | Path,
    *,
    shape: bool = False,
    repeats: int = 5,
    timeout_s: float | None = None,
    fit_compute: bool = False,
    calibrate: bool = False,
    runtime_profile: str | Path | None = None,
) -> Validation:
    """Execute the scenario ``repeats`` times and simulate it; compare every component.

    The table has one row per component (each layer on each device, each message class, and
    ``end_to_end``) with the measured median, 10th and 90th percentile over frames and repeats, the
    prediction and ``error_pct = (predicted - measured) / measured * 100`` (module docstring). On a kernel
    without netem, shaped links run without added delay, so the simulation uses ``latency_ms: 0``
    (noted).

    Parameters
    ----------
    scenario
        A path to a YAML file or a loaded :class:`~sim.config.schema.Scenario`.
    shape
        Execute over shaped veths in network namespaces (Linux, root), as :func:`execute`.
    repeats
        Real runs (at least 1).
    timeout_s
        Seconds one run may take (default: from the scenario's bytes and rates).
    fit_compute
        Simulate with every device's rate and per-layer overhead fitted to its measured layer times
        (:func:`fit_devices`; in sample, so it tests the network and schedule model, not compute
        prediction), and note the end-to-end error with the scenario's own rates.
    calibrate
        Profile every device's layer shards on this machine first (as ``calibrate: true``,
        :func:`sim.pipeline.calibrate.calibrated`).
    runtime_profile
        Predict from this runtime profile (``dsim profile --execute``; module docstring), usually taken
        elsewhere: another rate, topology, device count or model. ``validation.json`` records it.

    Returns
    -------
    Validation
        The comparison ``table``, the ``predicted`` run, the ``measured`` runs, ``notes`` on the setup and
        ``extra`` figures for ``validation.json``.

    Raises
    ------
    sim.errors.UserError
        ``repeats`` below 1, or any refusal of :func:`execute`.
    sim.errors.RunFailure
        A device, a link or the time limit failed a real run (one line), as in :func:`execute`.

    Examples
    --------
    Three real runs over loopback and one simulation (it takes tens of seconds):

    >>> v = validate("scenarios/quickstart.yaml", repeats=3)  # doctest: +SKIP
    >>> sorted(set(v.table["kind"]))  # doctest: +SKIP
    ['compute', 'end_to_end', 'first_frame', 'interval', 'message']
    """
    if repeats < 1:
        raise UserError(f"--repeats: must be >= 1 (got {repeats})")
    if fit_compute and runtime_profile is not None:
        raise UserError("--fit-compute: predicts from the measured run itself; give it or --profile, not both")
    if calibrate and runtime_profile is not None:
        raise UserError("--calibrate: the runtime profile gives every rate; give --calibrate or --profile, not both")
    sc = load(scenario)
    profile = None if runtime_profile is None else read_runtime_profile(runtime_profile)
    if calibrate:  # every device profiled on this machine first (calibrate: true)
        sc = sc.model_copy(update={"devices": [d.model_copy(update={"calibrate": True}) for d in sc.devices]})
    if runtime_profile is None:
        sc = calibrated(sc)
    else:  # the runtime profile gives every rate (the partitioner's too): profiling this machine is not needed
        uncalibrated = [d.model_copy(update={"calibrate": False}) for d in sc.devices]
        sc = with_runtime_profile(sc.model_copy(update={"devices": uncalibrated}), Path(runtime_profile))
    sc = sc.model_copy(update={"deploy": None, "baseline": "none"})
    prep = prepare(sc)
    runs = execute(sc, shape=shape, repeats=repeats, timeout_s=timeout_s, prepared=prep)
    notes = []
    simulated = sc
    execution = runs[0].record.execution or {}
    if not shape and runtime_profile is not None:
        simulated = loopback(sc)
        notes.append(f"loopback: links simulated at {LOOPBACK_MBPS / 1e3:g} Gbit/s without delay (as profiled)")
    elif not shape:
        notes.append("loopback: links are not shaped; message and end-to-end predictions use the scenario's rates")
    elif not execution["latency_applied"]:
        simulated = zero_latency(sc)
        notes.append("this kernel has no netem: links ran without added delay, so the simulation uses latency_ms: 0")
    extra: dict[str, Any] = {}
    if profile is not None and runtime_profile is not None:  # sc, and so simulated, holds it since the start
        differences = profile_differences(sc, profile)
        extra["profile"] = {
            "file": str(runtime_profile),
            "profiled_scenario": profile.scenario,
            "profiled_run": profile.run,
            "sharing": {"processes": profile.sharing.processes, "cores": profile.sharing.cores},
            "out_of_sample": bool(differences),
            "differences": differences,
        }
        where = f"out of sample ({'; '.join(differences)})" if differences else "in sample (same configuration)"
        notes.append(f"predicted from the runtime profile {runtime_profile} of {profile.scenario}: {where}")
    predicted = evaluate(simulated, prep.built)
    if fit_compute:
        fitted = fit_devices(simulated, compare_runs(predicted, runs), predicted)
        own = predicted.record.latency_s
        predicted = evaluate(fitted, prep.built)
        rates = ", ".join(f"{d.name} {d.gflops:.2f} GFLOP/s + {d.overhead_ms:.3f} ms" for d in fitted.devices)
        notes.append(f"compute fitted from these measured runs (in sample): {rates}")
        extra = {"own_rates_predicted_latency_s": own, "fitted_devices": [d.model_dump() for d in fitted.devices]}
        measured = float(np.median([x for r in runs for x in r.record.frame_latency_s]))
        notes.append(
            f"with the scenario's own device rates the end-to-end prediction was {own * 1e3:.2f} ms "
            f"({(own - measured) / measured * 100:+.1f} % of the measured median)"
        )
    recv_in_transit = profile is not None and not profile.transit  # a version-1 profile: recv held the transit
    tl, delays = predicted.timeline, route_delays(prep.workload, assemble.network(simulated))
    handed = link_free_starts(prep.workload, tl.message_ready_s, tl.message_end_s, delays)
    return Validation(compare_runs(predicted, runs, recv_in_transit, handed), predicted, runs, notes, extra)


def fit_devices(sc: Scenario, table: pd.DataFrame, predicted: RunResult) -> Scenario:
    """The scenario with each device's ``gflops`` and ``overhead_ms`` fitted to its measured conv/linear
    layer times (median per layer): least squares of ``time = flops / rate + overhead``, the overhead kept
    >= 0 (a fit through the origin when the free fit's is negative)."""
    flops = predicted.compute.groupby(["layer", "device"], sort=False)["flops"].first()
    rows = table[table["kind"] == "compute"]
    devices = []
    for d in sc.devices:
        mine = rows[rows["src"] == d.name]
        x = np.array([flops.get((layer, d.name), 0.0) for layer in mine["layer"]])
        y = mine["measured_median_s"].to_numpy()
        keep = x > 0
        x, y = x[keep], y[keep]
        if len(x) == 0:
            devices.append(d)
            continue
        slope, overhead = np.polyfit(x, y, 1) if len(set(x)) > 1 else (0.0, -1.0)
        if overhead < 0 or slope <= 0:
            slope, overhead = float(x @ y / (x @ x)), 0.0
        devices.append(
            d.model_copy(
                update={"gflops": 1 / slope / 1e9, "overhead_ms": overhead * 1e3, "calibrate": False, "profile": None}
            )
        )
    return sc.model_copy(update={"devices": devices})


def _durations(
    result: RunResult, kind: str, predicted: bool = False, starts_s: Sequence[float] | None = None
) -> pd.DataFrame:
    """One row per sample: ``kind, layer, src, dst, bytes, seconds``; a ``predicted`` message's seconds
    include its receive CPU time (``recv_cpu_s``) when the run charged one; a message's seconds run from
    ``starts_s`` (per message) when given, else from its ``start_s``."""
    if kind == "compute":
        c = result.compute
        return pd.DataFrame(
            {"layer": c["layer"], "src": c["device"], "dst": "", "bytes": 0, "seconds": c["end_s"] - c["start_s"]}
        )
    if kind == "message":
        t = result.transfers
        return pd.DataFrame(
            {
                "layer": t["layer"],
                "src": t["src"],
                "dst": t["dst"],
                "bytes": t["bytes"],
                "seconds": t["end_s"]
                - (t["start_s"] if starts_s is None else np.asarray(starts_s))
                + (t["recv_cpu_s"] if predicted and "recv_cpu_s" in t else 0.0),
            }
        )
    if kind == "first_frame":
        latency = list(result.record.frame_latency_s[:1])
    elif kind == "interval":
        latency = list(np.diff(result.timeline.frame_done_s))
    else:
        latency = list(result.record.frame_latency_s)
    return pd.DataFrame({"layer": "", "src": "", "dst": "", "bytes": 0, "seconds": latency})


def compare_runs(
    predicted: RunResult,
    measured: list[RunResult],
    recv_in_transit: bool = False,
    handed_s: Sequence[float] | None = None,
) -> pd.DataFrame:
    """The comparison table (:data:`VALIDATION_COLUMNS`), one row per component, in the order of the
    simulated tables (compute rows, then message classes, then end to end). ``recv_in_transit``: a
    predicted message's duration includes its receive CPU time (a version-1 runtime profile fitted it from
    transits). ``handed_s``: each predicted message's start as a run measures it (:func:`link_free_starts`
    of its ready time: when its bytes go to the socket, or when its connection's previous message arrived),
    not when its first byte started on the wire; the two differ when it waited behind other connections'
    messages on a shared link (a star's uplink without ``interleave``)."""
    rows = []
    for kind in KINDS:
        pred = _durations(predicted, kind, predicted=recv_in_transit, starts_s=handed_s)
        meas = pd.concat([_durations(r, kind) for r in measured], ignore_index=True)
        keys = ["layer", "src", "dst"]
        samples = {key: g["seconds"].to_numpy() for key, g in meas.groupby(keys, sort=False)}
        for key, group in pred.groupby(keys, sort=False):
            sample = samples.get(key, np.zeros(0))
            if len(sample) == 0:
                continue
            med = float(np.median(sample))
            p = float(group["seconds"].median())
            layer, src, dst = key
            name = {"compute": f"{layer}@{src}", "message": f"{layer}:{src}->{dst}"}.get(kind, kind)
            rows.append(
                (
                    kind,
                    name,
                    layer,
                    src,
                    dst,
                    int(group["bytes"].median()),
                    len(sample),
                    med,
                    float(np.percentile(sample, 10)),
                    float(np.percentile(sample, 90)),
                    p,
                    (p - med) / med * 100 if med > 0 else float("nan"),
                )
            )
    return pd.DataFrame(rows, columns=VALIDATION_COLUMNS)
