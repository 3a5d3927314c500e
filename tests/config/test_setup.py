"""The scenario's SI records (sim.config.setup), renamed keys, physical ranges, bounded reads, and the
checks that run before any work, so a mistake costs no training or partial output."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from sim.cli import main
from sim.config import setup as config_setup
from sim.config.load import load_scenario, parse_scenario, with_network
from sim.config.overrides import sweep_points
from sim.errors import UserError
from sim.model import zoo
from sim.pipeline.run import run
from tests.helpers import scenario_dict

ROOT = Path(__file__).resolve().parents[2]


def _refused(data: dict, *fragments: str) -> str:
    with pytest.raises(UserError) as err:
        parse_scenario(data)
    text = str(err.value)
    assert "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, text
    return text


# --- SI records ----------------------------------------------------------------------------------------


def test_setup_converts_every_unit_by_hand() -> None:
    devices = [
        {"name": "d0", "gflops": 2.5, "overhead_ms": 3, "mem_bandwidth_GBps": 12.8},
        {"name": "d1", "gflops": 1},
    ]
    links = [{"a": "d0", "b": "d1", "up_mbps": 5, "latency_ms": 4, "duplex": "half"}]
    network = {"bandwidth_mbps": 20, "latency_ms": 1.5, "chunk_kB": 1.5, "access_overhead_ms": 0.25, "links": links}
    sc = parse_scenario(scenario_dict(2, devices=devices, network=network, inputs={"fps": 40}))
    net = sc.setup.network
    assert (net.bandwidth_bps, net.latency_s, net.chunk_bytes, net.access_overhead_s) == (20e6, 0.0015, 1500, 0.00025)
    (link,) = net.links
    assert (link.up_bps, link.down_bps, link.latency_s, link.duplex) == (5e6, 20e6, 0.004, "half")
    d0, d1 = sc.setup.devices
    assert (d0.flops_per_s, d0.overhead_s, d0.mem_bandwidth_Bps) == (2.5e9, 0.003, 12.8e9)
    assert (d1.flops_per_s, d1.overhead_s, d1.mem_bandwidth_Bps) == (1e9, 0.0, None)
    assert sc.setup.interval_s == 1 / 40


def test_graphml_is_read_once_for_a_whole_run(tmp_path, monkeypatch) -> None:
    graphml = tmp_path / "net.graphml"
    graphml.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
        '<key id="bw" for="edge" attr.name="bandwidth_mbps" attr.type="double"/>'
        '<graph edgedefault="undirected"><node id="d0"/><node id="d1"/>'
        '<edge source="d0" target="d1"><data key="bw">5</data></edge></graph></graphml>'
    )
    reads = []
    real = config_setup.read_limited
    monkeypatch.setattr(config_setup, "read_limited", lambda *a: reads.append(a) or real(*a))
    data = scenario_dict(2, network={"topology": "custom", "graphml": str(graphml)}, sink="d1")
    data["inputs"]["dataset"] = "synthetic"
    result = run(data)
    assert len(reads) == 1
    assert result.summary["links"][0]["link"] == "d0->d1"


def test_old_key_names_are_aliases_with_a_note(capsys) -> None:
    old = parse_scenario(
        scenario_dict(1, devices=[{"name": "d0", "gflops": 1, "mem_bandwidth_gbps": 7}], network={"chunk_kb": 2}),
        origin="old.yaml",
    )
    new = parse_scenario(
        scenario_dict(1, devices=[{"name": "d0", "gflops": 1, "mem_bandwidth_GBps": 7}], network={"chunk_kB": 2})
    )
    assert old.setup == new.setup and old.resolved() == new.resolved()
    err = capsys.readouterr().err.splitlines()
    assert "dsim: old.yaml: note: mem_bandwidth_gbps is deprecated; write mem_bandwidth_GBps (same number)" in err
    assert "dsim: old.yaml: note: chunk_kb is deprecated; write chunk_kB (same number)" in err
    _refused(scenario_dict(1, network={"chunk_kb": 2, "chunk_kB": 2}), "network: chunk_kb: give chunk_kB")


def test_sweep_accepts_an_old_key() -> None:
    points = sweep_points(scenario_dict(1), {"network.chunk_kb": [1, 2]})
    assert [p[1].setup.network.chunk_bytes for p in points] == [1000, 2000]


# --- class 1: physical ranges --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("network", "latency_ms", math.inf),
        ("network", "bandwidth_mbps", 5e-324),
        ("network", "access_overhead_ms", math.nan),
        ("network", "chunk_kB", 1e306),
        ("network", "chunk_kB", math.inf),
        ("inputs", "interval_ms", math.inf),
        ("inputs", "fps", 5e-324),
        ("model", "lr", 1e39),
        ("seed", None, 2**64),
    ],
)
def test_non_finite_and_extreme_quantities_are_refused_by_name(section, key, value) -> None:
    data = scenario_dict(2)
    if key is None:
        data[section] = value
        field = section
    else:
        data.setdefault(section, {})[key] = value
        field = f"{section}.{key}"
    _refused(data, f"{field}: must be")


@pytest.mark.parametrize(("key", "value"), [("gflops", math.inf), ("gflops", 5e-324), ("overhead_ms", math.inf)])
def test_device_quantities_are_refused_by_name(key, value) -> None:
    _refused(scenario_dict(1, devices=[{"name": "d0", "gflops": 1, key: value}]), f"devices[0].{key}: must be")


def test_link_quantities_are_refused_by_name() -> None:
    links = [{"a": "d0", "b": "d1", "latency_ms": math.inf}]
    _refused(scenario_dict(2, network={"links": links}), "network.links[0].latency_ms: must be a finite number")


# --- class 2: files read with limits -------------------------------------------------------------------


def test_partition_file_from_dev_zero_is_refused_without_reading_it() -> None:
    with pytest.raises(UserError, match=r"^partition.file: /dev/zero is not a regular file$"):
        run(scenario_dict(2, partition={"file": "/dev/zero"}))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"name: x\n# caf\xe9\n", "is not UTF-8 text"),
        (b"name: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested more than 64 levels deep"),
        (b"name: x\nseed: " + b"7" * 5000 + b"\n", "a number has more than 4300 digits"),
        (b"#" * (2**20 + 1), "is larger than 1048576 bytes"),
    ],
    ids=["latin1", "nested", "digits", "huge"],
)
def test_bad_scenario_files_are_one_line_errors(tmp_path, content, words) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        load_scenario(path)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_graphml_edge_attribute_named_like_an_end_is_refused(tmp_path) -> None:
    graphml = tmp_path / "net.graphml"
    graphml.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
        '<key id="k" for="edge" attr.name="a" attr.type="string"/>'
        '<graph edgedefault="undirected"><node id="d0"/><node id="d1"/>'
        '<edge source="d0" target="d1"><data key="k">x</data></edge></graph></graphml>'
    )
    _refused(
        scenario_dict(2, network={"topology": "custom", "graphml": str(graphml)}),
        "network.graphml: edge d0-d1: attribute 'a' is not a link field",
    )


def test_checkpoint_full_of_nan_is_refused(tmp_path) -> None:
    state = zoo.build_model("lenet5").state_dict()
    state["fc1.weight"].fill_(math.nan)
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(
        UserError, match=r"^model.checkpoint: .*nan.pt holds NaN or infinite values \(in 'fc1.weight'\)"
    ):
        run(
            scenario_dict(
                2, model={"name": "lenet5", "input_shape": [1, 32, 32], "checkpoint": str(tmp_path / "nan.pt")}
            )
        )


# --- class 3: checks before training -------------------------------------------------------------------


def test_input_shape_is_checked_before_training() -> None:
    model = {"name": "lenet5", "input_shape": [1, 28, 28], "train_epochs": 15}  # LeNet's linear layer wants 32x32
    with pytest.raises(UserError, match=r"^model.input_shape: the model fails on input of shape \[1, 28, 28\]"):
        run(scenario_dict(2, model=model))


def test_too_few_classes_are_refused_before_training() -> None:
    model = {"name": "lenet5", "input_shape": [1, 32, 32], "train_epochs": 15, "num_classes": 5}
    with pytest.raises(UserError, match=r"^model.num_classes: the model gives 5 class scores but the dataset has 10"):
        run(scenario_dict(2, model=model))


def test_a_model_with_no_parameters_is_not_trained(monkeypatch) -> None:
    no_parameters = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d((2, 5)), torch.nn.Flatten())  # 10 scores
    monkeypatch.setattr(zoo, "_build_user_model", lambda spec, n: no_parameters)
    model = {"name": "pkg.mod:factory", "input_shape": [1, 32, 32], "train_epochs": 1}
    with pytest.raises(UserError, match=r"^model.train_epochs: the model has no trainable parameters; set it to 0$"):
        run(scenario_dict(1, model=model))


# --- class 4: a user model cannot end the process ------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    ["import sys\nsys.exit(0)", "raise KeyboardInterrupt", "raise SystemExit(3)"],
    ids=["sys.exit", "KeyboardInterrupt", "SystemExit"],
)
@pytest.mark.parametrize("where", ["import", "factory"])
def test_user_model_that_exits_gives_a_one_line_error(tmp_path, monkeypatch, capsys, body, where) -> None:
    name = f"exiting_{where}_{abs(hash(body))}"
    indented = body.replace("\n", "\n    ")
    code = f"{body}\n" if where == "import" else f"def factory():\n    {indented}\n"
    (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = scenario_dict(1, model={"name": f"{name}:factory", "input_shape": [1, 32, 32]})
    out = tmp_path / "out"
    assert main(["run", _write(tmp_path, data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dsim: error: model.name: ") and err.count("\n") == 1, err
    assert not out.exists()


def _write(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


# --- relative paths ------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_scenario_folder(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # not the project folder: partitions/ is not here
    out = tmp_path / "out"
    assert main(["run", str(ROOT / "scenarios" / "partition-file.yaml"), "--out", str(out)]) == 0
    assert (out / "summary.json").is_file()
    sc = load_scenario(ROOT / "scenarios" / "custom.yaml")
    assert sc.setup.paths.graphml == ROOT / "scenarios" / "custom.graphml"
    assert sc.resolved()["network"]["graphml"] == "custom.graphml"  # the summary keeps what the author wrote


def test_sweeping_a_preset_still_fills_its_figures() -> None:
    data = scenario_dict(1, devices=[{"name": "d0", "preset": "rpi4", "mem_bandwidth_gbps": 5}])
    points = sweep_points(data, {"devices.0.preset": ["rpi4", "phone"]})
    assert [p[1].devices[0].gflops for p in points] == [8.0, 899.0]  # presets.py: rpi4 8.0, phone 899.0
    assert [p[1].devices[0].mem_bandwidth_GBps for p in points] == [5, 5]  # the device's own value wins


def test_a_scenario_made_without_load_gets_its_setup_in_load() -> None:
    from sim.config.load import load
    from sim.config.schema import Scenario

    bare = Scenario.model_validate(scenario_dict(2, network={"bandwidth_mbps": 5}))
    with pytest.raises(RuntimeError, match="has no setup"):
        bare.setup  # noqa: B018
    assert load(bare).setup.network.bandwidth_bps == 5e6


def test_profile_and_save_to_resolve_against_the_scenario_folder(tmp_path, monkeypatch, capsys) -> None:
    from sim.workload.profiles import write_profile
    from tests.pipeline.test_profile import _profile  # a hand-made profile: conv 1e-9 s/FLOP, i.e. 1 GFLOP/s

    folder, elsewhere = tmp_path / "scenario", tmp_path / "elsewhere"
    (folder / "profiles").mkdir(parents=True)
    elsewhere.mkdir()
    write_profile(folder / "profiles" / "p.json", _profile(("d1",)))
    data = scenario_dict(2, partition={"save_to": "parts/final.json"})
    data["devices"][1] = {"name": "d1", "profile": "profiles/p.json"}
    monkeypatch.chdir(elsewhere)  # relative paths must not resolve here
    path = folder / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    sc = load_scenario(path)
    assert sc.setup.paths.profile("d1") == folder / "profiles" / "p.json"
    assert sc.setup.paths.profile("d0") is None
    assert sc.setup.paths.save_to == folder / "parts" / "final.json"
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "summary.json").is_file()
    assert not (elsewhere / "profiles").exists() and not (elsewhere / "parts").exists()


def test_a_profile_from_dev_zero_is_refused_without_reading_it() -> None:
    data = scenario_dict(2)
    data["devices"][1] = {"name": "d1", "profile": "/dev/zero"}
    with pytest.raises(UserError, match=r"^profile: /dev/zero is not a regular file$"):
        run(data)


@pytest.mark.parametrize(
    ("where", "value", "field"),
    [
        (("prune", "admm", "epochs"), 1001, "prune.admm.epochs: must be <= 1000"),
        (("prune", "admm", "epochs"), 0, "prune.admm.epochs: must be >= 1"),
        (("prune", "admm", "rho"), 1e300, "prune.admm.rho: must be <= 1e+06 (got 1e+300)"),
        (("prune", "admm", "rho"), 5e-324, "prune.admm.rho: must be >= 1e-09"),
        (("prune", "admm", "rho_growth"), 1e300, "prune.admm.rho_growth: must be <= 100"),
        (("prune", "admm", "rho_max"), math.inf, "prune.admm.rho_max: must be"),
        (("prune", "admm", "retrain_epochs"), 10**9, "prune.admm.retrain_epochs: must be <= 1000"),
        (("prune", "admm", "lr"), 1e39, "prune.admm.lr: must be <= 10"),
        (("prune", "lambda_comm"), 1e300, "prune.lambda_comm: must be <= 1e+06 (got 1e+300)"),
        (("prune", "cost_matrix"), [[0, 1e300], [1, 0]], "prune.cost_matrix[0][1]: must be <= 1e+09 (got 1e+300)"),
        (("prune", "cost_matrix"), [[0, -1], [1, 0]], "prune.cost_matrix[0][1]: must be >= 0"),
        (("prune", "cost_matrix"), [[0, math.nan], [1, 0]], "prune.cost_matrix[0][1]: must be a finite number"),
        (("prune", "cost_matrix"), [[0, 1]], "prune.cost_matrix: must be 2 x 2"),
        (("hosts",), [{"name": "h", "cores": 0}], "hosts[0].cores: must be >= 1"),
        (("hosts",), [{"name": "h", "cores": 10**9}], "hosts[0].cores: must be <= 4096"),
        (
            ("network", "protocol"),
            {"mtu_bytes": 10**9, "packet_header_bytes": 66},
            "network.protocol.mtu_bytes: must be <= 65536 (got 1000000000)",
        ),
        (
            ("network", "protocol"),
            {"mtu_bytes": 1, "packet_header_bytes": 66},
            "network.protocol.mtu_bytes: must be >= 68 (got 1)",
        ),
        (
            ("network", "protocol"),
            {"mtu_bytes": 1500, "packet_header_bytes": 13},
            "network.protocol.packet_header_bytes: must be >= 14 (got 13)",
        ),
        (
            ("network", "protocol"),
            {"mtu_bytes": 1500, "packet_header_bytes": 66, "message_header_bytes": 2**40},
            "network.protocol.message_header_bytes: must be <= 1048576",
        ),
        (("network", "shaper"), {"burst_bytes": 10**18}, "network.shaper.burst_bytes: must be <= 1000000000000"),
        (("model", "width"), 1e-300, "model.width: must be >= 0.015625"),
    ],
)
def test_new_numeric_fields_have_bounds(where, value, field) -> None:
    data = scenario_dict(2)
    node = data
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = value
    _refused(data, field)


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("threads", 0, "devices[0].threads: must be >= 1"),
        ("threads", 10**6, "devices[0].threads: must be <= 1024"),
        ("send_overhead_us", 1e300, "devices[0].send_overhead_us: must be <= 3.6e+09 (got 1e+300)"),
        ("recv_overhead_us", math.inf, "devices[0].recv_overhead_us: must be"),
        ("recv_overhead_us", -1, "devices[0].recv_overhead_us: must be >= 0"),
    ],
)
def test_new_device_fields_have_bounds(key, value, field) -> None:
    _refused(scenario_dict(1, devices=[{"name": "d0", "gflops": 1, key: value}]), field)


@pytest.mark.parametrize("epochs", ["0", "1001", "100000000000"])
def test_train_epochs_option_is_bounded_like_model_train_epochs(tmp_path, capsys, epochs) -> None:
    out = tmp_path / "m.pt"
    assert main(["train", _write(tmp_path, scenario_dict(1)), "--epochs", epochs, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"dsim: error: --epochs: must be from 1 to 1000, as model.train_epochs (got {epochs})\n"
    assert not out.exists()


def test_a_copied_network_gets_its_setup() -> None:
    sc = parse_scenario(scenario_dict(2), origin="test")
    faster = with_network(sc, sc.network.model_copy(update={"bandwidth_mbps": 80.0}))
    assert faster.setup.network.bandwidth_bps == 80e6
    assert sc.setup.network.bandwidth_bps == 20e6
