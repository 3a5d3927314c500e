"""Every package on the install path is pinned exactly, and this venv holds exactly those versions."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(text: str) -> str:
    """A distribution name in PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", text).lower()


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version and not re.search(r"[<>=!~*,; ]", version), f"not an exact pin: {line}"
            pins[_name(name)] = version
    return pins


def test_the_venv_holds_exactly_the_pinned_versions() -> None:
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    installed = {}
    for line in frozen.splitlines():
        if line.startswith(("#", "-e ")) or "==" not in line:
            continue  # the editable dsim itself
        name, _, version = line.partition("==")
        installed[_name(name)] = version.split("+")[0]  # torch's local label: 2.13.0+cpu is the pinned 2.13.0
    pins = _pins()
    assert installed == {k: v for k, v in pins.items() if k != "pip"}


def test_build_and_pip_are_pinned_too() -> None:
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert build and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", r) for r in build), build
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line]
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    assert "pip" in _pins()
    torch = [r for r in (ROOT / "setup.cfg").read_text().split() if r.startswith("torch")]
    assert torch == [f"torch=={_pins()['torch']}"]
