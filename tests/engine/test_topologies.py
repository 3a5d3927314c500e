"""Topologies, devices and streams from scenario files: validation, and LeNet-5 runs on real workloads."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sim import cli
from sim.config.load import load_scenario, parse_scenario
from sim.engine import assemble
from sim.errors import UserError
from sim.pipeline.evaluate import evaluate
from sim.pipeline.prepare import prepare
from sim.pipeline.run import run
from sim.report.save import save_run
from tests.helpers import SCENARIOS, scenario_dict

IMAGE_BYTES = 1 * 32 * 32 * 4  # one 1x32x32 float32 image, dense


def one_line_error(data: dict, *fragments: str) -> str:
    with pytest.raises(UserError) as err:
        parse_scenario(data)
    text = str(err.value)
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in text
    return text


def test_disconnected_topology_is_refused_naming_a_pair() -> None:
    links = [{"a": "d0", "b": "d1"}, {"a": "d2", "b": "d3"}]
    one_line_error(scenario_dict(network={"topology": "custom", "links": links}), "no path between d0 and d2")


def test_link_to_an_unknown_device_is_refused() -> None:
    links = [{"a": "d0", "b": "d9"}]
    one_line_error(scenario_dict(network={"topology": "custom", "links": links}), "network.links[0].b", "d9")


def test_zero_bandwidth_link_is_refused() -> None:
    links = [{"a": "d0", "b": "d1", "bandwidth_mbps": 0}]
    one_line_error(
        scenario_dict(network={"topology": "line", "links": links}), "network.links[0].bandwidth_mbps", ">= 1e-06"
    )


def test_override_of_a_link_the_topology_lacks_is_refused() -> None:
    links = [{"a": "d0", "b": "d2", "latency_ms": 3}]
    one_line_error(scenario_dict(network={"topology": "line", "links": links}), "network.links[0]", "not a link")


def test_other_network_mistakes_are_one_line_errors() -> None:
    one_line_error(scenario_dict(network={"topology": "mesh", "multicast": True}), "network.multicast")
    one_line_error(scenario_dict(network={"topology": "mesh", "chunk_kB": 0}), "network.chunk_kB")
    one_line_error(scenario_dict(network={"topology": "ring", "graphml": "x.graphml"}), "network.graphml")
    one_line_error(scenario_dict(network={"topology": "custom", "graphml": "missing.graphml"}), "no such file")
    one_line_error(scenario_dict(inputs={"fps": 10, "interval_ms": 5}), "inputs.fps")


def test_cli_prints_the_disconnected_pair_without_traceback(tmp_path, capsys) -> None:
    data = scenario_dict(network={"topology": "custom", "links": [{"a": "d0", "b": "d1"}]}, name="x")
    path = tmp_path / "x.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    assert cli.main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsim: error:") and "no path between d0 and d2" in err and "\n" not in err


def test_graphml_topology(tmp_path) -> None:
    graphml = tmp_path / "net.graphml"
    graphml.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">\n'
        '<key id="bw" for="edge" attr.name="bandwidth_mbps" attr.type="double"/>\n'
        '<graph edgedefault="undirected"><node id="d0"/><node id="d1"/><node id="d2"/>\n'
        '<edge source="d0" target="d1"><data key="bw">5</data></edge><edge source="d1" target="d2"/></graph>\n'
        "</graphml>\n"
    )
    sc = parse_scenario(scenario_dict(3, network={"topology": "custom", "graphml": str(graphml), "bandwidth_mbps": 2}))
    net = assemble.network(sc)
    assert [(l.name, l.bandwidth_bps) for l in net.route("d0", "d2")] == [("d0->d1", 5e6), ("d1->d2", 2e6)]


def test_graphml_mistakes_are_one_line_errors(tmp_path) -> None:
    graphml = tmp_path / "bad.graphml"
    graphml.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<graphml xmlns="http://graphml.graphdrawing.org/xmlns">\n'
        '<key id="w" for="edge" attr.name="weight" attr.type="double"/>\n'
        '<graph edgedefault="undirected"><node id="d0"/><node id="d7"/><edge source="d0" target="d1">'
        '<data key="w">5</data></edge></graph></graphml>\n'
    )
    one_line_error(
        scenario_dict(2, network={"topology": "custom", "graphml": str(graphml)}),
        "network.graphml: edge d0-d1: weight: unknown key",
    )
    graphml.write_text(graphml.read_text().replace('target="d1"', 'target="d7"'))
    one_line_error(
        scenario_dict(2, network={"topology": "custom", "graphml": str(graphml)}),
        "network.graphml: unknown device 'd7'",
    )


def test_presets_fill_unset_fields_and_yield_to_overrides() -> None:
    devices = [{"name": "d0", "preset": "rpi4"}, {"name": "d1", "preset": "jetson-nano", "gflops": 100}]
    sc = parse_scenario(scenario_dict(2, devices=devices))
    assert (sc.devices[0].gflops, sc.setup.devices[0].mem_bandwidth_Bps) == (8.0, 12.8e9)
    assert (sc.devices[1].gflops, sc.devices[1].mem_bandwidth_GBps) == (100, 25.6)
    one_line_error(scenario_dict(2, devices=[{"name": "d0"}, {"name": "d1", "gflops": 1}]), "devices[0].gflops")
    one_line_error(scenario_dict(1, devices=[{"name": "d0", "preset": "pi"}]), "devices[0].preset")


def test_fps_sets_the_arrival_interval() -> None:
    assert parse_scenario(scenario_dict(inputs={"fps": 40})).setup.interval_s == pytest.approx(0.025)


@pytest.fixture(scope="module")
def lenet_workload():
    """The LeNet-5 workload on 4 devices (the network is not part of the workload, so it is built once)."""
    return prepare(parse_scenario(scenario_dict(4))).built


def variant(workload, **network):
    base = {"bandwidth_mbps": 20, "latency_ms": 1.0}
    return evaluate(parse_scenario(scenario_dict(4, network={**base, **network})), workload)


def test_multicast_sends_the_input_image_once(lenet_workload) -> None:
    plain = variant(lenet_workload, topology="shared")
    multi = variant(lenet_workload, topology="shared", multicast=True)
    image = multi.transfers[multi.transfers["layer"] == "input"]
    assert list(image["dst"]) == ["d1", "d2", "d3"]
    assert list(image["bytes"]) == [IMAGE_BYTES, 0, 0]  # counted once
    assert list(image["multicast_copy"]) == [False, True, True]
    assert image["end_s"].nunique() == 1  # 4096 B at 20 Mbit/s + 1 ms, for all three
    assert image["end_s"].iloc[0] == pytest.approx(IMAGE_BYTES * 8 / 20e6 + 0.001)
    plain_image = plain.transfers[plain.transfers["layer"] == "input"]
    assert list(plain_image["bytes"]) == [IMAGE_BYTES] * 3
    assert multi.summary["bytes_total"] <= plain.summary["bytes_total"] - 2 * IMAGE_BYTES
    assert multi.summary["bytes_total"] == int(multi.links["bytes"].sum())  # the medium carried each once
    assert multi.summary["latency_s"] < plain.summary["latency_s"]


def test_links_carry_bytes_times_hops(lenet_workload) -> None:
    star = variant(lenet_workload, topology="star")
    assert int(star.links["bytes"].sum()) == int((star.transfers["bytes"] * star.transfers["hops"]).sum())
    assert set(star.transfers["hops"]) == {2}
    mesh = variant(lenet_workload, topology="mesh")
    assert star.summary["latency_s"] > mesh.summary["latency_s"]


def test_critical_path_tiles_the_latency(lenet_workload) -> None:
    cp = variant(lenet_workload, topology="ring").summary["critical_path"]
    assert cp["compute_s"] + cp["transfer_s"] + cp["wait_s"] == pytest.approx(cp["latency_s"])
    assert cp["steps"][-1]["end_s"] == pytest.approx(cp["latency_s"])


def test_run_writes_links_and_devices_csv(lenet_workload, tmp_path) -> None:
    result = variant(lenet_workload, topology="star", chunk_kb=1)
    save_run(result, tmp_path)
    links = pd.read_csv(tmp_path / "links.csv")
    assert list(links["link"])[:2] == ["d0->switch", "switch->d0"]
    devices = pd.read_csv(tmp_path / "devices.csv")
    assert list(devices["device"]) == ["d0", "d1", "d2", "d3"]
    assert (devices["busy_s"] + devices["idle_s"]).round(12).nunique() == 1  # both add up to the makespan
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert any(e.get("cat") == "critical" for e in trace["traceEvents"])
    assert any(e.get("ph") == "C" and e["name"] == "bytes d0->switch" for e in trace["traceEvents"])


def test_single_device_baseline_is_all_compute() -> None:
    # One device of 2 GFLOP/s computes every FLOP of LeNet-5 in sequence, with nothing to send.
    data = scenario_dict(2, baseline="single")
    result = run(data)
    base = result.summary["baseline"]
    assert base["device"] == "d0"
    assert base["latency_s"] == pytest.approx(result.summary["flops_total"] / 2e9)
    assert base["speedup"] == pytest.approx(base["latency_s"] / result.summary["latency_s"])


def test_single_device_baseline_counts_the_whole_batch() -> None:
    # LeNet-5 on a 1x32x32 image: 2 * (6*25*28*28 + 16*6*25*10*10 + 120*400 + 84*120 + 10*84) = 833040 FLOPs;
    # a batch of 3 is 3 times that, on one 2 GFLOP/s device even though nothing crosses the network.
    data = scenario_dict(2, baseline="single", inputs={"dataset": "digits", "batch_size": 3, "frames": 1})
    result = run(data)
    assert result.summary["flops_total"] == 3 * 833040
    assert result.summary["baseline"]["latency_s"] == pytest.approx(3 * 833040 / 2e9)


def test_mixed_devices_summary_is_valid_json(lenet_workload) -> None:
    devices = [
        {"name": "d0", "preset": "rpi4"},
        {"name": "d1", "gflops": 2},
        {"name": "d2", "gflops": 2},
        {"name": "d3", "preset": "phone"},
    ]
    result = evaluate(parse_scenario(scenario_dict(4, devices=devices)), lenet_workload)
    text = json.dumps(result.summary, allow_nan=False)
    rows = {r["device"]: r for r in json.loads(text)["devices"]}
    assert rows["d0"]["mem_bandwidth_gbps"] == 12.8 and rows["d1"]["mem_bandwidth_gbps"] is None
    # roofline on the Pi (8 GFLOP/s, 12.8 GB/s): each task takes the larger of its compute and memory times
    expected = sum(max(t.flops / 8e9, t.bytes_touched / 12.8e9) for t in lenet_workload.workload.tasks if t.device == 0)
    assert rows["d0"]["busy_s"] == pytest.approx(expected)
    assert expected > sum(
        t.flops / 8e9 for t in lenet_workload.workload.tasks if t.device == 0
    )  # memory-bound somewhere


@pytest.mark.parametrize(
    "name", ["star", "ring", "multihop-line", "custom", "shared-wifi", "hetero-devices", "stream", "calibrated"]
)
def test_feature_scenarios_parse(name, monkeypatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # graphml paths are relative to the project
    assert load_scenario(SCENARIOS / f"{name}.yaml").name == name
