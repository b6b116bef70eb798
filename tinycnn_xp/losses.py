"""Softmax and the softmax cross-entropy loss with its gradient (the start of every backward pass)."""

from __future__ import annotations

from typing import Any

from array_api_compat import device

from . import _checks
from ._xp import placement_of

Array = Any


def softmax(logits: Array) -> Array:
    """Row-wise softmax of ``(batch, classes)`` logits, stable for extreme values.

    Subtracting each row's maximum leaves the result unchanged and keeps ``exp`` from overflowing.
    """
    xp = _checks.logits(logits)
    return _softmax(logits, xp)


def _softmax(logits: Array, xp: Any) -> Array:
    exp_values = xp.exp(logits - xp.max(logits, axis=1, keepdims=True))
    return exp_values / xp.sum(exp_values, axis=1, keepdims=True)


def softmax_cross_entropy(logits: Array, targets: Array) -> tuple[Array, Array, Array]:
    """Mean cross-entropy of ``softmax(logits)`` against integer ``targets``.

    Returns ``(loss, probabilities, d_logits)``: ``loss`` is a 0-d array on the logits' device,
    ``d_logits = (probabilities - one_hot(targets)) / batch`` its gradient with respect to the logits.
    The true-class probability is clipped to ``[1e-12, 1]`` before the log, as in the chapter, so
    the loss stays finite (at most ~27.6 per sample) however wrong the logits are.
    """
    xp = _checks.logits(logits)
    _checks.labels(targets, logits.shape[0], logits.shape[1], "targets", "logits")
    _checks.same_place(targets, placement_of(logits), "targets")
    return _softmax_cross_entropy(logits, targets, xp)


def _one_hot(labels: Array, classes: int, dtype: Any, xp: Any) -> Array:
    """``(batch,)`` integer labels -> ``(batch, classes)`` one-hot rows of ``dtype``."""
    return xp.astype(labels[:, None] == xp.arange(classes, device=device(labels)), dtype)


def _softmax_cross_entropy(logits: Array, targets: Array, xp: Any) -> tuple[Array, Array, Array]:
    """``targets``: integer labels ``(batch,)``, or their one-hot rows ``(batch, classes)``
    (``fit`` encodes its labels once, not at every step)."""
    one_hot = targets if targets.ndim == 2 else _one_hot(targets, logits.shape[1], logits.dtype, xp)
    probabilities = _softmax(logits, xp)
    true_class = xp.sum(probabilities * one_hot, axis=1)  # adds exact zeros: p[i, y_i] exactly
    # The chapter clips to [1e-12, 1]; probabilities never exceed 1, so the lower bound is all
    # that acts (and maximum is much cheaper than clip in some wrappers).
    loss = -xp.mean(xp.log(xp.maximum(true_class, 1e-12)))
    d_logits = (probabilities - one_hot) / one_hot.shape[0]
    return loss, probabilities, d_logits
