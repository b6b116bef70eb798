"""Models: a stack of layers trained with mini-batch SGD (optionally with momentum).

``Sequential`` is the general form; ``TinyCNN`` is the chapter's network as one preset of it.
The model lives where its first input lives: the same code trains on NumPy, CuPy, torch, ...
"""

from __future__ import annotations

import math
import signal
import threading
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from . import _checks
from .layers import Conv2D, Dense, Flatten, Layer, MaxPool2D, ReLU, _Parametrized
from .losses import _one_hot, _softmax_cross_entropy
from ._xp import Placement, dtype_name, on_device, placement_of, to_numpy

__all__ = ["Sequential", "TinyCNN"]

Array = Any

#: epochs at whose start ``fit`` keeps a host copy of the first convolution's filters (the
#: chapter's choice, plus the last epoch).
SNAPSHOT_EPOCHS = (0, 1, 5, 15, 40)


class Sequential:
    """Layers applied in order, ending in ``(batch, classes)`` logits.

    ``seed`` (optional) re-draws the initial weights: the j-th layer with parameters gets
    ``seed + j``, which is how the chapter seeds TinyCNN (conv ``seed``, dense ``seed + 1``).
    ``names`` label the layers in summaries and gradient-check reports.
    """

    def __init__(self, layers: Sequence[Layer], seed: int | None = None,
                 names: Sequence[str] | None = None,
                 input_shape: tuple[int, int, int] | None = None) -> None:
        layers = list(layers)
        if not layers or not all(isinstance(layer, Layer) for layer in layers):
            raise TypeError("layers must be a non-empty sequence of tinycnn_xp layers, got "
                            f"{[type(layer).__name__ for layer in layers]}")
        if names is None:
            names = [f"{type(layer).__name__.lower()}{i}" for i, layer in enumerate(layers)]
        if len(names) != len(layers) or len(set(names)) != len(names):
            raise ValueError(f"names must give one distinct name per layer, got {list(names)}")
        if not self._trainable(layers):
            raise ValueError("layers must include a layer with parameters (Conv2D or Dense) to give "
                             f"the logits, got {[type(layer).__name__ for layer in layers]}")
        if seed is not None:
            _checks.non_negative_int(seed, "seed")
            for j, layer in enumerate(self._trainable(layers)):
                layer.reset_parameters(seed + j)
        self.layers = layers
        self.names = list(names)
        if input_shape is not None:  # (channels, height, width) that the layers can take
            input_shape = _checks.image_size(input_shape, "input_shape")
            self.output_shape((1,) + input_shape, "input_shape")
        self.input_shape = input_shape
        self._place: Placement | None = None

    # -- structure -----------------------------------------------------------------------------
    @staticmethod
    def _trainable(layers: Sequence[Layer]) -> list[_Parametrized]:
        return [layer for layer in layers if isinstance(layer, _Parametrized)]

    def parameters(self) -> list[tuple[str, _Parametrized, str]]:
        """``(qualified name, layer, attribute)`` for every trainable array, e.g. ``conv.weights``."""
        return [(f"{name}.{attr}", layer, attr) for name, layer in zip(self.names, self.layers)
                if isinstance(layer, _Parametrized) for attr in layer.param_names]

    @property
    def parameter_count(self) -> int:
        return sum(layer.parameter_count for layer in self._trainable(self.layers))

    def output_shape(self, shape: tuple[int, ...], name: str = "x") -> tuple[int, ...]:
        """Shape of the logits for an input of ``shape``; ``ValueError`` naming ``name`` if it does not fit."""
        for layer in self.layers:
            shape = layer.output_shape(shape, name)
        if len(shape) != 2:
            raise ValueError(f"the model must end in (batch, classes) logits, its last layer gives {shape}")
        return shape

    @property
    def num_classes(self) -> int:
        last = self._trainable(self.layers)[-1]
        return last.out_features if isinstance(last, Dense) else last.out_channels

    def summary(self, input_shape: tuple[int, int, int] | None = None) -> str:
        """Print and return a table of each layer's output shape and parameter count.

        For images of ``input_shape`` ``(channels, height, width)``: by default the model's own,
        else the size of the last images it saw."""
        seen = self.layers[0].last_input
        input_shape = input_shape or self.input_shape or (None if seen is None else tuple(seen.shape[1:]))
        if input_shape is None:
            raise ValueError("input_shape (channels, height, width) is needed for a summary of a "
                             "model that has not seen any images")
        shape: tuple[int, ...] = (1,) + tuple(input_shape)
        rows = [("input", "", str(shape[1:]), "")]
        for name, layer in zip(self.names, self.layers):
            shape = layer.output_shape(shape, "input_shape")
            count = layer.parameter_count if isinstance(layer, _Parametrized) else 0
            rows.append((name, repr(layer), str(shape[1:]), str(count)))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [f"{'layer':<{widths[0]}}  {'':<{widths[1]}}  {'output':<{widths[2]}}  params"]
        lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d:>6}" for a, b, c, d in rows]
        lines.append(f"total parameters: {self.parameter_count}")
        text = "\n".join(lines)
        print(text)
        return text

    # -- placement and checks ------------------------------------------------------------------
    def _adopt(self, place: Placement) -> None:
        if self._place is not None:
            _checks.compatible(self._place, place, type(self).__name__)
            return
        for layer in self.layers:
            layer._adopt(place)
        self._place = place

    def _check_images(self, x: Array, name: str) -> tuple[Any, tuple[int, ...]]:
        xp = _checks.floating_array(x, name)
        logits_shape = self.output_shape(tuple(x.shape), name)
        place = placement_of(x)
        if self._place is not None:
            _checks.compatible(self._place, place, type(self).__name__, name)
        _checks.finite(x, xp, name)
        return place, logits_shape

    def _check_data(self, x: Array, y: Array, x_name: str = "x", y_name: str = "y") -> Placement:
        place, (batch, classes) = self._check_images(x, x_name)
        _checks.labels(y, batch, classes, y_name, x_name)
        _checks.same_place(y, place, y_name)
        return place

    # -- forward, loss, backward, update -------------------------------------------------------
    def forward(self, x: Array) -> Array:
        """Logits ``(batch, classes)`` for images ``x`` ``(batch, channels, height, width)``."""
        place, _ = self._check_images(x, "x")
        self._adopt(place)
        return self._forward(x, place.xp)

    def _forward(self, x: Array, xp: Any) -> Array:
        for layer in self.layers:
            x = layer._forward(x, xp)
        return x

    def _backward(self, grad: Array, xp: Any, input_grad: bool) -> Array | None:
        for i in range(len(self.layers) - 1, -1, -1):
            grad = self.layers[i]._backward(grad, xp, input_grad or i > 0)
        return grad

    def loss_and_grad(self, x: Array, y: Array) -> tuple[Array, Array]:
        """Forward pass, loss, and the full backward pass; returns ``(loss, probabilities)``.

        Every layer's parameter gradients (``d_weights``, ``d_bias``) are left for ``step``.
        """
        place = self._check_data(x, y)
        self._adopt(place)
        loss, probabilities, _ = self._loss_and_grad(x, y, place.xp, input_grad=False)
        return loss, probabilities

    def _loss_and_grad(self, x: Array, y: Array, xp: Any, input_grad: bool):
        loss, probabilities, d_logits = _softmax_cross_entropy(self._forward(x, xp), y, xp)
        return loss, probabilities, self._backward(d_logits, xp, input_grad)

    def step(self, lr: float, momentum: float = 0.0) -> None:
        """Update every trainable parameter: ``v <- momentum*v + grad``, ``param -= lr * v``."""
        _checks.learning_rate(lr)
        _checks.momentum(momentum)
        self._step(lr, momentum)

    def _step(self, lr: float, momentum: float) -> None:
        for layer in self._trainable(self.layers):
            layer._step(lr, momentum)

    def predict(self, x: Array) -> Array:
        """Predicted class indices ``(batch,)``, on the input's device."""
        place, _ = self._check_images(x, "x")
        self._adopt(place)
        return place.xp.argmax(self._forward(x, place.xp), axis=1)

    def evaluate(self, x: Array, y: Array) -> float:
        """Accuracy (fraction of correct predictions) on ``x``, ``y``."""
        place = self._check_data(x, y)
        self._adopt(place)
        return float(_accuracy(self._forward(x, place.xp), y, place.xp))

    # -- training ------------------------------------------------------------------------------
    def fit(self, x_train: Array, y_train: Array, x_val: Array, y_val: Array,
            epochs: int = 80, lr: float = 0.12, batch_size: int = 18, seed: int | None = 0, *,
            momentum: float = 0.0, verbose: bool = True, initial_epoch: int = 0,
            callback: Callable[[int, dict], None] | None = None) -> dict:
        """Mini-batch SGD over shuffled training data; returns the per-epoch history.

        ``history`` has ``train_loss`` (mean of the epoch's batch losses), ``val_loss``,
        ``train_acc``, ``val_acc`` (Python floats, one per epoch) and ``kernel_snapshots``
        (``{epoch: host NumPy copy of the first convolution's weights at the start of that
        epoch}`` for epochs 0, 1, 5, 15, 40 and the last). Shuffling draws from
        ``numpy.random.default_rng(seed)`` on the host, so every backend sees the same batches.

        Everything stays on the data's device until an epoch ends; then the four metrics come to
        the host in one transfer. If a loss turns NaN or infinite, training stops at the end of that
        epoch with a ``RuntimeWarning`` and the parameters of the last finite epoch are restored
        (``history['diverged_epoch']`` says which epoch). Ctrl-C stops after the current step (a
        step is never cut in half; a second Ctrl-C raises ``KeyboardInterrupt``) and returns the
        history of the whole epochs so far, with ``history['interrupted']`` and
        ``history['interrupted_steps']``, the steps of the unfinished epoch already applied to the
        model (0 when it stopped between epochs: then the run can be resumed exactly). ``callback(epoch, metrics)`` is called after
        every epoch; ``verbose`` prints the chapter's progress lines.

        ``initial_epoch=k`` resumes a run: it trains epochs ``k .. epochs-1`` with the shuffles those
        epochs would have had (the generator skips ``k`` permutations), so a run split in two (same
        model state, e.g. from a checkpoint) gives the history of the run in one piece.
        """
        place = self._check_data(x_train, y_train, "x_train", "y_train")
        val_place = self._check_data(x_val, y_val, "x_val", "y_val")
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
        if seed is not None:
            _checks.non_negative_int(seed, "seed")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        self._adopt(place)

        xp = place.xp
        rng = np.random.default_rng(seed)
        n_train = x_train.shape[0]
        for _ in range(initial_epoch):  # the shuffles of the epochs already trained
            rng.permutation(n_train)
        n_batches = math.ceil(n_train / batch_size)
        snapshot_at = set(SNAPSHOT_EPOCHS) | {epochs - 1}
        first_conv = next((layer for layer in self.layers if isinstance(layer, Conv2D)), None)
        classes = self.output_shape(tuple(x_train.shape))[1]
        targets = _one_hot(y_train, classes, place.dtype, xp)  # encoded once, not at every step
        history: dict = {"train_loss": [], "val_loss": [], "train_acc": [], "val_acc": [],
                         "kernel_snapshots": {}}
        kept = 0  # steps of an epoch that Ctrl-C cut short
        with _StopOnInterrupt() as interrupt:
            for epoch in range(initial_epoch, epochs):
                if interrupt.requested:  # asked for between epochs (e.g. in a callback)
                    break
                if epoch in snapshot_at and first_conv is not None:
                    history["kernel_snapshots"][epoch] = to_numpy(first_conv.weights)
                last_good = self._save_state(xp)
                # One host permutation, moved once; batches are slices of the device copy.
                order = on_device(rng.permutation(n_train), place)
                total, steps = self._train_epoch(xp.take(x_train, order, axis=0),
                                                 xp.take(targets, order, axis=0), batch_size, lr,
                                                 momentum, xp, interrupt)
                if steps < n_batches:  # stopped mid-epoch: the model keeps its last step, the
                    kept = steps       # history its last whole epoch
                    break
                record, finite = self._epoch_metrics(total / n_batches, x_train, y_train, x_val,
                                                     y_val, xp)
                if not (finite and all(math.isfinite(value) for value in record.values())):
                    self._restore_state(last_good)
                    history["diverged_epoch"] = epoch
                    restored = (f"the end of epoch {epoch - 1}" if epoch > initial_epoch
                                else f"their values before epoch {epoch}")
                    warnings.warn(f"training diverged at epoch {epoch} with lr={lr}: the loss or the "
                                  f"parameters are no longer finite; parameters restored to {restored}",
                                  RuntimeWarning, stacklevel=2)
                    break
                for key, value in record.items():
                    history[key].append(value)
                if verbose and (epoch % 10 == 0 or epoch == epochs - 1):
                    print(f"Epoch {epoch:3d}/{epochs}: loss={record['train_loss']:.4f}  "
                          f"train_acc={record['train_acc']:.1%}  val_acc={record['val_acc']:.1%}")
                if callback is not None:
                    callback(epoch, record)
        if interrupt.requested:
            history["interrupted"], history["interrupted_steps"] = True, kept
            done = initial_epoch + len(history["train_loss"])
            inside = (f"after {kept} of {n_batches} steps of epoch {done}: the model keeps those "
                      f"steps, so resuming with initial_epoch={done} repeats them" if kept else
                      f"between epochs: resume exactly with initial_epoch={done}")
            warnings.warn(f"training interrupted {inside}; the history ends with epoch {done - 1}",
                          RuntimeWarning, stacklevel=2)
        if epochs == initial_epoch and first_conv is not None:  # nothing trained: the current filters
            history["kernel_snapshots"][epochs] = to_numpy(first_conv.weights)
        return history

    def _train_epoch(self, x_epoch: Array, targets: Array, batch_size: int, lr: float,
                     momentum: float, xp: Any, interrupt: "_StopOnInterrupt") -> tuple[Array, int]:
        """One pass of mini-batch steps over shuffled data: the sum of the batch losses (a 0-d
        array, still on the device) and the number of steps taken (fewer if Ctrl-C stopped it)."""
        n_train = x_epoch.shape[0]
        total, steps = None, 0
        for start in range(0, n_train, batch_size):
            stop = min(start + batch_size, n_train)  # out-of-range stops are not standard
            loss, _, _ = self._loss_and_grad(x_epoch[start:stop, ...], targets[start:stop, ...],
                                             xp, input_grad=False)
            self._step(lr, momentum)
            total, steps = (loss if total is None else total + loss), steps + 1
            if interrupt.requested:
                break
        return total, steps

    def _epoch_metrics(self, train_loss: Array, x_train: Array, y_train: Array, x_val: Array,
                       y_val: Array, xp: Any) -> tuple[dict, bool]:
        """The epoch's four metrics, and whether every parameter is still finite."""
        train_acc = _accuracy(self._forward(x_train, xp), y_train, xp)
        val_logits = self._forward(x_val, xp)
        val_loss = _softmax_cross_entropy(val_logits, y_val, xp)[0]
        val_acc = _accuracy(val_logits, y_val, xp)
        # The parameters too: an overflowed conv bias behind a ReLU leaves every loss finite.
        finite = xp.all(xp.stack([xp.all(xp.isfinite(getattr(layer, attr)))
                                  for _, layer, attr in self.parameters()]))
        # One transfer per epoch: the only host round trip of the training loop.
        values = to_numpy(xp.stack([train_loss, val_loss, train_acc, val_acc,
                                    xp.astype(finite, train_acc.dtype)]))
        record = dict(zip(("train_loss", "val_loss", "train_acc", "val_acc"), map(float, values[:4])))
        return record, bool(values[4])

    def _save_state(self, xp: Any) -> list:
        """Device copies of every parameter and velocity (restored if training diverges)."""
        return [(array, xp.asarray(array, copy=True)) for _, layer, attr in self.parameters()
                for array in (getattr(layer, attr), layer.velocity[attr])]

    @staticmethod
    def _restore_state(saved: list) -> None:
        for array, copy in saved:
            array[...] = copy  # in place: references to the parameters stay valid

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, path: Any, history: dict | None = None, *, meta: dict | None = None) -> Any:
        """Architecture, weights, momentum state, dtype and ``history`` in one ``.npz``
        (atomic write; see ``tinycnn_xp.checkpoint``). Returns the path written."""
        from . import checkpoint  # lazy: checkpoint imports this module
        return checkpoint.save(self, path, history, meta=meta)

    @staticmethod
    def load(path: Any, xp: Any = None, device: Any = None, dtype: Any = None) -> "Sequential":
        """The model saved at ``path``, on ``xp``/``device`` (default NumPy) in ``dtype`` (default
        the saved one); a TinyCNN comes back as a TinyCNN."""
        from . import checkpoint
        return checkpoint.load(path, xp=xp, device=device, dtype=dtype)

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"{type(self).__name__}([{inner}])"


def _accuracy(logits: Array, y: Array, xp: Any) -> Array:
    """Fraction of rows whose arg-max equals the label, as a 0-d array of the logits' dtype."""
    return xp.mean(xp.astype(xp.argmax(logits, axis=1) == y, logits.dtype))


class _StopOnInterrupt:
    """Turn Ctrl-C during ``fit`` into a flag checked after each step, so a step is never cut in half.

    A second Ctrl-C (say, during a long callback) is not swallowed: it raises ``KeyboardInterrupt``.
    """

    def __enter__(self) -> "_StopOnInterrupt":
        self.requested = False
        self._previous = None
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


class TinyCNN(Sequential):
    """The chapter's network for 8x8 grayscale images.

    ``Conv2D(1->3, 3x3) -> ReLU -> MaxPool(2x2) -> Flatten -> Dense(27->num_classes)``,
    conv seeded with ``seed`` and dense with ``seed + 1``.
    """

    def __init__(self, seed: int = 42, num_classes: int = 3) -> None:
        _checks.non_negative_int(seed, "seed")
        self.conv = Conv2D(in_channels=1, out_channels=3, kernel_size=3, seed=seed)
        self.relu = ReLU()
        self.pool = MaxPool2D(pool_size=2)
        self.flatten = Flatten()
        self.dense = Dense(in_features=27, out_features=_checks.positive_int(num_classes, "num_classes"),
                           seed=seed + 1)
        super().__init__([self.conv, self.relu, self.pool, self.flatten, self.dense],
                         names=["conv", "relu", "pool", "flatten", "dense"], input_shape=(1, 8, 8))
