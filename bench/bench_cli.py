"""Start-up time of commands that need no torch: ``dsim --help`` and ``dsim schema`` (target < 0.5 s on
an idle core; issue 13). Each is run 5 times in a fresh interpreter; the best wall time is printed.
Run: ``.venv/bin/python bench/bench_cli.py``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def best_s(args: list[str], repeats: int = 5) -> float:
    """Best wall time of ``python ARGS`` over ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    print(f"{'python -c pass':<16} {best_s(['-c', 'pass']):6.3f} s (interpreter start, for scale)")
    for args in (["--help"], ["schema"]):
        print(f"{'dsim ' + ' '.join(args):<16} {best_s(['-m', 'sim', *args]):6.3f} s")


if __name__ == "__main__":
    main()
