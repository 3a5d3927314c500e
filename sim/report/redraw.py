"""``dsim plot``: redraw every figure a results folder's CSVs support, without re-running anything."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from sim.analysis import curves, pareto
from sim.errors import UserError, first_line
from sim.fileio import write_csv
from sim.report.plots import (
    plot_accuracy_vs_bytes,
    plot_breakdown,
    plot_energy_pareto,
    plot_latency_vs_bandwidth,
    plot_latency_vs_loss,
    plot_pareto,
    plot_timeline,
    plot_traffic,
)


@contextmanager
def _reading(where: str | Path) -> Iterator[None]:
    """Turn what a malformed or foreign table raises while it is read and drawn (empty file, bad CSV or
    JSON, a missing column) into a one-line :class:`UserError` naming ``where``."""
    try:
        yield
    except UserError:
        raise
    except KeyError as exc:
        raise UserError(
            f"{where}: no column {exc}; not a table written by dsim (re-run the command that wrote it)"
        ) from None
    except (ValueError, TypeError) as exc:  # pandas EmptyDataError/ParserError, JSON and bad-value errors
        raise UserError(
            f"{where}: not a table written by dsim ({first_line(exc, 100)}); re-run the command that wrote it"
        ) from None


def _name(table: pd.DataFrame, d: Path) -> str:
    """A figure title for a sweep or comparison table: its scenario name(s), else the folder's name."""
    if "scenario" not in table.columns or not len(table):
        return d.name
    names = list(dict.fromkeys(table["scenario"].astype(str)))
    return names[0] if len(names) == 1 else " vs ".join(names) if len(names) <= 3 else f"{len(names)} scenarios"


def write_pareto(
    table: pd.DataFrame, labels: Sequence[str], out: str | Path, title: str = "", within: Sequence[str] = ()
) -> list[Path]:
    """Write ``pareto.csv`` (:func:`sim.analysis.pareto.pareto_table` of ``table``, a sweep or comparison
    table, with ``labels`` one per row, compared ``within`` equal values of those columns) and its figure
    ``pareto.png`` into ``out``; return their paths."""
    front = pareto.pareto_table(table, labels, within)
    write_csv(front, Path(out) / "pareto.csv")
    plot_pareto(front, Path(out) / "pareto.png", title=title)
    return [Path(out) / "pareto.csv", Path(out) / "pareto.png"]


def write_energy_pareto(table: pd.DataFrame, labels: Sequence[str], out: str | Path, title: str = "") -> list[Path]:
    """Write ``pareto_energy.csv`` (:func:`sim.analysis.pareto.energy_pareto_table` of a comparison table,
    ``labels`` one per row) and its figure ``pareto_energy.png`` into ``out`` when some row has energy
    figures (``energy_j_per_frame``); return the paths written (none otherwise)."""
    if "energy_j_per_frame" not in table.columns or table["energy_j_per_frame"].isna().all():
        return []
    front = pareto.energy_pareto_table(table, labels)
    write_csv(front, Path(out) / "pareto_energy.csv")
    plot_energy_pareto(front, Path(out) / "pareto_energy.png", title=title)
    return [Path(out) / "pareto_energy.csv", Path(out) / "pareto_energy.png"]


def parse_frames(text: str) -> range:
    """The frames of ``--frames START:STOP`` (a Python range: ``0:3`` is frames 0, 1, 2; ``2`` is frame 2).

    Example::

        >>> list(parse_frames("0:3"))
        [0, 1, 2]
    """
    start, _, stop = text.partition(":")
    try:
        first = int(start) if start.strip() else 0
        last = int(stop) if stop.strip() else first + 1
    except ValueError:
        raise UserError(f"--frames {text}: expected START:STOP, e.g. 0:3 for frames 0, 1 and 2") from None
    if ":" not in text:
        last = first + 1
    if first < 0 or last <= first:
        raise UserError(f"--frames {text}: need 0 <= START < STOP, e.g. 0:3 for frames 0, 1 and 2")
    return range(first, last)


def redraw(directory: str | Path, frames: Sequence[int] | None = None) -> list[Path]:
    """Redraw every figure a results directory's CSVs support, without re-running anything.

    ``sweep.csv`` -> ``latency_vs_bandwidth.png`` (when a bandwidth was swept), ``latency_vs_loss.png``
    (frame-latency percentiles, when a loss rate was swept, :func:`sim.analysis.curves.loss_column`),
    ``accuracy_vs_bytes.png``
    (when accuracy and ``prune.amount`` are present) and ``pareto.csv`` + ``pareto.png``
    (:func:`write_pareto`); ``comparison.csv`` -> ``breakdown.png``, ``pareto.csv`` and ``pareto.png``;
    ``transfers.csv`` + ``compute.csv`` (a run) -> ``timeline.png`` (critical path from ``summary.json``;
    link-queue rows only when a ``hops.csv`` was saved, else one row per device pair; ``frames`` picks
    its frames, default frame 0) and ``traffic.png``.
    """
    d = Path(directory)
    if not d.is_dir():
        what = "it is a file, not a results folder" if d.exists() else "no such results folder"
        raise UserError(f"{d}: nothing to plot, {what}; give the --out folder of dsim run, sweep or compare")
    written: list[Path] = []
    if (d / "sweep.csv").is_file():
        with _reading(d / "sweep.csv"):
            table = pd.read_csv(d / "sweep.csv")
            name = _name(table, d)
            swept = curves.swept_columns(table)
            bandwidth = next((c for c in swept if c.endswith("bandwidth_mbps")), None)
            if bandwidth is not None:
                plot_latency_vs_bandwidth(table, d / "latency_vs_bandwidth.png", x=bandwidth, title=name)
                written.append(d / "latency_vs_bandwidth.png")
            loss = curves.loss_column(table)
            if loss is not None:
                plot_latency_vs_loss(table, d / "latency_vs_loss.png", x=loss, title=name)
                written.append(d / "latency_vs_loss.png")
            if "accuracy" in table.columns and "prune.amount" in swept and table["accuracy"].notna().any():
                plot_accuracy_vs_bytes(table, d / "accuracy_vs_bytes.png", title=name)
                written.append(d / "accuracy_vs_bytes.png")
            if (curves.errors(table) == "").any():
                within = pareto.environment_columns(table)
                labels = pareto.sweep_labels(table, leave_out=within)  # the design; the conditions have columns
                written += write_pareto(table, labels, d, title=name, within=within)
    if (d / "comparison.csv").is_file():
        with _reading(d / "comparison.csv"):
            table = pd.read_csv(d / "comparison.csv")
            plot_breakdown(table, d / "breakdown.png", title=_name(table, d))
            written.append(d / "breakdown.png")
            written += write_pareto(table, list(table["scenario"].astype(str)), d, title=_name(table, d))
            written += write_energy_pareto(table, list(table["scenario"].astype(str)), d, title=_name(table, d))
    if (d / "transfers.csv").is_file() and (d / "compute.csv").is_file():
        with _reading(f"{d} (transfers.csv, compute.csv, hops.csv, summary.json)"):
            transfers, compute = pd.read_csv(d / "transfers.csv"), pd.read_csv(d / "compute.csv")
            name, devices, critical = d.name, None, None
            if (d / "summary.json").is_file():
                summary = json.loads((d / "summary.json").read_text(encoding="utf-8"))
                name, critical = summary.get("name", name), summary.get("critical_path")
                devices = [dev["name"] for dev in summary.get("scenario", {}).get("devices", [])] or None
            hops = pd.read_csv(d / "hops.csv") if (d / "hops.csv").is_file() else None
            plot_timeline(
                transfers,
                compute,
                d / "timeline.png",
                title=name,
                hops=hops,
                critical=critical,
                frames=frames,
                devices=devices,
            )
            plot_traffic(transfers, d / "traffic.png", devices=devices, title=name)
        written += [d / "timeline.png", d / "traffic.png"]
    if not written and not (d / "sweep.csv").is_file():
        raise UserError(f"{d}: nothing to plot; expected sweep.csv, comparison.csv or transfers.csv + compute.csv")
    return written
