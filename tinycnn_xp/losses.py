"""Softmax and the softmax cross-entropy loss with its gradient (the start of every backward pass)."""

from __future__ import annotations

from typing import Any

from array_api_compat import device

from . import _checks
from ._xp import as_data, as_labels, namespace_of, placement_of

__all__ = ["softmax", "softmax_cross_entropy", "sample_losses", "one_hot"]

Array = Any


def softmax(logits: Array) -> Array:
    """Row-wise softmax of ``(batch, classes)`` logits, stable for extreme values.

    Subtracting each row's maximum leaves the result unchanged and keeps ``exp`` from overflowing.
    """
    logits = as_data(logits)
    xp = _checks.logits(logits)
    return _softmax(logits, xp)


def _softmax(logits: Array, xp: Any) -> Array:
    exp_values = xp.exp(logits - xp.max(logits, axis=1, keepdims=True))
    return exp_values / xp.sum(exp_values, axis=1, keepdims=True)


def one_hot(labels: Array, classes: int, dtype: Any, xp: Any) -> Array:
    """``(batch,)`` integer labels -> ``(batch, classes)`` one-hot rows of ``dtype`` (unchecked)."""
    return xp.astype(labels[:, None] == xp.arange(classes, device=device(labels)), dtype)


def sample_losses(logits: Array, targets: Array, xp: Any) -> tuple[Array, Array]:
    """Per-sample cross-entropy ``(batch,)`` and the probabilities, unchecked.

    ``targets``: integer labels ``(batch,)``, or their one-hot rows ``(batch, classes)`` (``fit``
    encodes its labels once, not at every step). The true-class probability is clipped to
    ``[1e-12, 1]`` before the log, as in the chapter.
    """
    rows = targets if targets.ndim == 2 else one_hot(targets, logits.shape[1], logits.dtype, xp)
    probabilities = _softmax(logits, xp)
    true_class = xp.sum(probabilities * rows, axis=1)  # adds exact zeros: p[i, y_i] exactly
    # Probabilities never exceed 1, so the lower bound is all of the clip that acts (and maximum
    # is much cheaper than clip in some wrappers).
    return -xp.log(xp.maximum(true_class, 1e-12)), probabilities


def softmax_cross_entropy(logits: Array, targets: Array, *, check: bool = True,
                          xp: Any = None) -> tuple[Array, Array, Array]:
    """Mean cross-entropy of ``softmax(logits)`` against integer ``targets``.

    Returns ``(loss, probabilities, d_logits)``: ``loss`` is a 0-d array on the logits' device,
    ``d_logits = (probabilities - one_hot(targets)) / batch`` its gradient with respect to the logits.
    The true-class probability is clipped to ``[1e-12, 1]`` before the log, as in the chapter, so
    the loss stays finite (at most ~27.6 per sample) however wrong the logits are.

    ``check=False`` skips the argument checks (for loops that checked their data once); then
    ``targets`` may also be one-hot rows ``(batch, classes)`` of the logits' dtype. ``xp``, the
    logits' namespace, saves looking it up.
    """
    if check:
        logits, targets = as_data(logits), as_labels(targets)
        xp = _checks.logits(logits)
        _checks.labels(targets, logits.shape[0], logits.shape[1], "targets", "logits")
        _checks.same_place(targets, placement_of(logits), "targets")
    elif xp is None:
        xp = namespace_of(logits)
    rows = targets if targets.ndim == 2 else one_hot(targets, logits.shape[1], logits.dtype, xp)
    losses, probabilities = sample_losses(logits, rows, xp)
    d_logits = (probabilities - rows) / rows.shape[0]
    return xp.mean(losses), probabilities, d_logits
