"""Small builders shared by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.workload.types import Message, Task

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"  # the bundled scenarios, whatever the cwd


def scenario_dict(n_devices: int = 4, **overrides: Any) -> dict[str, Any]:
    """A LeNet-5 scenario on ``n_devices`` devices d0..dN-1 (d0 is source and sink), as plain data.

    ``overrides`` replace top-level sections, e.g. ``network={"bandwidth_mbps": 5}``.
    """
    data: dict[str, Any] = {
        "name": "test",
        "seed": 0,
        "model": {"name": "lenet5", "input_shape": [1, 32, 32]},
        "inputs": {"dataset": "digits", "batch_size": 1, "frames": 1, "interval_ms": 0},
        "devices": [{"name": f"d{i}", "gflops": 2.0} for i in range(n_devices)],
        "network": {"topology": "mesh", "bandwidth_mbps": 20, "latency_ms": 1.0},
        "source": "d0",
        "sink": "d0",
        "partition": {"strategy": "contiguous"},
        "transfer": {"format": "dense", "dtype": "float32", "index_bits": 32},
    }
    data.update(overrides)
    return data


def message(
    src: int,
    dst: int,
    nbytes: int,
    after: int | None = None,
    needed_by: tuple[int, ...] = (),
    final: bool = False,
    frame: int = 0,
    tensor: str = "",
    channel_ids: tuple[int, ...] = (),
) -> Message:
    """A hand-built dense message of ``nbytes`` bytes (``nbytes // 4`` float32 elements, all non-zero)."""
    return Message(
        frame,
        "x",
        src,
        dst,
        1,
        nbytes // 4,
        nbytes // 4,
        {"dense": nbytes},
        "dense",
        nbytes,
        after,
        needed_by,
        final,
        tensor,
        channel_ids,
    )


def task(device: int, flops: float, final: bool = False, frame: int = 0, op: str = "conv", layer: str = "L") -> Task:
    """A hand-built task of ``flops`` FLOPs on ``device``."""
    return Task(frame, layer, device, flops, op, final)


DESIGN_SUMMARY_KEYS = (  # docs/design.md §5: summary.json holds at least these, written out here literally
    "latency_s",
    "latency_p50_s",
    "latency_p99_s",
    "throughput_fps",
    "bytes_total",
    "compute_s_total",
    "makespan_s",
    "scenario",
)
