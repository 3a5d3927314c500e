"""How a real run's first frame depends on how long its device processes were idle before the round.

``dsim execute`` starts a timed round ``START_MARGIN_S`` after the parent sends it
(:mod:`sim.testbed.launcher`). For each margin given, this runs the scenario for real on loopback
(``--repeats`` runs of ``--frames`` frames arriving together) and prints the range over the runs of frame
0's latency, of frame 0's compute (all devices' task times summed) and of the later frames' compute.
Timings: measure on a quiet machine (``../shared/tools/quiet-run``).

    python tools/first_frame_margin.py scenarios/quickstart.yaml --margins 1 0.2 0.1 0.05
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

import sim.testbed.launcher as launcher
from sim.config.load import parse_scenario
from sim.testbed.execute import execute


def _span(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario", type=Path)
    p.add_argument(
        "--margins", type=float, nargs="+", required=True, help="seconds between a round's order and its start"
    )
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    data = yaml.safe_load(args.scenario.read_text())
    data["inputs"].update(frames=args.frames, interval_ms=0)
    sc = parse_scenario(data, origin=str(args.scenario), base_dir=args.scenario.parent)
    for margin in args.margins:
        launcher.START_MARGIN_S = margin
        first, first_compute, later_compute = [], [], []
        for run in execute(sc, shape=False, repeats=args.repeats):
            c = run.compute
            per_frame = ((c["end_s"] - c["start_s"]) * 1e3).groupby(c["frame"]).sum()
            first.append(run.record.frame_latency_s[0] * 1e3)
            first_compute.append(float(per_frame.iloc[0]))
            later_compute += [float(x) for x in per_frame.iloc[1:]]
        print(
            f"margin {margin:g} s: frame 0 latency {_span(first)} ms, frame-0 compute {_span(first_compute)} ms; "
            f"later frames' compute {_span(later_compute)} ms",
            flush=True,
        )


if __name__ == "__main__":
    main()
