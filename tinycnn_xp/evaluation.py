"""Inference in chunks: predictions, loss and accuracy of a whole dataset, one chunk at a time.

Memory stays that of one chunk, whatever the dataset's size: each chunk goes through the network
without keeping anything for a backward pass, and only its totals, small arrays on the device,
are kept. Reading them is left to the caller, so an epoch's metrics still come to the host in
one transfer however many chunks there were.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import array_api_extra as xpx
from array_api_compat import device

from . import _checks
from .layers import to_rows
from .losses import cross_entropy_columns, one_hot_columns, softmax_columns

__all__ = ["DEFAULT_EVAL_VALUES", "eval_batch_size", "chunks", "predict", "correct_count",
           "totals_of", "TrainAndValidation"]

Array = Any

#: Input values per chunk when no ``eval_batch_size`` is given: 256 images of 28x28, the size
#: ``benchmarks/memory.py --eval-batch-sizes`` measured fastest per image with the least memory
#: there; smaller images come in more per chunk (the chapter's 270 8x8 images in one). On a GPU
#: a larger chunk may pay: pass ``eval_batch_size``.
DEFAULT_EVAL_VALUES = 256 * 28 * 28


def eval_batch_size(value: Any, image_shape: tuple[int, ...]) -> int:
    """``eval_batch_size`` checked: a positive integer; ``None``: as many images of
    ``image_shape`` as make ``DEFAULT_EVAL_VALUES`` input values."""
    if value is None:
        return max(1, DEFAULT_EVAL_VALUES // max(1, math.prod(image_shape)))
    return _checks.positive_int(value, "eval_batch_size")


def chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of at most ``size`` covering ``range(n)``."""
    for start in range(0, n, size):
        yield start, min(start + size, n)  # out-of-range stops are not standard


def predict(logits_of: Callable[[Array], Array], x: Array, size: int, xp: Any) -> Array:
    """Arg-max class of every image of ``x``; ``logits_of(images)`` gives ``(classes, images)``
    logits (``training.logits_of(model, shape)``)."""
    n, out = x.shape[0], None
    for start, stop in chunks(n, size):
        part = xp.argmax(logits_of(x[start:stop, ...]), axis=0)
        if stop - start == n:
            return part
        if out is None:
            out = xp.empty((n,), dtype=part.dtype, device=device(part))
        # Written into one array as the chunks come (in place where the library allows: the
        # array is ours): keeping every chunk's small result for one concat at the end scatters
        # them through the allocator's heap, and torch's predict then grew to 0.7 GiB at 24k.
        out = xpx.at(out, slice(start, stop)).set(part)
    return out


def probabilities(logits_of: Callable[[Array], Array], x: Array, size: int, xp: Any) -> Array:
    """``(images, classes)`` softmax probabilities of every image of ``x``, chunk by chunk."""
    n, out = x.shape[0], None
    for start, stop in chunks(n, size):
        part = softmax_columns(logits_of(x[start:stop, ...]), xp).mT
        if stop - start == n:
            return part
        if out is None:
            out = xp.empty((n, part.shape[1]), dtype=part.dtype, device=device(part))
        out = xpx.at(out, slice(start, stop)).set(part)
    return out


def correct_count(logits_of: Callable[[Array], Array], x: Array, y: Array, size: int, xp: Any) -> Array:
    """Number of correct predictions on ``x``, ``y``, a 0-d array on the device."""
    total: Any = None
    for start, stop in chunks(x.shape[0], size):
        hits = xp.argmax(logits_of(x[start:stop, ...]), axis=0) == y[start:stop]
        part = xp.sum(xp.astype(hits, x.dtype))
        total = part if total is None else total + part
    return total


def totals_of(logits: Callable[[tuple, Array], Array], xp: Any) -> Callable[..., Array]:
    """``totals(params, x, y, is_train)``: ``[correct predictions among the training images,
    summed loss of the validation images, their correct predictions]`` for a chunk of images
    ``x`` with labels ``y``, ``is_train`` marking (1.0) which of them are training images;
    ``logits(params, rows)`` is the model's inference (``Program.logits``)."""
    def totals(params: tuple, x: Array, y: Array, is_train: Array) -> Array:
        scores = logits(params, to_rows(x, xp))
        hits = xp.astype(xp.argmax(scores, axis=0) == y, x.dtype)
        targets = one_hot_columns(y, scores.shape[0], x.dtype, xp)
        losses = cross_entropy_columns(softmax_columns(scores, xp), targets, xp)
        train_hits = xp.sum(hits * is_train)
        return xp.stack([train_hits, xp.sum(losses * (1.0 - is_train)), xp.sum(hits) - train_hits])
    return totals


class TrainAndValidation:
    """A fit's two datasets in chunks of at most ``size`` images, measured at every epoch's end:
    ``totals(chunk_totals)`` sums ``totals_of``'s vector over the chunks. When both sets fit in
    one chunk they go through the network together, in one forward pass, from one copy of both
    made here (at most ``size`` images)."""

    def __init__(self, x_train: Array, y_train: Array, x_val: Array, y_val: Array, size: int,
                 xp: Any) -> None:
        self.xp = xp
        n_train, n_val = x_train.shape[0], x_val.shape[0]
        where = device(x_train)
        if n_train + n_val <= size:
            marks = xp.concat([xp.ones((n_train,), dtype=x_train.dtype, device=where),
                               xp.zeros((n_val,), dtype=x_train.dtype, device=where)])
            self.chunks = [(xp.concat([x_train, x_val], axis=0), xp.concat([y_train, y_val]), marks)]
            return
        self.chunks = []
        for x, y, mark in ((x_train, y_train, 1.0), (x_val, y_val, 0.0)):
            for start, stop in chunks(x.shape[0], size):
                marks = xp.full((stop - start,), mark, dtype=x.dtype, device=where)
                self.chunks.append((x[start:stop, ...], y[start:stop], marks))

    def totals(self, chunk_totals: Callable[[Array, Array, Array], Array]) -> tuple[Array, Array, Array]:
        """``(training set's correct predictions, validation loss summed, validation's correct
        predictions)`` as 0-d arrays on the device."""
        total: Any = None
        for x, y, marks in self.chunks:
            part = chunk_totals(x, y, marks)
            total = part if total is None else total + part
        return total[0], total[1], total[2]
