"""Training gives the same weights whatever the CPU's vector instructions (issue 25, item 5): LeNet-5 trained in
two processes, one restricted to AVX2 kernels (torch's, oneDNN's and MKL's), one free to use AVX-512."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sim.model import zoo
from sim.model.data import DataSplit
from sim.model.train import TRAIN_DTYPE, fit

ROOT = Path(__file__).resolve().parents[2]
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
TRAIN = """
import hashlib, torch
from sim.model import data, train, zoo
torch.manual_seed(0)
model = zoo.build_model("lenet5")
train.fit(model, data.digits((1, 32, 32), seed=0)[0], epochs=2, lr=1e-3, seed=0, progress=False)
print(torch.backends.cpu.get_cpu_capability(), hashlib.sha256(b"".join(
    t.numpy().tobytes() for t in model.state_dict().values())).hexdigest())
"""


def _train(env: dict[str, str]) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", TRAIN], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    capability, digest = done.stdout.split()
    return capability, digest


def _has_avx512() -> bool:
    return torch.backends.cpu.get_cpu_capability() == "AVX512"


@pytest.mark.slow
@pytest.mark.skipif(not _has_avx512(), reason="compares AVX-512 kernels with AVX2 ones: needs an AVX-512 CPU")
def test_weights_do_not_depend_on_the_vector_instructions() -> None:
    wide, narrow = _train({}), _train(AVX2_ONLY)
    assert (wide[0], narrow[0]) == ("AVX512", "AVX2")  # the two runs did use different kernels
    assert wide[1] == narrow[1]


def test_training_leaves_a_float32_model_and_the_settings_as_they_were() -> None:
    model = zoo.build_model("lenet5")
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    gen = torch.Generator().manual_seed(0)
    split = DataSplit(torch.rand(128, 1, 32, 32, generator=gen), torch.randint(0, 10, (128,), generator=gen))
    fit(model, split, epochs=1, lr=1e-3, seed=0, progress=False)
    assert set(seen) == {TRAIN_DTYPE} and TRAIN_DTYPE == torch.float64
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, deterministic)
