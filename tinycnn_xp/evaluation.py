"""Inference in chunks: predictions, loss and accuracy of a whole dataset, one chunk at a time.

Memory stays that of one chunk, whatever the dataset's size: each chunk goes through the network
with ``cache=False`` (no ``last_input``, windows or masks kept for a backward pass), and only its
per-chunk totals, 0-d arrays on the device, are kept. Reading them is left to the caller, so an
epoch's metrics still come to the host in one transfer however many chunks there were.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import _checks
from .losses import sample_losses

__all__ = ["DEFAULT_EVAL_BATCH_SIZE", "chunks", "predict", "totals"]

Array = Any

#: Images per chunk when none is given: large enough that per-call overheads vanish (at 1024 the
#: 28x28 benchmark network evaluates within a few % of its fastest time per image), small enough
#: that a chunk's activations stay near 150 MiB for it (``benchmarks/memory.py`` measures both).
DEFAULT_EVAL_BATCH_SIZE = 1024


def eval_batch_size(value: Any) -> int:
    """``eval_batch_size`` checked: a positive integer (``None``: the default)."""
    if value is None:
        return DEFAULT_EVAL_BATCH_SIZE
    return _checks.positive_int(value, "eval_batch_size")


def chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of at most ``size`` covering ``range(n)``."""
    for start in range(0, n, size):
        yield start, min(start + size, n)  # out-of-range stops are not standard


def predict(model: Any, x: Array, size: int, xp: Any) -> Array:
    """Arg-max class of every image of ``x`` (already checked and on ``model``'s placement)."""
    parts = [xp.argmax(model.forward(x[start:stop, ...], check=False, cache=False), axis=1)
             for start, stop in chunks(x.shape[0], size)]
    return parts[0] if len(parts) == 1 else xp.concat(parts)


def totals(model: Any, x: Array, y: Array, size: int, xp: Any,
           loss: bool = True) -> tuple[Array | None, Array]:
    """Summed cross-entropy (``None`` unless ``loss``) and number of correct predictions of
    ``model`` on images ``x`` with labels ``y``, as 0-d arrays of ``x``'s dtype on its device.

    Divide by ``x.shape[0]`` for the means: with one chunk, NumPy gives exactly ``mean``'s
    result; with several, the sums differ from one whole sum in the last bits only.
    """
    loss_sum = correct = None
    for start, stop in chunks(x.shape[0], size):
        logits = model.forward(x[start:stop, ...], check=False, cache=False)
        labels = y[start:stop, ...]
        hits = xp.sum(xp.astype(xp.argmax(logits, axis=1) == labels, logits.dtype))
        correct = hits if correct is None else correct + hits
        if loss:
            losses, _ = sample_losses(logits, labels, xp)
            part = xp.sum(losses)
            loss_sum = part if loss_sum is None else loss_sum + part
    return loss_sum, correct
