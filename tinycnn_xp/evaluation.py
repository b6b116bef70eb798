"""Inference in chunks: predictions, loss and accuracy of a whole dataset, one chunk at a time.

Memory stays that of one chunk, whatever the dataset's size: each chunk goes through the network
with ``cache=False`` (no ``last_input``, windows or masks kept for a backward pass), and only its
per-chunk totals, 0-d arrays on the device, are kept. Reading them is left to the caller, so an
epoch's metrics still come to the host in one transfer however many chunks there were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import array_api_extra as xpx
from array_api_compat import device

from . import _checks
from .losses import sample_losses

__all__ = ["DEFAULT_EVAL_BATCH_SIZE", "chunks", "predict", "totals", "TrainAndValidation",
           "joint_totals"]

Array = Any

#: Images per chunk when none is given. Measured by ``benchmarks/memory.py --eval-batch-sizes``
#: (predict on 24,000 28x28 images, CPU): 128 and 256 are the fastest per image (0.028 and 0.032
#: ms on NumPy, 0.041 and 0.060 on torch), 1024 is twice as slow (the chunk's activations no
#: longer fit the caches) and takes 110 MiB against 27. 256 keeps 8x8 sets like the chapter's
#: in one or two chunks. On a GPU a larger chunk may pay: pass ``eval_batch_size``.
DEFAULT_EVAL_BATCH_SIZE = 256


def eval_batch_size(value: Any) -> int:
    """``eval_batch_size`` checked: a positive integer (``None``: the default)."""
    if value is None:
        return DEFAULT_EVAL_BATCH_SIZE
    return _checks.positive_int(value, "eval_batch_size")


def chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of at most ``size`` covering ``range(n)``."""
    for start in range(0, n, size):
        yield start, min(start + size, n)  # out-of-range stops are not standard


def predict(logits_of: Callable[[Array], Array], x: Array, size: int, xp: Any) -> Array:
    """Arg-max class of every image of ``x``; ``logits_of(images)`` gives ``(images, classes)``
    logits (``model.forward(images, check=False, cache=False)``, say)."""
    n, out = x.shape[0], None
    for start, stop in chunks(n, size):
        part = xp.argmax(logits_of(x[start:stop, ...]), axis=1)
        if stop - start == n:
            return part
        if out is None:
            out = xp.empty((n,), dtype=part.dtype, device=device(part))
        # Written into one array as the chunks come (in place where the library allows: the
        # array is ours): keeping every chunk's small result for one concat at the end scatters
        # them through the allocator's heap, and torch's predict then grew to 0.7 GiB at 24k.
        out = xpx.at(out, slice(start, stop)).set(part)
    return out


def totals(logits_of: Callable[[Array], Array], x: Array, y: Array, size: int, xp: Any,
           loss: bool = True) -> tuple[Array | None, Array]:
    """Summed cross-entropy (``None`` unless ``loss``) and number of correct predictions on
    images ``x`` with labels ``y``, as 0-d arrays of ``x``'s dtype on its device; ``logits_of``
    as for ``predict``.

    Divide by ``x.shape[0]`` for the means: with one chunk, NumPy gives exactly ``mean``'s
    result; with several, the sums differ from one whole sum in the last bits only.
    """
    loss_sum = correct = None
    for start, stop in chunks(x.shape[0], size):
        logits = logits_of(x[start:stop, ...])
        labels = y[start:stop, ...]
        hits = xp.sum(xp.astype(xp.argmax(logits, axis=1) == labels, logits.dtype))
        correct = hits if correct is None else correct + hits
        if loss:
            losses, _ = sample_losses(logits, labels, xp)
            part = xp.sum(losses)
            loss_sum = part if loss_sum is None else loss_sum + part
    return loss_sum, correct


class TrainAndValidation:
    """A fit's two datasets, measured at every epoch's end: ``totals(logits_of)`` gives the
    training set's correct predictions and the validation set's summed loss and correct
    predictions, 0-d arrays on the device.

    When both fit in one chunk they go through the network together, in one forward pass, from
    one copy of both made here (at most ``size`` images): at the chapter's size an epoch's
    metrics cost about as many array calls as a training step, so halving them shows.
    """

    def __init__(self, x_train: Array, y_train: Array, x_val: Array, y_val: Array, size: int,
                 xp: Any) -> None:
        self.sets, self.size, self.xp = (x_train, y_train, x_val, y_val), size, xp
        self.n_train = x_train.shape[0]
        self.joint = None
        if self.n_train + x_val.shape[0] <= size:
            self.joint = (xp.concat([x_train, x_val], axis=0), xp.concat([y_train, y_val], axis=0))

    def totals(self, logits_of: Callable[[Array], Array]) -> tuple[Array, Array, Array]:
        xp, n = self.xp, self.n_train
        if self.joint is None:
            x_train, y_train, x_val, y_val = self.sets
            _, train_correct = totals(logits_of, x_train, y_train, self.size, xp, loss=False)
            val_loss, val_correct = totals(logits_of, x_val, y_val, self.size, xp)
            assert val_loss is not None
            return train_correct, val_loss, val_correct
        return joint_totals(logits_of, *self.joint, n, xp)


def joint_totals(logits_of: Callable[[Array], Array], x: Array, y: Array, n_train: int,
                 xp: Any) -> tuple[Array, Array, Array]:
    """``TrainAndValidation.totals`` of the first ``n_train`` images of ``x`` (the training set)
    and the rest (the validation set), in one forward pass."""
    logits = logits_of(x)
    hits = xp.astype(xp.argmax(logits, axis=1) == y, logits.dtype)
    losses, _ = sample_losses(logits[n_train:, ...], y[n_train:], xp)
    return xp.sum(hits[:n_train]), xp.sum(losses), xp.sum(hits[n_train:])
