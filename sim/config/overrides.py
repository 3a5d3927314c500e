"""The points of a sweep: dotted scenario keys, their values, and their cartesian product.

``--set KEY=V1,V2`` and ``--logspace KEY=LO:HI:N`` give values of one dotted key (``network.bandwidth_mbps``,
``devices.0.gflops``: a number indexes a list), each parsed as a YAML scalar; ``--variant NAME:KEY=V,KEY=V``
names a set of settings applied together. :func:`points` expands them into validated scenarios.

Example::

    >>> parse_set("network.bandwidth_mbps=1,10")
    ('network.bandwidth_mbps', [1, 10])
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sim.config.load import load, parse_scenario
from sim.config.schema import Scenario
from sim.errors import UserError

MAX_LOGSPACE = 10_000  # values of one --logspace (each is a simulation)


def parse_set(text: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2,...`` (from ``--set``) as the key and its values, each parsed as a YAML scalar.

    >>> parse_set("transfer.format=dense,csr")
    ('transfer.format', ['dense', 'csr'])
    >>> parse_set("network.bandwidth_mbps=1,2.5,1e3")
    ('network.bandwidth_mbps', [1, 2.5, 1000.0])
    """
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise UserError(f"--set {text}: expected KEY=V1,V2,... (e.g. network.bandwidth_mbps=1,10,100)")
    if any(not v.strip() for v in values.split(",")):
        raise UserError(f"--set {text}: a value is empty; remove the stray comma (e.g. network.bandwidth_mbps=1,10)")
    try:
        parsed = [_number(yaml.safe_load(v)) for v in values.split(",")]
    except yaml.YAMLError:
        raise UserError(f"--set {text}: values must be YAML scalars separated by commas") from None
    return key.strip(), parsed


def _number(value: Any) -> Any:
    """``1e3`` is a string to YAML 1.1; read it as the number the user meant."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_logspace(text: str) -> tuple[str, list[float]]:
    """``KEY=LO:HI:N`` (from ``--logspace``) as the key and ``N`` log-spaced values from LO to HI.

    >>> parse_logspace("network.bandwidth_mbps=1:100:3")
    ('network.bandwidth_mbps', [1.0, 10.0, 100.0])
    """
    key, sep, spec = text.partition("=")
    parts = spec.split(":")
    try:
        lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
        if len(parts) != 3 or not (0 < lo < math.inf and 0 < hi < math.inf) or n < 1:
            raise ValueError
    except (ValueError, IndexError):
        raise UserError(f"--logspace {text}: expected KEY=LO:HI:N with finite 0 < LO <= HI and N >= 1") from None
    if lo > hi:
        raise UserError(f"--logspace {text}: LO ({lo:g}) is above HI ({hi:g}); give them in increasing order")
    if n > MAX_LOGSPACE:
        raise UserError(f"--logspace {text}: N = {n} values is too many for a sweep; use at most {MAX_LOGSPACE}")
    if not sep or not key.strip():
        raise UserError(f"--logspace {text}: expected KEY=LO:HI:N")
    return key.strip(), [float(v) for v in np.geomspace(lo, hi, n)]


def _check_key(resolved: dict[str, Any], key: str, flag: str = "--set") -> None:
    """Refuse a dotted key that names no scenario field (a ``None`` section may take any sub-key);
    ``flag`` names the option that gave it in the message."""
    node: Any = resolved
    for part in key.split("."):
        if node is None:
            return
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"{flag} {key}: '{part}' must be a list index below {len(node)}")
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise UserError(f"{flag} {key}: no such scenario field; see `dsim schema` for the keys")


def _assign(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` of plain scenario data to ``value``, creating missing sections."""
    parts = key.split(".")
    node: Any = data
    for part, nxt in itertools.pairwise(parts):
        if isinstance(node, list):
            node = node[int(part)]
        else:
            if node.get(part) is None:
                node[part] = [] if nxt.isdigit() else {}
            node = node[part]
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = value


def _plain(scenario: Scenario | str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The scenario as plain data holding only what its author set, and its origin for messages."""

    if isinstance(scenario, (str, Path)):
        load(scenario)  # refuses a bad file before any work
        return yaml.safe_load(Path(scenario).read_text(encoding="utf-8")), str(scenario)
    if isinstance(scenario, Scenario):
        return scenario.model_dump(mode="json", exclude_unset=True), "scenario"
    parse_scenario(dict(scenario))
    return copy.deepcopy(dict(scenario)), "scenario"


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:KEY=V,KEY=V`` (from ``--variant``) as the name and its settings (YAML scalars).

    >>> parse_variant("pruned:prune.method=ln_structured,prune.amount=0.5")
    ('pruned', {'prune.method': 'ln_structured', 'prune.amount': 0.5})
    """
    name, sep, rest = text.partition(":")
    settings: dict[str, Any] = {}
    for part in rest.split(",") if rest.strip() else []:
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            break
        try:
            settings[key.strip()] = _number(yaml.safe_load(value))
        except yaml.YAMLError:
            break
    else:
        if sep and name.strip():
            return name.strip(), settings
    raise UserError(f"--variant {text}: expected NAME:KEY=V,KEY=V (e.g. pruned:prune.method=ln_structured)")


def sweep_points(
    scenario: Scenario | str | Path | Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]],
    baseline: bool = False,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[tuple[dict[str, Any], Scenario | UserError]]:
    """Every point of the sweep: its swept values and its scenario, or the error that refused it.

    Points are the cartesian product of ``grid``, times each of the named ``variants`` (a set of
    settings applied together, shown in a ``variant`` column). The keys are checked first (a misspelt key
    refuses the whole sweep); a bad value fails its point only. ``baseline`` sets ``baseline: single``.
    """
    data, origin = _plain(scenario)
    if baseline:
        data["baseline"] = "single"
    resolved = parse_scenario(data, origin).resolved()
    for key, values in grid.items():
        _check_key(resolved, key)
        if len(values) == 0:
            raise UserError(f"--set {key}: give at least one value")
    for name, settings in (variants or {}).items():
        for key in settings:
            _check_key(resolved, key, f"--variant {name}:")
            if key in grid:
                raise UserError(f"--variant {name}: {key} is also swept by --set; set it in one place")
    keys = list(grid)
    named: list[tuple[str | None, Mapping[str, Any]]] = list(variants.items()) if variants else [(None, {})]
    out: list[tuple[dict[str, Any], Scenario | UserError]] = []
    for (name, settings), combo in itertools.product(named, itertools.product(*(grid[k] for k in keys))):
        point = copy.deepcopy(data)
        for key, value in [*settings.items(), *zip(keys, combo)]:
            _assign(point, key, value)
        labels: dict[str, Any] = ({} if name is None else {"variant": name}) | dict(zip(keys, combo))
        try:
            out.append((labels, parse_scenario(point, origin)))
        except UserError as exc:
            out.append((labels, exc))
    return out
