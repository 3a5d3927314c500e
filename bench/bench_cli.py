"""Start-up time of commands that need no torch: ``dsim --help`` and ``dsim schema`` (target < 0.5 s on
an idle core, so a command feels instant). Each is run 5 times in a fresh interpreter; the best wall time is printed, and
the best CPU time (user + system of the child: the figure to read on a busy machine).
Run: ``.venv/bin/python bench/bench_cli.py``.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def best_s(args: list[str], repeats: int = 5) -> tuple[float, float]:
    """Best wall time and best CPU time of ``python ARGS`` over ``repeats`` runs, in seconds."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


def main() -> None:
    for label, args in (
        ("python -c pass", ["-c", "pass"]),
        ("dsim --help", ["-m", "sim", "--help"]),
        ("dsim schema", ["-m", "sim", "schema"]),
    ):
        wall, cpu = best_s(args)
        print(f"{label:<16} {wall:6.3f} s wall {cpu:6.3f} s CPU")


if __name__ == "__main__":
    main()
