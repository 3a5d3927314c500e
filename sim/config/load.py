"""Loading scenarios: a YAML file, a dict or a :class:`~sim.config.schema.Scenario`, validated in one place.

Example::

    >>> sc = parse_scenario({"name": "x", "model": {"name": "lenet5"},
    ...                      "devices": [{"name": "a", "gflops": 1}], "source": "a", "sink": "a"})
    >>> sc.network.bandwidth_bps
    20000000.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sim.config.messages import format_validation_error
from sim.config.schema import Scenario
from sim.errors import UserError


def parse_scenario(data: Any, origin: str = "scenario") -> Scenario:
    """Validate already-parsed scenario data, raising a one-line :class:`UserError` on any mistake."""
    if not isinstance(data, dict):
        raise UserError(f"{origin}: must be a mapping of keys (name, model, devices, ...)")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{origin}: {format_validation_error(exc)}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a YAML scenario file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such scenario file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read scenario file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}: not valid YAML{where}; check indentation and quoting") from None
    return parse_scenario(data, origin=str(path))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files, for editors."""
    return Scenario.model_json_schema()


def load(scenario: Scenario | str | Path | dict[str, Any]) -> Scenario:
    """Accept a Scenario, a path to a YAML file, or a dict of scenario data."""
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, dict):
        return parse_scenario(scenario)
    return load_scenario(scenario)
