"""CIFAR-10 from a local folder in the python-pickle format (tiny files made here), and its errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
import yaml

from sim.cli import main
from sim.config.load import load
from sim.errors import UserError
from sim.model import data
from tests.helpers import scenario_dict

PER_BATCH = 4  # images per training batch file; the test batch has 6


def write_batch(path, images: np.ndarray, labels: list[int]) -> None:
    """One batch file as CIFAR-10's python version stores it: {b'data': (N, 3072) uint8, b'labels': [...]}."""
    with open(path, "wb") as fh:
        pickle.dump(
            {b"batch_label": b"tiny", b"labels": labels, b"data": images.reshape(len(labels), -1)}, fh, protocol=2
        )


@pytest.fixture
def cifar(tmp_path):
    """A tiny CIFAR-10 folder: pixel (c, y, x) of image i is (i + c + y + x) mod 256; label i mod 10."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    c, y, x = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")

    def images(first: int, n: int) -> np.ndarray:
        return np.stack([(i + c + y + x) % 256 for i in range(first, first + n)]).astype(np.uint8)

    for b in range(5):
        first = b * PER_BATCH
        write_batch(
            folder / f"data_batch_{b + 1}", images(first, PER_BATCH), [i % 10 for i in range(first, first + PER_BATCH)]
        )
    write_batch(folder / "test_batch", images(100, 6), [i % 10 for i in range(100, 106)])
    return folder


def test_splits_have_the_images_and_labels_in_order(cifar) -> None:
    train, test = data.cifar10((3, 32, 32), cifar)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (6, 3, 32, 32)
    assert train.labels.tolist() == [i % 10 for i in range(20)]
    assert test.labels.tolist() == [0, 1, 2, 3, 4, 5]
    # image 7 (batch 2, second), channel 2, row 3, column 5: (7 + 2 + 3 + 5) / 255
    assert train.images[7, 2, 3, 5].item() == pytest.approx(17 / 255)
    assert test.images[0, 0, 0, 0].item() == pytest.approx(100 / 255)


def test_one_channel_models_get_the_channel_mean(cifar) -> None:
    _, test = data.cifar10((1, 32, 32), cifar)
    assert test.images.shape == (6, 1, 32, 32)
    assert test.images[0, 0, 0, 0].item() == pytest.approx((100 + 101 + 102) / 3 / 255, rel=1e-6)


def test_frames_come_from_the_test_batch(cifar) -> None:
    frames = data.frame_batches("cifar10", (3, 32, 32), 4, 2, seed=0, path=cifar)
    assert len(frames) == 4 and frames[0].images.shape == (2, 3, 32, 32)
    assert frames[2].labels.tolist() == [4, 5] and frames[3].labels.tolist() == [0, 1]  # wraps around


def test_missing_folder_file_and_malformed_batches_are_one_line_errors(cifar, tmp_path) -> None:
    with pytest.raises(UserError, match=r"^inputs.path: no such folder .*nowhere"):
        data.cifar10((3, 32, 32), tmp_path / "nowhere")
    (cifar / "data_batch_3").unlink()
    with pytest.raises(UserError, match=r"^inputs.path: .* has no data_batch_3; expected data_batch_1..5"):
        data.cifar10((3, 32, 32), cifar)
    (cifar / "data_batch_3").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match=r"data_batch_3 is not a CIFAR-10 python batch"):
        data.cifar10((3, 32, 32), cifar)
    with open(cifar / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, fh)  # wrong image size
    with pytest.raises(UserError, match=r"data_batch_3 is not a CIFAR-10 python batch"):
        data.cifar10((3, 32, 32), cifar)
    with open(cifar / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": torch.nn.ReLU()}, fh)
    with pytest.raises(UserError, match=r"unexpected object torch"):  # only plain data is unpickled
        data.cifar10((3, 32, 32), cifar)


def test_scenario_needs_a_path_for_cifar10() -> None:
    with pytest.raises(UserError, match=r"inputs.path: dataset cifar10 needs the folder"):
        load(scenario_dict(inputs={"dataset": "cifar10"}))


def test_run_on_cifar10_reports_accuracy(cifar, tmp_path) -> None:
    scen = tmp_path / "s.yaml"
    scen.write_text(
        yaml.safe_dump(
            scenario_dict(
                inputs={"dataset": "cifar10", "path": str(cifar)}, model={"name": "lenet5", "train_epochs": 1}
            )
        )
    )
    assert main(["run", str(scen), "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["accuracy"] * 6 == pytest.approx(round(summary["accuracy"] * 6))  # k of the 6 test images


def test_batches_naming_numpy_core_as_the_original_files_do_load(cifar) -> None:
    """The published files were pickled with numpy 1 (``numpy.core.multiarray._reconstruct``)."""
    raw = pickle.dumps({b"data": np.full((2, 3072), 7, np.uint8), b"labels": [3, 4]}, protocol=2)
    (cifar / "test_batch").write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    _, test = data.cifar10((3, 32, 32), cifar)
    assert test.labels.tolist() == [3, 4] and test.images.max().item() == pytest.approx(7 / 255)
