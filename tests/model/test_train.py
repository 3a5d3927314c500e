"""Training, fine-tuning with fixed masks, `dsim train` checkpoints and accuracy in the summary."""

from __future__ import annotations

import json

import torch
import yaml

from sim.cli import main
from sim.config.schema import PruneSpec
from sim.model import data, train
from sim.model.flowgraph import FlowGraph
from sim.prune import structured as prune
from tests.helpers import scenario_dict


def test_lenet_on_digits_reaches_90_percent_and_is_deterministic(lenet) -> None:
    train_split, test_split = data.digits((1, 32, 32), seed=0)
    state = torch.get_rng_state()
    model = train.fit(lenet(), train_split, epochs=8, lr=3e-3, seed=0, progress=False)
    assert torch.equal(torch.get_rng_state(), state)  # shuffling used its own generator
    acc = train.accuracy(model, test_split)
    assert acc >= 0.90, acc
    again = train.fit(lenet(), train_split, epochs=8, lr=3e-3, seed=0, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert 0.0 <= train.accuracy(lenet(), test_split) < 0.5  # untrained: near chance, so the bar means something


def test_finetuning_keeps_pruned_weights_at_zero(lenet) -> None:
    train_split, _ = data.digits((1, 32, 32), seed=0)
    model = lenet()
    graph = FlowGraph.trace(model, torch.zeros(1, 1, 32, 32))
    keep = prune.apply(model, graph, PruneSpec(method="ln_structured", amount=0.5), seed=0)
    zero_rows = [i for i in range(16) if i not in keep["conv2"]]
    before = model.fc1.weight.detach().clone()
    train.fit(model, train_split, epochs=1, lr=1e-2, seed=0, progress=False)
    assert not torch.equal(model.fc1.weight, before)  # it did train
    prune.remove_masks(model)
    assert (model.conv2.weight[zero_rows] == 0).all() and (model.conv2.bias[zero_rows] == 0).all()
    assert (model.conv2.weight[keep["conv2"]] != 0).any()


def test_dsim_train_writes_a_checkpoint_that_scenarios_load(tmp_path, capsys) -> None:
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(scenario_dict(model={"name": "lenet5", "lr": 3e-3})))
    ckpt = tmp_path / "ck" / "lenet.pt"
    assert main(["train", str(scen), "--epochs", "6", "--out", str(ckpt)]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and ckpt.is_file()
    assert not list(ckpt.parent.glob(".*tmp*"))  # written atomically, no temporary left
    run = tmp_path / "run.yaml"
    run.write_text(yaml.safe_dump(scenario_dict(model={"name": "lenet5", "checkpoint": str(ckpt)})))
    assert main(["run", str(run), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    reported = float(printed.split("test accuracy")[1].split("%")[0]) / 100
    assert abs(summary["accuracy"] - reported) < 1e-4 and summary["accuracy"] >= 0.9


def test_synthetic_inputs_report_no_accuracy_and_refuse_finetuning(tmp_path, capsys) -> None:
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(scenario_dict(inputs={"dataset": "synthetic"})))
    assert main(["run", str(scen), "--out", str(tmp_path / "o")]) == 0
    assert "accuracy" not in json.loads((tmp_path / "o" / "summary.json").read_text())
    scen.write_text(
        yaml.safe_dump(
            scenario_dict(inputs={"dataset": "synthetic"}, prune={"method": "ln_structured", "finetune_epochs": 1})
        )
    )
    assert main(["run", str(scen)]) == 2
    assert "prune.finetune_epochs: dataset 'synthetic' has no labels" in capsys.readouterr().err
