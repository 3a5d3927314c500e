"""Time and peak memory to build the workload (trace, forward, size every message) of large splits.

Each case runs in a fresh process so its peak resident memory (``VmHWM`` of ``/proc/self/status``; unlike
``ru_maxrss`` it does not carry over the parent's peak across fork and exec) is its own; the figure beside
it is the same process's peak right after importing the libraries, before any work.
"""

from __future__ import annotations

import json
import subprocess
import sys

CASES = [("resnet18", 8, "inputs"), ("resnet34", 16, "inputs"), ("resnet18", 8, "auto")]  # model, devices, exchange

_CHILD = r"""
import json, re, sys, time
import sim.pipeline.prepare as runner
from sim.config.load import parse_scenario


def peak_kb():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))


model, n, exchange = sys.argv[1], int(sys.argv[2]), sys.argv[3]
before = peak_kb()
scenario = parse_scenario({
    "name": "bench", "model": {"name": model}, "inputs": {"dataset": "synthetic", "batch_size": 1},
    "devices": [{"name": f"d{i}", "gflops": 10} for i in range(n)], "source": "d0", "sink": "d0",
    "transfer": {"format": "auto", "exchange": exchange},
})
start = time.perf_counter()
built = runner.prepare(scenario)
elapsed = time.perf_counter() - start
peak = peak_kb()
print(json.dumps({"s": elapsed, "peak_mb": peak / 1024, "base_mb": before / 1024,
                  "messages": len(built.workload.messages), "tasks": len(built.workload.tasks)}))
"""


def main() -> None:
    print(
        f"{'model':<10} {'devices':>7} {'exchange':>8} {'build s':>8} {'peak MB':>8} {'after import MB':>16} "
        f"{'messages':>9} {'tasks':>6}"
    )
    for model, n, exchange in CASES:
        args = [sys.executable, "-c", _CHILD, model, str(n), exchange]
        r = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        print(
            f"{model:<10} {n:>7} {exchange:>8} {r['s']:>8.2f} {r['peak_mb']:>8.0f} {r['base_mb']:>16.0f} "
            f"{r['messages']:>9} {r['tasks']:>6}"
        )


if __name__ == "__main__":
    main()
