"""The loop behind ``fit``: epochs, host shuffles, batches on the device, metrics at epoch end,
the divergence guard and Ctrl-C.

It takes the model as an argument and uses its public methods only (``output_shape``,
``placement``, ``to``, ``parameters``, ``forward``, ``loss_and_grad`` and ``step``, the last
three with ``check=False`` once the data is checked), so it works for any model with those and
never imports the models module.
"""

from __future__ import annotations

import math
import signal
import threading
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from . import _checks, evaluation
from ._xp import Placement, as_data, as_labels, dtype_name, move, to_numpy
from .history import METRICS, SNAPSHOT_EPOCHS, History, new_history
from .layers import Conv2D
from .losses import one_hot

__all__ = ["fit", "Callback"]

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
        callback: Callback | None = None, eval_batch_size: int | None = None) -> History:
    """Mini-batch SGD of ``model`` over shuffled training data; returns the per-epoch history.

    See ``Sequential.fit``, which calls this with the same arguments.
    """
    x_train, y_train, x_val, y_val = as_data(x_train), as_labels(y_train), as_data(x_val), as_labels(y_val)
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
    targets = one_hot(y_train, classes, place.dtype, xp)  # encoded once, not at every step
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
            total, steps = _train_epoch(model, xp.take(x_train, order, axis=0),
                                        xp.take(targets, order, axis=0), batch_size, lr,
                                        momentum, interrupt)
            del order
            if steps < n_batches:  # stopped mid-epoch: the model keeps its last step, the
                kept = steps       # history its last whole epoch
                break
            record, finite = _epoch_metrics(model, total / n_batches, x_train, y_train, x_val,
                                            y_val, chunk, xp)
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


def _train_epoch(model: Trainable, x_epoch: Array, targets: Array, batch_size: int, lr: float,
                 momentum: float, interrupt: _StopOnInterrupt) -> tuple[Array, int]:
    """One pass of mini-batch steps over shuffled data: the sum of the batch losses (a 0-d
    array, still on the device) and the number of steps taken (fewer if Ctrl-C stopped it)."""
    total, steps = None, 0
    for start, stop in evaluation.chunks(x_epoch.shape[0], batch_size):
        loss, _ = model.loss_and_grad(x_epoch[start:stop, ...], targets[start:stop, ...],
                                      check=False)
        model.step(lr, momentum, check=False)
        total, steps = (loss if total is None else total + loss), steps + 1
        if interrupt.requested:
            break
    return total, steps


def _epoch_metrics(model: Trainable, train_loss: Array, x_train: Array, y_train: Array,
                   x_val: Array, y_val: Array, chunk: int, xp: Any) -> tuple[dict, bool]:
    """The epoch's four metrics, and whether every parameter is still finite."""
    _, train_correct = evaluation.totals(model, x_train, y_train, chunk, xp, loss=False)
    val_loss, val_correct = evaluation.totals(model, x_val, y_val, chunk, xp)
    # The parameters too: an overflowed conv bias behind a ReLU leaves every loss finite.
    finite = xp.all(xp.stack([xp.all(xp.isfinite(getattr(layer, attr)))
                              for _, layer, attr in model.parameters()]))
    # One transfer per epoch: the only host round trip of the training loop.
    values = to_numpy(xp.stack([train_loss, val_loss, train_correct, val_correct,
                                xp.astype(finite, train_loss.dtype)]))
    n_train, n_val = x_train.shape[0], x_val.shape[0]
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
