"""User mistakes through the real CLI: each gives exit status 2 and exactly one stderr line
``dsim: error: ...`` naming what is wrong, never a traceback, and leaves no partial or temporary files.

Every case here once gave a traceback or an unclear message; all use LeNet-5 and fail before or right after
a one-frame run, so the file stays fast.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from sim.cli import main
from tests.helpers import scenario_dict

PROGRESS_BAR = re.compile(r"\[\d\d:\d\d[<,]")  # tqdm's "[00:00<00:01, ...]" or "[00:00, ?point/s]"


def _write(tmp_path: Path, data: Any, name: str = "scenario.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _scenario(tmp_path: Path, **sections: Any) -> str:
    """A LeNet-5 scenario file with ``sections`` merged into its top-level sections."""
    data = copy.deepcopy(scenario_dict())
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return _write(tmp_path, data)


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], *words: str) -> str:
    """Run ``dsim argv``; check the one-line error (progress bars aside) and that it holds every one of ``words``."""
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and not PROGRESS_BAR.search(line)]
    assert len(lines) == 1 and lines[0].startswith("dsim: error: "), err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def _no_temp_files(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if ".tmp" in p.name], list(folder.rglob("*"))


# --- scenario types: plain words instead of pydantic's, and the value that was given -----------------


@pytest.mark.parametrize(
    ("sections", "words"),
    [
        ({"model": "lenet5"}, ["model: must be a mapping of keys", "not a string ('lenet5')"]),
        ({"network": None}, ["network: must be a mapping of keys", "not null"]),
        ({"devices": {"d0": {"gflops": 1}}}, ["devices: must be a list", "not a mapping"]),
        ({"model": {"input_shape": "1x32x32"}}, ["model.input_shape: must be a list like [1, 32, 32]"]),
        (
            {"devices": [{"name": "d0", "gflops": "2 GFLOPS"}]},
            ["devices[0].gflops", "without a unit", "(got '2 GFLOPS')"],
        ),
        ({"inputs": {"batch_size": 1.5}}, ["inputs.batch_size: must be a whole number (got 1.5)"]),
        ({"source": 3}, ["source: must be a string (got 3)"]),
        ({"network": {"latency_ms": -1}}, ["network.latency_ms: must be >= 0 (got -1)"]),
        ({"prune": {"method": "ln_structured", "amount": 1.0}}, ["prune.amount: must be < 1 (got 1.0)"]),
        ({"prune": {"method": "ln_structured", "layers": ["conv1"]}}, ["prune.layers: must be a mapping"]),
    ],
    ids=[
        "model-str",
        "network-null",
        "devices-map",
        "shape-str",
        "gflops-unit",
        "batch-float",
        "source-int",
        "latency-neg",
        "amount-1",
        "layers-list",
    ],
)
def test_scenario_type_mistakes(tmp_path, capsys, sections, words) -> None:
    out = tmp_path / "out"
    _fails(capsys, ["run", _scenario(tmp_path, **sections), "--out", str(out)], *words)
    assert not out.exists()


def test_partition_strategy_and_file_names_the_field_once(tmp_path, capsys) -> None:
    line = _fails(
        capsys,
        ["run", _scenario(tmp_path, partition={"strategy": "random", "file": "p.json"})],
        "partition: give either strategy or file, not both",
    )
    assert "partition: partition:" not in line


# --- partition files -----------------------------------------------------------------------------------


def _lenet_layers(**override: Any) -> dict[str, Any]:
    layers: dict[str, Any] = {
        "conv1": ["d0"] * 6,
        "conv2": ["d0"] * 16,
        "fc1": ["d0"] * 120,
        "fc2": ["d0"] * 84,
        "fc3": ["d0"] * 10,
    }
    return {"model": "lenet5", "layers": {**layers, **override}}


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\xff\xfe\x00 not utf-8", ["is not UTF-8 text"]),
        (json.dumps(_lenet_layers(conv1=[["d0"]] * 6)).encode(), ["layer 'conv1' names unknown device"]),
        (
            json.dumps(_lenet_layers(conv1="d0")).encode(),
            ["layer 'conv1' must be a list of 6 device names", "not a str"],
        ),
    ],
    ids=["binary", "nested-list", "string-layer"],
)
def test_bad_partition_file(tmp_path, capsys, content, words) -> None:
    part = tmp_path / "p.json"
    part.write_bytes(content)
    out = tmp_path / "out"
    scenario = _write(tmp_path, scenario_dict(partition={"file": str(part)}))
    _fails(capsys, ["run", scenario, "--out", str(out)], "partition.file", *words)
    assert not out.exists()


def test_partition_negative_seed(tmp_path, capsys) -> None:
    out = tmp_path / "p.json"
    _fails(
        capsys,
        ["partition", _scenario(tmp_path), "--strategy", "random", "--seed", "-3", "--out", str(out)],
        "--seed: must be >= 0 (got -3)",
    )
    assert not out.exists()


# --- checkpoints ---------------------------------------------------------------------------------------


def test_checkpoint_that_is_not_a_state_dict(tmp_path, capsys) -> None:
    ckpt = tmp_path / "model.pt"
    ckpt.write_text("not a checkpoint")
    _fails(
        capsys,
        ["describe", _scenario(tmp_path, model={"checkpoint": str(ckpt)})],
        "model.checkpoint",
        "is not a state_dict saved by torch.save",
    )


def test_checkpoint_of_another_model_names_the_keys(tmp_path, capsys) -> None:
    ckpt = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(3, 4).state_dict(), ckpt)
    _fails(
        capsys,
        ["describe", _scenario(tmp_path, model={"checkpoint": str(ckpt)})],
        "does not fit model 'lenet5'",
        "Missing key(s) in state_dict",
        "conv1.weight",
    )


def test_checkpoint_that_is_a_folder(tmp_path, capsys) -> None:
    _fails(
        capsys,
        ["describe", _scenario(tmp_path, model={"checkpoint": str(tmp_path)})],
        "model.checkpoint",
        "is a folder, not a file",
    )


# --- --out ---------------------------------------------------------------------------------------------


def test_run_out_is_an_existing_file(tmp_path, capsys) -> None:
    out = tmp_path / "taken"
    out.write_text("x")
    _fails(capsys, ["run", _scenario(tmp_path), "--out", str(out)], "--out", "is an existing file")
    assert out.read_text() == "x"


def test_out_below_a_file(tmp_path, capsys) -> None:
    (tmp_path / "taken").write_text("x")
    for argv in (
        ["run", _scenario(tmp_path), "--out", str(tmp_path / "taken" / "sub")],
        ["compare", _scenario(tmp_path), "--out", str(tmp_path / "taken" / "sub")],
        ["sweep", _scenario(tmp_path), "--set", "seed=0", "--out", str(tmp_path / "taken" / "sub")],
        ["partition", _scenario(tmp_path), "--strategy", "contiguous", "--out", str(tmp_path / "taken" / "p.json")],
    ):
        _fails(capsys, argv, "--out", "is a file")
    _no_temp_files(tmp_path)


def test_file_outputs_that_are_folders(tmp_path, capsys) -> None:
    _fails(
        capsys,
        ["partition", _scenario(tmp_path), "--strategy", "contiguous", "--out", str(tmp_path)],
        "--out",
        "is a directory; give a file name",
    )
    _fails(
        capsys,
        ["train", _scenario(tmp_path), "--epochs", "1", "--out", str(tmp_path)],
        "--out",
        "is a directory; give a file name",
    )


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc (a folder no one can write in)")
def test_run_out_in_an_unwritable_place(tmp_path, capsys) -> None:
    _fails(
        capsys,
        ["run", _scenario(tmp_path), "--out", "/proc/dsim-test-out"],
        "--out /proc/dsim-test-out",
        "cannot write there",
    )


# --- sweep arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--set", "network.bandwidth_mbps=1,"], ["a value is empty"]),
        (["--logspace", "network.bandwidth_mbps=100:1:3"], ["LO (100) is above HI (1)"]),
        (["--logspace", "network.bandwidth_mbps=1:inf:3"], ["expected KEY=LO:HI:N with finite"]),
        (["--logspace", "network.bandwidth_mbps=nan:10:3"], ["expected KEY=LO:HI:N with finite"]),
        (["--logspace", "network.bandwidth_mbps=1:10:100000000000"], ["too many", "at most 10000"]),
        (["--variant", "a:prune.methd=ln_structured"], ["--variant a: prune.methd: no such scenario field"]),
    ],
    ids=["empty-value", "lo-above-hi", "inf", "nan", "huge-n", "variant-key"],
)
def test_bad_sweep_arguments(tmp_path, capsys, flags, words) -> None:
    out = tmp_path / "out"
    _fails(capsys, ["sweep", _scenario(tmp_path), "--out", str(out), "--jobs", "1", *flags], *words)
    assert not out.exists()


def test_sweep_whose_every_point_fails(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    _fails(
        capsys,
        ["sweep", _scenario(tmp_path), "--set", "network.bandwidth_mbps=-1,0", "--out", str(out), "--jobs", "1"],
        "all 2 sweep points failed",
        "network.bandwidth_mbps: must be >= 1e-06",
    )
    assert not out.exists()  # no point has a result: nothing is written (an earlier sweep.csv would stay)


# --- plot ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({"sweep.csv": ""}, ["sweep.csv: not a table written by dsim", "EmptyDataError"]),
        ({"sweep.csv": 'point,network.bandwidth_mbps,error\n0,1,"bad value"\n'}, ["no successful sweep points"]),
        ({"comparison.csv": "x\n1\n"}, ["comparison.csv: no column 'latency_compute_s'"]),
        ({"transfers.csv": "x\n1\n", "compute.csv": "y\n2\n"}, ["no column", "not a table written by dsim"]),
    ],
    ids=["empty-sweep", "all-failed-sweep", "foreign-comparison", "foreign-run"],
)
def test_plot_foreign_tables(tmp_path, capsys, files, words) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    _fails(capsys, ["plot", str(tmp_path)], *words)
    assert not list(tmp_path.glob("*.png"))
    _no_temp_files(tmp_path)


def test_plot_missing_folder_and_file(tmp_path, capsys) -> None:
    _fails(capsys, ["plot", str(tmp_path / "nope")], "no such results folder")
    (tmp_path / "file").write_text("x")
    _fails(capsys, ["plot", str(tmp_path / "file")], "it is a file, not a results folder")


# --- argparse ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["runn", "x.yaml"], ["run", "x.yaml", "--outt", "y"], [], ["train", "x.yaml", "--epochs", "two", "--out", "m.pt"]],
)
def test_usage_errors_exit_2_without_traceback(capsys, argv) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "error:" in err and "Traceback" not in err
    assert err.splitlines()[0].startswith("usage: dsim")


def test_no_output_left_after_refused_scenarios(tmp_path, capsys) -> None:
    """A refused run creates neither its --out folder nor temporary files beside it."""
    out = tmp_path / "out"
    _fails(capsys, ["run", _scenario(tmp_path, model={"name": "lenet"}), "--out", str(out)], "model.name")
    assert not out.exists()
    _no_temp_files(tmp_path)
    assert os.listdir(tmp_path) == ["scenario.yaml"]
