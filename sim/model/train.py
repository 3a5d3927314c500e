"""Training, fine-tuning and test accuracy of a classifier on a labelled :class:`~sim.model.data.DataSplit`.

Training uses Adam and cross-entropy over seeded shuffled mini-batches; the shuffling draws from a
``torch.Generator`` made from the seed, so the global random state is never touched and the same seed gives
the same weights. Pruning masks installed by :mod:`torch.nn.utils.prune` stay in place while training
(the forward pre-hooks multiply every weight by its mask, so pruned weights get zero gradient and Adam
never moves them): that is fine-tuning with the masks held fixed.

Training is reproducible across x86 CPUs (:func:`reproducible`): it runs in float64 on one intra-op thread
with torch's deterministic algorithms, and the weights go back to float32 afterwards. In float32 the
kernels torch picks for the CPU (AVX2 or AVX-512 convolutions, matrix products and reductions) round
differently, and training amplifies those last-bit differences into different weights and accuracies
(81.06 % against 80.78 % on two machines); in float64 the differences stay far below float32's last bit.
It costs about twice the time of float32 training. One thread is also fastest for these small CNNs on
a machine whose cores are busy, and the result does not depend on the core count.

Example::

    >>> from sim.model import data, zoo
    >>> train_split, test_split = data.digits((1, 32, 32), seed=0)
    >>> model = zoo.build_model("lenet5")
    >>> fit(model, train_split, epochs=3, lr=1e-3, seed=0, progress=False)  # doctest: +SKIP
    >>> accuracy(model, test_split)  # doctest: +SKIP
    0.95...
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from sim.errors import UserError
from sim.fileio import atomic_path
from sim.model.data import DataSplit

BATCH_SIZE = 64  # images per optimisation step
EVAL_BATCH_SIZE = 256  # images per forward pass when measuring accuracy
THREADS = 1  # intra-op threads while training


TRAIN_DTYPE = torch.float64  # weights and images while training (see the module docstring)


@contextmanager
def reproducible(model: nn.Module) -> Iterator[None]:
    """Run the block (training ``model``) on :data:`THREADS` torch threads with deterministic algorithms and
    the model's floating-point weights in :data:`TRAIN_DTYPE`; then restore the model's dtype, the thread
    count and the deterministic setting. Feed it images ``.to(TRAIN_DTYPE)``.

    >>> model = nn.Linear(2, 1)
    >>> with reproducible(model):
    ...     model.weight.dtype, torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    (torch.float64, 1, True)
    >>> model.weight.dtype
    torch.float32
    """
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    model.to(TRAIN_DTYPE)
    try:
        yield
    finally:
        model.to(dtype)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.set_num_threads(threads)


def fit(
    model: nn.Module,
    split: DataSplit,
    epochs: int,
    lr: float,
    seed: int,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    desc: str = "train",
    section: str = "model",
) -> nn.Module:
    """Train ``model`` in place for ``epochs`` passes over ``split`` and return it in eval mode.

    ``lr`` is Adam's learning rate; ``seed`` fixes the batch order. With ``progress``, a tqdm bar counts
    the steps when stderr is a terminal. A model with nothing to train, or whose weights stop being finite
    (too large an ``lr``), is refused with a :class:`UserError` naming ``section`` (``model`` or ``prune``).
    """
    if split.labels is None:
        raise ValueError("training needs a labelled split")
    if epochs <= 0:
        return model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        epochs_key = "train_epochs" if section == "model" else "finetune_epochs"
        raise UserError(f"{section}.{epochs_key}: the model has no trainable parameters; set it to 0")
    gen = torch.Generator().manual_seed(seed)
    n = len(split.labels)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    model.train()
    bar_off = None if progress else True  # None: tqdm shows the bar only on a terminal
    with reproducible(model), tqdm(total=steps, desc=desc, unit="step", disable=bar_off, leave=False) as bar:
        optimizer = torch.optim.Adam(params, lr=lr)
        for epoch in range(epochs):
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(split.images[idx].to(TRAIN_DTYPE)), split.labels[idx])
                loss.backward()
                optimizer.step()
                bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    if not all(bool(p.detach().isfinite().all()) for p in params):
        raise UserError(f"{section}.lr: training diverged (weights became NaN or infinite) at lr {lr:g}; lower it")
    return model.eval()


def accuracy(model: nn.Module, split: DataSplit, batch_size: int = EVAL_BATCH_SIZE) -> float:
    """Fraction of ``split``'s images whose arg-max logit is their label (model left in eval mode)."""
    if split.labels is None:
        raise ValueError("accuracy needs a labelled split")
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(split.labels), batch_size):
            logits = model(split.images[start : start + batch_size])
            correct += int((logits.argmax(1) == split.labels[start : start + batch_size]).sum())
    return correct / max(1, len(split.labels))


def save_checkpoint(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s state_dict to ``path`` atomically (loadable as a scenario's ``model.checkpoint``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
    return path
