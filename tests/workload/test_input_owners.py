"""Image channels spread over devices (``inputs.owners``): one camera per colour channel, say."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from sim.config.load import load
from sim.errors import UserError
from sim.model import partition
from sim.model import shards as split
from sim.model.flowgraph import FlowGraph
from sim.model.zoo import build_model
from sim.pipeline.evaluate import evaluate
from sim.pipeline.prepare import prepare
from sim.workload.plan import plan_workload
from tests.helpers import scenario_dict

F32 = 4


def test_each_owner_sends_its_channel_to_every_device_that_reads_it() -> None:
    # VGG-11's first conv is dense and every device owns some of its 64 filters, so each of the three
    # colour channels (32x32 floats) goes from its owner to the other three devices: 9 messages of 4096 B.
    scenario = load(
        scenario_dict(4, model={"name": "vgg11"}, inputs={"dataset": "synthetic", "owners": ["d0", "d1", "d2"]})
    )
    result = evaluate(scenario, prepare(scenario).built)
    inputs = result.transfers[result.transfers["layer"] == "input"]
    got = Counter(zip(inputs["src"], inputs["dst"], inputs["bytes"]))
    expected = Counter({(f"d{i}", f"d{j}", 32 * 32 * F32): 1 for i in range(3) for j in range(4) if i != j})
    assert got == expected
    assert result.summary["latency_s"] > 0


def test_split_execution_with_spread_inputs_matches_the_model() -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_model("vgg11").eval()
        images = torch.rand(1, 3, 32, 32)
    graph = FlowGraph.trace(model, images)
    parts = partition.make_partition(graph, "random", 4, seed=2)
    for exchange in ("inputs", "partial_sums"):
        plan = plan_workload(graph, parts, 4, source=0, sink=3, exchange=exchange, input_owner=[2, 0, 1])
        with torch.no_grad():
            torch.testing.assert_close(split.execute(graph, plan, images), model(images), rtol=1e-5, atol=1e-5)


def test_owners_must_name_devices_and_match_the_channels() -> None:
    with pytest.raises(UserError, match=r"inputs.owners\[1\]: unknown device 'cam9'"):
        load(scenario_dict(inputs={"dataset": "digits", "owners": ["d0", "cam9"]}))
    scenario = load(scenario_dict(inputs={"dataset": "digits", "owners": ["d0", "d1"]}))
    with pytest.raises(UserError, match=r"inputs\.owners: has 2 entries; the model input has 1 channels"):
        prepare(scenario)
