"""Scenario files: validation errors are one line naming the field; units convert to SI on load."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sim.cli import main
from sim.config.load import load_scenario, parse_scenario
from sim.errors import UserError
from tests.helpers import scenario_dict

ROOT = Path(__file__).resolve().parents[2]


def _set(path: str, value):
    """A mutation that sets a dotted path (``devices.2.gflops``) in scenario data."""

    def mutate(data):
        *parents, last = path.split(".")
        node = data
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


_DELETE = object()

BAD = [
    ("unknown key", _set("colour", "red"), "scenario.yaml: colour: unknown key"),
    ("unknown nested key", _set("network.bandwith_mbps", 5), "network.bandwith_mbps: unknown key"),
    ("zero bandwidth", _set("network.bandwidth_mbps", 0), "network.bandwidth_mbps: must be >= 1e-06 (got 0)"),
    ("negative latency", _set("network.latency_ms", -1), "network.latency_ms: must be >= 0"),
    ("unknown source", _set("source", "phone"), "source: unknown device 'phone'"),
    ("unknown sink", _set("sink", "cloud"), "sink: unknown device 'cloud'"),
    ("negative gflops", _set("devices.2.gflops", -3), "devices[2].gflops: must be >= 1e-06 (got -3)"),
    ("missing model", _set("model", _DELETE), "model: required field is missing"),
    ("missing devices", _set("devices", _DELETE), "devices: required field is missing"),
    ("no devices", _set("devices", []), "devices: must not be empty"),
    ("duplicate device", _set("devices.1.name", "d0"), "devices[1].name: duplicate device name 'd0'"),
    ("bad format", _set("transfer.format", "zip"), "transfer.format: must be one of"),
    ("bad index width", _set("transfer.index_bits", 24), "transfer.index_bits: must be one of"),
    ("zero frames", _set("inputs.frames", 0), "inputs.frames: must be > 0"),
    ("string rate", _set("devices.0.gflops", "fast"), "devices[0].gflops: input should be a valid number"),
    ("bad input shape", _set("model.input_shape", [1, 32]), "model.input_shape: must be three positive"),
    ("prune amount 1", _set("prune", {"amount": 1.0}), "prune.amount: must be < 1"),
    ("unknown dataset", _set("inputs.dataset", "imagenet"), "inputs.dataset: must be one of"),
]


@pytest.mark.parametrize(("case", "mutate", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_scenario_gives_one_line_error(tmp_path, capsys, case, mutate, expected) -> None:
    data = copy.deepcopy(scenario_dict())
    mutate(data)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dsim: error: ")
    assert expected in err
    assert "Traceback" not in err
    assert not out.exists()  # refused before any work


def test_not_yaml_and_missing_file(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert main(["run", str(bad)]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "no such scenario file" in capsys.readouterr().err


def test_unknown_model_is_refused_in_one_line(tmp_path, capsys) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(scenario_dict(model={"name": "lenet6"})))
    assert main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.name: unknown model 'lenet6'" in err


def test_units_convert_to_si_once() -> None:
    sc = parse_scenario(
        scenario_dict(
            network={"bandwidth_mbps": 20, "latency_ms": 1.5}, devices=[{"name": "d0", "gflops": 2.5, "overhead_ms": 3}]
        )
    )
    assert sc.setup.network.bandwidth_bps == 20e6
    assert sc.setup.network.latency_s == 0.0015
    assert sc.setup.devices[0].flops_per_s == 2.5e9
    assert sc.setup.devices[0].overhead_s == 0.003


def test_bundled_quickstart_is_valid() -> None:
    sc = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    assert sc.device_names == ["cam", "d1", "d2", "d3"] and sc.network.bandwidth_mbps == 20


def test_schema_command_prints_json_schema(capsys) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False
    assert {"name", "model", "devices", "source", "sink"} <= set(schema["required"])


def test_python_dash_m_sim_works() -> None:
    done = subprocess.run([sys.executable, "-m", "sim", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("dsim ")


def test_parse_refuses_non_mapping() -> None:
    with pytest.raises(UserError, match="must be a mapping"):
        parse_scenario([1, 2])


@pytest.mark.parametrize(("section", "key"), [("devices.0", "gflops"), ("network", "latency_ms"), ("", "seed")])
def test_true_or_false_is_not_taken_for_a_number(section: str, key: str) -> None:
    data = scenario_dict()
    node = data
    for part in filter(None, section.split(".")):
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[key] = True
    where = f"{section.replace('.0', '[0]')}.{key}" if section else key
    with pytest.raises(UserError, match=rf"{re.escape(where)}: must be a number, not true"):
        parse_scenario(data)
