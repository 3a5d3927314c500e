"""The build cache and the commands that must not import torch (so that a sweep
or a quick command does not pay torch's start-up).

Every test uses its own cache folder (``--cache-dir`` in tmp_path); nothing depends on timing: a hit is
asserted from what the run says came from the cache, and the outputs are compared byte for byte.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from sim.cli import main
from sim.config.load import parse_scenario
from sim.pipeline import cache as builds
from sim.pipeline.store import Store, digest, weights_digest, workload_digest
from tests.helpers import scenario_dict

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, name: str = "s.yaml", **overrides: object) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(scenario_dict(2, **overrides)))
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_second_run_reads_the_workload_from_the_cache_and_writes_identical_files(tmp_path, capsys) -> None:
    scenario, cache = _write(tmp_path, model={"name": "lenet5", "train_epochs": 1}), tmp_path / "cache"
    assert main(["run", str(scenario), "--out", str(tmp_path / "a"), "--cache-dir", str(cache)]) == 0
    first = capsys.readouterr().out
    assert "0 of 1 workload from the cache; trained weights: 0 from the cache, 1 trained" in first
    assert main(["run", str(scenario), "--out", str(tmp_path / "b"), "--cache-dir", str(cache)]) == 0
    assert f"1 of 1 workload from the cache ({cache})" in capsys.readouterr().out
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert main(["run", str(scenario), "--out", str(tmp_path / "c"), "--no-cache"]) == 0
    assert "off (--no-cache)" in capsys.readouterr().out
    assert _files(tmp_path / "a") == _files(tmp_path / "c")


def test_trained_weights_are_reused_by_a_different_workload(tmp_path, capsys) -> None:
    cache = tmp_path / "cache"
    dense = _write(tmp_path, "dense.yaml", model={"name": "lenet5", "train_epochs": 1})
    csr = _write(
        tmp_path,
        "csr.yaml",
        model={"name": "lenet5", "train_epochs": 1},
        transfer={"format": "csr", "dtype": "float32", "index_bits": 32},
    )
    assert main(["run", str(dense), "--out", str(tmp_path / "a"), "--cache-dir", str(cache)]) == 0
    capsys.readouterr()
    assert main(["run", str(csr), "--out", str(tmp_path / "b"), "--cache-dir", str(cache)]) == 0
    assert "0 of 1 workload from the cache; trained weights: 1 from the cache, 0 trained" in capsys.readouterr().out
    assert main(["run", str(csr), "--out", str(tmp_path / "c"), "--no-cache"]) == 0
    assert _files(tmp_path / "b") == _files(tmp_path / "c")  # cached weights give the same results


def test_compare_and_sweep_report_cache_hits(tmp_path, capsys) -> None:
    cache, a = tmp_path / "cache", _write(tmp_path, "a.yaml")
    b = _write(tmp_path, "b.yaml", network={"topology": "mesh", "bandwidth_mbps": 5, "latency_ms": 1.0})
    args = ["compare", str(a), str(b), "--jobs", "1", "--cache-dir", str(cache)]
    assert main([*args, "--out", str(tmp_path / "c1")]) == 0
    assert "0 of 1 workload from the cache" in capsys.readouterr().out  # a and b share one workload
    assert main([*args, "--out", str(tmp_path / "c2")]) == 0
    assert "1 of 1 workload from the cache" in capsys.readouterr().out
    csv = "comparison.csv"
    assert (tmp_path / "c1" / csv).read_bytes() == (tmp_path / "c2" / csv).read_bytes()
    sweep = ["sweep", str(a), "--set", "transfer.format=dense,csr", "--jobs", "1", "--cache-dir", str(cache)]
    assert main([*sweep, "--out", str(tmp_path / "s1")]) == 0
    assert "1 of 2 workloads from the cache" in capsys.readouterr().out  # dense was built by compare
    assert main([*sweep, "--out", str(tmp_path / "s2")]) == 0
    assert "2 of 2 workloads from the cache" in capsys.readouterr().out
    assert (tmp_path / "s1" / "sweep.csv").read_bytes() == (tmp_path / "s2" / "sweep.csv").read_bytes()


def test_keys_cover_settings_files_and_code() -> None:
    base = parse_scenario(scenario_dict(2))
    assert workload_digest(base) == workload_digest(parse_scenario(scenario_dict(2)))
    # a network setting does not change the workload; wire, partition, seed and model settings do
    assert workload_digest(base) == workload_digest(parse_scenario(scenario_dict(2, network={"bandwidth_mbps": 1})))
    for changed in (
        {"transfer": {"format": "csr"}},
        {"partition": {"strategy": "random"}},
        {"seed": 1},
        {"model": {"name": "lenet5", "input_shape": [1, 32, 32], "train_epochs": 1}},
    ):
        assert workload_digest(base) != workload_digest(parse_scenario(scenario_dict(2, **changed))), changed
    trained = parse_scenario(scenario_dict(2, model={"name": "lenet5", "train_epochs": 1}))
    assert weights_digest(trained) != weights_digest(parse_scenario(scenario_dict(2, model={"name": "lenet5"})))
    assert digest("workload", {"a": 1}) != digest("weights", {"a": 1})


def test_checkpoint_content_is_part_of_the_key(tmp_path) -> None:
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"one")
    sc = parse_scenario(scenario_dict(2, model={"name": "lenet5", "checkpoint": str(ckpt)}))
    before = workload_digest(sc)
    ckpt.write_bytes(b"two")
    assert workload_digest(sc) != before


def test_user_models_are_not_cached() -> None:
    assert not builds.cacheable(parse_scenario(scenario_dict(2, model={"name": "tests.helpers:scenario_dict"})))


def test_store_writes_atomically_and_damaged_entries_are_rebuilt(tmp_path) -> None:
    store = Store(tmp_path / "cache")
    sc = parse_scenario(scenario_dict(2))
    first = builds.build(sc, store)
    assert not first.cached and builds.build(sc, store).cached
    entry = store.path("workload", workload_digest(sc))
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no temporary file left behind
    entry.write_bytes(b"not a pickle")
    again = builds.build(sc, store)
    assert not again.cached and again.built == first.built
    assert builds.build(sc, store).cached


def test_concurrent_writers_leave_one_readable_entry(tmp_path) -> None:
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from sim.pipeline.store import Store
        store = Store(Path({str(tmp_path / "cache")!r}))
        for i in range(200):
            store.put("workload", "ab" + "0" * 62, bytes([i % 7]) * 100_000)
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT) for _ in range(3)]
    assert all(p.wait() == 0 for p in procs)
    data = Store(tmp_path / "cache").get("workload", "ab" + "0" * 62)
    assert data is not None and len(data) == 100_000 and len(set(data)) == 1
    assert len(list((tmp_path / "cache" / "workload" / "ab").iterdir())) == 1


def _modules_after(code: str, tmp_path: Path) -> set[str]:
    """The heavy modules a fresh interpreter has imported after running ``code``."""
    probe = code + "\nimport sys\nprint(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, env=_env(tmp_path)
    )
    return set(eval(out.stdout.strip().splitlines()[-1]))


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DSIM_CACHE": str(tmp_path / "cache")}


def test_instant_commands_do_not_import_torch(tmp_path) -> None:
    scenario = _write(tmp_path)
    run_help = "from sim.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert _modules_after(run_help, tmp_path) == set()
    assert _modules_after("from sim.cli import main\nmain(['schema'])", tmp_path) == set()
    assert _modules_after(f"import sim\nsim.load({str(scenario)!r})", tmp_path) == set()
    assert main(["run", str(scenario), "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "torch" not in _modules_after(f"from sim.cli import main\nmain(['plot', {str(tmp_path / 'r')!r}])", tmp_path)
    cached_run = f"from sim.cli import main\nmain(['run', {str(scenario)!r}, '--out', {str(tmp_path / 'r2')!r}])"
    assert "torch" not in _modules_after(cached_run, tmp_path)  # the workload comes from the cache
    assert _files(tmp_path / "r") == _files(tmp_path / "r2")
