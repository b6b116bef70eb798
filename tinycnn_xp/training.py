"""The loop behind ``fit``: epochs, host shuffles, batches on the device, metrics at epoch end,
the divergence guard and Ctrl-C; and the choice of how a step runs.

A step runs one of two ways. The fast path (``fastpath``: the whole step of a common stack as one
function of arrays) serves every model it knows; on JAX it is compiled with ``jax.jit``, once per
architecture, dtype, device and image size, here and nowhere else. Any other model trains on the
general path, layer by layer through its public methods (``forward``, ``loss_and_grad`` and
``step`` with ``check=False`` once the data is checked). Both give the same numbers; this module
takes the model as an argument and never imports the models module.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from array_api_compat import is_jax_namespace

from . import _checks, evaluation, fastpath, paths
from ._xp import Placement, as_data, as_labels, dtype_name, move, to_numpy
from .history import METRICS, SNAPSHOT_EPOCHS, History, new_history
from .layers import Conv2D

__all__ = ["fit", "repeat_step", "Callback"]

Array = Any

#: ``callback(epoch, metrics)``, called after every epoch with that epoch's four metrics; a
#: return value of ``True`` stops training after this epoch (early stopping).
Callback = Callable[[int, dict], Any]


class Trainable(Protocol):
    """What ``fit`` needs of a model (``Sequential`` has all of it)."""

    placement: Placement | None
    layers: list

    def output_shape(self, shape: tuple[int, ...], name: str = ...) -> tuple[int, ...]: ...
    def to(self, xp: Any, device: Any = ..., dtype: Any = ...) -> Any: ...
    def parameters(self) -> list[tuple[str, Any, str]]: ...
    def forward(self, x: Array, *, check: bool = ..., cache: bool = ...) -> Array: ...
    def loss_and_grad(self, x: Array, y: Array, *, check: bool = ...) -> tuple[Array, Array]: ...
    def step(self, lr: float, momentum: float = ..., *, check: bool = ...) -> None: ...


def fit(model: Trainable, x_train: Array, y_train: Array, x_val: Array, y_val: Array,
        epochs: int = 80, lr: float = 0.12, batch_size: int = 18, seed: int | None = 0, *,
        momentum: float = 0.0, verbose: bool = True, initial_epoch: int = 0,
        callback: Callback | None = None, eval_batch_size: int | None = None,
        fast: bool = True) -> History:
    """Mini-batch SGD of ``model`` over shuffled training data; returns the per-epoch history.

    See ``Sequential.fit``, which calls this with the same arguments. ``fast=False`` trains on
    the general path even where the fast path applies (the tests compare the two).
    """
    x_train, y_train = as_data(x_train), as_labels(y_train)
    x_val, y_val = as_data(x_val), as_labels(y_val)
    place = _checks.data(model, x_train, y_train, "x_train", "y_train")
    val_place = _checks.data(model, x_val, y_val, "x_val", "y_val")
    if not place.same_place(val_place):
        raise ValueError(f"x_val is on {val_place} but x_train is on {place}; "
                         f"pass training and validation data on one library and device")
    if place.dtype != val_place.dtype:
        raise TypeError(f"x_val has dtype {dtype_name(val_place.dtype)} but x_train "
                        f"{dtype_name(place.dtype)}; pass training and "
                        f"validation images of one floating dtype")
    epochs = _checks.non_negative_int(epochs, "epochs")
    initial_epoch = _checks.non_negative_int(initial_epoch, "initial_epoch")
    if initial_epoch > epochs:
        raise ValueError(f"initial_epoch must be at most epochs ({epochs}), got {initial_epoch}")
    lr = _checks.learning_rate(lr)
    batch_size = _checks.positive_int(batch_size, "batch_size")
    momentum = _checks.momentum(momentum)
    seed = _checks.seed(seed)
    chunk = evaluation.eval_batch_size(eval_batch_size)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    if model.placement is None:  # placed by its first input, like every other public call
        model.to(place.xp, place.device, place.dtype)

    xp = place.xp
    rng = np.random.default_rng(seed)
    n_train = x_train.shape[0]
    for _ in range(initial_epoch):  # the shuffles of the epochs already trained
        rng.permutation(n_train)
    n_batches = math.ceil(n_train / batch_size)
    snapshot_at = set(SNAPSHOT_EPOCHS) | {epochs - 1}
    first_conv = next((layer for layer in model.layers if isinstance(layer, Conv2D)), None)
    classes = model.output_shape(tuple(x_train.shape))[1]
    path = _path(model, tuple(x_train.shape[1:]), place, momentum, fast, max(batch_size, chunk))
    targets = path.encode(y_train, classes)  # one-hot once, not at every step
    datasets = evaluation.TrainAndValidation(x_train, y_train, x_val, y_val, chunk, xp)
    history = new_history()
    kept = 0  # steps of an epoch that Ctrl-C cut short
    with _StopOnInterrupt() as interrupt:
        for epoch in range(initial_epoch, epochs):
            if interrupt.requested:  # asked for between epochs (e.g. in a callback)
                break
            if epoch in snapshot_at and first_conv is not None:
                history["kernel_snapshots"][epoch] = to_numpy(first_conv.weights)
            # Updates rebind the parameters, never change them in place: these references are
            # the state to go back to if this epoch diverges.
            last_good = _state(model)
            # One host permutation, moved once; batches are slices of the shuffled device copy.
            order = move(rng.permutation(n_train), place)
            losses, steps = path.epoch(x_train, targets, order, batch_size, lr, momentum,
                                       interrupt)
            del order
            if steps < n_batches:  # stopped mid-epoch: the model keeps its last step, the
                kept = steps       # history its last whole epoch
                break
            # One transfer per epoch: the only host round trip of the training loop.
            record, finite = _record(to_numpy(path.metrics(losses, datasets)), datasets)
            if not (finite and all(math.isfinite(value) for value in record.values())):
                _restore(last_good)
                history["diverged_epoch"] = epoch
                restored = (f"the end of epoch {epoch - 1}" if epoch > initial_epoch
                            else f"their values before epoch {epoch}")
                warnings.warn(f"training diverged at epoch {epoch} with lr={lr}: the loss or the "
                              f"parameters are no longer finite; parameters restored to {restored}",
                              RuntimeWarning, stacklevel=3)
                break
            for key in METRICS:
                history[key].append(record[key])  # type: ignore[literal-required]
            if verbose and (epoch % 10 == 0 or epoch == epochs - 1):
                print(f"Epoch {epoch:3d}/{epochs}: loss={record['train_loss']:.4f}  "
                      f"train_acc={record['train_acc']:.1%}  val_acc={record['val_acc']:.1%}")
            if callback is not None and callback(epoch, record) is True:
                history["stopped_epoch"] = epoch
                break
    if interrupt.requested:
        history["interrupted"], history["interrupted_steps"] = True, kept
        done = initial_epoch + len(history["train_loss"])
        inside = (f"after {kept} of {n_batches} steps of epoch {done}: the model keeps those "
                  f"steps, so resuming with initial_epoch={done} repeats them" if kept else
                  f"between epochs: resume exactly with initial_epoch={done}")
        warnings.warn(f"training interrupted {inside}; the history ends with epoch {done - 1}",
                      RuntimeWarning, stacklevel=3)
    if epochs == initial_epoch and first_conv is not None:  # nothing trained: the current filters
        history["kernel_snapshots"][epochs] = to_numpy(first_conv.weights)
    return history


def repeat_step(model: Trainable, x: Array, y: Array, lr: float, momentum: float = 0.0, *,
                fast: bool = True) -> Callable[[], Array]:
    """For timing a training step: ``step()`` runs one step on the batch ``(x, y)`` exactly as
    ``fit`` runs each of its steps (the fast path where it applies, compiled on JAX) and returns
    its probabilities (fast path) or loss (general path), on the device, without waiting.

    ``x``, ``y``, ``lr`` and ``momentum`` are checked here, once, and ``model`` is placed; each
    ``step()`` is then unchecked. On the fast path the parameters live inside ``step`` between
    calls, as they do inside an epoch of ``fit``; ``step.bind()`` hands them to the layers.
    """
    x, y = as_data(x), as_labels(y)
    place = _checks.data(model, x, y)
    lr, momentum = _checks.learning_rate(lr), _checks.momentum(momentum)
    if model.placement is None:
        model.to(place.xp, place.device, place.dtype)
    classes = model.output_shape(tuple(x.shape))[1]
    path = _path(model, tuple(x.shape[1:]), place, momentum, fast, x.shape[0])
    targets = path.encode(y, classes)
    return _RepeatedStep(model, path, x, targets, lr, momentum)


class _RepeatedStep:
    """``repeat_step``'s ``step``: ``step()`` takes one step, ``step.bind()`` binds the result."""

    def __init__(self, model: Trainable, path: paths.GeneralPath | paths.FastPath, x: Array,
                 targets: Array, lr: float, momentum: float) -> None:
        self.model, self.path, self.x, self.targets = model, path, x, targets
        self.lr, self.momentum = lr, momentum
        if isinstance(path, paths.FastPath):
            self.params, self.velocities = path.params()
            self.grads = None

    def __call__(self) -> Array:
        if not isinstance(self.path, paths.FastPath):
            loss, _ = self.model.loss_and_grad(self.x, self.targets, check=False)
            self.model.step(self.lr, self.momentum, check=False)
            return loss
        self.params, self.velocities, self.grads, p = self.path.step_at(
            self.params, self.velocities, self.x, self.targets, 0, self.x.shape[0], self.lr,
            self.momentum)
        return p

    def bind(self) -> None:
        if isinstance(self.path, paths.FastPath) and self.grads is not None:
            self.path.bind(self.params, self.velocities, self.grads,
                           1.0 if self.momentum else self.lr)


def _path(model: Trainable, image_shape: tuple[int, ...], place: Placement, momentum: float,
          fast: bool, max_batch: int) -> paths.GeneralPath | paths.FastPath:
    """The fast path where it applies, compiled on JAX; else the general path. The one place
    where how a step runs is chosen."""
    plan = fastpath.plan(model, image_shape, place, max_batch) if fast else None
    if plan is None:
        return paths.GeneralPath(model, place.xp, place.dtype)
    if is_jax_namespace(place.xp):
        architecture = [(type(layer).__name__, layer.config()) for layer in model.layers]
        key = (json.dumps(architecture), image_shape, repr(place.device), dtype_name(place.dtype),
               bool(momentum))
        return paths.CompiledPath(plan, bool(momentum), place.xp, place.dtype, key)
    return paths.FastPath(plan, bool(momentum), place.xp, place.dtype)


def _record(values: np.ndarray, datasets: evaluation.TrainAndValidation) -> tuple[dict, bool]:
    """The epoch's four metrics from ``paths``' vector (on the host), and whether all is finite."""
    n_train, n_val = datasets.n_train, datasets.sets[2].shape[0]
    record = {"train_loss": float(values[0]), "val_loss": float(values[1] / n_val),
              "train_acc": float(values[2] / n_train), "val_acc": float(values[3] / n_val)}
    return record, bool(values[4])


def _state(model: Trainable) -> list[tuple[Any, str, Array, Array]]:
    """``(layer, name, parameter, velocity)`` for every parameter: references, not copies."""
    return [(layer, attr, getattr(layer, attr), layer.velocity[attr])
            for _, layer, attr in model.parameters()]


def _restore(saved: list[tuple[Any, str, Array, Array]]) -> None:
    for layer, attr, param, velocity in saved:
        setattr(layer, attr, param)
        layer.velocity[attr] = velocity


class _StopOnInterrupt:
    """Turn Ctrl-C during ``fit`` into a flag checked after each step, so a step is never cut in half.

    A second Ctrl-C (say, during a long callback) is not swallowed: it raises ``KeyboardInterrupt``.
    """

    def __enter__(self) -> _StopOnInterrupt:
        self.requested = False
        self._previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
