"""The ``dsim`` command line.

User mistakes (:class:`~sim.errors.UserError`) print one line, ``dsim: error: ...``, and exit with
status 2; no traceback. Every option is checked before anything is written. Long work logs a line per
finished build, point or compared scenario (:mod:`sim.progress`) to stderr when it is not a terminal (a
bar shows on a terminal), and to ``--log FILE``; ``--quiet`` silences both on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from sim import __version__
from sim.errors import RunFailure, UserError
from sim.progress import LOG as PROGRESS_LOG
from sim.progress import show_bars


def _check_out(path: str | Path, directory: bool, flag: str = "--out") -> Path:
    """Refuse an output path that cannot be written, before any work starts: an existing file where a
    folder is wanted (or the reverse), or a nearest existing parent that is a file or not writable."""
    p = Path(path)
    if directory and p.exists() and not p.is_dir():
        raise UserError(f"{flag} {p}: is an existing file; give a directory (it is created if missing)")
    if not directory and p.is_dir():
        raise UserError(f"{flag} {p}: is a directory; give a file name inside it, e.g. {p / 'out'}")
    start = p if directory else p.parent
    parent = next((a for a in (start, *start.parents) if a.exists()), Path("."))
    if not parent.is_dir():
        raise UserError(f"{flag} {p}: cannot be created because {parent} is a file; choose another {flag}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {p}: {parent} is not writable; choose another {flag}")
    return p


@contextmanager
def _writing(path: str | Path, flag: str = "--out") -> Iterator[None]:
    """Turn an OS error on writing under ``path`` (read-only or special file systems such as /proc, a
    full disk) into a one-line :class:`UserError`; other errors pass through."""
    try:
        yield
    except OSError as exc:
        target, base = os.path.abspath(str(exc.filename or "")), os.path.abspath(str(path))
        if not exc.filename or not (target.startswith(base) or base.startswith(target + os.sep)):
            raise  # not about the output (the folder itself, a file in it, or a parent being created)
        raise UserError(f"{flag} {path}: cannot write there ({exc.strerror or exc}); choose another {flag}") from None


def _store(args: argparse.Namespace) -> Any:
    """The build cache of ``--cache-dir`` / ``--no-cache`` (a :class:`sim.pipeline.store.Store`), or None."""
    from sim.pipeline.store import Store, default_root  # pandas, pydantic: only the commands that build

    if args.no_cache:
        return None
    root = Path(args.cache_dir) if args.cache_dir else default_root()
    if root.exists() and not root.is_dir():
        raise UserError(f"--cache-dir {root}: is an existing file; give a directory (it is created if missing)")
    return Store(root)


def _cmd_run(args: argparse.Namespace) -> int:
    from sim.config.load import load  # pydantic: kept out of --help
    from sim.pipeline.cache import CacheReport  # pandas: kept out of --help
    from sim.pipeline.run import run  # torch only when the workload is not in the build cache
    from sim.report.save import save_run  # matplotlib: imported only by the commands that draw
    from sim.report.text import format_summary  # pandas: kept out of --help

    scenario = load(args.scenario)
    out = _check_out(args.out if args.out else Path("results") / scenario.name, directory=True)
    store = _store(args)
    report = CacheReport(None if store is None else store.root)
    result = run(scenario, store, report)
    with _writing(out):
        save_run(result, out)
    print(format_summary(result.record))
    print(f"{'build cache':<17}  {report.line()}")
    print(f"{'written to':<17}  {out}/")
    return 0


def _cmd_partition(args: argparse.Namespace) -> int:
    from sim.config.load import load  # pydantic: kept out of --help
    from sim.config.schema import STRATEGIES  # pydantic: kept out of --help
    from sim.model import partition  # torch
    from sim.pipeline.prepare import trace_model  # torch: imported only by the commands that build a model

    scenario = load(args.scenario)
    if args.strategy not in STRATEGIES:
        raise UserError(f"--strategy: unknown strategy '{args.strategy}'; choose one of {', '.join(STRATEGIES)}")
    if args.seed is not None and args.seed < 0:
        raise UserError(f"--seed: must be >= 0 (got {args.seed})")
    _check_out(args.out, directory=False)
    graph = trace_model(scenario)
    names = scenario.device_names
    seed = scenario.seed if args.seed is None else args.seed
    from sim.engine import assemble  # torch-free, but only this command needs it here

    rates = assemble.compute_rates(scenario)
    spec = scenario.partition
    split = partition.make_split(
        graph,
        args.strategy,
        len(names),
        seed=seed,
        rates=rates,
        sink=names.index(scenario.sink),
        fused=spec.fused and args.strategy == "spatial",
        tiles=spec.tiles if args.strategy == "spatial" else None,
    )
    with _writing(args.out):
        partition.save_partition(args.out, scenario.model.name, names, split)
    balance = "" if split.spatial else f"; compute imbalance {partition.imbalance(graph, split.filters, rates):.3f}"
    print(
        f"wrote {args.out}: {len(split.filters)} layers of {scenario.model.name} over {len(names)} devices "
        f"({args.strategy}{balance})"
    )
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    from sim.config.load import load  # pydantic: kept out of --help
    from sim.pipeline.calibrate import calibrated  # torch only for calibrate: true devices
    from sim.pipeline.describe import describe  # torch: imported only by the commands that build a model
    from sim.pipeline.evaluate import baseline_scenario, evaluate  # pandas: kept out of --help
    from sim.pipeline.prepare import prepare  # torch: imported only by the commands that build a model

    scenario = calibrated(load(args.scenario))
    if args.figure is not None:
        _check_out(args.figure, directory=False, flag="--figure")
    prepared = prepare(scenario)
    baseline = prepare(baseline_scenario(scenario)).built if scenario.baseline == "single" else None
    print(describe(prepared, evaluate(scenario, prepared.built, baseline)))
    if args.figure is not None:
        from sim.pipeline.describe import ownership_table  # torch: imported only by the commands that build a model
        from sim.report.plots import plot_ownership  # matplotlib: kept out of --help

        with _writing(args.figure, flag="--figure"):
            plot_ownership(ownership_table(prepared), args.figure, title=scenario.name)
        print(f"wrote {args.figure}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from sim.config import overrides  # numpy, pydantic: kept out of --help
    from sim.config.load import load  # pydantic: kept out of --help
    from sim.pipeline.cache import CacheReport  # pandas: kept out of --help
    from sim.report.text import format_sweep  # pandas: kept out of --help
    from sim.study.sweep import check_jobs, sweep  # torch only when a workload is not in the build cache

    check_jobs(args.jobs)
    scenario = load(args.scenario)
    pairs = [overrides.parse_set(text) for text in args.set] + [
        overrides.parse_logspace(text) for text in args.logspace
    ]
    settings = dict(pairs)
    if len(settings) < len(pairs):
        raise UserError("--set/--logspace: a key is given twice; list all its values in one --set")
    variants = dict(overrides.parse_variant(text) for text in args.variant)
    if len(variants) < len(args.variant):
        raise UserError("--variant: two variants have the same name")
    out = _check_out(args.out if args.out else Path("results") / f"{scenario.name}-sweep", directory=True)
    store = _store(args)
    report = CacheReport(None if store is None else store.root)
    try:
        with _writing(out):
            table = sweep(
                args.scenario,
                settings,
                baseline=args.baseline,
                variants=variants,
                out=out,
                jobs=args.jobs,
                store=store,
                report=report,
                scheduler=args.scheduler,
            )
    except KeyboardInterrupt:
        print(f"dsim: interrupted; finished points (if any) kept in {out / 'sweep.csv'}", file=sys.stderr)
        return 130
    failed = int((table["error"] != "").sum())
    if failed == len(table):
        raise UserError(f"all {failed} sweep points failed; nothing written; the first: {table['error'].iloc[0]}")
    print(format_sweep(table))
    print(f"build cache: {report.line()}")
    print(f"{len(table)} points ({failed} failed); written to {out / 'sweep.csv'}")
    from sim.report.redraw import redraw  # matplotlib: imported only by the commands that draw

    with _writing(out):
        for path in redraw(out):
            print(f"plot: {path}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from sim.config.load import load  # pydantic: kept out of --help
    from sim.pipeline.cache import CacheReport  # pandas: kept out of --help
    from sim.report.text import format_comparison  # pandas: kept out of --help
    from sim.study.compare import compare  # torch only when a workload is not in the build cache
    from sim.study.sweep import check_jobs  # pandas: kept out of --help

    check_jobs(args.jobs)
    # refuses a bad file before anything is written; a run folder (dsim run/execute --out) is named as it is
    names = [Path(path).name if Path(path).is_dir() else load(path).name for path in args.scenarios]
    out = _check_out(args.out if args.out else Path("results") / comparison_folder(names), directory=True)
    store = _store(args)
    report = CacheReport(None if store is None else store.root)
    with _writing(out):
        table = compare(args.scenarios, out=out, jobs=args.jobs, store=store, report=report)
    print(format_comparison(table))
    print(f"build cache: {report.line()}")
    written = "comparison.csv, breakdown.png, pareto.csv, pareto.png"
    if "energy_j_per_frame" in table.columns:
        written += ", pareto_energy.csv, pareto_energy.png"
    print(f"written to {out}/ ({written})")
    return 0


def comparison_folder(names: Sequence[str], limit: int = 80) -> str:
    """The default output folder name of ``dsim compare`` on scenarios named ``names``: ``compare-`` and the
    names joined by ``+`` (so two studies of different files never share a folder), shortened with a hash of
    the full list when longer than ``limit`` characters.

    Example::

        >>> comparison_folder(["stream", "stream-fast"])
        'compare-stream+stream-fast'
    """
    joined = "+".join(names)
    if len(joined) + 8 <= limit:
        return f"compare-{joined}"
    digest = hashlib.sha1(joined.encode()).hexdigest()[:8]
    return f"compare-{names[0][:40]}+{len(names) - 1}-more-{digest}"


def _cmd_plot(args: argparse.Namespace) -> int:
    from sim.report.redraw import parse_frames, redraw  # matplotlib: imported only by the commands that draw

    frames = None if args.frames is None else parse_frames(args.frames)
    with _writing(args.results, flag="results folder"):
        for path in redraw(args.results, frames=frames):
            print(f"plot: {path}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from sim.config.load import load  # pydantic: kept out of --help
    from sim.config.schema import MAX_EPOCHS  # pydantic: kept out of --help
    from sim.model import data, train  # torch
    from sim.pipeline.prepare import checked_graph, input_shape, load_model  # torch: only the model commands

    scenario = load(args.scenario)
    if not 1 <= args.epochs <= MAX_EPOCHS:
        raise UserError(f"--epochs: must be from 1 to {MAX_EPOCHS}, as model.train_epochs (got {args.epochs})")
    _check_out(args.out, directory=False)
    inputs, shape = scenario.inputs, input_shape(scenario.model)
    splits = data.labelled(inputs.dataset, shape, scenario.seed, scenario.setup.paths.dataset)
    if splits is None:
        raise UserError(f"inputs.dataset: '{inputs.dataset}' has no labels to train on; use digits or cifar10")
    model = load_model(scenario.model, scenario.seed, scenario.setup.paths.checkpoint)
    checked_graph(model, splits[1].images[:1], splits, scenario.model.name)  # shape and classes, before training
    train.fit(model, splits[0], args.epochs, scenario.model.lr, scenario.seed)
    with _writing(args.out):
        train.save_checkpoint(model, args.out)
    print(f"test accuracy      {train.accuracy(model, splits[1]) * 100:.2f} % ({len(splits[1].images)} images)")
    print(f"written to         {args.out} (use it as model.checkpoint)")
    return 0


def _cmd_execute(args: argparse.Namespace) -> int:
    from sim.config.load import load  # pydantic: kept out of --help
    from sim.report.save import save_run  # matplotlib: imported only by the commands that draw
    from sim.report.text import format_summary  # pandas: kept out of --help
    from sim.testbed.execute import execute  # torch: imported only by the commands that build a model

    scenario = load(args.scenario)
    out = _check_out(args.out if args.out else Path("results") / f"{scenario.name}-executed", directory=True)
    runs = execute(scenario, shape=args.shape, repeats=args.repeats, timeout_s=args.timeout)
    latencies = [r.record.latency_s for r in runs]
    result = runs[sorted(range(len(runs)), key=latencies.__getitem__)[len(runs) // 2]]
    execution = {**(result.record.execution or {}), "repeats_latency_s": latencies}
    result.record = replace(result.record, execution=execution)
    with _writing(out):
        save_run(result, out)
    check = execution["check"]
    print(format_summary(result.record))
    print(f"{'measured on':<17}  {execution['network']}; load average {execution['loadavg']}")
    print(
        f"{'check':<17}  {'ok' if check['tolerance'] is not None else 'lossy wire type, not enforced'}: max relative error {max(check['inputs_max_relative_error'], check['output_max_relative_error']):.2g} over {check['values_checked']} values"
    )
    if len(runs) > 1:
        print(
            f"{'repeats':<17}  {len(runs)}; latency {', '.join(f'{x * 1e3:.2f}' for x in latencies)} ms (median run written)"
        )
    print(f"{'written to':<17}  {out}/")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from sim.config.load import load  # pydantic: kept out of --help
    from sim.report.validation import save_validation  # matplotlib: imported only by the commands that draw
    from sim.testbed.validate import format_validation, validate  # torch: only the commands that build a model

    scenario = load(args.scenario)
    out = _check_out(args.out if args.out else Path("results") / f"{scenario.name}-validation", directory=True)
    v = validate(
        scenario,
        shape=args.shape,
        repeats=args.repeats,
        timeout_s=args.timeout,
        fit_compute=args.fit_compute,
        calibrate=args.calibrate,
        runtime_profile=args.profile,
    )
    with _writing(out):
        save_validation(v.table, v.predicted, v.measured, out, v.notes, v.extra)
    print(format_validation(v.table, v.notes))
    print(f"written to         {out}/ (validation.csv, validation.png, predicted/, measured/)")
    return 0


def _real_run_options(command: argparse.ArgumentParser, repeats: int) -> None:
    """The options of the commands that run a scenario for real."""
    command.add_argument("scenario", help="scenario YAML file")
    command.add_argument("--shape", action="store_true", help="shaped veth links in network namespaces (Linux, root)")
    command.add_argument("--repeats", type=int, default=repeats, metavar="N", help=f"runs (default: {repeats})")
    command.add_argument(
        "--timeout", type=float, metavar="S", help="seconds one run may take (default: from its bytes)"
    )


def _cmd_profile_runtime(args: argparse.Namespace) -> int:
    from sim.config.load import load  # pydantic: kept out of --help
    from sim.testbed.runtime_profile import profile_runtime  # torch: only commands that build a model
    from sim.workload.runtime import write_runtime_profile  # with the command that writes it

    scenario = load(args.scenario)
    _check_out(args.out, directory=False)
    repeats = 3 if args.repeats is None else args.repeats
    profile = profile_runtime(scenario, shape=args.shape, repeats=repeats, timeout_s=args.timeout)
    with _writing(args.out):
        write_runtime_profile(args.out, profile)
    print(
        f"{'measured':<10} {profile.run['repeats']} run(s) of {profile.run['frames']} frame(s), {profile.run['network']}"
    )
    print(f"{'sharing':<10} {profile.sharing.processes} device processes on {profile.sharing.cores} cores")
    for d in profile.devices:
        cpu, wall = sum(e.cpu_s for e in d.entries), sum(e.wall_s for e in d.entries)
        print(
            f"{d.device:<10} {len(d.entries)} task shapes, {cpu * 1e3:.3f} ms CPU ({wall * 1e3:.3f} ms wall) per frame"
        )
    for side, lines in (("send", profile.send), ("recv", profile.recv), ("transit", profile.transit)):
        for fmt, line in lines.items():
            grows = (
                f"{line.s_per_wire_s * 100:.2f} % of the wire time"
                if line.s_per_wire_s
                else f"{line.s_per_byte * 1e9:.3f} ns/byte"
            )
            print(f"{side:<10} {fmt}: {line.overhead_s * 1e6:.1f} us + {grows} ({line.points} message classes)")
    if profile.solo:
        print(f"{'solo':<10} {len(profile.solo)} layers and adds timed alone at 1/8 to all of their channels")
    if profile.wake is not None:
        after = ", ".join(
            f"{x * 1e3:.2f} ms after {g * 1e3:g} ms" for g, x in zip(profile.wake.gaps_s, profile.wake.extra_s)
        )
        print(f"{'wake':<10} a task's extra CPU time after idling: {after}")
    print(f"written to {args.out} (use it as the scenario's top-level profile:, or dsim validate --profile)")
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    if args.execute:
        return _cmd_profile_runtime(args)
    if args.shape:
        raise UserError("--shape: only with --execute (a runtime profile over shaped links)")
    from sim.config.load import load  # pydantic: kept out of --help
    from sim.pipeline.calibrate import profile_scenario  # torch: only commands that build a model
    from sim.pipeline.profile import ProfileSettings  # torch: only commands that build a model
    from sim.workload.profiles import write_profile  # with the command that writes it

    scenario = load(args.scenario)
    settings = ProfileSettings(args.warmup, 20 if args.repeats is None else args.repeats, args.idle_gap_ms / 1e3)
    _check_out(args.out, directory=False)
    profile = profile_scenario(scenario, settings, args.device)
    with _writing(args.out):
        write_profile(args.out, profile)
    for d in profile.devices:
        total = sum(e.median_s for e in d.entries)
        spread = max(((e.p90_s - e.p10_s) / e.median_s for e in d.entries if e.median_s > 0), default=0.0)
        fits = ", ".join(
            f"{op} {f'{1e-9 / f.s_per_unit:.2f} G' if f.s_per_unit else 'flat, no '}{'B' if op == 'add' else 'FLOP'}/s"
            f" + {f.overhead_s * 1e3:.3f} ms"
            for op, f in d.fit.items()
        )
        print(
            f"{d.device:<10} {d.threads} thread(s), {len(d.entries)} shards, {total * 1e3:.3f} ms per frame "
            f"(sum of medians); largest p10-p90 spread {spread * 100:.0f}%; fit: {fits}"
        )
    print(f"written to {args.out} (use it as devices[i].profile)")
    return 0


def _cmd_optimize(args: argparse.Namespace) -> int:
    from sim.config.load import load  # pydantic: kept out of --help
    from sim.report.text import format_search  # pandas: kept out of --help
    from sim.study.optimize import SPACES, SearchSettings, optimize, save_search, search_table  # torch

    scenario = load(args.scenario)
    out = _check_out(args.out if args.out else Path("results") / f"{scenario.name}-optimize", directory=True)
    spaces = tuple(s.strip() for s in args.space.split(",")) if args.space else SPACES
    settings = SearchSettings(
        objective=args.objective,
        spaces=spaces,
        budget=args.budget,
        time_s=args.time,
        seed=args.seed,
        jobs=args.jobs or 1,
        scheduler=args.scheduler,
        min_accuracy=args.min_accuracy,
    )
    result = optimize(scenario, settings)  # progress lines: to --log always, to stderr unless --quiet
    with _writing(out):
        save_search(result, scenario, out)
    print(format_search(search_table(result), settings.objective))
    print(f"written to {out}/ (best.json: the partition; best.yaml: the scenario with it)")
    if result.interrupted:
        print(
            f"dsim: interrupted; the best of the {len(result.evaluations)} candidates evaluated is kept",
            file=sys.stderr,
        )
        return 130
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from sim.config.schema import json_schema  # pydantic: kept out of --help (and no YAML reader needed)

    print(json.dumps(json_schema(), indent=2))
    return 0


def _out_and_jobs(command: argparse.ArgumentParser, default_out: str) -> None:
    """The ``--out DIR`` and ``--jobs N`` options of commands that run many scenarios."""
    command.add_argument("--out", metavar="DIR", help=f"output directory (default: {default_out})")
    command.add_argument("--jobs", type=int, metavar="N", help="worker processes (default: all cores)")


def _quiet_and_log(command: argparse.ArgumentParser) -> None:
    """The options every command takes: ``--quiet`` and ``--log FILE``."""
    command.add_argument("--quiet", action="store_true", help="no progress lines or bars on stderr")
    command.add_argument("--log", metavar="FILE", help="append progress lines, with the time, to FILE")


def _cache_options(command: argparse.ArgumentParser) -> None:
    """The ``--cache-dir DIR`` and ``--no-cache`` options of commands that build workloads."""
    command.add_argument(
        "--cache-dir", metavar="DIR", help="build cache folder (default: $DSIM_CACHE, else ~/.cache/dsim)"
    )
    command.add_argument("--no-cache", action="store_true", help="build everything; read and write no cache")


def parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-command per job."""
    p = argparse.ArgumentParser(prog="dsim", description="Distributed CNN inference simulator.")
    p.add_argument("--version", action="version", version=f"dsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run a scenario file and write its results")
    run.add_argument("scenario", help="scenario YAML file")
    run.add_argument("--out", metavar="DIR", help="output directory (default: results/<name>/)")
    _cache_options(run)
    run.set_defaults(func=_cmd_run)
    part = sub.add_parser("partition", help="write a partition file for a scenario's model and devices")
    part.add_argument("scenario", help="scenario YAML file (model and devices)")
    part.add_argument("--strategy", required=True, help="a partition.strategy of the schema, e.g. contiguous, balanced")
    part.add_argument("--seed", type=int, help="for random strategies (default: the scenario seed)")
    part.add_argument("--out", required=True, metavar="FILE", help="partition JSON to write, e.g. partitions/x.json")
    part.set_defaults(func=_cmd_partition)
    desc = sub.add_parser("describe", help="per-layer shapes, FLOPs per device and bytes per device pair")
    desc.add_argument("scenario", help="scenario YAML file")
    desc.add_argument("--figure", default=None, help="also draw who computes what per layer to this PNG")
    desc.set_defaults(func=_cmd_describe)
    sw = sub.add_parser("sweep", help="run every combination of scenario settings; writes sweep.csv and plots")
    sw.add_argument("scenario", help="scenario YAML file")
    sw.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="dotted scenario key and its values, e.g. network.bandwidth_mbps=1,10,100 (repeatable)",
    )
    sw.add_argument(
        "--logspace",
        action="append",
        default=[],
        metavar="KEY=LO:HI:N",
        help="N log-spaced values from LO to HI, e.g. network.bandwidth_mbps=0.1:1000:41",
    )
    sw.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=V,KEY=V",
        help="a named set of settings applied together, one line per variant in the plot (repeatable)",
    )
    sw.add_argument("--baseline", action="store_true", help="add the single-device baseline (source device only)")
    _out_and_jobs(sw, "results/<name>-sweep/")
    _cache_options(sw)
    sw.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the points on a Dask cluster: its scheduler address (tcp://host:8786), or 'local' for a "
        "LocalCluster of --jobs workers (default: a process pool)",
    )
    sw.set_defaults(func=_cmd_sweep)
    cmp = sub.add_parser("compare", help="run scenario files side by side; writes comparison.csv and breakdown.png")
    cmp.add_argument("scenarios", nargs="+", help="scenario YAML files, or run folders (dsim run/execute --out)")
    _out_and_jobs(cmp, "results/compare-<name>+<name>.../")
    _cache_options(cmp)
    cmp.set_defaults(func=_cmd_compare)
    plot = sub.add_parser("plot", help="redraw the figures of a run, sweep or compare directory from its CSVs")
    plot.add_argument("results", help="results directory")
    plot.add_argument(
        "--frames",
        metavar="START:STOP",
        help="frames the timeline shows, as a Python range (0:3 is frames 0, 1 and 2; default: frame 0)",
    )
    plot.set_defaults(func=_cmd_plot)
    tr = sub.add_parser("train", help="train a scenario's model on its dataset and save a checkpoint")
    tr.add_argument("scenario", help="scenario YAML file (model, inputs.dataset, seed, model.lr)")
    tr.add_argument("--epochs", type=int, required=True, metavar="N", help="passes over the train split")
    tr.add_argument("--out", required=True, metavar="CKPT", help="checkpoint file to write (a state_dict)")
    tr.set_defaults(func=_cmd_train)
    ex = sub.add_parser("execute", help="run the split model for real: a process per device, messages over TCP")
    _real_run_options(ex, 1)
    ex.add_argument("--out", metavar="DIR", help="output directory (default: results/<name>-executed/)")
    ex.set_defaults(func=_cmd_execute)
    val = sub.add_parser("validate", help="execute and simulate a scenario; compare every component")
    _real_run_options(val, 5)
    val.add_argument("--out", metavar="DIR", help="output directory (default: results/<name>-validation/)")
    val.add_argument(
        "--fit-compute",
        action="store_true",
        help="predict with device rates and overheads fitted to the measured layer times (in sample)",
    )
    val.add_argument("--calibrate", action="store_true", help="profile every device's layer shards first")
    val.add_argument(
        "--profile", metavar="FILE", help="predict from this runtime profile (dsim profile --execute), out of sample"
    )
    val.set_defaults(func=_cmd_validate)
    prof = sub.add_parser("profile", help="time every layer shard of a scenario as each device runs it (JSON)")
    prof.add_argument("scenario", help="scenario YAML file")
    prof.add_argument("--out", required=True, metavar="FILE", help="profile JSON to write, e.g. results/x.json")
    prof.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed calls per shard (default 3)")
    prof.add_argument(
        "--repeats", type=int, metavar="N", help="timed calls per shard (default 20); with --execute: runs (default 3)"
    )
    prof.add_argument(
        "--execute", action="store_true", help="profile real runs of the split (a runtime profile: tasks and messages)"
    )
    prof.add_argument("--shape", action="store_true", help="with --execute: over shaped veths (Linux, root)")
    prof.add_argument("--timeout", type=float, metavar="S", help="with --execute: seconds one run may take")
    prof.add_argument(
        "--idle-gap-ms", type=float, default=0.0, metavar="MS", help="sleep before each timed call (default 0)"
    )
    prof.add_argument("--device", action="append", default=[], metavar="NAME", help="only this device (repeatable)")
    prof.set_defaults(func=_cmd_profile)
    opt = sub.add_parser("optimize", help="search for the best split of a scenario, simulating every candidate")
    opt.add_argument("scenario", help="scenario YAML file (its partition is ignored)")
    opt.add_argument(
        "--objective", default="latency", help="latency (default), throughput, bytes or energy: what to minimise"
    )
    opt.add_argument(
        "--space", metavar="LIST", help="comma-separated search spaces: filters, rows, pipeline, hybrid (default: all)"
    )
    opt.add_argument("--budget", type=int, default=200, metavar="N", help="candidates to evaluate (default 200)")
    opt.add_argument("--time", type=float, metavar="S", help="stop after this many seconds (checked per batch)")
    opt.add_argument("--seed", type=int, help="search seed (default: the scenario's)")
    opt.add_argument("--out", metavar="DIR", help="output directory (default: results/<name>-optimize/)")
    opt.add_argument("--jobs", type=int, metavar="N", help="worker processes (default 1)")
    opt.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="evaluate on a Dask cluster: a scheduler address (tcp://host:8786) or local (--jobs workers)",
    )
    opt.add_argument(
        "--min-accuracy",
        type=float,
        metavar="A",
        help="with a prune section: the test accuracy (0-1) a pruned model must keep; lower amounts are skipped",
    )
    opt.set_defaults(func=_cmd_optimize)
    schema = sub.add_parser("schema", help="print the JSON Schema of scenario files")
    schema.set_defaults(func=_cmd_schema)
    for command in sub.choices.values():
        _quiet_and_log(command)
    return p


class _ProgressOnStderr(logging.Filter):
    """Pass progress lines to stderr only when it is not a terminal (a terminal shows the bar) and not
    ``--quiet``; other records always."""

    def __init__(self, quiet: bool) -> None:
        super().__init__()
        self.quiet = quiet

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(PROGRESS_LOG.name):
            return True
        return not self.quiet and not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


@contextmanager
def _logging(args: argparse.Namespace) -> Iterator[None]:
    """Send the ``sim`` loggers' INFO lines to stderr (``dsim: ...``) and to ``--log FILE`` while a command
    runs; ``--quiet`` also turns off the bars."""
    if args.log is not None:
        _check_out(args.log, directory=False, flag="--log")
    logger = logging.getLogger("sim")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("dsim: %(message)s"))
    stderr.addFilter(_ProgressOnStderr(args.quiet))
    handlers: list[logging.Handler] = [stderr]
    if args.log is not None:
        with _writing(args.log, flag="--log"):
            handlers.append(logging.FileHandler(args.log, encoding="utf-8"))
        handlers[-1].setFormatter(logging.Formatter("%(asctime)s dsim %(command)s: %(message)s"))
        handlers[-1].addFilter(_Command(args.command))
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in handlers:
        logger.addHandler(handler)
    show_bars(not args.quiet)
    try:
        yield
    finally:
        show_bars(True)
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(level)
        logger.propagate = propagate


class _Command(logging.Filter):
    """Add the command's name to every record, for the ``--log`` file's lines."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command

    def filter(self, record: logging.LogRecord) -> bool:
        record.command = self.command
        return True


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM ends dsim like Ctrl-C, so a save in progress removes its temporary files."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dsim``; returns the process exit status."""
    args = parser().parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        with _logging(args):
            return args.func(args)
    except UserError as exc:
        print(f"dsim: error: {exc}", file=sys.stderr)
        return 2
    except RunFailure as exc:
        print(f"dsim: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dsim: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
