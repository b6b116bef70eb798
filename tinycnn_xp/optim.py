"""Stochastic gradient descent with momentum, the update every trainable layer applies.

The velocities live on the layers (``layer.velocity[name]``, as Exercise 24.1 shapes them). Every
update binds new arrays to the layer (``layer.weights = ...``) instead of changing them in place:
on immutable arrays (JAX) an in-place operator only rebinds a local name, and the model would
silently never learn.
"""

from __future__ import annotations

from typing import Any

__all__ = ["sgd_update"]


def sgd_update(layer: Any, lr: float, momentum: float = 0.0) -> None:
    """``v <- momentum * v + grad`` and ``param <- param - lr * v`` for each of ``layer.param_names``.

    ``layer`` has, per name, the parameter, its gradient ``d_<name>`` and ``velocity[name]``.
    With ``momentum == 0`` the velocity is left alone and this is the chapter's ``param -= lr * grad``.
    """
    for name in layer.param_names:
        grad = getattr(layer, "d_" + name)
        if momentum:
            grad = momentum * layer.velocity[name] + grad
            layer.velocity[name] = grad
        setattr(layer, name, getattr(layer, name) - lr * grad)
