"""Inside ``sim/testbed`` the modules import one way too: records, then what runs on a device, then what
starts the devices and reads their reports, then the commands."""

from __future__ import annotations

from tests.test_layers import SIM, _imports

RANK = {
    "program": 0,
    "blocks": 0,
    "netns": 0,
    "transport": 1,
    "interpreter": 1,
    "compile": 1,
    "worker": 2,
    "launcher": 3,
    "measure": 3,
    "execute": 4,
    "validate": 5,
    "runtime_profile": 6,
}


def test_every_testbed_module_has_a_rank() -> None:
    assert {p.stem for p in (SIM / "testbed").glob("*.py")} - {"__init__"} == set(RANK)


def test_testbed_modules_import_earlier_ones_only() -> None:
    wrong = []
    for path in (SIM / "testbed").glob("*.py"):
        if path.stem == "__init__":
            continue
        for name, line, _local in _imports(path):
            parts = name.split(".")
            if parts[:2] == ["sim", "testbed"] and len(parts) > 2 and parts[2] in RANK:
                if RANK[parts[2]] >= RANK[path.stem]:
                    wrong.append(f"{path.stem} imports {parts[2]} at line {line}")
    assert wrong == []
