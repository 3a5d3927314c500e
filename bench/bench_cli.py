"""Start-up time of commands that need no torch: ``dsim --help`` and ``dsim schema`` (target for ``dsim
schema``: < 0.3 s on an idle core). Each is run :data:`timing.REPEATS` times in a fresh interpreter;
the median and range of the wall time and of the CPU time (user + system of the child: the figure to read
on a busy machine) are printed with the load average. Publish only figures taken on a quiet machine
(``../shared/tools/quiet-run -- .venv/bin/python bench/bench_cli.py``).
Run: ``.venv/bin/python bench/bench_cli.py``.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

from timing import REPEATS, loadavg, spread

ROOT = Path(__file__).resolve().parents[1]


def times_s(args: list[str], repeats: int = REPEATS) -> tuple[list[float], list[float]]:
    """Wall times and CPU times of ``python ARGS`` over ``repeats`` runs, in seconds."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def main() -> None:
    print(loadavg())
    for label, args in (
        ("python -c pass", ["-c", "pass"]),
        ("dsim --help", ["-m", "sim", "--help"]),
        ("dsim schema", ["-m", "sim", "schema"]),
    ):
        walls, cpus = times_s(args)
        print(f"{label:<16} wall s {spread(walls, '.3f')}; CPU s {spread(cpus, '.3f')}")


if __name__ == "__main__":
    main()
