"""Device programs of plans with rows (docs/design.md §3b) run in one process, one thread per device, with
an in-memory link: a padded, strided residual model (ResNet-18 at 1/8 width on 16x16 images) in row bands,
a 2x2 tile grid, fused tiles and a hybrid equals the unsplit model, padded borders included, and every
payload has the elements the simulated workload's message has; each device holds the weights the
workload's ``weights_bytes`` counts. (The real runs over TCP are in
``test_execute_forms.py``.)"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sim.config.load import parse_scenario
from sim.model.partition import contiguous_split, save_partition, spatial_split
from sim.pipeline.prepare import Prepared, prepare, trace_model
from sim.testbed.compile import build_programs
from sim.testbed.interpreter import Interpreter
from sim.testbed.program import DeviceProgram, DeviceReport, MessageSpec
from sim.workload.types import Split
from tests.helpers import scenario_dict

MODEL = {"name": "resnet18", "input_shape": [3, 16, 16], "width": 0.125}


class _Memory:
    """The messages of one run, kept by workload index; ``elements`` counts each payload's entries."""

    def __init__(self) -> None:
        self.values: dict[int, torch.Tensor] = {}
        self.elements: dict[int, int] = {}
        self.cond = threading.Condition()

    def link(self) -> Any:
        memory = self

        class Link:
            def send(self, m: MessageSpec, matrix: np.ndarray) -> None:
                value = torch.from_numpy(matrix.copy()).reshape(-1, len(m.channels), *m.per_channel)
                with memory.cond:
                    memory.values[m.k], memory.elements[m.k] = value, matrix.size
                    memory.cond.notify_all()

            def receive(self, ms: Sequence[MessageSpec]) -> list[torch.Tensor]:
                with memory.cond:
                    assert memory.cond.wait_for(lambda: all(m.k in memory.values for m in ms), timeout=30)
                    return [memory.values[m.k] for m in ms]

            def merged(self, ks: Sequence[int], cpu_s: float) -> None:
                pass

            def drain(self) -> None:
                pass

        return Link()


def _run(prep: Prepared, programs: list[DeviceProgram]) -> tuple[list[DeviceReport], _Memory]:
    memory = _Memory()
    reports = [DeviceReport(p.index) for p in programs]
    errors: list[BaseException] = []

    def device(k: int) -> None:
        try:
            torch.set_grad_enabled(False)  # per thread, as in a device process
            interp = Interpreter(programs[k])
            for f in range(programs[k].frames):
                interp.frame(f, memory.link(), reports[k], arrival=None, keep_values=False)
        except BaseException as exc:  # surfaced in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=device, args=(k,)) for k in range(len(programs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return reports, memory


def _prepared(partition: dict[str, Any]) -> Prepared:
    data = scenario_dict(3, inputs={"dataset": "synthetic", "batch_size": 2, "frames": 1}, sink="d1")
    data["model"], data["partition"] = MODEL, partition
    return prepare(parse_scenario(data, origin="test"))


def _equal_to_unsplit(prep: Prepared) -> None:
    programs = build_programs(prep)
    for program in programs:  # each holds the weights the workload counts: a rows-split layer in full
        shards = program.shards.values()
        held = sum(s.weight.numel() + (0 if s.bias is None else s.bias.numel()) for s in shards)
        assert 4 * held == prep.workload.weights_bytes[program.index]
    reports, memory = _run(prep, programs)
    sink = reports[prep.workload.sink]
    for x, out in zip(prep.images or [], sink.outputs):
        with torch.no_grad():
            np.testing.assert_allclose(out, prep.model(x).numpy(), rtol=1e-4, atol=1e-5)
    assert memory.elements == {k: m.elements for k, m in enumerate(prep.workload.messages)}


@pytest.mark.parametrize(
    "partition",
    [
        {"strategy": "spatial"},
        {"strategy": "spatial", "tiles": [2, 2]},
        {"strategy": "spatial", "tiles": [2, 2], "fused": True},
    ],
    ids=["rows", "tiles", "fused tiles"],
)
def test_padded_rows_and_tiles_equal_the_unsplit_model(partition: dict[str, Any]) -> None:
    _equal_to_unsplit(_prepared(partition))


def test_a_hybrid_equals_the_unsplit_model(tmp_path: Path) -> None:
    # the first three convs in fused rows, the others by filters, the classifier whole on the sink
    prep = _prepared({"strategy": "contiguous"})
    graph = trace_model(prep.scenario)
    spatial = spatial_split(graph, 3, sink=1, fused=True)
    convs = [layer.name for layer in graph.layers() if layer.op == "conv"]
    filters = {
        layer.name: contiguous_split(layer.out_channels, 3)
        if layer.op == "conv" and layer.name not in convs[:3]
        else spatial.filters[layer.name]
        for layer in graph.layers()
    }
    rows = {name: spatial.rows[name] for name in convs[:3]}
    path = tmp_path / "hybrid.json"
    save_partition(path, "resnet18", ["d0", "d1", "d2"], Split(filters, rows, spatial.whole, fused=True))
    hybrid = _prepared({"file": str(path)})
    assert {m.positions is not None for m in hybrid.plan.messages} == {True, False}  # halos and channels
    _equal_to_unsplit(hybrid)
