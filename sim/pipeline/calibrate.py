"""Every device's rate known before a run: ``profile:`` devices read their profile's rate (torch-free);
``calibrate: true`` devices are profiled on this machine now (their layer shards, short settings).

:func:`profile_scenario` times every device's layer shards (``dsim profile``); :func:`calibrated` is the one
step every run, sweep and real run takes before it evaluates a scenario.

Example::

    >>> from sim.config.load import load
    >>> sc = calibrated(load("scenarios/quickstart.yaml"))  # doctest: +SKIP
    >>> [d.gflops for d in sc.devices]  # doctest: +SKIP
    [2.0, 2.0, 2.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sim.config.schema import Scenario
from sim.engine.assemble import device_profile, profiled_gflops
from sim.errors import UserError
from sim.workload.profiles import ProfileFile

if TYPE_CHECKING:
    from sim.pipeline.profile import ProfileSettings

__all__ = ["calibrated", "profile_scenario"]


def _profiled(scenario: Scenario) -> Scenario:
    """The scenario with every ``profile:`` device without ``gflops`` given its profile's rate
    (:func:`sim.engine.assemble.profiled_gflops`). Unchanged when no device needs it."""
    devices = list(scenario.devices)
    for i, d in enumerate(devices):
        if d.profile is not None and d.gflops is None:
            path = scenario.setup.paths.profile(d.name)
            gflops = profiled_gflops(device_profile(d, path), path or d.profile)  # type: ignore[arg-type]
            devices[i] = d.model_copy(update={"gflops": gflops})
    if devices == list(scenario.devices):
        return scenario
    return scenario.model_copy(update={"devices": devices})


def _rated_for_profiling(scenario: Scenario) -> Scenario:
    """The scenario with a stand-in rate (1 GFLOP/s) for devices without ``gflops`` (``calibrate: true``, or
    a ``profile:`` that may not exist yet): only a ``balanced`` partition reads rates, and it then splits as
    for equal devices."""
    devices = [
        d.model_copy(update={"gflops": 1.0, "calibrate": False, "profile": None}) if d.gflops is None else d
        for d in scenario.devices
    ]
    return scenario.model_copy(update={"devices": devices})


def profile_scenario(scenario: Scenario, settings: ProfileSettings, only: Sequence[str] = ()) -> ProfileFile:
    """Time the layer shards of every device (or of the devices named in ``only``) of ``scenario`` on this
    machine. A partition with rows-split layers is timed as its ``contiguous`` filters split: the rows
    tasks, not in the table, take the per-op fits."""
    from sim.model import data  # torch: only profiling builds the model
    from sim.model.partition import make_partition  # torch: only profiling builds the model
    from sim.pipeline.prepare import input_shape, make_plan, prepare  # torch: only profiling builds the model
    from sim.pipeline.profile import layer_inputs, machine, profile_device  # torch: only profiling times shards

    names = scenario.device_names
    for name in only:
        if name not in names:
            raise UserError(f"--device: unknown device '{name}'; devices are {', '.join(names)}")
    prepared = prepare(_rated_for_profiling(scenario))
    plan = prepared.plan
    if plan.spatial is not None:  # rows shards are not timed one by one: the per-op fits time them
        plan = make_plan(scenario, prepared.graph, make_partition(prepared.graph, "contiguous", len(names)))
    inputs = scenario.inputs
    images = data.frame_batches(
        inputs.dataset, input_shape(scenario.model), 1, inputs.batch_size, scenario.seed, scenario.setup.paths.dataset
    )[0].images
    values = layer_inputs(prepared.graph, plan, images)
    devices = []
    for d, spec in enumerate(scenario.devices):
        if only and spec.name not in only:
            continue
        devices.append(
            profile_device(prepared.graph, plan, values, inputs.batch_size, d, spec.name, spec.threads or 1, settings)
        )
    return ProfileFile(
        scenario.name,
        scenario.model.name,
        inputs.batch_size,
        {"warmup": settings.warmup, "repeats": settings.repeats, "idle_gap_ms": settings.idle_gap_s * 1e3},
        machine(),
        tuple(devices),
    )


def calibrated(scenario: Scenario) -> Scenario:
    """The scenario with every device's rate known: ``profile:`` devices without ``gflops`` take their
    profile's rate; every ``calibrate: true`` device is profiled on this machine now (its layer shards,
    short settings, spread printed to stderr) and takes the fit's rate and per-layer overhead as ``gflops``
    and ``overhead_ms``. Unchanged when no device needs it; torch is imported only for ``calibrate: true``."""
    scenario = _profiled(scenario)
    wanted = [d.name for d in scenario.devices if d.calibrate]
    if not wanted:
        return scenario
    from sim.pipeline.profile import CALIBRATE_SETTINGS, calibrated_devices  # torch: profiles this machine's shards

    devices = calibrated_devices(profile_scenario(scenario, CALIBRATE_SETTINGS, wanted), scenario.devices)
    return scenario.model_copy(update={"devices": devices})
