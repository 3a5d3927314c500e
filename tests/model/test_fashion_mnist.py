"""The fashion-mnist dataset read from idx files (gzip or not), on tiny files the tests write."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from sim.config.load import parse_scenario
from sim.errors import UserError
from sim.model import data
from tests.helpers import scenario_dict


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    raw = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", n) for n in array.shape)
    raw += array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def make_folder(folder: Path, compress: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(5, 28, 28))
    test = rng.integers(0, 256, size=(3, 28, 28))
    write_idx(folder / "train-images-idx3-ubyte", train, compress)
    write_idx(folder / "train-labels-idx1-ubyte", np.array([0, 1, 2, 3, 9]), compress)
    write_idx(folder / "t10k-images-idx3-ubyte", test, compress)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.array([4, 5, 6]), not compress)  # mixed: both read
    return train, test


@pytest.mark.parametrize("compress", [False, True])
def test_reads_idx_files_gzip_or_not(tmp_path: Path, compress: bool) -> None:
    train_images, test_images = make_folder(tmp_path, compress)
    assert test_images.shape == (3, 28, 28)
    train, test = data.fashion_mnist((1, 28, 28), tmp_path)
    assert train.images.shape == (5, 1, 28, 28) and test.images.shape == (3, 1, 28, 28)
    assert train.labels.tolist() == [0, 1, 2, 3, 9] and test.labels.tolist() == [4, 5, 6]
    assert np.allclose(train.images[:, 0].numpy(), train_images / 255.0)
    assert np.allclose(test.images[:, 0].numpy(), test_images / 255.0)
    resized, _ = data.fashion_mnist((3, 16, 16), tmp_path)
    assert resized.images.shape == (5, 3, 16, 16)
    sc = parse_scenario(scenario_dict(2, inputs={"dataset": "fashion-mnist", "path": str(tmp_path)}))
    frames = data.frame_batches("fashion-mnist", (1, 32, 32), 4, 1, 0, sc.inputs.path)
    assert len(frames) == 4 and frames[3].labels.tolist() == [4]  # the test split, wrapping around


def test_bad_folders_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"inputs\.path: no such folder"):
        data.fashion_mnist((1, 28, 28), tmp_path / "missing")
    with pytest.raises(UserError, match=r"has no train-images-idx3-ubyte\[\.gz\]"):
        data.fashion_mnist((1, 28, 28), tmp_path)
    make_folder(tmp_path, False)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">iii", 3, 28, 28) + b"x")
    with pytest.raises(UserError, match="truncated"):
        data.fashion_mnist((1, 28, 28), tmp_path)
