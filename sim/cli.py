"""The ``dsim`` command line.

User mistakes (:class:`~sim.errors.UserError`) print one line, ``dsim: error: ...``, and exit with
status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from sim.errors import UserError


def _cmd_run(args: argparse.Namespace) -> int:
    from sim.results import format_summary
    from sim.runner import as_scenario, build, simulate

    scenario = as_scenario(args.scenario)
    result = simulate(scenario, build(scenario).workload)
    out = Path(args.out) if args.out else Path("results") / scenario.name
    result.save(out)
    print(format_summary(result.summary))
    print(f"{'written to':<17}  {out}/")
    return 0


def _cmd_partition(args: argparse.Namespace) -> int:
    from sim import partition
    from sim.runner import as_scenario, trace_model

    scenario = as_scenario(args.scenario)
    graph = trace_model(scenario)
    names = scenario.device_names
    seed = scenario.seed if args.seed is None else args.seed
    parts = partition.make_partition(graph, args.strategy, len(names), seed=seed,
                                     rates=[d.flops_per_s for d in scenario.devices])  # fmt: skip
    partition.save_partition(args.out, scenario.model.name, names, parts)
    rates = [d.flops_per_s for d in scenario.devices]
    print(f"wrote {args.out}: {len(parts)} layers of {scenario.model.name} over {len(names)} devices "
          f"({args.strategy}; compute imbalance {partition.imbalance(graph, parts, rates):.3f})")  # fmt: skip
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    from sim.describe import describe
    from sim.runner import as_scenario, build, simulate

    scenario = as_scenario(args.scenario)
    built = build(scenario)
    print(describe(built, simulate(scenario, built.workload)))
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from sim.scenario import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _strategies() -> tuple[str, ...]:
    from sim.partition import STRATEGIES

    return STRATEGIES


def parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per job."""
    from sim import __version__

    p = argparse.ArgumentParser(prog="dsim", description="Distributed CNN inference simulator.")
    p.add_argument("--version", action="version", version=f"dsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run a scenario file and write its results")
    run.add_argument("scenario", help="scenario YAML file")
    run.add_argument("--out", metavar="DIR", help="output directory (default: results/<name>/)")
    run.set_defaults(func=_cmd_run)
    part = sub.add_parser("partition", help="write a partition file for a scenario's model and devices")
    part.add_argument("scenario", help="scenario YAML file (model and devices)")
    part.add_argument("--strategy", required=True, choices=_strategies())
    part.add_argument("--seed", type=int, help="for random strategies (default: the scenario seed)")
    part.add_argument("--out", required=True, metavar="FILE", help="partition JSON to write, e.g. partitions/x.json")
    part.set_defaults(func=_cmd_partition)
    desc = sub.add_parser("describe", help="per-layer shapes, FLOPs per device and bytes per device pair")
    desc.add_argument("scenario", help="scenario YAML file")
    desc.set_defaults(func=_cmd_describe)
    schema = sub.add_parser("schema", help="print the JSON Schema of scenario files")
    schema.set_defaults(func=_cmd_schema)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dsim``; returns the process exit status."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"dsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dsim: interrupted", file=sys.stderr)
        return 130
