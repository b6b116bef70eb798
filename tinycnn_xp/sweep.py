"""Learning-rate sweeps (Exercise 24.2): the same initial model trained once per learning rate."""

from __future__ import annotations

import copy
import numbers
from collections.abc import Iterable
from typing import Any

from . import _checks
from .history import History
from .models import Sequential

__all__ = ["learning_rate_sweep"]

Array = Any

#: the chapter's rates for Exercise 24.2.
DEFAULT_LRS = (0.01, 0.05, 0.12, 0.5, 1.0)


def learning_rate_sweep(model: Sequential, x_train: Array, y_train: Array, x_val: Array,
                        y_val: Array, lrs: Iterable[float] = DEFAULT_LRS,
                        **fit_kwargs: Any) -> dict[float, History]:
    """Train a fresh copy of ``model`` at each rate in ``lrs``; return ``{lr: history}``.

    ``x_train``/``x_val`` are images ``(n, channels, height, width)`` and ``y_train``/``y_val``
    labels ``(n,)``, on any one array library and device, as for ``fit``.

    Every run starts from the same state, ``model``'s own (weights and velocities; ``model``
    itself is never trained: each run trains a deep copy, on the model's device), and calls
    ``copy.fit(x_train, y_train, x_val, y_val, lr=lr, **fit_kwargs)``, so with the same ``seed``
    every run sees the same batches. ``history`` is
    ``fit``'s (``train_loss``, ``val_loss``, ``train_acc``, ``val_acc``, ``kernel_snapshots``).

    A run whose loss stops being finite does not stop the sweep: ``fit`` ends it at that epoch
    with a ``RuntimeWarning`` naming the rate and the epoch (passed through to the caller) and its
    history has ``'diverged_epoch'``; the other runs are unaffected. Keys are ``float(lr)``.
    Ctrl-C ends the whole sweep: the rates done so far and the interrupted one are returned.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a tinycnn_xp Sequential or TinyCNN, got {type(model).__name__}")
    rates = _rates(lrs)
    if "lr" in fit_kwargs:
        raise TypeError("learning_rate_sweep takes its learning rates from lrs, not lr")
    verbose = fit_kwargs.get("verbose", True)
    histories: dict[float, History] = {}
    for lr in rates:
        if verbose:  # fit's progress lines do not say which rate they belong to
            print(f"learning rate {lr}:")
        histories[lr] = copy.deepcopy(model).fit(x_train, y_train, x_val, y_val, lr=lr, **fit_kwargs)
        if histories[lr].get("interrupted"):  # Ctrl-C ends the sweep, not just this rate
            break
    return histories


def _rates(lrs: Any) -> list[float]:
    """``lrs`` as a list of distinct positive finite floats; errors name ``lrs``."""
    if isinstance(lrs, (str, bytes, numbers.Number)) or not isinstance(lrs, Iterable):
        raise TypeError(f"lrs must be a sequence of learning rates, got {lrs!r} "
                        f"({type(lrs).__name__})")
    rates = [_checks.learning_rate(lr, f"lrs[{i}]") for i, lr in enumerate(lrs)]
    if not rates:
        raise ValueError("lrs must hold at least one learning rate, got an empty sequence")
    if len(set(rates)) != len(rates):
        raise ValueError(f"lrs must hold distinct learning rates, got {rates}")
    return rates
