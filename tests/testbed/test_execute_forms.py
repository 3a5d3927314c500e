"""``dsim execute`` and the split forms (docs/design.md §3b): a pipeline (whole layers) runs for real and equals the
unsplit model; rows and tiles are refused in one line until the testbed runs them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim.config.load import parse_scenario
from sim.errors import UserError
from sim.pipeline.prepare import prepare
from sim.testbed.execute import build_programs, execute, run_devices
from tests.helpers import scenario_dict


def _scenario(partition: dict[str, object], sink: str = "d0"):
    data = scenario_dict(2, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 2}, sink=sink)
    data["partition"] = partition
    return parse_scenario(data, origin="test")


def test_a_pipeline_runs_for_real_and_equals_the_unsplit_model() -> None:
    prep = prepare(_scenario({"strategy": "pipeline"}, sink="d1"))
    assert {int(o[0]) for o in prep.plan.partition.values()} == {0, 1}  # both stages are used
    (reports,) = run_devices(build_programs(prep), None, timeout_s=120.0, repeats=1)
    sink = next(r for r in reports if r.index == prep.workload.sink)
    for x, out in zip(prep.images or [], sink.outputs):
        with torch.no_grad():
            expected = prep.model(x).numpy()
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "partition", [{"strategy": "spatial"}, {"strategy": "spatial", "tiles": [2, 1], "fused": True}]
)
def test_rows_are_refused_in_one_line(partition: dict[str, object]) -> None:
    with pytest.raises(UserError, match=r"^partition: dsim execute runs filters and whole layers \(pipelines\); rows"):
        execute(_scenario(partition))
