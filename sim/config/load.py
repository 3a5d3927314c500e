"""Loading scenarios: a YAML file, a dict or a :class:`~sim.config.schema.Scenario`, validated in one place.

Loading validates the scenario (:mod:`sim.config.schema`), then converts it once into SI units
(:mod:`sim.config.setup`, reading a GraphML file if it names one). A scenario file is read only if it is a
regular UTF-8 file of at most :data:`MAX_SCENARIO_BYTES`; its relative paths resolve against its folder.
Old key names (:data:`sim.config.schema.RENAMED`) are accepted with a one-line note on stderr, and so are
magnitudes that are probably unit mistakes (:mod:`sim.config.plausible`).

Example::

    >>> sc = parse_scenario({"name": "x", "model": {"name": "lenet5"},
    ...                      "devices": [{"name": "a", "gflops": 1}], "source": "a", "sink": "a"})
    >>> sc.setup.network.bandwidth_bps
    20000000.0
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sim.config.messages import format_validation_error
from sim.config.plausible import plausibility_notes
from sim.config.schema import DeprecatedKey, NetworkSpec, Scenario
from sim.config.setup import build_setup, network_setup, resolve
from sim.errors import UserError
from sim.fileio import read_limited

MAX_SCENARIO_BYTES = 2**20  # a scenario is a page of YAML; 1 MiB leaves room for long link lists
_NOTED: set[str] = set()  # deprecation notes already printed by this process
MAX_DEPTH = 64  # [ and { nesting of a scenario file; the YAML parser recurses (slowly) on each level


def flow_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in ``text`` (quotes and comments not told apart: an
    overestimate, which only matters for text holding dozens of unmatched brackets).

    >>> flow_depth("a: [1, {b: [2]}]")
    3
    """
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


def parse_scenario(data: Any, origin: str = "scenario", base_dir: Path | None = None) -> Scenario:
    """Validate already-parsed scenario data and attach its :class:`~sim.config.setup.Setup`, raising a
    one-line :class:`UserError` on any mistake. Relative paths resolve against ``base_dir`` (None: the
    current folder)."""
    if not isinstance(data, dict):
        raise UserError(f"{origin}: must be a mapping of keys (name, model, devices, ...)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecatedKey)
        try:
            scenario = Scenario.model_validate(data)
        except ValidationError as exc:
            raise UserError(f"{origin}: {format_validation_error(exc)}") from None
        except RecursionError:
            raise UserError(f"{origin}: nested too deeply to be a scenario") from None
    notes = [str(w.message) for w in caught if issubclass(w.category, DeprecatedKey)] + plausibility_notes(scenario)
    for text in notes:
        note = f"{origin}: note: {text}"
        if note not in _NOTED:
            _NOTED.add(note)
            print(f"dsim: {note}", file=sys.stderr)
    try:
        scenario._setup = build_setup(scenario, base_dir)
    except UserError as exc:
        raise UserError(f"{origin}: {exc}") from None
    except ValueError as exc:  # the setup's checks name their field
        raise UserError(f"{origin}: {exc}") from None
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a YAML scenario file; its relative paths resolve against its folder."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such scenario file")
    text = read_limited(path, MAX_SCENARIO_BYTES, "scenario file")
    if flow_depth(text) > MAX_DEPTH:
        raise UserError(f"{path}: nested more than {MAX_DEPTH} levels deep ([ or {{); not a scenario")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}: not valid YAML{where}; check indentation and quoting") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a scenario (thousands of [ or {{)") from None
    except ValueError:  # the one ValueError of safe_load: an integer of more than 4300 digits
        raise UserError(f"{path}: a number has more than {sys.get_int_max_str_digits()} digits") from None
    return parse_scenario(data, origin=str(path), base_dir=path.absolute().parent)


def load(scenario: Scenario | str | Path | dict[str, Any]) -> Scenario:
    """Accept a Scenario, a path to a YAML file, or a dict of scenario data. A Scenario made without this
    module (``Scenario.model_validate``) gets its setup here (relative paths: to the current folder)."""
    if isinstance(scenario, Scenario):
        if scenario._setup is None:
            return parse_scenario(scenario.model_dump(mode="json", by_alias=True, exclude_unset=True))
        return scenario
    if isinstance(scenario, dict):
        return parse_scenario(scenario)
    return load_scenario(scenario)


def with_network(scenario: Scenario, network: NetworkSpec) -> Scenario:
    """A copy of a loaded scenario with ``network`` in place of its own, converted again into SI units (its
    GraphML file, if any, read again from the scenario's folder). Raises ``ValueError`` naming the field.

    >>> sc = parse_scenario({"name": "x", "model": {"name": "lenet5"},
    ...                      "devices": [{"name": "a", "gflops": 1}], "source": "a", "sink": "a"})
    >>> fast = with_network(sc, sc.network.model_copy(update={"bandwidth_mbps": 80}))
    >>> fast.setup.network.bandwidth_bps, sc.setup.network.bandwidth_bps
    (80000000.0, 20000000.0)
    """
    copied = BaseModel.model_copy(scenario, update={"network": network})  # Scenario.model_copy refuses networks
    graphml = resolve(network.graphml, scenario.setup.base_dir)
    paths = replace(scenario.setup.paths, graphml=graphml)
    copied._setup = replace(scenario.setup, network=network_setup(copied, graphml), paths=paths)
    return copied
