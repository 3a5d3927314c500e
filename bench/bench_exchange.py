"""Bytes on the wire per wire format and exchange scheme, for the quick-start (LeNet-5, 4 devices) and
ResNet-18 on 4 devices, and the deployment bytes per format. Figures, not speed.

    .venv/bin/python bench/run.py bench_exchange
"""

from __future__ import annotations

from typing import Any

import yaml

from sim.config.load import parse_scenario
from sim.pipeline.evaluate import evaluate
from sim.pipeline.prepare import prepare

SCENARIOS = ("scenarios/quickstart.yaml", "scenarios/resnet18-4dev.yaml")
FORMATS = ("dense", "csr", "bitmap", "auto")


def summary_of(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Build and run scenario ``data`` with ``transfer`` keys (or ``deploy``) changed."""
    deploy = changes.pop("deploy", None)
    scenario = parse_scenario({**data, "transfer": {**data["transfer"], **changes}, "deploy": deploy})
    return evaluate(scenario, prepare(scenario).built).summary


def main() -> None:
    for path in SCENARIOS:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        print(f"{data['name']}: bytes per frame in each transfer.format, per transfer.exchange")
        print(f"  {'exchange':<13}" + "".join(f"{f:>12}" for f in FORMATS) + f"{'auto saving':>13}")
        for exchange in ("inputs", "partial_sums"):  # these plans do not depend on the format
            summary = summary_of(data, format="auto", exchange=exchange)
            row = "".join(f"{summary['bytes_by_format'][f]:>12,}" for f in FORMATS)
            print(f"  {exchange:<13}{row}{summary['auto_saving']:>12.1%}")
        autos = {f: summary_of(data, format=f, exchange="auto") for f in FORMATS}  # auto chooses per format
        totals = {f: s["bytes_total"] for f, s in autos.items()}
        row = "".join(f"{totals[f]:>12,}" for f in FORMATS)
        print(f"  {'auto':<13}{row}{1 - totals['auto'] / totals['dense']:>12.1%}")
        for fmt, summary in autos.items():
            partial = [layer for layer, scheme in summary["exchange"].items() if scheme == "partial_sums"]
            print(f"    exchange auto with format {fmt}: partial sums in {', '.join(partial) or 'no layer'}")
        summary = summary_of(data, deploy={"from": data["source"], "format": "auto"})
        by_format = ", ".join(f"{f} {summary['deploy_bytes_by_format'][f]:,} B" for f in FORMATS)
        print(f"  deployment from {data['source']}: {by_format}; auto takes {summary['deploy_s'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
