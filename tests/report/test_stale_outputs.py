"""A run saved over another run's folder leaves none of the earlier run's files (issue 25): ``dsim run`` then
``dsim execute`` into one ``--out`` must not leave simulated ``links.csv`` and ``devices.csv`` beside measured
tables; files dsim never writes are kept."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import sim
from sim.report.save import RUN_FILES, save_run
from tests.helpers import scenario_dict


def test_a_later_save_removes_the_earlier_runs_files_only(tmp_path: Path) -> None:
    out = tmp_path / "run"
    simulated = sim.run(scenario_dict(2, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 1}))
    first = {p.name for p in save_run(simulated, out)}
    assert {"links.csv", "devices.csv"} <= first == RUN_FILES
    (out / "notes.txt").write_text("mine\n")  # the user's own files
    (out / "plot.png").write_text("mine\n")
    measured = dataclasses.replace(simulated, links=None, devices=None)  # what dsim execute saves
    second = {p.name for p in save_run(measured, out)}
    assert {p.name for p in out.iterdir()} == second | {"notes.txt", "plot.png"}
    assert not (out / "links.csv").exists() and not (out / "devices.csv").exists()
