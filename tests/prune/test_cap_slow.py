"""The CaP claim on the CPU-sized protocol of scenarios/cap (slow: about 2 CPU-minutes; `make test-slow`).

At the same 25% kernel budget, CaP (admm_comm, lambda 10, line hop costs) sends at most half of the
elements x hops of one-shot magnitude kernel pruning on the line, loses at most 2 points of accuracy
against it, and what it still sends goes to nearer devices: its line/mesh traffic ratio is lower.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.config.load import load, parse_scenario
from sim.config.schema import Scenario
from sim.pipeline.evaluate import evaluate
from sim.pipeline.prepare import prepare

ROOT = Path(__file__).resolve().parents[2]


def on_mesh(sc: Scenario) -> Scenario:
    data = sc.resolved()
    data["network"]["topology"] = "mesh"
    return parse_scenario(data)


def line_and_mesh(name: str) -> tuple[float, int, int]:
    sc = load(ROOT / "scenarios" / "cap" / f"{name}.yaml")
    built = prepare(sc).built
    line = evaluate(sc, built).summary
    mesh = evaluate(on_mesh(sc), built).summary  # the same pruned model and messages, every pair one hop
    return line["accuracy"], line["elements_hops"], mesh["elements_hops"]


@pytest.mark.slow
def test_cap_halves_magnitude_elements_hops_on_the_line_at_the_same_accuracy() -> None:
    mag_acc, mag_line, mag_mesh = line_and_mesh("02-magnitude-line")
    cap_acc, cap_line, cap_mesh = line_and_mesh("04-cap-l10-line")
    assert cap_line <= 0.5 * mag_line
    assert cap_acc >= mag_acc - 0.02
    assert cap_line / cap_mesh < mag_line / mag_mesh
