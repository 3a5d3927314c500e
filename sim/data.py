"""Datasets: the images that enter the source device, and labelled splits for training and accuracy.

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), scaled to [0, 1],
  resized (bilinear) to the model's input size and repeated over its channels. The train/test split
  (80/20) is fixed by the scenario seed.
* ``synthetic``: seeded uniform random images in [0, 1), no labels.

Nothing here touches the global random state: every draw uses a generator made from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Split:
    """Images ``(N, C, H, W)`` float32 in [0, 1] and integer labels ``(N,)`` (or None)."""

    images: torch.Tensor
    labels: torch.Tensor | None


def _resize(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Bilinear resize of single-channel ``(N, 1, h, w)`` images to ``(N, C, H, W)``."""
    channels, height, width = shape
    out = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False)
    return out.clamp_(0.0, 1.0).expand(-1, channels, -1, -1).contiguous()


def digits(shape: tuple[int, int, int], seed: int) -> tuple[Split, Split]:
    """The digits dataset as (train, test) splits at ``shape`` = (C, H, W), split by ``seed``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    n_test = int(round(TEST_FRACTION * len(labels)))
    test, train = order[:n_test], order[n_test:]
    images = _resize(images, shape)
    return Split(images[train], labels[train]), Split(images[test], labels[test])


def synthetic(shape: tuple[int, int, int], count: int, seed: int) -> Split:
    """``count`` uniform random images at ``shape``, from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return Split(torch.rand((count, *shape), generator=gen), None)


def frame_batches(dataset: str, shape: tuple[int, int, int], frames: int, batch: int, seed: int) -> list[Split]:
    """The ``frames`` batches of ``batch`` images that enter the source, in order.

    For ``digits`` they are the first images of the test split (wrapping around if more are asked for).
    """
    if dataset == "digits":
        pool = digits(shape, seed)[1]
    else:
        pool = synthetic(shape, frames * batch, seed)
    idx = torch.arange(frames * batch) % len(pool.images)
    out = []
    for f in range(frames):
        sel = idx[f * batch:(f + 1) * batch]
        out.append(Split(pool.images[sel], None if pool.labels is None else pool.labels[sel]))
    return out
