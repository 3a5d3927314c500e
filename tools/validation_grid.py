"""Run ``dsim validate --shape`` over a grid of models, device counts, topologies and link rates, and collect
the per-kind errors in one table (docs/tutorials/validation.md §3; out of sample: docs/validation.md).

    python tools/validation_grid.py --out results/validation-grid [--repeats 3] [--only vgg11-4-mesh-5]
    python tools/validation_grid.py --out results/grid-oos --profile-point 4-mesh-20 [--models vgg11-model]

Each point is ``bench/validation/<model>.yaml`` with ``devices`` cut to N, ``network.topology`` and
``network.bandwidth_mbps`` set; its files go to ``OUT/<model>-<N>-<topology>-<rate>/`` and one line per point
(end-to-end error; median |error| per kind; the 1-minute load average before and after) to ``OUT/grid.csv``.

With ``--profile-point N-TOPOLOGY-RATE`` (out of sample), each model is profiled once at that point
(``dsim profile --execute --shape``, to ``OUT/profiles/<model>.json``) and every point of the model is
predicted from that one profile (``dsim validate --profile``); unless ``--no-in-sample``, each point is also
profiled itself and predicted from its own profile (in sample, separate runs). ``grid.csv`` then has both
errors of frame-0 latency, of the time between departures, of messages >= 4 KB and of compute per layer,
and ``grid.md`` the table of the docs. ``--profile FILE`` predicts from a profile already taken (one
model); ``--sharing`` sets every host's ``sharing`` in the points' scenarios (to compare the two models of
shared cores on the same kind of runs); ``--table`` prints an existing ``OUT/grid.csv`` as that table. Needs root (``--shape``); measure on a quiet machine (``../shared/tools/quiet-run``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("vgg11", "resnet18", "vgg11-model", "resnet18-model")  # -model: protocol, shaper, hosts, profiles
PROFILE_MODELS = ("vgg11-model", "resnet18-model")
DEVICES = (2, 4)
TOPOLOGIES = ("mesh", "star")
RATES_MBPS = (5, 20, 100)


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _scenario(model: str, n: int, topology: str, rate: int, name: str, sharing: str | None = None) -> Path:
    """The point's scenario, written to a temporary file; ``sharing`` (``--sharing``) set on every host."""
    data = yaml.safe_load((ROOT / "bench" / "validation" / f"{model}.yaml").read_text())
    data["name"] = name
    data["devices"] = data["devices"][:n]
    data["network"].update(topology=topology, bandwidth_mbps=rate)
    if sharing is not None:
        for host in data.get("hosts", []):
            host["sharing"] = sharing
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(data, f)
    return Path(f.name)


def _dsim(args: list[str], label: str) -> bool:
    """Run ``python -m sim ARGS``; print its output under ``label`` with the load before and after."""
    before = _load()
    done = subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, check=False)
    print(f"== {label} (load {before:.1f} -> {_load():.1f})\n{done.stdout}{done.stderr}", flush=True)
    return done.returncode == 0


def _errors(folder: Path) -> dict[str, float]:
    """The end-to-end errors and the median |error| per kind of one validation folder."""
    table = pd.read_csv(folder / "validation.csv", keep_default_na=False)

    def row(kind: str) -> Any:
        rows = table[table["kind"] == kind]
        return rows.iloc[0] if len(rows) else None

    big = table[(table["kind"] == "message") & (table["bytes"] >= 4000)]
    out = {
        "compute_median_abs_error_pct": table[table["kind"] == "compute"]["error_pct"].abs().median(),
        "messages_4kb_median_abs_error_pct": big["error_pct"].abs().median() if len(big) else float("nan"),
    }
    for kind in ("end_to_end", "first_frame", "interval"):
        r = row(kind)
        out[f"{kind}_measured_ms"] = float("nan") if r is None else r["measured_median_s"] * 1e3
        out[f"{kind}_p10_ms"] = float("nan") if r is None else r["measured_p10_s"] * 1e3
        out[f"{kind}_p90_ms"] = float("nan") if r is None else r["measured_p90_s"] * 1e3
        out[f"{kind}_predicted_ms"] = float("nan") if r is None else r["predicted_s"] * 1e3
        out[f"{kind}_error_pct"] = float("nan") if r is None else r["error_pct"]
    return out


def grid_markdown(frame: pd.DataFrame) -> str:
    """The docs' table of an out-of-sample grid (one row per point)."""
    head = (
        "| point | load before | frame 0 measured ms (p10-p90) | frame 0 error in / out of sample | "
        "between departures error in / out | messages >= 4 KB median abs. error in / out | "
        "compute median abs. error in / out |\n"
        "|---|---|---|---|---|---|---|\n"
    )

    def pct(x: float) -> str:
        return "-" if pd.isna(x) else f"{x:+.1f} %"

    def abs_pct(x: float) -> str:
        return "-" if pd.isna(x) else f"{x:.1f} %"

    lines = []
    for r in frame.to_dict("records"):
        lines.append(
            f"| {r['point']}{' (profiled)' if r.get('profile_point') else ''} | {r['load_before']:.2f} | "
            f"{r['first_frame_measured_ms']:.1f} ({r['first_frame_p10_ms']:.1f}-{r['first_frame_p90_ms']:.1f}) | "
            f"{pct(r.get('in_first_frame_error_pct', float('nan')))} / {pct(r['first_frame_error_pct'])} | "
            f"{pct(r.get('in_interval_error_pct', float('nan')))} / {pct(r['interval_error_pct'])} | "
            f"{abs_pct(r.get('in_messages_4kb_median_abs_error_pct', float('nan')))} / "
            f"{abs_pct(r['messages_4kb_median_abs_error_pct'])} | "
            f"{abs_pct(r.get('in_compute_median_abs_error_pct', float('nan')))} / "
            f"{abs_pct(r['compute_median_abs_error_pct'])} |"
        )
    return head + "\n".join(lines) + "\n"


def out_of_sample(args: argparse.Namespace, points: dict[str, tuple[str, int, str, int]]) -> int:
    """``--profile-point``: one profile per model, every point predicted from it (module docstring)."""
    profiles = args.out / "profiles"
    profiles.mkdir(parents=True, exist_ok=True)
    rows = []
    models = args.models or list(PROFILE_MODELS)
    if args.profile is not None and len(models) != 1:
        raise SystemExit("--profile: give the one model it profiled with --models")
    for model in models:
        anchor = f"{model}-{args.profile_point}"
        if anchor not in points:
            raise SystemExit(f"--profile-point: no point {anchor} (points are MODEL-N-TOPOLOGY-RATE, N in 2/4)")
        profile = args.profile or profiles / f"{model}.json"
        if args.profile is None:
            path = _scenario(*points[anchor], anchor, args.sharing)
            ok = _dsim(["profile", str(path), "--execute", "--shape", "--repeats", str(args.repeats), "--out",
                        str(profile)], f"profile {anchor}")  # fmt: skip
            path.unlink()
            if not ok:
                continue
        names = [n for n in (args.only or list(points)) if points[n][0] == model]
        for name in names:
            path = _scenario(*points[name], name, args.sharing)
            before = _load()
            repeats = ["--repeats", str(args.repeats)]
            if not _dsim(["validate", str(path), "--shape", *repeats, "--profile", str(profile),
                          "--out", str(args.out / name)], f"{name} from {anchor}"):  # fmt: skip
                path.unlink()
                continue
            row: dict[str, Any] = {"point": name, "profile_point": name == anchor, "load_before": before}
            row.update(_errors(args.out / name))
            if not args.no_in_sample:
                own = args.out / name / "own-profile.json"
                if _dsim(
                    ["profile", str(path), "--execute", "--shape", *repeats, "--out", str(own)], f"profile {name}"
                ):
                    if _dsim(["validate", str(path), "--shape", *repeats, "--profile", str(own),
                              "--out", str(args.out / name / "in-sample")], f"{name} in sample"):  # fmt: skip
                        row.update({f"in_{k}": v for k, v in _errors(args.out / name / "in-sample").items()})
            path.unlink()
            row["load_after"] = _load()
            rows.append(row)
            frame = pd.DataFrame(rows)
            frame.to_csv(args.out / "grid.csv", index=False, float_format="%.4g")
            (args.out / "grid.md").write_text(grid_markdown(frame))
    print((args.out / "grid.md").read_text() if rows else "no point was validated")
    return 0 if rows else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fit-compute", action="store_true", help="pass --fit-compute to dsim validate")
    p.add_argument("--only", action="append", default=[], help="run only these points, in this order (name as in OUT)")
    p.add_argument("--profile-point", metavar="N-TOPOLOGY-RATE", help="profile each model here; predict every point")
    p.add_argument("--models", action="append", default=[], help="with --profile-point: these models (repeatable)")
    p.add_argument("--no-in-sample", action="store_true", help="with --profile-point: skip the in-sample column")
    p.add_argument("--sharing", choices=["fifo", "processor"], help="set every host's sharing in the points")
    p.add_argument("--profile", type=Path, help="with --profile-point: predict from this runtime profile (not taken)")
    p.add_argument("--table", action="store_true", help="print OUT/grid.csv's table (as grid.md) and stop")
    args = p.parse_args()
    if args.table:
        print(grid_markdown(pd.read_csv(args.out / "grid.csv")), end="")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    points = {
        f"{m}-{n}-{t}-{r}": (m, n, t, r) for m, n, t, r in itertools.product(MODELS, DEVICES, TOPOLOGIES, RATES_MBPS)
    }
    if args.profile_point:
        return out_of_sample(args, points)
    rows = []
    grid_csv = args.out / "grid.csv"
    for name in args.only or list(points):
        path = _scenario(*points[name], name, args.sharing)
        before = _load()
        cmd = [sys.executable, "-m", "sim", "validate", str(path), "--shape", "--repeats", str(args.repeats)]
        cmd += ["--fit-compute"] if args.fit_compute else []
        done = subprocess.run([*cmd, "--out", str(args.out / name)], capture_output=True, text=True, check=False)
        path.unlink()
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
