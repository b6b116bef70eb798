"""Softmax and the softmax cross-entropy loss with its gradient (the start of every backward pass).

The math is written once, on ``(classes, batch)`` columns, the layout models run in;
``softmax`` and ``softmax_cross_entropy`` are the chapter's ``(batch, classes)`` functions over it.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device

from . import _checks
from ._xp import as_data, as_labels, placement_of

__all__ = ["softmax", "softmax_cross_entropy", "softmax_columns", "cross_entropy_columns",
           "cross_entropy_gradient", "one_hot_columns", "mean_of_batch_losses"]

Array = Any

def softmax_columns(logits: Array, xp: Any) -> Array:
    """Softmax over the classes of ``(classes, batch)`` logits, stable for extreme values.

    Subtracting each column's maximum leaves the result unchanged and keeps ``exp`` from
    overflowing.
    """
    exp_values = xp.exp(logits - xp.max(logits, axis=0, keepdims=True))
    return exp_values / xp.sum(exp_values, axis=0, keepdims=True)


def cross_entropy_columns(probabilities: Array, targets: Array, xp: Any) -> Array:
    """Per-sample cross-entropy ``(batch,)`` from probabilities and one-hot ``targets``, both
    ``(classes, batch)``. The true-class probability (a sum that adds exact zeros: ``p[y_i, i]``
    itself) is clipped to ``[1e-12, 1]`` before the log, as in the chapter; probabilities never
    exceed 1, so the lower bound is all of the clip that acts."""
    return -xp.log(xp.maximum(xp.sum(probabilities * targets, axis=0), 1e-12))


def cross_entropy_gradient(probabilities: Array, targets: Array) -> Array:
    """The gradient of the mean cross-entropy with respect to the logits, ``(classes, batch)``:
    ``(probabilities - targets) / batch``."""
    return (probabilities - targets) / targets.shape[1]


def one_hot_columns(labels: Array, classes: int, dtype: Any, xp: Any) -> Array:
    """``(batch,)`` integer labels -> ``(classes, batch)`` one-hot columns of ``dtype``."""
    return xp.astype(xp.arange(classes, device=device(labels))[:, None] == labels, dtype)


def mean_of_batch_losses(probabilities: Array, targets: Array, batch_size: int, xp: Any) -> Array:
    """The mean of an epoch's per-batch mean losses (the chapter's ``train_loss``), a 0-d array,
    from the epoch's probabilities and targets, ``(classes, n)`` in batch order: the batch
    losses of a whole epoch at once, rather than a handful of small calls per step."""
    losses = cross_entropy_columns(probabilities, targets, xp)
    n = losses.shape[0]
    full = n // batch_size
    means = xp.mean(xp.reshape(losses[:full * batch_size], (full, batch_size)), axis=1)
    if full * batch_size < n:  # a smaller last batch
        means = xp.concat([means, xp.mean(losses[full * batch_size:], keepdims=True)])
    return xp.mean(means)


def softmax(logits: Array) -> Array:
    """Row-wise softmax of ``(batch, classes)`` logits (``softmax_columns``, transposed)."""
    logits = as_data(logits)
    xp = _checks.logits(logits)
    return softmax_columns(logits.mT, xp).mT


def softmax_cross_entropy(logits: Array, targets: Array, **deprecated: Any) -> tuple[Array, Array, Array]:
    """Mean cross-entropy of ``softmax(logits)`` against integer ``targets`` ``(batch,)``.

    Returns ``(loss, probabilities, d_logits)``: ``loss`` is a 0-d array on the logits' device,
    ``d_logits = (probabilities - one_hot(targets)) / batch`` its gradient with respect to the
    ``(batch, classes)`` logits. The true-class probability is clipped to ``[1e-12, 1]`` before
    the log, as in the chapter, so the loss stays finite (at most ~27.6 per sample) however wrong
    the logits are. Labels outside ``[0, classes)`` are not looked for here (that is a pass over
    the data): they give a one-hot row of zeros.
    """
    _checks.deprecated("softmax_cross_entropy", deprecated)
    logits, targets = as_data(logits), as_labels(targets)
    xp = _checks.logits(logits)
    _checks.labels(targets, logits.shape[0], "targets", "logits")
    _checks.same_place(targets, placement_of(logits), "targets")
    columns = one_hot_columns(targets, logits.shape[1], logits.dtype, xp)
    probabilities = softmax_columns(logits.mT, xp)
    loss = xp.mean(cross_entropy_columns(probabilities, columns, xp))
    return loss, probabilities.mT, cross_entropy_gradient(probabilities, columns).mT
