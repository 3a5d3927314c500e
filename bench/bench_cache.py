"""The build cache: ``dsim compare scenarios/quadrants/*.yaml`` cold (empty cache) and warm (second call),
in a fresh temporary cache folder. Target (issue 13): warm < 10 % of cold.
Run: ``.venv/bin/python bench/bench_cache.py``.
"""

from __future__ import annotations

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
        times = []
        for _ in range(2):
            start = time.perf_counter()
            done = subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            line = next(x for x in done.stdout.splitlines() if x.startswith("build cache"))
            print(f"{'cold' if len(times) == 1 else 'warm'}  {times[-1]:7.2f} s   {line}")
    print(f"warm / cold   {times[1] / times[0]:7.3f}")


if __name__ == "__main__":
    main()
