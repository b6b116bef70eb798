"""Gradient checking: analytic gradients from ``backward`` against central finite differences."""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace

from . import _checks
from ._xp import describe
from .losses import _softmax_cross_entropy
from .models import Sequential

__all__ = ["numerical_gradient", "relative_error", "check_gradients"]

Array = Any


def _loss(model: Any, x: Array, y: Array, xp: Any) -> Array:
    return _softmax_cross_entropy(model._forward(x, xp), y, xp)[0]


def _prepared(model: Any, x: Array, y: Array, epsilon: Any) -> Any:
    """Check a gradient check's arguments and place the model on ``x``'s device; return ``xp``."""
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a tinycnn_xp model (Sequential, TinyCNN, a preset), "
                        f"got {type(model).__name__}")
    _checks.positive_number(epsilon, "epsilon")
    place = model._check_data(x, y)
    model._adopt(place)
    return place.xp


def numerical_gradient(model: Any, x: Array, y: Array, param_array: Array,
                       epsilon: float = 1e-5) -> Array:
    """Central differences ``(L(p + eps) - L(p - eps)) / (2 eps)`` for every entry of ``param_array``.

    ``param_array`` is perturbed in place (it must be the array the model reads: one of its
    parameters, or ``x`` itself) and restored exactly. The loop runs over entries on purpose: one
    entry per pair of forward passes is what a finite difference is. Nothing leaves the device.
    """
    xp = _prepared(model, x, y, epsilon)
    # Perturbing anything else (a copy of a parameter, say) silently gives a zero gradient.
    if param_array is not x and not any(param_array is getattr(layer, attr)
                                        for _, layer, attr in model.parameters()):
        raise ValueError(f"param_array must be x or one of the model's parameters (e.g. "
                         f"model.{model.parameters()[0][0]}) itself, not a copy; got a "
                         f"{describe(param_array)}")
    return _numerical_gradient(model, x, y, param_array, epsilon, xp)


def _numerical_gradient(model: Any, x: Array, y: Array, param_array: Array, epsilon: float,
                        xp: Any) -> Array:
    grad = xp.zeros_like(param_array)
    for idx in np.ndindex(*param_array.shape):
        old = xp.asarray(param_array[idx], copy=True)  # a copy: torch indexing returns a view
        param_array[idx] = old + epsilon
        loss_plus = _loss(model, x, y, xp)
        param_array[idx] = old - epsilon
        loss_minus = _loss(model, x, y, xp)
        param_array[idx] = old
        grad[idx] = (loss_plus - loss_minus) / (2 * epsilon)
    return grad


def relative_error(analytic: Array, numeric: Array) -> float:
    """The chapter's ``|a - n| / (|a| + |n| + 1e-8)`` with Euclidean norms."""
    xp = array_namespace(analytic, numeric)
    norm = lambda v: xp.sqrt(xp.sum(v * v))  # noqa: E731 - the standard's linalg is an extension
    return float(norm(analytic - numeric) / (norm(analytic) + norm(numeric) + 1e-8))


def check_gradients(model: Any, x: Array, y: Array, epsilon: float = 1e-5) -> dict[str, float]:
    """Relative error of every parameter's gradient and of the input gradient, by name.

    Runs one ``loss_and_grad``-style pass for the analytic gradients, then finite differences for
    each parameter (``'conv.weights'``, ``'dense.bias'``, ...) and for the input (``'input'``).
    Needs float64 inputs (finite differences in float32 are too coarse to check anything).
    Works on any backend; the model's parameters are restored exactly afterwards.
    """
    _checks.floating_array(x, "x")
    if str(x.dtype).rsplit(".", 1)[-1] != "float64":
        raise TypeError(f"x: gradient checks need float64 inputs, got {x.dtype}")
    xp = _prepared(model, x, y, epsilon)
    x = xp.asarray(x, copy=True)  # the input check perturbs x in place: never the caller's array
    _, _, d_input = model._loss_and_grad(x, y, xp, input_grad=True)
    analytic = {name: xp.asarray(getattr(layer, "d_" + attr), copy=True)
                for name, layer, attr in model.parameters()}
    errors = {name: relative_error(analytic[name],
                                   _numerical_gradient(model, x, y, getattr(layer, attr), epsilon, xp))
              for name, layer, attr in model.parameters()}
    errors["input"] = relative_error(d_input, _numerical_gradient(model, x, y, x, epsilon, xp))
    return errors
