"""Record or check the outputs of every bundled scenario (the re-layering's safety net).

``python tools/golden.py record`` runs ``dsim run`` on every ``scenarios/**/*.yaml`` and writes
``tests/golden/outputs.json``: the SHA-256 of each run's ``transfers.csv`` and ``compute.csv`` and every
number in its ``summary.json``. ``python tools/golden.py check`` runs them again and prints every
difference (exit status 1 if any). Scenarios whose numbers depend on this machine's speed
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
    if mode == "record":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        data = {s: record_one(s) for s in scenarios(selected)}
        GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(data)} scenarios in {GOLDEN.relative_to(ROOT)}")
        return 0
    golden = json.loads(GOLDEN.read_text())
    failures = 0
    for s in scenarios(selected):
        got, want = record_one(s), golden[s]
        if got != want:
            failures += 1
            diff = {k: (want.get(k), got.get(k)) for k in set(want) | set(got) if want.get(k) != got.get(k)}
            print(f"{s}: DIFFERS {json.dumps(diff, default=str)[:2000]}")
        else:
            print(f"{s}: same")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
