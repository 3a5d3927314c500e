"""Profiling a scenario on this machine (``dsim profile``, ``calibrate: true``): the model built, pruned and
partitioned as a run does, then every device's layer shards timed (:mod:`sim.model.profile`).

Example::

    >>> from sim.config.load import load
    >>> profile = profile_scenario(load("scenarios/profiled.yaml"), ProfileSettings(1, 3))  # doctest: +SKIP
    >>> [d.device for d in profile.devices]                                                  # doctest: +SKIP
    ['cam', 'd1']
"""

from __future__ import annotations

from collections.abc import Sequence

from sim.config.schema import DeviceSpec, Scenario
from sim.errors import UserError
from sim.experiment.pipeline import input_shape, prepare
from sim.model import data
from sim.model.profile import (
    CALIBRATE_SETTINGS,
    ProfileSettings,
    calibrated_devices,
    layer_inputs,
    machine,
    profile_device,
)
from sim.workload.profiles import ProfileFile

__all__ = ["ProfileSettings", "calibrate", "profile_scenario"]


def _rated(scenario: Scenario) -> Scenario:
    """The scenario with a stand-in rate (1 GFLOP/s) for devices without ``gflops`` (``calibrate: true``, or
    a ``profile:`` that may not exist yet): only a ``balanced`` partition reads rates, and it then splits as
    for equal devices."""
    devices = [
        d.model_copy(update={"gflops": 1.0, "calibrate": False, "profile": None}) if d.gflops is None else d
        for d in scenario.devices
    ]
    return scenario.model_copy(update={"devices": devices})


def profile_scenario(scenario: Scenario, settings: ProfileSettings, only: Sequence[str] = ()) -> ProfileFile:
    """Time the layer shards of every device (or of the devices named in ``only``) of ``scenario``."""
    names = scenario.device_names
    for name in only:
        if name not in names:
            raise UserError(f"--device: unknown device '{name}'; devices are {', '.join(names)}")
    prepared = prepare(_rated(scenario))
    inputs = scenario.inputs
    images = data.frame_batches(
        inputs.dataset, input_shape(scenario.model), 1, inputs.batch_size, scenario.seed, inputs.path
    )[0].images
    values = layer_inputs(prepared.graph, prepared.plan, images)
    devices = []
    for d, spec in enumerate(scenario.devices):
        if only and spec.name not in only:
            continue
        devices.append(
            profile_device(
                prepared.graph, prepared.plan, values, inputs.batch_size, d, spec.name, spec.threads or 1, settings
            )
        )
    return ProfileFile(
        scenario.name,
        scenario.model.name,
        inputs.batch_size,
        {"warmup": settings.warmup, "repeats": settings.repeats, "idle_gap_ms": settings.idle_gap_s * 1e3},
        machine(),
        tuple(devices),
    )


def calibrate(scenario: Scenario) -> list[DeviceSpec]:
    """The devices of ``scenario`` with every ``calibrate: true`` one profiled now (short settings) and given
    the fitted ``gflops`` and ``overhead_ms`` (:func:`sim.model.profile.calibrated_devices`)."""
    wanted = [d.name for d in scenario.devices if d.calibrate]
    return calibrated_devices(profile_scenario(scenario, CALIBRATE_SETTINGS, wanted), scenario.devices)
