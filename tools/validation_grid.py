"""Run ``dsim validate --shape`` over a grid of models, device counts, topologies and link rates, and collect
the per-kind errors in one table (docs/tutorials/validation.md §3).

    python tools/validation_grid.py --out results/validation-grid [--repeats 3] [--only vgg11-4-mesh-5]

Each point is ``bench/validation/<model>.yaml`` with ``devices`` cut to N, ``network.topology`` and
``network.bandwidth_mbps`` set; its files go to ``OUT/<model>-<N>-<topology>-<rate>/`` and one line per point
(end-to-end error; median |error| per kind; the 1-minute load average before and after) to ``OUT/grid.csv``.
Needs root (``--shape``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("vgg11", "resnet18", "vgg11-model", "resnet18-model")  # -model: protocol, shaper, hosts, profiles
DEVICES = (2, 4)
TOPOLOGIES = ("mesh", "star")
RATES_MBPS = (5, 20, 100)


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fit-compute", action="store_true", help="pass --fit-compute to dsim validate")
    p.add_argument("--only", action="append", default=[], help="run only these points, in this order (name as in OUT)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    grid_csv = args.out / "grid.csv"
    points = {
        f"{m}-{n}-{t}-{r}": (m, n, t, r) for m, n, t, r in itertools.product(MODELS, DEVICES, TOPOLOGIES, RATES_MBPS)
    }
    for name in args.only or list(points):
        model, n, topology, rate = points[name]
        data = yaml.safe_load((ROOT / "bench" / "validation" / f"{model}.yaml").read_text())
        data["name"] = name
        data["devices"] = data["devices"][:n]
        data["network"].update(topology=topology, bandwidth_mbps=rate)
        before = _load()
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump(data, f)
        cmd = [sys.executable, "-m", "sim", "validate", f.name, "--shape", "--repeats", str(args.repeats)]
        cmd += ["--fit-compute"] if args.fit_compute else []
        done = subprocess.run([*cmd, "--out", str(args.out / name)], capture_output=True, text=True, check=False)
        Path(f.name).unlink()
        print(f"== {name} (load {before:.1f} -> {_load():.1f})\n{done.stdout}{done.stderr}", flush=True)
        if done.returncode != 0:
            continue
        table = pd.read_csv(args.out / name / "validation.csv", keep_default_na=False)
        e2e = table[table["kind"] == "end_to_end"].iloc[0]
        big = table[(table["kind"] == "message") & (table["bytes"] >= 4000)]
        row = {
            "point": name,
            "load_before": before,
            "load_after": _load(),
            "measured_ms": e2e["measured_median_s"] * 1e3,
            "predicted_ms": e2e["predicted_s"] * 1e3,
            "end_to_end_error_pct": e2e["error_pct"],
            "compute_median_abs_error_pct": table[table["kind"] == "compute"]["error_pct"].abs().median(),
            "messages_4kb": len(big),
            "messages_4kb_median_abs_error_pct": big["error_pct"].abs().median() if len(big) else float("nan"),
            "messages_4kb_within_5pct": (big["error_pct"].abs() <= 5).mean() * 100 if len(big) else float("nan"),
        }
        info = json.loads((args.out / name / "validation.json").read_text())
        own = info.get("own_rates_predicted_latency_s")
        if own is not None:
            row["own_rates_predicted_ms"] = own * 1e3
            row["own_rates_error_pct"] = (own - e2e["measured_median_s"]) / e2e["measured_median_s"] * 100
        rows.append(row)
        pd.DataFrame(rows).to_csv(grid_csv, index=False, float_format="%.4g")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
