"""What lossy and jittery links cost the engine: CPU seconds per transmission on VGG-11 over 4 devices on a
20 Mbit/s TCP mesh, 100 frames, with perfect links, with 1 % Bernoulli loss, and with 1 % loss plus
correlated Pareto jitter.

The VGG-11 workload is built once for one frame and repeated (``bench_engine.repeat_frames``). Times are
CPU seconds of this process (``time.process_time``). Run: ``.venv/bin/python bench/run.py bench_loss``.
"""

from __future__ import annotations

import time

from bench_engine import repeat_frames  # bench/run.py puts this folder's scripts side by side

from sim.config.load import parse_scenario
from sim.engine.assemble import device_rates
from sim.engine.assemble import network as assemble_network
from sim.engine.simulate import simulate
from sim.pipeline.prepare import prepare

FRAMES = 100
NETWORK = {"topology": "mesh", "bandwidth_mbps": 20, "latency_ms": 1.0, "protocol": "tcp"}
CASES = {
    "perfect": {},
    "loss 1 %": {"loss": {"p": 0.01}},
    "loss + jitter": {
        "loss": {"p": 0.01},
        "jitter_ms": {"distribution": "pareto", "scale": 0.5, "shape": 2.5, "correlation": 0.5},
    },
}


def scenario(extra: dict[str, object]):
    return parse_scenario(
        {
            "name": "bench-loss",
            "model": {"name": "vgg11", "input_shape": [3, 32, 32]},
            "inputs": {"dataset": "synthetic", "frames": 1, "fps": 1},
            "devices": [{"name": f"d{i}", "gflops": 2} for i in range(4)],
            "network": {**NETWORK, **extra},
            "source": "d0",
            "sink": "d0",
        }
    )


def main() -> None:
    """Print, per case, the transmissions simulated, CPU seconds, microseconds per transmission, and the
    frame latency's mean and 95th percentile."""
    base = scenario({})
    workload = repeat_frames(prepare(base).workload, FRAMES)
    arrivals = [f * base.setup.interval_s for f in range(FRAMES)]
    rates = device_rates(base)
    print(f"VGG-11, 4 devices, TCP mesh 20 Mbit/s, {FRAMES} frames, {len(workload.messages)} messages")
    for name, extra in CASES.items():
        network = assemble_network(scenario(extra))
        start = time.process_time()
        timeline = simulate(workload, rates, network, arrivals, seed=0)
        cpu_s = time.process_time() - start
        latency = sorted(timeline.latency_s)
        p95 = latency[round(0.95 * (len(latency) - 1))]
        print(
            f"{name:<14} {len(timeline.hops):>8} transmissions {cpu_s:8.3f} CPU s "
            f"{cpu_s / len(timeline.hops) * 1e6:6.2f} us each; latency mean "
            f"{sum(latency) / len(latency) * 1e3:8.3f} ms, p95 {p95 * 1e3:8.3f} ms"
        )


if __name__ == "__main__":
    main()
