"""The documentation's commands run as written, and its published tables and plots/ CSVs match a fresh run.

The documentation is ``README.md`` and every page under ``docs/``. Fenced blocks are read by their info
string: ``sh`` runs in the default suite, ``sh slow`` in ``make test-slow``, ``sh not-run`` never (the
set-up, real runs, synopses with placeholders); a ``console slow`` block is a ``$ command`` and the first
lines it prints. Every block runs in a temporary copy of the repository (scenario, partition, profile and
bench files, tools, and a link to this venv), so nothing is written into the repository's own ``results/`` or
``plots/``; every command writes under ``results/``, never over a committed file.
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
DOCS = (README, *sorted((ROOT / "docs").rglob("*.md")))
VENV = Path(sys.prefix)
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    """One fenced block of the documentation: its language, its tags (``slow``, ``not-run``), its text and page."""

    language: str
    tags: tuple[str, ...]
    text: str
    page: str

    @property
    def runs(self) -> str:
        """``"default"``, ``"slow"`` or ``"never"``: which suite runs it."""
        if "not-run" in self.tags:
            return "never"
        return "slow" if "slow" in self.tags else "default"


def blocks(language: str) -> list[Block]:
    """The documentation's fenced blocks in ``language`` (``sh``, ``console``), page by page, in order."""
    found = [
        Block(m[1], tuple(m[2].split()), m[3], str(page.relative_to(ROOT)))
        for page in DOCS
        for m in FENCE.finditer(page.read_text(encoding="utf-8"))
    ]
    return [b for b in found if b.language == language]


def _text() -> str:
    """The prose of all the documentation, whitespace runs made single spaces."""
    return " ".join(" ".join(page.read_text(encoding="utf-8").split()) for page in DOCS)


def _copy(tmp_path: Path) -> Path:
    """A copy of the repository's inputs in ``tmp_path``, with ``.venv`` linking to the venv of this test."""
    if not (VENV / "bin" / "dsim").exists():
        pytest.skip("the dsim console script is not installed in this Python's prefix (run make test)")
    repo = tmp_path / "repo"
    repo.mkdir()
    for folder in ("scenarios", "partitions", "profiles", "bench", "tools"):
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
    assert {b.page for b in sh} > {"README.md"}, "the docs/ pages' blocks are read too"
    for block in [*sh, *blocks("console")]:
        assert set(block.tags) <= {"slow", "not-run"}, block
        commands = [line.split("#")[0] for line in block.text.splitlines() if not line.startswith("dsim: ")]
        for line in commands:
            assert not re.search(r"(^|[\s$&;|])(dsim|python3?) ", line), f"{block.page}: bare command: {line}"


def _targets(text: str) -> list[str]:
    """The paths a shell text writes to: every ``--out PATH`` and every ``> PATH`` redirection."""
    commands = "\n".join(line.split("#")[0] for line in text.splitlines())
    return re.findall(r"--out[ =](\S+)", commands) + re.findall(r"(?<![0-9&])>>? *([^\s&|;]+)", commands)


def test_documented_commands_write_under_results() -> None:
    """No command in the docs writes over a committed file: every --out and > lands under results/."""
    assert _targets("a --out results/x > results/s.json 2>/dev/null") == ["results/x", "results/s.json"]
    assert _targets("a --out plots/x") == ["plots/x"]  # what the check below refuses
    checked = 0
    for block in [*blocks("sh"), *blocks("console")]:
        text = block.text if block.language == "sh" else block.text.splitlines()[0]
        for target in _targets(text):
            if re.fullmatch(r"\[?[A-Z]+\]?", target):
                continue  # a synopsis's placeholder (DIR)
            assert target.startswith("results/"), f"{block.page}: writes {target}, not under results/"
            checked += 1
    assert checked >= 10


def _inputs(repo: Path) -> dict[str, bytes]:
    """The content of every file the copy took from the repository, by path."""
    files = [p for folder in ("scenarios", "partitions", "profiles", "bench") for p in (repo / folder).rglob("*")]
    return {
        str(p.relative_to(repo)): p.read_bytes() for p in sorted(files) if p.is_file() and "__pycache__" not in p.parts
    }


def test_cheap_readme_blocks_run_as_written(tmp_path: Path) -> None:
    repo = _copy(tmp_path)
    cheap = [b for b in blocks("sh") if b.runs == "default"]
    assert cheap, "no runnable block found"
    before = _inputs(repo)
    for block in cheap:
        _sh(repo, block.text, timeout_s=600)
    assert (repo / "results" / "quickstart" / "summary.json").exists()
    assert (repo / "results" / "mine" / "summary.json").exists()
    assert "properties" in json.loads((repo / "results" / "scenario.schema.json").read_text())
    committed = ROOT / "partitions" / "lenet5-4dev-random.json"  # what scenarios/partition-file.yaml reads
    assert filecmp.cmp(repo / "results" / "lenet5-4dev-random.json", committed, shallow=False)
    assert _inputs(repo) == before, "a documented command wrote over a committed file"


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
    written = set(re.findall(r"--out results/([\w.-]+)", slow_text))  # plots/cap comes from bench/bench_cap.py
    for committed in sorted((ROOT / "plots").glob("*/*.csv")):
        if committed.parent.name not in written:
            continue
        fresh = repo / "results" / committed.relative_to(ROOT / "plots")
        assert fresh.exists(), f"the documented commands no longer write {fresh.relative_to(repo)}"
        assert filecmp.cmp(committed, fresh, shallow=False), f"{committed.relative_to(ROOT)} is stale"
        compared += 1
    assert compared >= 3


PUBLISHED = [b for b in blocks("console") if b.runs == "slow"]


def test_the_published_outputs_are_found() -> None:
    """The quick-start run (README, first run), the stream, comm-aware and quadrant tables."""
    assert len(PUBLISHED) >= 5
    assert {b.page for b in PUBLISHED} >= {"README.md", "docs/tutorials/first-run.md", "docs/tutorials/cap-pruning.md"}


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(PUBLISHED)))
def test_published_tables_match_a_fresh_run(tmp_path: Path, index: int) -> None:
    repo = _copy(tmp_path)
    command, table = _published(PUBLISHED[index])
    printed = _sh(repo, command, timeout_s=3600).stdout.splitlines()
    assert printed[: len(table)] == table


def _number(pattern: str) -> float:
    match = re.search(pattern, _text())
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
    printed = _sh(repo, sweep[0], timeout_s=3600).stdout
    table = pd.read_csv(repo / "results" / "bandwidth" / "sweep.csv")
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
    _sh(repo, qs[0], timeout_s=3600)
    table = pd.read_csv(repo / "results" / "quickstart-sweep" / "sweep.csv")
    assert round(float(table["baseline_latency_s"].iloc[0]) * 1e3, 3) == _number(r"device takes (\d+\.\d+) ms")
    wins = table[table["latency_s"] < table["baseline_latency_s"]]["network.bandwidth_mbps"]
    loses = table[table["latency_s"] >= table["baseline_latency_s"]]["network.bandwidth_mbps"]
    about = _number(r"split wins above about (\d+) Mbps")
    assert about - 1 < loses.max() < wins.min() < about + 1
    data = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
    data["network"]["bandwidth_mbps"] = 100_000  # 100 Gbps: what is left is the six links' 1 ms latency
    latency_ms = sim.run(data).summary["latency_s"] * 1e3
    assert latency_ms > 6 and round(latency_ms, 2) == _number(r"\((\d+\.\d+) ms at 100 Gbps\)")
