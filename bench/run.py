"""Run every benchmark in this folder (``bench_*.py``, each with a ``main()``) and print its figures.

``make bench`` calls this. Benchmarks print figures; they never assert on speed.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here.parent), str(here)]  # the package, and bench/timing.py as run as a script
    only = set(sys.argv[1:])
    for path in sorted(here.glob("bench_*.py")):
        if only and path.stem not in only:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # importable by name (processes a benchmark spawns unpickle from it)
        assert spec.loader is not None
        spec.loader.exec_module(module)
        print(f"\n== {path.stem} ==", flush=True)
        start = time.perf_counter()
        module.main()
        print(f"({path.stem}: {time.perf_counter() - start:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
