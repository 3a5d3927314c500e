"""The build cache: ``dsim compare scenarios/quadrants/*.yaml`` cold (empty cache) and warm (second call),
in a fresh temporary cache folder: wall time and CPU time (user + system of the command and its worker
processes: the figure to read on a busy machine). Target: warm < 10 % of cold (a repeated study should cost little).
Run: ``.venv/bin/python bench/bench_cache.py``.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scenarios" / "quadrants").glob("*.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "sim", "compare", *files, "--cache-dir", f"{tmp}/cache", "--out", f"{tmp}/out"]
        times, cpus = [], []
        for _ in range(2):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            line = next(x for x in done.stdout.splitlines() if x.startswith("build cache"))
            print(f"{'cold' if len(times) == 1 else 'warm'}  {times[-1]:7.2f} s wall {cpus[-1]:7.2f} s CPU   {line}")
    print(f"warm / cold   {times[1] / times[0]:7.3f} wall   {cpus[1] / cpus[0]:7.3f} CPU")


if __name__ == "__main__":
    main()
