"""The README's commands run as written, and its published tables and plots/ CSVs match a fresh run.

Fenced blocks are read by their info string: ``sh`` runs in the default suite, ``sh slow`` in
``make test-slow``, ``sh not-run`` never (the set-up, synopses with placeholders); a ``console slow``
block is a ``$ command`` and the table it prints. Every block runs in a temporary copy of the repository
(scenario, partition and bench files, and a link to this venv), so nothing is written into the
repository's own ``results/`` or ``plots/``.
"""

from __future__ import annotations

import filecmp
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV = Path(sys.prefix)
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    """One fenced block of the README: its language, its tags (``slow``, ``not-run``) and its text."""

    language: str
    tags: tuple[str, ...]
    text: str

    @property
    def runs(self) -> str:
        """``"default"``, ``"slow"`` or ``"never"``: which suite runs it."""
        if "not-run" in self.tags:
            return "never"
        return "slow" if "slow" in self.tags else "default"


def blocks(language: str) -> list[Block]:
    """The README's fenced blocks in ``language`` (``sh``, ``console``), in order."""
    found = [Block(m[1], tuple(m[2].split()), m[3]) for m in FENCE.finditer(README.read_text(encoding="utf-8"))]
    return [b for b in found if b.language == language]


def _copy(tmp_path: Path) -> Path:
    """A copy of the repository's inputs in ``tmp_path``, with ``.venv`` linking to the venv of this test."""
    if not (VENV / "bin" / "dsim").exists():
        pytest.skip("the dsim console script is not installed in this Python's prefix (run make test)")
    repo = tmp_path / "repo"
    repo.mkdir()
    for folder in ("scenarios", "partitions", "profiles", "bench"):
        shutil.copytree(ROOT / folder, repo / folder)
    (repo / ".venv").symlink_to(VENV)
    return repo


def _sh(repo: Path, script: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, f"{script}\n{done.stderr}"
    return done


def test_readme_tags_are_known_and_commands_use_the_venv() -> None:
    """Every shell block is tagged as runnable, slow or not run, and spells dsim as .venv/bin/dsim."""
    sh = blocks("sh")
    assert len(sh) >= 8 and not blocks("bash"), "write shell blocks as sh (the test reads those)"
    for block in [*sh, *blocks("console")]:
        assert set(block.tags) <= {"slow", "not-run"}, block
        commands = [line.split("#")[0] for line in block.text.splitlines() if not line.startswith("dsim: ")]
        for line in commands:
            assert not re.search(r"(^|[\s$&;|])(dsim|python3?) ", line), f"bare command: {line}"


def test_cheap_readme_blocks_run_as_written(tmp_path: Path) -> None:
    repo = _copy(tmp_path)
    cheap = [b for b in blocks("sh") if b.runs == "default"]
    assert cheap, "no runnable block found"
    written = "partitions/lenet5-4dev-random.json"
    (repo / written).unlink()  # the README's dsim partition writes it again
    for block in cheap:
        _sh(repo, block.text, timeout_s=600)
    assert (repo / "results" / "quickstart" / "summary.json").exists()
    assert (repo / "results" / "mine" / "summary.json").exists()
    assert "properties" in json.loads((repo / "scenario.schema.json").read_text())
    assert filecmp.cmp(repo / written, ROOT / written, shallow=False)  # the README's dsim partition: as committed


def _published(block: Block) -> tuple[str, list[str]]:
    """The ``$`` command of a console block and the lines it printed."""
    first, *rest = block.text.splitlines()
    assert first.startswith("$ "), block
    return first[2:], rest


@pytest.mark.slow
def test_slow_readme_blocks_run_and_reproduce_the_committed_plots(tmp_path: Path) -> None:
    repo = _copy(tmp_path)
    for block in [b for b in blocks("sh") if b.runs == "slow"]:
        _sh(repo, block.text, timeout_s=3600)
    compared = 0
    slow_text = "\n".join(b.text for b in blocks("sh") if b.runs == "slow")
    written = set(re.findall(r"--out plots/([\w.-]+)", slow_text))  # plots/cap comes from bench/bench_cap.py
    for committed in sorted((ROOT / "plots").glob("*/*.csv")):
        if committed.parent.name not in written:
            continue
        fresh = repo / committed.relative_to(ROOT)
        assert fresh.exists(), f"the README's commands no longer write {committed.relative_to(ROOT)}"
        assert filecmp.cmp(committed, fresh, shallow=False), f"{committed.relative_to(ROOT)} is stale"
        compared += 1
    assert compared >= 3


@pytest.mark.slow
@pytest.mark.parametrize("index", range(3))
def test_published_tables_match_a_fresh_run(tmp_path: Path, index: int) -> None:
    repo = _copy(tmp_path)
    published = [b for b in blocks("console") if b.runs == "slow"]
    assert len(published) == 3  # the stream, comm-aware and quadrant tables
    command, table = _published(published[index])
    printed = _sh(repo, command, timeout_s=3600).stdout.splitlines()
    assert printed[: len(table)] == table


def _number(pattern: str) -> float:
    match = re.search(pattern, " ".join(README.read_text(encoding="utf-8").split()))
    assert match, pattern
    return float(match[1])


@pytest.mark.slow
def test_published_crossovers_match_a_fresh_sweep(tmp_path: Path) -> None:
    """The quick-start and bandwidth numbers quoted in the prose, against the sweep tables they come from."""
    import pandas as pd
    import yaml

    import sim

    repo = _copy(tmp_path)
    sweep = [b.text for b in blocks("sh") if "bandwidth.yaml" in b.text]
    assert len(sweep) == 1
    printed = _sh(repo, sweep[0].replace("--out plots/bandwidth", "--out bw"), timeout_s=3600).stdout
    table = pd.read_csv(repo / "bw" / "sweep.csv")
    single_ms = table["baseline_latency_s"] * 1e3
    dense = table[table["variant"] == "dense"]
    pruned = table[table["variant"] == "auto, pruned"]
    assert round(float(dense["baseline_latency_s"].iloc[0]) * 1e3, 1) == _number(r"alone \((\d+\.\d) ms\)")
    assert round(float(pruned["baseline_latency_s"].iloc[0]) * 1e3, 2) == _number(r"takes only (\d+\.\d+) ms")
    assert bool((pruned["latency_s"] * 1e3 > single_ms[pruned.index]).all())  # never beaten up to 1 Gbps
    for variant, pattern in (
        ("dense", r"above (\d+\.\d+) Mbps sent dense"),
        ("auto", r"above (\d+\.\d+) Mbps packed"),
        ("csr", r"only above (\d+\.\d+) Mbps in CSR"),
    ):
        rows = table[table["variant"] == variant]
        wins = rows[rows["latency_s"] < rows["baseline_latency_s"]]
        loses = rows[rows["latency_s"] >= rows["baseline_latency_s"]]
        crossover = _number(pattern)
        assert f"crossover: {variant} = single device at {crossover:.2f} Mbps" in printed
        # the published crossover lies between the last losing and the first winning bandwidth
        assert loses["network.bandwidth_mbps"].max() < crossover < wins["network.bandwidth_mbps"].min(), variant
    qs = [b.text for b in blocks("sh") if "quickstart.yaml --logspace" in b.text]
    assert len(qs) == 1
    _sh(repo, qs[0].strip() + " --out qs", timeout_s=3600)
    table = pd.read_csv(repo / "qs" / "sweep.csv")
    assert round(float(table["baseline_latency_s"].iloc[0]) * 1e3, 3) == _number(r"device takes (\d+\.\d+) ms")
    wins = table[table["latency_s"] < table["baseline_latency_s"]]["network.bandwidth_mbps"]
    loses = table[table["latency_s"] >= table["baseline_latency_s"]]["network.bandwidth_mbps"]
    about = _number(r"split wins above about (\d+) Mbps")
    assert about - 1 < loses.max() < wins.min() < about + 1
    data = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
    data["network"]["bandwidth_mbps"] = 100_000  # 100 Gbps: what is left is the six links' 1 ms latency
    latency_ms = sim.run(data).summary["latency_s"] * 1e3
    assert latency_ms > 6 and round(latency_ms, 2) == _number(r"\((\d+\.\d+) ms at 100 Gbps\)")
