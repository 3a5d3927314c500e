"""Scenario fuzzing: generated invalid and extreme scenarios and files end in a one-line refusal or a sane run.

Every case is a LeNet-5 scenario (at most 2 frames) with a few generated changes: extreme or wrongly typed
numbers (``.inf``, ``nan``, ``5e-324``, ``1e306``, ``2**64``, booleans, strings), unknown choices, and
files written into a temporary folder (partition files, GraphML, checkpoints, CIFAR-10 folders, scenario
YAML) that are malformed, huge, deeply nested, non-UTF-8 or special (``/dev/zero``). For every case the
outcome must be one of:

* a :class:`~sim.errors.UserError` whose message is one line naming a field (``network.latency_ms: ...``);
* a run whose every output number is finite and whose latency is at least the compute on its critical path.

Anything else (another exception, a case running past :data:`CASE_SECONDS`) fails the test. The default
suite runs :data:`FAST_CASES` cases; ``make test-slow`` runs :data:`SLOW_CASES` and prints the tally.
Hypothesis is derandomized (a fixed seed), so every run draws the same cases.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import pickle
import re
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.analysis.result import RunResult
from sim.config.load import load
from sim.errors import UserError
from sim.model import zoo
from sim.pipeline.run import run
from tests.helpers import scenario_dict

FAST_CASES = 150
SLOW_CASES = 2000
CASE_SECONDS = 60  # a case running longer than this is a hang
LENET_CHANNELS = {"conv1": 6, "conv2": 16, "fc1": 120, "fc2": 84, "fc3": 10}

# Numbers that broke validation before: non-finite, underflowing, overflowing, negative, huge integers.
EXTREME: list[Any] = [
    math.inf,
    -math.inf,
    math.nan,
    5e-324,
    1e-300,
    1e-7,
    0,
    -0.0,
    -1,
    0.5,
    1,
    3,
    1e4,
    1e306,
    2**64,
    10**30,
    True,
    None,
    "1 GB",
    [],
    {},
    "a\nb",
]
NUMERIC_KEYS = [
    "network.latency_ms",
    "network.bandwidth_mbps",
    "network.access_overhead_ms",
    "network.chunk_kB",
    "network.chunk_kb",
    "devices.0.gflops",
    "devices.1.gflops",
    "devices.0.overhead_ms",
    "devices.1.mem_bandwidth_GBps",
    "devices.0.mem_bandwidth_gbps",
    "inputs.interval_ms",
    "inputs.fps",
    "seed",
    "partition.seed",
    "model.num_classes",
    "model.lr",
    "prune.amount",
    "prune.norm",
    "prune.lambda_comm",
    "prune.max_layer_amount",
    "network.links.0.latency_ms",
    "network.links.0.bandwidth_mbps",
    "network.links.0.up_mbps",
    "network.links.0.down_mbps",
    "network.shaper.burst_bytes",
    "devices.0.threads",
    "devices.0.send_overhead_us",
    "devices.1.recv_overhead_us",
    "model.width",
    "prune.admm.epochs",
    "prune.admm.rho",
    "prune.admm.rho_growth",
    "prune.admm.rho_max",
    "prune.admm.retrain_epochs",
    "prune.admm.lr",
]
SANE: list[Any] = [0.5, 1, 2, 2.5, 10, 100]  # in range for most keys: the case may still run
SMALL_COUNTS: list[Any] = [0, 1, 2, -1, 1.5, math.inf, "2", True, None]
CHOICES: dict[str, list[Any]] = {
    "network.topology": ["mesh", "star", "ring", "line", "custom", "shared", "torus", 3],
    "network.duplex": ["full", "half", "simplex"],
    "network.multicast": [True, False, "yes"],
    "partition.strategy": ["contiguous", "round_robin", "random", "balanced", "aligned", "best"],
    "prune.method": [
        "none",
        "ln_structured",
        "random_structured",
        "comm_structured",
        "l1_unstructured",
        "random_unstructured",
        "global_unstructured",
        "magic",
    ],
    "transfer.format": ["dense", "csr", "coo", "bitmap", "auto", "zip"],
    "transfer.dtype": ["float32", "float16", "bfloat16", "int8", "float64"],
    "transfer.index_bits": [16, 32, 64, 8],
    "transfer.exchange": ["inputs", "partial_sums", "auto", "both"],
    "transfer.channel_header": ["none", "index_list", "bitmap", "full"],
    "baseline": ["none", "single", "double"],
    "inputs.dataset": ["digits", "synthetic", "synthetic", "cifar10", "imagenet"],
    "model.name": ["lenet5", "nosuch", "sys:exit", "os:getcwd", "math:pi", "tests.helpers:nothing", ":x"],
    "model.input_shape": [[1, 32, 32], [3, 32, 32], [1, 28, 28], [1, 2, 2], [0, 32, 32], [1, 32], "1x32x32"],
    "model.input_shape.1": [10**6, 4096],
    "source": ["d0", "d1", "nowhere"],
    "sink": ["d0", "d1", "nowhere"],
    "name": ["ok", "", "bad name\n", "x" * 300],
    "network.protocol": [
        "tcp",
        "none",
        "udp",
        {"mtu_bytes": 1500, "packet_header_bytes": 66, "message_header_bytes": 100},
        {"mtu_bytes": 2**40, "packet_header_bytes": 66},
        {"mtu_bytes": 1, "packet_header_bytes": 66},
        {"mtu_bytes": 9000, "packet_header_bytes": 13},
        {"mtu_bytes": 1500, "packet_header_bytes": 10**30},
        {"mtu_bytes": 1500, "packet_header_bytes": 66, "message_header_bytes": math.inf},
    ],
    "prune.cost_matrix": [[[0, 1], [1, 0]], [[0, math.inf], [1, 0]], [[0, -1], [1, 0]], [[0, 1e300], [1, 0]], [[0]]],
    "hosts": [[{"name": "h", "cores": c}] for c in (1, 2, 0, -1, 10**9, math.inf, 1.5)],
    "devices.0.host": ["h", "nowhere"],
}
FILE_KINDS = ["partition", "graphml", "checkpoint", "cifar", "scenario_file"]


# --- files ---------------------------------------------------------------------------------------------


def _partition_doc(devices: list[str], draw: Callable[[Any], Any]) -> bytes | str:
    """A partition file: valid, or broken in one of many ways; a str is a path to use instead."""
    layers: dict[str, Any] = {n: [devices[i % len(devices)] for i in range(c)] for n, c in LENET_CHANNELS.items()}
    kind = draw(
        st.sampled_from(
            ["valid", "short", "unknown", "string", "nested", "deep", "binary", "dev_zero", "folder", "big", "model"]
        )
    )
    if kind == "short":
        layers["conv1"] = layers["conv1"][:-1]
    elif kind == "unknown":
        layers["conv2"][0] = "ghost"
    elif kind == "string":
        layers["fc1"] = "d0"
    elif kind == "nested":
        layers["fc2"] = [[d] for d in layers["fc2"]]
    elif kind == "deep":
        return b"[" * 100_000
    elif kind == "binary":
        return bytes(draw(st.binary(min_size=1, max_size=64))) + b"\xff"
    elif kind == "dev_zero":
        return "/dev/zero"
    elif kind == "folder":
        return "."
    elif kind == "big":
        return b"9" * 5000
    doc = {"model": "resnet18" if kind == "model" else "lenet5", "layers": layers}
    return json.dumps(doc).encode()


def _graphml_doc(devices: list[str], draw: Callable[[Any], Any]) -> bytes:
    """A GraphML file over ``devices`` with generated edge attributes (or not GraphML at all)."""
    kind = draw(st.sampled_from(["valid", "attrs", "attrs", "unknown_node", "self_loop", "not_xml", "binary"]))
    if kind == "not_xml":
        return b"<graphml><graph"
    if kind == "binary":
        return b"\xff\xfe<graphml/>"
    keys, attrs = "", ""
    if kind == "attrs":
        name = draw(st.sampled_from(["bandwidth_mbps", "latency_ms", "up_mbps", "a", "b", "duplex", "weight"]))
        value = draw(st.sampled_from(["INF", "NaN", "5e-324", "1e306", "-1", "0", "3", "half", "x"]))
        kind_of = "string" if value in ("half", "x") or name == "duplex" else "double"
        keys = f'<key id="k" for="edge" attr.name="{name}" attr.type="{kind_of}"/>'
        attrs = f'<data key="k">{value}</data>'
    names = list(devices)
    if kind == "unknown_node":
        names[-1] = "ghost"
    edges = [(names[i], names[i + 1]) for i in range(len(names) - 1)]
    if kind == "self_loop" or not edges:
        edges.append((names[0], names[0]))
    nodes = "".join(f'<node id="{n}"/>' for n in dict.fromkeys(names))
    body = "".join(f'<edge source="{a}" target="{b}">{attrs}</edge>' for a, b in edges)
    return (
        '<?xml version="1.0" encoding="UTF-8"?><graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
        f'{keys}<graph edgedefault="undirected">{nodes}{body}</graph></graphml>'
    ).encode()


CHECKPOINTS = ["valid", "nan", "inf", "wrong_model", "garbage", "empty_dict", "dev_zero"]
CIFAR_FOLDERS = ["valid", "garbage", "labels", "shape", "empty", "missing", "pickle_object"]
SCENARIO_FILES = ["plain", "latin1", "nested", "digits", "huge", "not_mapping", "bad_yaml"]


def _checkpoint(path: Path, kind: str) -> str | None:
    """Write a checkpoint of ``kind`` to ``path``; returns another path to use instead, if any."""
    if kind == "dev_zero":
        return "/dev/zero"
    if kind == "garbage":
        path.write_bytes(b"PK\x03\x04 not a zip")
        return None
    if kind == "empty_dict":
        torch.save({}, path)
        return None
    model = zoo.build_model("lenet5" if kind != "wrong_model" else "resnet18", num_classes=10)
    state = model.state_dict()
    if kind in ("nan", "inf"):
        state["conv1.weight"].fill_(math.nan if kind == "nan" else math.inf)
    torch.save(state, path)
    return None


def _cifar_folder(folder: Path, kind: str) -> None:
    """A tiny CIFAR-10 folder of ``kind``: valid batches of a few images, or broken ones."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        if kind == "missing" and name == "test_batch":
            continue
        n = 0 if kind == "empty" else 4
        data = rng.integers(0, 256, size=(n, 3072 if kind != "shape" else 100), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, size=n)]
        if kind == "labels" and n:
            labels[0] = 12
        doc: Any = {b"data": data, b"labels": labels}
        if kind == "pickle_object":
            doc = {b"data": Path("x"), b"labels": labels}
        (folder / name).write_bytes(b"\x80garbage" if kind == "garbage" else pickle.dumps(doc, protocol=2))


def _scenario_file(path: Path, data: dict[str, Any], kind: str) -> None:
    """The scenario as a YAML file of ``kind``: plain, or not UTF-8, deeply nested, a 5000-digit seed, huge."""
    text = yaml.safe_dump(data)
    if kind == "latin1":
        path.write_bytes(text.encode() + b"# caf\xe9\n")
    elif kind == "nested":
        path.write_text(text + "extra: " + "[" * 5000 + "]" * 5000 + "\n")
    elif kind == "digits":
        path.write_text(text.replace("seed: 0", "seed: " + "7" * 5000))
    elif kind == "huge":
        path.write_text(text + "#" + "x" * (2**20 + 10) + "\n")
    elif kind == "not_mapping":
        path.write_text("- just\n- a list\n")
    elif kind == "bad_yaml":
        path.write_text("name: [unclosed\n")
    else:
        path.write_text(text)


# --- cases ---------------------------------------------------------------------------------------------


def _assign(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` (list indexes as numbers) in plain scenario data, creating sections as needed."""
    parts = key.split(".")
    node: Any = data
    for part, nxt in itertools.pairwise(parts):
        if isinstance(node, list):
            index = int(part)
            while len(node) <= index:
                node.append({})
            node = node[index]
        else:
            if not isinstance(node.get(part), (dict, list)):
                node[part] = [] if nxt.isdigit() else {}
            node = node[part]
    if isinstance(node, list):
        index = int(parts[-1])
        if index < len(node):
            node[index] = value
    else:
        node[parts[-1]] = value


@st.composite
def cases(draw: Callable[[Any], Any]) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """A LeNet-5 scenario (plain data) and the file actions to perform before running it."""
    n = draw(st.integers(1, 4))
    data = scenario_dict(n, inputs={"dataset": "synthetic", "batch_size": 1, "frames": 1, "interval_ms": 0})
    data["network"]["links"] = [{"a": "d0", "b": f"d{min(1, n - 1)}", "latency_ms": 2}] if n > 1 else []
    for _ in range(draw(st.sampled_from([0, 1, 1, 2, 3]))):
        what = draw(st.sampled_from(["number", "number", "sane", "sane", "choice", "choice", "count", "train"]))
        if what in ("number", "sane"):
            _assign(
                data, draw(st.sampled_from(NUMERIC_KEYS)), draw(st.sampled_from(EXTREME if what == "number" else SANE))
            )
        elif what == "choice":
            key = draw(st.sampled_from(sorted(CHOICES)))
            _assign(data, key, draw(st.sampled_from(CHOICES[key])))
        elif what == "count":
            key = draw(st.sampled_from(["inputs.frames", "inputs.batch_size", "model.input_shape.0"]))
            _assign(data, key, draw(st.sampled_from(SMALL_COUNTS)))
        else:  # training: only where a check must refuse it before any training step (keeps the case cheap)
            data["inputs"]["dataset"] = "digits"
            data["model"]["train_epochs"] = 1
            broken = draw(st.sampled_from(["shape", "classes", "lr", "no_labels"]))
            if broken == "shape":
                data["model"]["input_shape"] = [3, 32, 32]
            elif broken == "classes":
                data["model"]["num_classes"] = draw(st.sampled_from([1, 5, 9]))
            elif broken == "lr":
                data["model"]["lr"] = draw(st.sampled_from([1e39, math.inf, 1e300, 0]))
            else:
                data["inputs"]["dataset"] = "synthetic"
    if isinstance(data.get("inputs"), dict) and isinstance(data["inputs"].get("frames"), int):
        data["inputs"]["frames"] = min(data["inputs"]["frames"], 2)  # runs stay at <= 2 frames
    devices = [d.get("name") for d in data["devices"] if isinstance(d, dict) and isinstance(d.get("name"), str)]
    devices = devices or ["d0"]
    files: list[tuple[str, Any]] = []
    for kind in draw(st.lists(st.sampled_from(FILE_KINDS), max_size=2, unique=True)):
        if kind == "partition":
            files.append((kind, _partition_doc(devices, draw)))
        elif kind == "graphml":
            files.append((kind, _graphml_doc(devices, draw)))
        elif kind == "checkpoint":
            files.append((kind, draw(st.sampled_from(CHECKPOINTS))))
        elif kind == "cifar":
            files.append((kind, (draw(st.sampled_from(CIFAR_FOLDERS)), draw(st.sampled_from([1, 3, 4])))))
        else:
            files.append((kind, draw(st.sampled_from(SCENARIO_FILES))))
    return data, files


def _prepare_files(folder: Path, data: dict[str, Any], files: list[tuple[str, Any]]) -> Path | None:
    """Write the case's files into ``folder`` and point the scenario at them; returns a scenario file to
    load instead of the data, if the case has one."""
    scenario_kind = None
    for kind, payload in files:
        if kind == "partition":
            path = folder / "p.json"
            if isinstance(payload, bytes):
                path.write_bytes(payload)
            _assign(data, "partition", {"file": str(path) if isinstance(payload, bytes) else payload})
        elif kind == "graphml":
            path = folder / "net.graphml"
            path.write_bytes(payload)
            _assign(data, "network.topology", "custom")
            _assign(data, "network.graphml", str(path))
            _assign(data, "network.links", [])
        elif kind == "checkpoint":
            path = folder / "ckpt.pt"
            other = _checkpoint(path, payload)
            _assign(data, "model.checkpoint", other or str(path))
        elif kind == "cifar":
            _cifar_folder(folder / "cifar", payload[0])
            _assign(data, "inputs.dataset", "cifar10")
            _assign(data, "inputs.path", str(folder / "cifar"))
            _assign(data, "model.input_shape", [payload[1], 32, 32])
        else:
            scenario_kind = payload
    if scenario_kind is None:
        return None
    path = folder / "scenario.yaml"
    _scenario_file(path, data, scenario_kind)
    return path


# --- the checks ----------------------------------------------------------------------------------------

FIELD = re.compile(r"^[A-Za-z_]\w*(?:\[\d+\])*(?:\.[A-Za-z_]\w*(?:\[\d+\])*)*(?: file)?: ")
WHOLE_FILE = (
    "not valid YAML",
    "nested too deeply",
    "nested more than",
    "must be a mapping of keys",
    "a number has more than",
)


def _check_refusal(exc: UserError, scenario_path: Path | None) -> None:
    """One line that names the field (``devices[0].gflops: ...``), after the scenario's origin; a problem
    of the whole scenario file names that file."""
    message = str(exc)
    assert message and "\n" not in message and message.strip() == message, f"not one line: {message!r}"
    for origin in ("scenario: ", f"{scenario_path}: "):
        if message.startswith(origin):
            rest = message[len(origin) :]
            if origin != "scenario: " and rest.startswith(WHOLE_FILE):
                return
            message = rest
            break
    assert FIELD.match(message), f"names no field: {str(exc)!r}"


def _numbers(value: Any) -> Iterator[float]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield float(value)


def _check_run(result: RunResult) -> None:
    summary = {k: v for k, v in result.summary.items() if k != "scenario"}
    bad = [x for x in _numbers(summary) if not math.isfinite(x)]
    assert not bad, f"summary has non-finite numbers {bad[:3]}"
    for table in (result.transfers, result.compute, result.links, result.devices):
        numbers = table.select_dtypes("number")
        if isinstance(table, pd.DataFrame) and not numbers.empty:
            # NaN marks "not applicable" (a format a message cannot use); infinity never is
            assert not np.isinf(numbers.to_numpy(dtype=float)).any(), "a table holds an infinite number"
    cp = result.summary["critical_path"]
    assert cp["latency_s"] >= cp["compute_s"] * (1 - 1e-9) - 1e-15, cp
    assert result.summary["latency_s"] >= 0


class _Hang(Exception):
    pass


@contextlib.contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    """Raise :class:`_Hang` in the main thread when the block runs longer than ``seconds``."""

    def alarm(signum: int, frame: Any) -> None:
        raise _Hang(f"case ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _one_case(case: tuple[dict[str, Any], list[tuple[str, Any]]], tally: Counter[str]) -> None:
    data, files = case
    with tempfile.TemporaryDirectory() as tmp:
        scenario_path = _prepare_files(Path(tmp), data, files)
        tally["cases"] += 1
        try:
            with _deadline(CASE_SECONDS):
                result = run(load(scenario_path) if scenario_path is not None else data)
        except UserError as exc:
            tally["refused"] += 1
            _check_refusal(exc, scenario_path)
            return
        except _Hang:
            tally["hangs"] += 1
            raise
        except BaseException:
            tally["tracebacks"] += 1
            raise
        tally["ran"] += 1
        _check_run(result)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: threads only add overhead on a shared machine
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fuzz(examples: int) -> Counter[str]:
    tally: Counter[str] = Counter()

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(cases())
    def check(case: tuple[dict[str, Any], list[tuple[str, Any]]]) -> None:
        _one_case(case, tally)

    start = time.perf_counter()
    with _one_thread():
        check()
    tally["seconds"] = round(time.perf_counter() - start)
    return tally


def test_fuzzed_scenarios_are_refused_in_one_line_or_run_sanely() -> None:
    tally = _fuzz(FAST_CASES)
    assert tally["tracebacks"] == tally["hangs"] == 0
    assert tally["refused"] > 0 and tally["ran"] > 0  # both outcomes are exercised


@pytest.mark.slow
def test_fuzzed_scenarios_many(capsys) -> None:
    tally = _fuzz(SLOW_CASES)
    with capsys.disabled():
        print(f"\nscenario fuzz: {dict(tally)}")
    assert tally["tracebacks"] == tally["hangs"] == 0
    assert tally["cases"] >= SLOW_CASES * 0.9
