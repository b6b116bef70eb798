"""The loop behind ``fit``: epochs, host shuffles, batches on the device, metrics at epoch end,
the divergence guard and Ctrl-C.

Each step is the model's ``Program.train_step`` (its layers' pure functions, then the
optimizer's update), and its results are bound to the layers after every step. On JAX the step,
the inference of a chunk and the epoch's metrics are compiled with ``jax.jit``, here and nowhere
else, and kept in a bounded cache (``clear_compiled``). This module takes the model as an
argument and never imports the models module.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from array_api_compat import is_jax_namespace

from . import _checks, evaluation
from ._xp import Placement, as_data, as_labels, dtype_name, move, to_numpy
from .history import METRICS, SNAPSHOT_EPOCHS, History, new_history
from .layers import Conv2D, to_rows
from .losses import mean_of_batch_losses, one_hot_columns
from .optim import SGD, Optimizer

__all__ = ["fit", "Callback", "TrainingDiverged", "TrainingInterrupted", "clear_compiled",
           "MAX_COMPILED", "MAX_REPLAY", "compiled", "gradients_of", "logits_of", "train_step",
           "DEFAULT_LR", "DEFAULT_MOMENTUM", "resolve_optimizer"]


class _Default(float):
    """A default that ``fit`` can tell from the same number passed (``lr is DEFAULT_LR``); its
    repr is the number's, so the signature reads as the chapter's."""

    def __repr__(self) -> str:
        return float.__repr__(self)


#: ``fit``'s ``lr`` and ``momentum`` when not passed: the chapter's 0.12 and 0.0.
DEFAULT_LR, DEFAULT_MOMENTUM = _Default(0.12), _Default(0.0)

Array = Any

#: ``fit(initial_epoch=k)`` with an integer seed replays k shuffles first: at most this many.
MAX_REPLAY = 100_000

#: ``callback(epoch, metrics)``, called after every epoch with that epoch's four metrics; a
#: truthy return value stops training after this epoch (early stopping).
Callback = Callable[[int, dict], Any]


class TrainingDiverged(RuntimeWarning):
    """``fit`` stopped because a loss or a parameter was no longer finite (the parameters were
    restored; ``history['diverged_epoch']`` says when)."""


class TrainingInterrupted(RuntimeWarning):
    """``fit`` stopped on Ctrl-C (``history['interrupted']``)."""


class Trainable(Protocol):
    """What ``fit`` needs of a model (``Sequential`` has all of it)."""

    placement: Placement | None
    layers: list

    def output_shape(self, shape: tuple[int, ...], name: str = ...) -> tuple[int, ...]: ...
    def to(self, xp: Any, device: Any = ..., dtype: Any = ...) -> Any: ...
    def parameters(self) -> list[tuple[str, Any, str]]: ...
    def params(self) -> tuple: ...
    optimizer: Any

    def velocities(self) -> tuple: ...
    def bind_velocities(self, velocities: tuple) -> None: ...
    def buffers(self) -> tuple: ...
    def program(self, shape: tuple[int, ...]) -> Any: ...
    def bind(self, params: tuple, velocities: tuple | None = ..., grads: tuple | None = ...,
             buffers: tuple | None = ...) -> None: ...
    def remember(self, x: Array, params: tuple, buffers: tuple = ..., masks: tuple = ...,
                 evaluation: bool = ...) -> None: ...
    def config(self) -> dict: ...


def resolve_optimizer(model: Trainable, optimizer: Any, lr: Any, momentum: Any) -> Optimizer:
    """The optimizer a ``fit`` trains with: ``optimizer``; else ``SGD(lr, momentum)`` if either
    was passed; else the model's own (``model.optimizer``); else the chapter's ``SGD(0.12)``.
    ``ValueError`` for ``optimizer`` together with ``lr`` or ``momentum``."""
    passed = [name for name, value, default in (("lr", lr, DEFAULT_LR),
                                                ("momentum", momentum, DEFAULT_MOMENTUM))
              if value is not default]
    if optimizer is not None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a tinycnn_xp.optim optimizer (SGD, RMSprop, Adam, "
                            f"AdamW), got {type(optimizer).__name__}")
        if passed:
            raise ValueError(f"pass either optimizer= or {' and '.join(passed)}= (the chapter's "
                             f"SGD), not both: set the rate on the optimizer, e.g. "
                             f"{type(optimizer).__name__}(lr=...)")
        return optimizer
    if not passed and getattr(model, "optimizer", None) is not None:
        return model.optimizer
    return SGD(_checks.learning_rate(lr), _checks.momentum(momentum))


def fit(model: Trainable, x_train: Array, y_train: Array, x_val: Array, y_val: Array,
        epochs: int = 80, lr: float = 0.12, batch_size: int = 18,
        seed: int | np.random.Generator | None = 0, *,
        momentum: float = 0.0, verbose: bool = True, initial_epoch: int = 0,
        callback: Callback | None = None, eval_batch_size: int | None = None,
        history: History | None = None, optimizer: Optimizer | None = None,
        drop_last: bool = False) -> History:
    """Mini-batch training of ``model`` over shuffled training data; returns the history.

    See ``Sequential.fit``, which calls this with the same arguments.
    """
    x_train, y_train = as_data(x_train), as_labels(y_train)
    x_val, y_val = as_data(x_val), as_labels(y_val)
    place = _checks.dataset(model, x_train, y_train, "x_train", "y_train")
    _checks.train_and_validation(place, _checks.dataset(model, x_val, y_val, "x_val", "y_val"))
    epochs = _checks.non_negative_int(epochs, "epochs")
    initial_epoch = _checks.non_negative_int(initial_epoch, "initial_epoch")
    if initial_epoch > epochs:
        raise ValueError(f"initial_epoch must be at most epochs ({epochs}), got {initial_epoch}")
    optimizer = resolve_optimizer(model, optimizer, lr, momentum)
    batch_size = _checks.positive_int(batch_size, "batch_size")
    if not isinstance(drop_last, bool):
        raise TypeError(f"drop_last must be True or False, got {drop_last!r}")
    rates = [optimizer.rate(epoch) for epoch in range(initial_epoch, epochs)]  # checked, all
    if not isinstance(seed, np.random.Generator):
        seed = _checks.seed(seed)
        if initial_epoch > MAX_REPLAY:
            raise ValueError(f"initial_epoch={initial_epoch} would replay that many shuffles (at most "
                             f"{MAX_REPLAY:,}); pass seed= the run's numpy.random.Generator, which "
                             f"continues where it stopped")
    chunk = evaluation.eval_batch_size(eval_batch_size, tuple(x_train.shape[1:]))
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    _check_continued(history, initial_epoch)
    xp, shape = place.xp, tuple(x_train.shape[1:])
    n_train = x_train.shape[0]
    spans = _batch_spans(n_train, batch_size, drop_last)
    if not spans:
        raise ValueError(f"batch_size={batch_size} with drop_last=True leaves no batch of the "
                         f"{n_train} training images")
    n_batches = len(spans)
    _check_batch_statistics(model, shape, {stop - start for start, stop in spans})
    if model.placement is None:  # placed by its first input, like every other public call
        model.to(place.xp, place.device, place.dtype)
    model.optimizer = optimizer
    if isinstance(seed, np.random.Generator):
        rng = seed  # its stream continues: the shuffles of the epochs trained are behind it
    else:
        rng = np.random.default_rng(seed)
        for _ in range(initial_epoch):  # the shuffles of the epochs already trained
            rng.permutation(n_train)
    snapshot_at = set(SNAPSHOT_EPOCHS) | {epochs - 1}
    first_conv = next((layer for layer in model.layers if isinstance(layer, Conv2D)), None)
    classes = model.output_shape(tuple(x_train.shape))[1]
    program = model.program(shape)
    step = train_step(model, shape, optimizer)
    split = compiled(model, ("batches", shape, batch_size, drop_last),
                     _batches(batch_size, drop_last, xp))
    metrics = _Metrics(model, shape, place, x_train, y_train, x_val, y_val, batch_size, chunk)
    targets = one_hot_columns(y_train, classes, place.dtype, xp)  # once, not at every step
    history = _continue(history)
    continued = len(history["train_loss"])  # epochs before initial_epoch that it holds
    record_rates = "lr" in history or not continued  # a continued 0.3 history has no rates
    if record_rates:
        history.setdefault("lr", [])
    last: Any = None  # (batch, parameters, buffers, masks) of the last step: what last_input shows
    with _StopOnInterrupt() as interrupt:
        for epoch in range(initial_epoch, epochs):
            if interrupt.requested:  # asked for between epochs (e.g. in a callback)
                break
            if epoch in snapshot_at and first_conv is not None:
                history["kernel_snapshots"][epoch] = to_numpy(first_conv.weights)
            # One host permutation, moved once; the batches are slices of the shuffled copy,
            # and so are the epoch's dropout masks (drawn on the host, the same on every backend).
            drawn_from = rng.bit_generator.state  # given back if this epoch is cut short
            masks = tuple(move(model.layers[index].epoch_mask(features, n_train, epoch, index), place)
                          for index, features in program.mask_layers)
            batches, t_epoch = split(x_train, targets, move(rng.permutation(n_train), place), masks)
            rate = rates[epoch - initial_epoch]
            # Updates rebind the parameters, never change them in place: these references are
            # the state to go back to if this epoch diverges.
            params = last_good = model.params()
            state = good_state = optimizer.state_of(model)
            buffers = good_buffers = model.buffers()
            good_steps = optimizer.steps
            probabilities = []
            # NumPy's overflow warnings of a diverging step say what the guard below says once.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                for batch, batch_targets, batch_masks in batches:
                    last = (batch, params, buffers, batch_masks)
                    optimizer.steps += 1
                    params, state, buffers, grads, p = step(
                        params, state, buffers, batch_masks, batch, batch_targets,
                        optimizer.hyper(rate))
                    model.bind(params, grads=grads, buffers=buffers)
                    optimizer.bind_state(model, state)
                    probabilities.append(p)
                    if interrupt.requested:
                        break
                if len(probabilities) < n_batches:  # stopped mid-epoch: back to the epoch's
                    _restore(model, optimizer, last_good, good_state, good_buffers, good_steps)
                    rng.bit_generator.state = drawn_from    # start (a Generator seed too), so
                    last = (last[0], last_good, good_buffers, last[3])  # resuming is exact
                    break
                # One transfer per epoch: the only host round trip of the training loop.
                record, finite = metrics.record(params, buffers, probabilities, t_epoch)
            if not (finite and all(math.isfinite(value) for value in record.values())):
                _restore(model, optimizer, last_good, good_state, good_buffers, good_steps)
                history["diverged_epoch"] = epoch
                restored = (f"the end of epoch {epoch - 1}" if epoch > initial_epoch
                            else f"their values before epoch {epoch}")
                warnings.warn(f"training diverged at epoch {epoch} with lr={rate}: the loss or the "
                              f"parameters are no longer finite; parameters restored to {restored}",
                              TrainingDiverged, stacklevel=3)
                break
            for key in METRICS:
                history[key].append(record[key])  # type: ignore[literal-required]
            if record_rates:
                history["lr"].append(rate)
            if verbose and (epoch % 10 == 0 or epoch == epochs - 1):
                print(f"Epoch {epoch:3d}/{epochs}: loss={record['train_loss']:.4f}  "
                      f"train_acc={record['train_acc']:.1%}  val_acc={record['val_acc']:.1%}")
            if callback is not None and callback(epoch, record):
                history["stopped_epoch"] = epoch
                break
    if last is not None:
        model.remember(_from_rows_batch(last[0], shape, xp), last[1], last[2], last[3])
    if interrupt.requested:
        history["interrupted"] = True
        done = initial_epoch + len(history["train_loss"]) - continued
        warnings.warn(f"training interrupted; the model and the history are those of the end of "
                      f"epoch {done - 1} (resume exactly with initial_epoch={done})",
                      TrainingInterrupted, stacklevel=3)
    if epochs == initial_epoch and first_conv is not None:  # nothing trained: the current filters
        history["kernel_snapshots"][epochs] = to_numpy(first_conv.weights)
    return history


#: the keys that say how a run ended: a continued history starts without them.
_ENDINGS = ("diverged_epoch", "stopped_epoch", "interrupted", "interrupted_steps")


def _check_continued(history: Any, initial_epoch: int) -> None:
    """``history=`` is ``None`` or a history of exactly ``initial_epoch`` epochs."""
    if history is None:
        return
    if not isinstance(history, dict) or not all(isinstance(history.get(key), list)
                                                for key in METRICS) \
            or not isinstance(history.get("kernel_snapshots"), dict):
        raise TypeError(f"history must be a history fit returned (a dict with the lists "
                        f"{', '.join(METRICS)} and kernel_snapshots), got {type(history).__name__}")
    lengths = {len(history[key]) for key in METRICS}
    if lengths != {initial_epoch}:
        raise ValueError(f"history must hold the initial_epoch={initial_epoch} epochs it continues, "
                         f"got lists of {sorted(lengths)} epochs")


def _continue(history: History | None) -> History:
    """A new history, or ``history`` continued in place (checked by ``_check_continued``): how
    its run ended is forgotten, and so is its own last-epoch snapshot (the run goes on)."""
    if history is None:
        return new_history()
    for key in _ENDINGS:
        history.pop(key, None)  # type: ignore[misc]
    history["kernel_snapshots"] = {epoch: kernels for epoch, kernels
                                   in history["kernel_snapshots"].items() if epoch in SNAPSHOT_EPOCHS}
    return history


def _restore(model: Trainable, optimizer: Optimizer, params: tuple, state: tuple,
             buffers: tuple, steps: int) -> None:
    """Put the model and its optimizer back to the start of an epoch (references it kept)."""
    model.bind(params, buffers=buffers)
    optimizer.bind_state(model, state)
    optimizer.steps = steps


def _batch_spans(n: int, batch_size: int, drop_last: bool) -> list[tuple[int, int]]:
    """``(start, stop)`` of an epoch's batches of ``n`` images: consecutive, at most
    ``batch_size`` each; ``drop_last``: without the last if it is smaller."""
    spans = list(evaluation.chunks(n, batch_size))
    if drop_last and spans and spans[-1][1] - spans[-1][0] < batch_size:
        spans.pop()
    return spans


def _check_batch_statistics(model: Trainable, shape: tuple[int, ...], sizes: set[int]) -> None:
    """A batch normalization layer must see more than one value per channel in every batch (of
    each of ``sizes``)."""
    for layer in model.layers:
        for size in sorted(sizes) if hasattr(layer, "values_per_channel") else ():
            if layer.values_per_channel((size, *shape)) < 2:
                raise ValueError(
                    f"batch_size: a batch of {size} image{'s' * (size != 1)} gives {layer!r} one "
                    f"value per channel, from which no variance can be learned; choose another "
                    f"batch_size, or pass drop_last=True to leave out the last, smaller batch")
        shape = layer.output_shape((1, *shape))[1:]


def _batches(batch_size: int, drop_last: bool, xp: Any) -> Callable:
    """``split(x, targets, order, masks)``: the epoch's batches, ``[(rows, one-hot columns,
    masks), ...]`` of ``x``, ``targets`` and each dropout mask, ``x`` and ``targets`` shuffled
    by ``order`` (the masks are drawn per position), and the shuffled targets of the batches
    (one call per epoch: compiled on JAX, where each eager slice is a dispatch; views on NumPy).
    ``drop_last``: without the last batch if it is smaller."""
    def split(x: Array, targets: Array, order: Array, masks: tuple) -> tuple[list, Array]:
        rows, columns = to_rows(xp.take(x, order, axis=0), xp), xp.take(targets, order, axis=1)
        spans = _batch_spans(x.shape[0], batch_size, drop_last)
        used = spans[-1][1]
        return ([(rows[:, start:stop], columns[:, start:stop],
                  tuple(mask[:, start:stop] for mask in masks)) for start, stop in spans],
                columns if used == x.shape[0] else columns[:, :used])
    return split


def _from_rows_batch(rows: Array, shape: tuple[int, ...], xp: Any) -> Array:
    """A batch of the epoch's rows as images, copied (a view would keep the whole epoch alive)."""
    return xp.asarray(xp.reshape(rows.mT, (rows.shape[1], *shape)), copy=True)


# -- what runs per step and per epoch, compiled on JAX --------------------------------------------
#: Compiled functions kept at most (least recently used first out): each holds an executable.
MAX_COMPILED = 32
_COMPILED: OrderedDict[tuple, Any] = OrderedDict()


def clear_compiled() -> None:
    """Forget every function ``fit``, ``predict`` and ``evaluate`` compiled on JAX (they are kept,
    at most ``MAX_COMPILED``, so that a new model of the same architecture does not compile
    again). Follow with ``jax.clear_caches()`` to give JAX's own caches back too."""
    _COMPILED.clear()


def compiled(model: Trainable, what: tuple, function: Callable) -> Callable:
    """``function`` itself, or on JAX ``jax.jit(function)`` kept by ``what`` (a name, then the
    input shape, then anything else the function depends on), the model's architecture and its
    placement: whatever else the function closes over must follow from those. The arrays'
    shapes are JAX's business: a key never holds a dataset's size."""
    place = model.placement
    assert place is not None
    if not is_jax_namespace(place.xp) or not model.program(what[1]).pure:
        return function
    key = (*what, json.dumps(model.config(), sort_keys=True), repr(place.device),
           dtype_name(place.dtype))
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key]
    import jax  # here only: the arrays are JAX's already

    _COMPILED[key] = compiled = jax.jit(function)
    while len(_COMPILED) > MAX_COMPILED:
        _COMPILED.popitem(last=False)
    return compiled


def train_step(model: Trainable, shape: tuple[int, ...], optimizer: Optimizer) -> Callable:
    """The step ``fit`` takes on ``(batch, *shape)`` images: ``step(params, state, buffers,
    masks, x, targets, hyper)`` with ``x`` batch-last rows, ``targets`` one-hot columns,
    ``state`` the optimizer's (``state_of``) and ``hyper`` its numbers (``hyper``), returning new
    ``(params, state, buffers, gradients, probabilities)`` (``Program.train_step`` with the
    optimizer's update, compiled on JAX; the update's terms are fixed per compiled step). The
    model must be placed."""
    program, update = model.program(shape), optimizer.update

    def step(params: tuple, state: tuple, buffers: tuple, masks: tuple, x: Array, targets: Array,
             hyper: tuple) -> tuple:
        return program.train_step(update, params, state, buffers, masks, x, targets, hyper)
    return compiled(model, ("step", shape, optimizer.structure()), step)


def gradients_of(model: Trainable, shape: tuple[int, ...], input_grad: bool = False) -> Callable:
    """``gradients(params, x, targets, buffers, masks)``: a training-mode pass and its backward
    on ``(batch, *shape)`` images (batch-last rows ``x``, one-hot columns ``targets``), returning
    ``(gradients, probabilities, input gradient or None, new buffers)``; compiled on JAX, where
    the same pass run primitive by primitive compiles each one. What ``loss_and_grad`` and
    ``check_gradients`` compute. The model must be placed."""
    program = model.program(shape)

    def gradients(params: tuple, x: Array, targets: Array, buffers: tuple = (),
                  masks: tuple = ()) -> tuple:
        return program.train_gradients(params, x, targets, input_grad, buffers, masks)
    return compiled(model, ("gradients", shape, input_grad), gradients)


def logits_of(model: Trainable, shape: tuple[int, ...]) -> Callable[[Array], Array]:
    """``logits_of(images)``: ``(classes, batch)`` logits of ``(batch, *shape)`` images by the
    model's current parameters, nothing kept (compiled on JAX). The model must be placed."""
    place = model.placement
    assert place is not None
    program, xp = model.program(shape), place.xp
    logits = compiled(model, ("logits", shape), program.logits)
    return lambda images: logits(model.params() + model.buffers(), to_rows(images, xp))


class _Metrics:
    """An epoch's four metrics as one device vector, read in one transfer: the training loss
    (from the epoch's probabilities), the validation loss, both accuracies, and whether every
    loss and parameter is finite. The two sets go through the network together when both fit in
    one chunk (at the chapter's size an epoch's metrics cost about as many calls as a step)."""

    def __init__(self, model: Trainable, shape: tuple[int, ...], place: Placement, x_train: Array,
                 y_train: Array, x_val: Array, y_val: Array, batch_size: int, size: int) -> None:
        xp, program = place.xp, model.program(shape)
        self.xp, self.n_train, self.n_val = xp, x_train.shape[0], x_val.shape[0]
        self.datasets = evaluation.TrainAndValidation(x_train, y_train, x_val, y_val, size, xp)
        self.totals = compiled(model, ("totals", shape), evaluation.totals_of(program.logits, xp))

        def combine(params: tuple, probabilities: Array, targets: Array, parts: tuple) -> Array:
            train_loss = mean_of_batch_losses(probabilities, targets, batch_size, xp)
            train_correct, val_loss, val_correct = parts
            # The parameters too: an overflowed conv bias behind a ReLU leaves every loss finite.
            finite = xp.all(xp.isfinite(xp.concat([xp.reshape(p, (-1,)) for p in params])))
            return xp.stack([train_loss, val_loss, train_correct, val_correct,
                             xp.astype(finite, train_loss.dtype)])
        self.combine = compiled(model, ("combine", shape, batch_size), combine)

    def record(self, params: tuple, buffers: tuple, probabilities: list,
               targets: Array) -> tuple[dict, bool]:
        xp = self.xp
        epoch = probabilities[0] if len(probabilities) == 1 else xp.concat(probabilities, axis=1)
        arrays = params + buffers
        parts = self.datasets.totals(lambda x, y, marks: self.totals(arrays, x, y, marks))
        values = to_numpy(self.combine(params, epoch, targets, parts))
        record = {"train_loss": float(values[0]), "val_loss": float(values[1] / self.n_val),
                  "train_acc": float(values[2] / self.n_train), "val_acc": float(values[3] / self.n_val)}
        return record, bool(values[4])


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
