"""Record or check the outputs of every bundled scenario (the re-layering's safety net).

``python tools/golden.py record`` runs ``dsim run`` on every ``scenarios/**/*.yaml`` and writes
``tests/golden/outputs.json`` (or, given scenario files, adds or replaces just their entries): the SHA-256 of each run's ``transfers.csv`` and ``compute.csv`` and every
number in its ``summary.json``. ``python tools/golden.py check`` runs them again and prints every
recorded value that changed (exit status 1 if any); summary keys added since the recording are listed, not
counted as differences. Scenarios whose numbers depend on this machine's speed
(``calibrate: true``) are recorded for their bytes only.

Example::

    python tools/golden.py check scenarios/quickstart.yaml
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "outputs.json"
MACHINE_DEPENDENT = {"scenarios/calibrated.yaml"}


def _numbers(value: object, prefix: str = "") -> dict[str, object]:
    """Flatten every number (and string) of a JSON value into ``{dotted.key: value}``."""
    out: dict[str, object] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(_numbers(item, f"{prefix}{key}."))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.update(_numbers(item, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".")] = value
    return out


def record_one(scenario: str) -> dict[str, object]:
    """Run one scenario with ``dsim run`` in a temporary folder and return its fingerprint."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "sim", "run", str(ROOT / scenario), "--out", tmp, "--no-cache"],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        out = Path(tmp)
        summary = json.loads((out / "summary.json").read_text())
        summary.pop("scenario", None)
        fingerprint: dict[str, object] = {
            name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in ("transfers.csv", "compute.csv")
        }
        if scenario in MACHINE_DEPENDENT:
            fingerprint = {"bytes_total": summary["bytes_total"]}
        else:
            fingerprint["summary"] = _numbers(summary)
        return fingerprint


def scenarios(selected: list[str]) -> list[str]:
    if selected:
        return [str(Path(s).resolve().relative_to(ROOT)) for s in selected]
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scenarios").rglob("*.yaml"))


def main(argv: list[str]) -> int:
    mode, selected = argv[0], argv[1:]
    if mode == "record":  # the named scenarios (all without names), keeping the other entries
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        data = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() and selected else {}
        for s in scenarios(selected):
            data[s] = record_one(s)
            print(f"recorded {s}", flush=True)
        GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        return 0
    golden = json.loads(GOLDEN.read_text())
    failures = 0
    for s in scenarios(selected):
        if s not in golden:
            print(f"{s}: not recorded (python tools/golden.py record {s} adds it)")
            continue
        got, want = record_one(s), golden[s]
        diff = _differences(want, got)
        if diff:
            failures += 1
            print(f"{s}: DIFFERS {json.dumps(diff, default=str)[:2000]}")
        else:
            added = sorted(set(got.get("summary", {})) - set(want.get("summary", {})))
            print(f"{s}: same" + (f" (new summary keys: {', '.join(added)})" if added else ""))
    return 1 if failures else 0


def _differences(want: dict[str, object], got: dict[str, object]) -> dict[str, object]:
    """Every recorded value that changed or disappeared; keys the code added since are not differences."""
    diff: dict[str, object] = {}
    for key, value in want.items():
        if isinstance(value, dict):
            sub = got.get(key, {})
            assert isinstance(sub, dict)
            diff.update({f"{key}.{k}": (v, sub.get(k)) for k, v in value.items() if sub.get(k) != v})
        elif got.get(key) != value:
            diff[key] = (value, got.get(key))
    return diff


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
