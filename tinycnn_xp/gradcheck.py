"""Gradient checking: the gradients a training step applies against central finite differences."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks, training
from ._xp import as_data, as_labels, describe, dtype_name, namespace_of
from .layers import BatchNorm1D, BatchNorm2D, from_rows, to_rows
from .losses import cross_entropy_columns, one_hot_columns, softmax_columns
from .models import Sequential

__all__ = ["numerical_gradient", "relative_error", "check_gradients", "zero_by_construction"]

Array = Any


def _loss_of(model: Sequential, shape: tuple[int, ...], masks: tuple, xp: Any) -> Any:
    """``loss(x, targets)``: the mean cross-entropy of the model's training-mode pass (batch
    statistics, the dropout ``masks`` held fixed) with its current parameters: what the analytic
    gradients differentiate (nothing kept, no attribute set; compiled on JAX, where each of a
    finite difference's many evaluations is then one dispatch)."""
    program = model.program(shape)

    def loss(params: tuple, buffers: tuple, masks: tuple, x: Array, targets: Array) -> Array:
        logits, _ = program.forward(params, to_rows(x, xp), False, buffers=buffers, masks=masks)
        probabilities = softmax_columns(logits, xp)
        return xp.mean(cross_entropy_columns(probabilities, targets, xp))
    compiled = training.compiled(model, ("loss", shape), loss)
    return lambda x, targets: compiled(model.params(), model.buffers(), masks, x, targets)


def _prepared(model: Any, x: Array, y: Array, epsilon: Any) -> Any:
    """Check a gradient check's arguments and place the model on ``x``'s device; return ``xp``."""
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a tinycnn_xp model (Sequential, TinyCNN, a preset), "
                        f"got {type(model).__name__}")
    _checks.positive_number(epsilon, "epsilon")
    place = _checks.dataset(model, x, y)
    if model.placement is None:
        model.to(place.xp, place.device, place.dtype)
    return place.xp


def numerical_gradient(model: Any, x: Array, y: Array, param_array: Array,
                       epsilon: float = 1e-5) -> Array:
    """Central differences ``(L(p + eps) - L(p - eps)) / (2 eps)`` for every entry of ``param_array``.

    ``param_array`` is one of the model's parameters (``model.conv.weights``, found by identity)
    or ``x`` itself. Each perturbed copy is bound to its owner (``layer.weights = ...``) for two
    forward passes, and the original array is bound back at the end, so this works on immutable
    arrays too and leaves the model exactly as it was. The loop runs over entries on purpose: one
    entry per pair of forward passes is what a finite difference is. Nothing leaves the device.
    """
    if param_array is x:  # the input, plain data like every input (a tracked tensor detached)
        param_array = x = as_data(x)
    x, y = as_data(x), as_labels(y)
    xp = _prepared(model, x, y, epsilon)
    # Perturbing anything else (a copy of a parameter, say) silently gives a zero gradient.
    if param_array is not x and _owner(model, param_array) is None:
        raise ValueError(f"param_array must be x or one of the model's parameters (e.g. "
                         f"model.{model.parameters()[0][0]}) itself, not a copy; got a "
                         f"{describe(param_array)}")
    masks = model.draw_masks(model.program(tuple(x.shape[1:])), x.shape[0], fixed=True)
    return _numerical_gradient(model, x, y, param_array, epsilon, masks, xp)


def _owner(model: Sequential, array: Array) -> tuple[Any, str] | None:
    """``(layer, attribute)`` of the parameter that ``array`` is (by identity), or ``None``."""
    return next(((layer, attr) for _, layer, attr in model.parameters()
                 if getattr(layer, attr) is array), None)


def _numerical_gradient(model: Sequential, x: Array, y: Array, param_array: Array,
                        epsilon: float, masks: tuple, xp: Any) -> Array:
    owner, place = _owner(model, param_array), model.placement
    assert place is not None  # placed by _prepared
    shape, size = tuple(param_array.shape), int(np.prod(param_array.shape))
    # The flat position of every entry, on the array's device: entry k is where it equals k.
    position = xp.reshape(xp.arange(size, device=place.device), shape)

    loss = _loss_of(model, tuple(x.shape[1:]), masks, xp)
    targets = one_hot_columns(y, model.num_classes, x.dtype, xp)

    def loss_at(k: int, step: float) -> Array:
        perturbed = xp.where(position == k, param_array + step, param_array)
        if owner is None:  # the input
            return loss(perturbed, targets)
        setattr(*owner, perturbed)
        return loss(x, targets)

    try:
        grad = [(loss_at(k, epsilon) - loss_at(k, -epsilon)) / (2 * epsilon) for k in range(size)]
    finally:
        if owner is not None:
            setattr(*owner, param_array)  # the very array the caller passed, not a copy
    return xp.reshape(xp.stack(grad), shape)


def relative_error(analytic: Array, numeric: Array) -> float:
    """The chapter's ``|a - n| / (|a| + |n| + 1e-8)`` with Euclidean norms."""
    xp = namespace_of(analytic, numeric)
    norm = lambda v: xp.sqrt(xp.sum(v * v))
    return float(norm(analytic - numeric) / (norm(analytic) + norm(numeric) + 1e-8))


def zero_by_construction(model: Sequential) -> set[str]:
    """The parameters whose gradient is zero whatever the data: a bias directly followed by batch
    normalization (in training mode its mean takes any constant away). Their relative error in
    ``check_gradients`` compares two roundings and says nothing."""
    return {f"{name}.bias" for name, layer, after in zip(model.names, model.layers, model.layers[1:])
            if "bias" in layer.param_names and isinstance(after, (BatchNorm1D, BatchNorm2D))}


def check_gradients(model: Any, x: Array, y: Array, epsilon: float = 1e-5) -> dict[str, float]:
    """Relative error of every parameter's gradient and of the input gradient, by name.

    The analytic gradients are those a training step applies (``Program.gradients``, what
    ``fit``'s step and ``loss_and_grad`` run), with the input's gradient too; the numeric ones are
    central differences of the loss, for each parameter (``'conv.weights'``, ``'dense.bias'``,
    ...) and for the input (``'input'``). Needs float64 inputs (finite differences in float32
    are too coarse to check anything). Works on any backend; nothing of the model changes: its
    parameters are the same arrays afterwards, and no gradient or cache is bound.

    The check runs in training mode: batch normalization with the batch's statistics (which
    depend on every input), each dropout layer with one mask held fixed (drawn from a copy of its
    generator); running statistics and generators are left as they were. A bias directly before
    batch normalization has a zero gradient (``zero_by_construction``).
    """
    x, y = as_data(x), as_labels(y)
    _checks.floating_array(x, "x")
    if dtype_name(x.dtype) != "float64":
        raise TypeError(f"x: gradient checks need float64 inputs, got {dtype_name(x.dtype)}")
    xp = _prepared(model, x, y, epsilon)
    targets = one_hot_columns(y, model.num_classes, x.dtype, xp)
    masks = model.draw_masks(model.program(tuple(x.shape[1:])), x.shape[0], fixed=True)
    grads, _, d_input, _ = training.gradients_of(model, tuple(x.shape[1:]), input_grad=True)(
        model.params(), to_rows(x, xp), targets, model.buffers(), masks)
    analytic = {name: grad for (name, _, _), grad in zip(model.parameters(), grads)}
    errors = {name: relative_error(analytic[name], _numerical_gradient(
                  model, x, y, getattr(layer, attr), epsilon, masks, xp))
              for name, layer, attr in model.parameters()}
    errors["input"] = relative_error(from_rows(d_input, tuple(x.shape[1:]), xp),
                                     _numerical_gradient(model, x, y, x, epsilon, masks, xp))
    return errors
