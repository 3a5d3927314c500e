"""CaP reproduction: every arm of ``scenarios/cap/`` on digits, and a smaller Fashion-MNIST set.

Runs the arms through :func:`sim.study.compare.compare` (what ``dsim compare scenarios/cap/*.yaml``
runs), prints accuracy, kept kernels (overall and per conv), elements x hops (total and busiest link),
bytes and simulated latency on the 20 Mbps line, and the CPU time of the whole run; writes
``plots/cap/comparison.csv``, ``plots/cap/kept_kernels.csv`` and the figure ``plots/cap/cap.png``
(accuracy against elements x hops on the line, and the line/mesh traffic ratio).

When ``/usr/share/datasets/fashion-mnist`` exists (Debian package ``dataset-fashion-mnist``) the dense,
magnitude and CaP lambda 10 arms also run on Fashion-MNIST at 3x28x28 with 3 pretrain, 3 ADMM and 2
retrain epochs (60,000 training images: about 40 times a digits epoch); otherwise that part is skipped.

Run: ``.venv/bin/python bench/bench_cap.py`` (about 10 CPU-minutes for the digits arms), or
``.venv/bin/python bench/bench_cap.py results/cap`` to print and draw a finished ``dsim compare`` folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios" / "cap").glob("*.yaml"))
OUT = ROOT / "plots" / "cap"
FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_ARMS = ("01-dense-line", "02-magnitude-line", "04-cap-l10-line")


def cpu_s() -> float:
    """CPU seconds of this process and its finished children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def table_text(table: pd.DataFrame) -> str:
    """The arms as printed by this benchmark."""
    shown = pd.DataFrame({"arm": table["scenario"]})
    shown["acc %"] = (table["accuracy"] * 100).round(2)
    shown["kernels %"] = (table.get("kept_kernels", pd.Series(float("nan"), index=table.index)) * 100).round(1)
    shown["elem x hops"] = table["elements_hops"]
    shown["max link"] = table["elements_hops_max_link"]
    shown["kB sent"] = (table["bytes_total"] / 1e3).round(1)
    shown["latency ms"] = (table["latency_s"] * 1e3).round(2)
    return shown.to_string(index=False)


def draw(table: pd.DataFrame, path: Path) -> None:
    """Accuracy against elements x hops on the line (left); line / mesh elements x hops per arm (right)."""
    import matplotlib  # drawing only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    line = table[table["scenario"].str.endswith("-line")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for _, row in line.iterrows():
        name = row["scenario"].removeprefix("cap-").removesuffix("-line")
        name = {"l10": "CaP λ=10", "l100": "CaP λ=100", "comm-aware-cap": "comm_aware + CaP λ=10"}.get(name, name)
        left.scatter(row["elements_hops"] / 1e3, row["accuracy"] * 100, s=30)
        left.annotate(name, (row["elements_hops"] / 1e3, row["accuracy"] * 100), fontsize=8, xytext=(3, 3),
                      textcoords="offset points")  # fmt: skip
    left.set_xlabel("elements x hops per image on the line (thousands)")
    left.set_ylabel("test accuracy (%)")
    left.set_title("ResNet-18 w1/8, digits 16x16, 4 devices on a line")
    left.grid(alpha=0.3)
    pairs = []
    for arm, label in (("dense", "dense"), ("magnitude", "magnitude"), ("l10", "CaP λ=10")):
        a = table[table["scenario"] == f"cap-{arm}-line"]
        b = table[table["scenario"] == f"cap-{arm}-mesh"]
        if len(a) and len(b) and b["elements_hops"].iloc[0] > 0:
            pairs.append((label, a["elements_hops"].iloc[0] / b["elements_hops"].iloc[0]))
    right.bar([p[0] for p in pairs], [p[1] for p in pairs], color="tab:gray")
    right.set_ylabel("elements x hops: line / mesh")
    right.set_title("hop weighting moves what is left to near devices")
    for i, (_, ratio) in enumerate(pairs):
        right.text(i, ratio, f"{ratio:.2f}", ha="center", va="bottom")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fashion(jobs: int) -> None:
    """The Fashion-MNIST arms, when the dataset folder exists."""
    from sim.study.compare import compare  # torch

    if not FASHION.is_dir():
        print(f"fashion-mnist: skipped ({FASHION} not found; apt install dataset-fashion-mnist)")
        return
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for arm in FASHION_ARMS:
            doc = yaml.safe_load((ROOT / "scenarios" / "cap" / f"{arm}.yaml").read_text())
            doc["name"] = doc["name"].replace("cap-", "cap-fashion-")
            doc["inputs"]["dataset"] = "fashion-mnist"
            doc["model"].update(input_shape=[3, 28, 28], train_epochs=3)
            prune = doc.get("prune", {})
            if "admm" in prune:
                prune["admm"].update(epochs=3, retrain_epochs=2)
            if prune.get("finetune_epochs"):
                prune["finetune_epochs"] = 2
            path = Path(tmp) / f"{arm}.yaml"
            path.write_text(yaml.safe_dump(doc))
            files.append(path)
        start = cpu_s()
        table = compare(files, jobs=jobs, progress=False)
        print(table_text(table))
        print(f"fashion-mnist: {cpu_s() - start:.0f} CPU s")


def main(argv: list[str] | None = None) -> None:
    """Run the arms (or, given a folder written by ``dsim compare scenarios/cap/*.yaml --out DIR``, only
    print and draw its tables) and the Fashion-MNIST arms."""
    from sim.study.compare import compare  # torch

    args = argv or []
    jobs = int(os.environ.get("DSIM_BENCH_JOBS", "2"))
    start_cpu, start_wall = cpu_s(), time.perf_counter()
    if args:  # reuse a finished comparison instead of running it again
        src = Path(args[0])
        OUT.mkdir(parents=True, exist_ok=True)
        for name in ("comparison.csv", "kept_kernels.csv"):
            (OUT / name).write_text((src / name).read_text())
        table = pd.read_csv(OUT / "comparison.csv")
    else:
        table = compare(SCENARIOS, out=OUT, jobs=jobs, progress=False)
    cpu, wall = cpu_s() - start_cpu, time.perf_counter() - start_wall
    print(table_text(table))
    kept = pd.read_csv(OUT / "kept_kernels.csv")
    print("\nkept kernels per conv (%):")
    print((kept.set_index("scenario") * 100).round(1).T.to_string())
    draw(table, OUT / "cap.png")
    if not args:
        print(f"\n{len(SCENARIOS)} arms: {cpu:.0f} CPU s, {wall:.0f} s wall with {jobs} jobs; written to {OUT}")
        fashion(jobs)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(sys.argv[1:])
