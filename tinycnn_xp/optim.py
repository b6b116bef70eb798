"""Stochastic gradient descent with momentum: the one update every parameter gets.

``sgd_update`` is a pure function of arrays: ``Layer.step`` binds its result to the layer (a hand
loop), and ``fit``'s training step runs it after the gradients (compiled with them on JAX). The
velocities live on the layers (``layer.velocity[name]``, as Exercise 24.1 shapes them); new arrays
are bound, never changed in place: on immutable arrays (JAX) an in-place operator only rebinds a
local name, and the model would silently never learn.
"""

from __future__ import annotations

from typing import Any

__all__ = ["sgd_update"]


def sgd_update(params: tuple, grads: tuple, velocities: tuple, lr: Any,
               momentum: Any = None) -> tuple[tuple, tuple]:
    """``v <- momentum * v + grad`` and ``param <- param - lr * v``, per array: new
    ``(params, velocities)``.

    ``momentum=None`` (or 0) is the chapter's plain ``param -= lr * grad``, velocities unchanged.
    Whether there is momentum is decided here in Python, so inside a compiled step it is fixed;
    ``lr`` and a non-zero ``momentum`` may be traced values.
    """
    if momentum is None or (isinstance(momentum, float) and momentum == 0.0):
        return tuple(p - lr * g for p, g in zip(params, grads)), velocities
    velocities = tuple(momentum * v + g for v, g in zip(velocities, grads))
    return tuple(p - lr * v for p, v in zip(params, velocities)), velocities
