"""Progress of long work reaches stderr as plain lines when stderr is not a terminal, and --log FILE."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from sim.progress import Progress, duration
from tests.helpers import SCENARIOS

LINE = re.compile(r"^dsim: (build|point) (\d+)/(\d+) done in [\d.]+ (s|min)(, about [\d.]+ (s|min) left)?$")


def test_estimate_is_mean_time_per_item_times_items_left() -> None:
    times = iter([10.0, 13.0, 16.0, 25.0, 26.0])  # start, then three items: 3 s, 3 s, 9 s after the start
    with Progress(4, "build", "workload", clock=times.__next__) as p:
        for _ in range(3):
            p.step()
    # after 2 of 4 in 6 s: 3 s per item, 2 left -> 6 s; after 3 of 4 in 15 s: 5 s per item, 1 left -> 5 s
    assert p.lines == [
        "build 1/4 done in 3.0 s, about 9.0 s left",
        "build 2/4 done in 6.0 s, about 6.0 s left",
        "build 3/4 done in 15 s, about 5.0 s left",
    ]
    assert duration(59.6) == "60 s" and duration(180.0) == "3.0 min"


def test_disabled_progress_logs_nothing() -> None:
    with Progress(2, "build", "workload", enabled=False) as p:
        p.step()
        p.step()
    assert p.lines == [] and p.done == 2


def _sweep(tmp_path: Path, *flags: str, bandwidths: str = "1,10,100") -> subprocess.CompletedProcess[str]:
    argv = ["sweep", str(SCENARIOS / "quickstart.yaml"), "--set", f"network.bandwidth_mbps={bandwidths}", "--set"]
    argv += ["transfer.format=dense,auto", "--out", str(tmp_path / "sw"), *flags]
    return subprocess.run(
        [sys.executable, "-m", "sim", *argv], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )


def test_sweep_logs_a_line_per_build_and_point_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    done = _sweep(tmp_path, "--log", str(tmp_path / "dsim.log"), "--jobs", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert all(LINE.match(line) for line in lines), lines  # no bar, no other chatter (nor a stopped worker's)
    counts = [(m[1], int(m[2]), int(m[3])) for m in map(LINE.match, lines) if m]
    # two workloads (dense, auto; the bandwidth is engine-only), then six points, each counted once, in order
    assert counts == [("build", i, 2) for i in (1, 2)] + [("point", i, 6) for i in range(1, 7)]
    assert "left" not in lines[1] and "left" not in lines[-1] and "left" in lines[2]
    logged = (tmp_path / "dsim.log").read_text().splitlines()
    assert len(logged) == len(lines) and all(" dsim sweep: " in line for line in logged)
    assert [line.split(" dsim sweep: ")[1] for line in logged] == [line[len("dsim: ") :] for line in lines]


def test_quiet_silences_progress(tmp_path: Path) -> None:
    done = _sweep(tmp_path, "--quiet", "--jobs", "1", bandwidths="10")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "2 points (0 failed)" in done.stdout


def test_build_estimate_weighs_the_epochs_each_build_trains(monkeypatch, caplog) -> None:
    """A cheap build first must not price the fine-tuning ones at its rate (issue 25: "78 s left" for 17 min)."""
    import functools  # only this test fakes the sweep's clock and builds

    from sim.config.load import load
    from sim.pipeline.cache import build
    from sim.study import sweep as sweeps
    from tests.helpers import scenario_dict

    now = [0.0]
    one = build(load(scenario_dict(2, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 1})))

    def timed_build(scenario, store=None, threads=None):  # half a second per pass over the training split
        now[0] += 0.5 * (1 + scenario.prune.finetune_epochs)
        return one

    monkeypatch.setattr(sweeps, "build", timed_build)
    monkeypatch.setattr(sweeps, "Progress", functools.partial(Progress, clock=lambda: now[0]))
    tuned = {
        f"tuned{a}": {"prune.method": "ln_structured", "prune.amount": a, "prune.finetune_epochs": 9}
        for a in (0.3, 0.5, 0.7)
    }
    caplog.set_level("INFO", logger="sim.progress")
    sweeps.sweep(scenario_dict(2), {"network.bandwidth_mbps": [10]}, variants={"dense": {}, **tuned}, jobs=1)
    builds = [r.getMessage() for r in caplog.records if r.getMessage().startswith("build")]
    # 0.5 s for the dense build (weight 1), 5 s for each tuned one (weight 10): 15 s left after the first
    assert builds[0] == "build 1/4 done in 0.5 s, about 15 s left"
    assert builds[1] == "build 2/4 done in 5.5 s, about 10 s left"
