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
    print(f"{'written to':<17}  {out}/ (transfers.csv, compute.csv, summary.json, trace.json, timeline.png)")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from sim.scenario import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


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
