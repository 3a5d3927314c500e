"""The typed run summary: summary.json's keys come from its fields, in a fixed order, optional ones only when set."""

from __future__ import annotations

from dataclasses import fields, replace

from sim.analysis import summary as summaries
from sim.analysis.summary import Baseline, Deployment, RunSummary


def _record() -> RunSummary:
    return RunSummary(
        name="x",
        frames=1,
        latency_s=0.5,
        latency_p50_s=0.5,
        latency_p95_s=0.5,
        latency_p99_s=0.5,
        throughput_fps=2.0,
        departure_interval_s=0.5,
        offered_fps=None,
        keeps_up=None,
        latency_growth_s_per_frame=0.0,
        makespan_s=0.5,
        bytes_total=10,
        bytes_by_format={"dense": 10},
        auto_saving=0.0,
        header_bytes=0,
        messages=1,
        elements_hops=2,
        elements_hops_max_link=2,
        flops_total=4.0,
        compute_s_total=0.25,
        frame_latency_s=(0.5,),
        scenario={},
        exchange={},
    )


def test_every_field_has_one_place_in_the_json_order() -> None:
    assert sorted(summaries._JSON_ORDER) == sorted(f.name for f in fields(RunSummary))


def test_unset_optional_fields_are_left_out_and_required_none_kept() -> None:
    data = _record().to_dict()
    assert "accuracy" not in data and "baseline" not in data and "energy_j" not in data
    assert data["offered_fps"] is None and data["keeps_up"] is None  # always written, even when None
    assert data["frame_latency_s"] == [0.5]
    assert list(data)[:3] == ["name", "frames", "latency_s"]


def test_baseline_is_nested_and_deployment_flat() -> None:
    base = Baseline("a", 1.0, 1.0, 1.0, 2.0, 2.0, 2.0)
    deploy = Deployment(0.1, 100, {"dense": 100, "auto": 90}, 3)
    data = replace(_record(), baseline=base, deployment=deploy, accuracy=0.9, critical_path={}).to_dict()
    assert data["baseline"] == {
        "device": "a",
        "latency_s": 1.0,
        "service_latency_s": 1.0,
        "throughput_fps": 1.0,
        "speedup": 2.0,
        "service_speedup": 2.0,
        "throughput_speedup": 2.0,
    }
    assert data["deploy_s"] == 0.1 and data["deploy_messages"] == 3 and "deployment" not in data
    assert list(data).index("accuracy") < list(data).index("critical_path") < list(data).index("baseline")
