"""Datasets: the images that enter the source device, and labelled splits for training and accuracy.

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), scaled to [0, 1],
  resized (bilinear) to the model's input size and repeated over its channels. The train/test split
  (80/20) is fixed by the scenario seed.
* ``cifar10``: CIFAR-10 read from a local folder in the standard python-pickle format (``data_batch_1``
  .. ``data_batch_5`` for training, ``test_batch`` for testing), scaled to [0, 1]; resized to the model
  input when it differs from 3x32x32 (a 1-channel model gets the channel mean). Nothing is downloaded.
* ``fashion-mnist``: Fashion-MNIST read from a folder of the standard idx files
  (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte``, each optionally ``.gz``), default ``/usr/share/datasets/fashion-mnist``
  (Debian package ``dataset-fashion-mnist``); scaled to [0, 1], resized to the model input and repeated over
  its channels. Nothing is downloaded.
* ``synthetic``: seeded uniform random images in [0, 1), no labels.

Nothing here touches the global random state: every draw uses a generator made from the seed.
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from sim.errors import UserError, first_line

TEST_FRACTION = 0.2

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
MAX_BATCH_BYTES = 256 * 2**20  # a real batch (10,000 images) is 31 MB
CIFAR10_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class DataSplit:
    """Images ``(N, C, H, W)`` float32 in [0, 1] and integer labels ``(N,)`` (or None)."""

    images: torch.Tensor
    labels: torch.Tensor | None


def _resize(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Bilinear resize of single-channel ``(N, 1, h, w)`` images to ``(N, C, H, W)``."""
    channels, height, width = shape
    out = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False)
    return out.clamp_(0.0, 1.0).expand(-1, channels, -1, -1).contiguous()


def digits(shape: tuple[int, int, int], seed: int) -> tuple[DataSplit, DataSplit]:
    """The digits dataset as (train, test) splits at ``shape`` = (C, H, W), split by ``seed``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    n_test = round(TEST_FRACTION * len(labels))
    test, train = order[:n_test], order[n_test:]
    images = _resize(images, shape)
    return DataSplit(images[train], labels[train]), DataSplit(images[test], labels[test])


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch (dicts, lists, bytes and numpy arrays) and refuses every other object."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch file as ``(N, 3, 32, 32)`` uint8 images and ``(N,)`` int64 labels."""
    where = "inputs.path"
    if not path.is_file():
        raise UserError(
            f"{where}: {path.parent} has no {path.name}; expected data_batch_1..5 and test_batch "
            "(the CIFAR-10 python version)"
        )
    if path.stat().st_size > MAX_BATCH_BYTES:
        raise UserError(f"{where}: {path} is larger than {MAX_BATCH_BYTES} bytes; not a CIFAR-10 python batch")
    try:
        with path.open("rb") as fh:
            doc = _BatchUnpickler(fh, encoding="bytes").load()
        images = np.asarray(doc[b"data"], dtype=np.uint8)
        labels = np.asarray(doc[b"labels"], dtype=np.int64)
        images = images.reshape(len(labels), *CIFAR10_SHAPE)
    except Exception as exc:  # unpickling, missing keys and bad shapes all mean the same to the user
        raise UserError(f"{where}: {path} is not a CIFAR-10 python batch ({first_line(exc, 100)})") from None
    if labels.size == 0:
        raise UserError(f"{where}: {path} holds no images; not a CIFAR-10 batch")
    if labels.min() < 0 or labels.max() > 9:
        raise UserError(f"{where}: {path} has labels outside 0..9; not a CIFAR-10 batch")
    return images, labels


def _cifar_folder(path: str | Path | None) -> Path:
    """The CIFAR-10 folder, checked to exist."""
    if path is None:
        raise UserError("inputs.path: dataset cifar10 needs the folder holding data_batch_1..5 and test_batch")
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(
            f"inputs.path: no such folder {folder}; give the CIFAR-10 python-version folder (cifar-10-batches-py)"
        )
    return folder


def _cifar_split(folder: Path, names: tuple[str, ...], shape: tuple[int, int, int]) -> DataSplit:
    """The batch files ``names`` of ``folder`` as one split at ``shape``."""
    parts = [_cifar_batch(folder / name) for name in names]
    x = torch.from_numpy(np.concatenate([p[0] for p in parts])).float().div_(255.0)
    if tuple(shape) != CIFAR10_SHAPE:
        if shape[0] not in (1, 3):
            raise UserError(f"model.input_shape: cifar10 images have 3 channels; the model wants {shape[0]}")
        x = x.mean(1, keepdim=True) if shape[0] == 1 else x
        x = F.interpolate(x, size=tuple(shape[1:]), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    return DataSplit(x.contiguous(), torch.from_numpy(np.concatenate([p[1] for p in parts])))


def cifar10(shape: tuple[int, int, int], path: str | Path | None) -> tuple[DataSplit, DataSplit]:
    """CIFAR-10 from the local folder ``path`` as (train, test) splits at ``shape`` = (C, H, W).

    Example::

        >>> train, test = cifar10((3, 32, 32), "data/cifar-10-batches-py")  # doctest: +SKIP
    """
    folder = _cifar_folder(path)
    return _cifar_split(folder, CIFAR10_TRAIN, shape), _cifar_split(folder, (CIFAR10_TEST,), shape)


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: Path) -> np.ndarray:
    """One idx file (gzip or not): magic ``0 0 type ndim``, big-endian int32 sizes, then the values.

    Only unsigned-byte data (type 0x08) is accepted, as in MNIST-style datasets.
    """
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UserError(f"inputs.path: cannot read {path} ({first_line(exc, 100)})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UserError(f"inputs.path: {path} is not an unsigned-byte idx file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)] if len(raw) >= header else []
    if len(dims) != ndim or len(raw) - header != int(np.prod(dims, dtype=np.int64)):
        raise UserError(f"inputs.path: {path} is truncated or its sizes do not match its data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _idx_file(folder: Path, stem: str) -> Path:
    """``folder/stem`` or ``folder/stem.gz``, whichever exists."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"inputs.path: {folder} has no {stem}[.gz]; expected the four Fashion-MNIST idx files")


def fashion_mnist(shape: tuple[int, int, int], path: str | Path | None = None) -> tuple[DataSplit, DataSplit]:
    """Fashion-MNIST from the idx files in ``path`` (default :data:`FASHION_MNIST_DIR`) as (train, test).

    Example::

        >>> train, test = fashion_mnist((1, 28, 28))  # doctest: +SKIP
    """
    folder = Path(path) if path is not None else FASHION_MNIST_DIR
    if not folder.is_dir():
        raise UserError(
            f"inputs.path: no such folder {folder}; give the folder of the Fashion-MNIST idx files "
            "(apt install dataset-fashion-mnist puts them in /usr/share/datasets/fashion-mnist)"
        )
    out = []
    for part in ("train", "test"):
        images_stem, labels_stem = FASHION_MNIST_FILES[part]
        images, labels = read_idx(_idx_file(folder, images_stem)), read_idx(_idx_file(folder, labels_stem))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(f"inputs.path: {folder}: {part} images and labels do not match (N x H x W and N)")
        if labels.size and labels.max() > 9:
            raise UserError(f"inputs.path: {folder}: {part} labels outside 0..9; not Fashion-MNIST")
        x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        out.append(DataSplit(_resize(x, shape), torch.from_numpy(labels.astype(np.int64))))
    return out[0], out[1]


def labelled(
    dataset: str, shape: tuple[int, int, int], seed: int, path: str | Path | None = None
) -> tuple[DataSplit, DataSplit] | None:
    """The (train, test) splits of a labelled dataset, or None for ``synthetic`` (no labels)."""
    if dataset == "digits":
        return digits(shape, seed)
    if dataset == "cifar10":
        return cifar10(shape, path)
    if dataset == "fashion-mnist":
        return fashion_mnist(shape, path)
    return None


def synthetic(shape: tuple[int, int, int], count: int, seed: int) -> DataSplit:
    """``count`` uniform random images at ``shape``, from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return DataSplit(torch.rand((count, *shape), generator=gen), None)


def frame_batches(
    dataset: str,
    shape: tuple[int, int, int],
    frames: int,
    batch: int,
    seed: int,
    path: str | Path | None = None,
    test: DataSplit | None = None,
) -> list[DataSplit]:
    """The ``frames`` batches of ``batch`` images that enter the source, in order.

    For ``digits`` and ``cifar10`` (read from ``path``) they are the first images of the test split
    (wrapping around if more are asked for); pass ``test`` when :func:`labelled` has already loaded it.
    """
    if test is not None:
        pool = test
    elif dataset == "digits":
        pool = digits(shape, seed)[1]
    elif dataset == "cifar10":
        pool = _cifar_split(_cifar_folder(path), (CIFAR10_TEST,), shape)
    elif dataset == "fashion-mnist":
        pool = fashion_mnist(shape, path)[1]
    else:
        pool = synthetic(shape, frames * batch, seed)
    idx = torch.arange(frames * batch) % len(pool.images)
    out = []
    for f in range(frames):
        sel = idx[f * batch : (f + 1) * batch]
        out.append(DataSplit(pool.images[sel], None if pool.labels is None else pool.labels[sel]))
    return out
