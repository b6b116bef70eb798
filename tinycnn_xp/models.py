"""Models: a stack of layers, its placement, its forward and backward passes, and its update.

``Sequential`` is the general form; ``TinyCNN`` is the chapter's network as one preset of it.
The model lives where its first input lives: the same code trains on NumPy, CuPy, torch, JAX, ...
Training (``fit``) is in ``training``, inference in chunks in ``evaluation``, the file format in
``checkpoint``; the methods here delegate to them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from . import _checks, checkpoint, evaluation, training
from ._xp import Placement, as_data, as_labels, dtype_name, move, placed
from .history import History
from .layers import (
    Conv2D,
    Dense,
    Flatten,
    Layer,
    MaxPool2D,
    ParametrizedLayer,
    ReLU,
    layer_from_config,
    parameter_shapes_from_config,
)
from .losses import softmax_cross_entropy

__all__ = ["Sequential", "TinyCNN", "MODELS"]

Array = Any


class Sequential:
    """Layers applied in order, ending in ``(batch, classes)`` logits.

    ``seed`` (optional) re-draws the initial weights: the j-th layer with parameters gets
    ``seed + j``, which is how the chapter seeds TinyCNN (conv ``seed``, dense ``seed + 1``).
    ``names`` label the layers in summaries and gradient-check reports.

    A model keeps per-call caches (each layer's ``last_input``, ...): it is not thread-safe. Use
    one model per thread (``copy.deepcopy`` makes one). A pickled or deep-copied model comes back
    like a loaded one: host NumPy arrays, unplaced, and placed again by its first input; so it
    travels to another process or machine (``tinycnn_xp.sweep``) whatever device it was on.
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
        self.input_shape: tuple[int, int, int] | None = None
        if input_shape is not None:  # (channels, height, width) that the layers can take
            input_shape = _checks.image_size(input_shape, "input_shape")
            self.output_shape((1, *input_shape), "input_shape")
        self.input_shape = input_shape
        #: where the arrays live (``xp``, ``device``, ``dtype``), or ``None`` before the first input.
        self.placement: Placement | None = None

    # -- structure -----------------------------------------------------------------------------
    @staticmethod
    def _trainable(layers: Sequence[Layer]) -> list[ParametrizedLayer]:
        return [layer for layer in layers if isinstance(layer, ParametrizedLayer)]

    def parameters(self) -> list[tuple[str, ParametrizedLayer, str]]:
        """``(qualified name, layer, attribute)`` for every trainable array, e.g. ``conv.weights``."""
        return [(f"{name}.{attr}", layer, attr) for name, layer in zip(self.names, self.layers)
                if isinstance(layer, ParametrizedLayer) for attr in layer.param_names]

    @property
    def parameter_count(self) -> int:
        return sum(layer.parameter_count for layer in self._trainable(self.layers))

    def output_shape(self, shape: tuple[int, ...], name: str = "x") -> tuple[int, ...]:
        """Shape of the logits for an input of ``shape``; ``ValueError`` naming ``name`` if not."""
        given = tuple(shape)
        if self.input_shape is not None and len(given) == 4 and given[1:] != self.input_shape:
            # Said first: a convolution takes any size, so the layer that would refuse may be far
            # from the input (or none may: TinyCNN's layers happen to fit 9x9 images too).
            raise ValueError(f"{name}: {type(self).__name__} takes images of shape (batch, "
                             f"{', '.join(map(str, self.input_shape))}), got shape {given}")
        for layer in self.layers:
            shape = layer.output_shape(shape, name)
        if len(shape) != 2:
            raise ValueError(f"the model must end in (batch, classes) logits, its last layer gives {shape}")
        return shape

    @property
    def num_classes(self) -> int:
        last = self._trainable(self.layers)[-1]  # the logits come from a Dense or a Conv2D
        return last.out_features if isinstance(last, Dense) else cast(Conv2D, last).out_channels

    def summary(self, input_shape: tuple[int, int, int] | None = None) -> str:
        """Print and return a table of each layer's output shape and parameter count.

        For images of ``input_shape`` ``(channels, height, width)``: by default the model's own,
        else the size of the last images it saw."""
        seen = self.layers[0].last_input
        input_shape = input_shape or self.input_shape or (None if seen is None else tuple(seen.shape[1:]))
        if input_shape is None:
            raise ValueError("input_shape (channels, height, width) is needed for a summary of a "
                             "model that has not seen any images")
        shape: tuple[int, ...] = (1, *tuple(input_shape))
        rows = [("input", "", str(shape[1:]), "")]
        for name, layer in zip(self.names, self.layers):
            shape = layer.output_shape(shape, "input_shape")
            count = layer.parameter_count if isinstance(layer, ParametrizedLayer) else 0
            rows.append((name, repr(layer), str(shape[1:]), str(count)))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [f"{'layer':<{widths[0]}}  {'':<{widths[1]}}  {'output':<{widths[2]}}  params"]
        lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d:>6}" for a, b, c, d in rows]
        lines.append(f"total parameters: {self.parameter_count}")
        text = "\n".join(lines)
        print(text)
        return text

    # -- placement -----------------------------------------------------------------------------
    def to(self, xp: Any, device: Any = None, dtype: Any = None) -> Sequential:
        """Move every array to namespace ``xp`` on ``device`` in floating ``dtype`` and return
        the model.

        ``xp``: ``numpy``, ``cupy``, ``torch``, ``jax.numpy``, ``array_api_strict``, ... (the
        library module or its ``array_api_compat`` wrapper); ``device``: one of its devices
        (default: its default device); ``dtype``: ``"float32"``/``"float64"`` or a dtype object
        (default: the current one). One transfer per array; a host array is cast on the host.
        """
        _, first, attr = self.parameters()[0]
        current = self.placement.dtype if self.placement is not None else getattr(first, attr).dtype
        place = _checks.target(xp, device, dtype, dtype_name(current))
        for layer in self.layers:
            layer.to(place.xp, place.device, place.dtype)
        self.placement = place
        return self

    def _place_for(self, place: Placement) -> None:
        if self.placement is None:
            self.to(place.xp, place.device, place.dtype)

    def reset_parameters(self, seed: int) -> Sequential:
        """Draw fresh initial weights as ``seed=`` in the constructor does (the j-th layer with
        parameters from ``seed + j``), with zero biases and velocities; the placement stays.
        Returns the model."""
        _checks.non_negative_int(seed, "seed")
        for j, layer in enumerate(self._trainable(self.layers)):
            layer.reset_parameters(seed + j)
        return self

    # -- copies and pickles --------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Pickling and ``copy.deepcopy``: the model without its placement. Its layers travel as
        host NumPy arrays without caches (``Layer.__reduce__``), so the copy is like a loaded
        model: unplaced, and placed again by its first input (``to`` places it at once)."""
        # The model itself keeps no per-call caches: if one is added, drop it here too.
        return {**self.__dict__, "placement": None}

    def __copy__(self) -> Sequential:
        """``copy.copy``: shallow, like any object's: the copy shares the layers and placement."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    # -- forward, loss, backward, update -------------------------------------------------------
    def forward(self, x: Array, *, check: bool = True, cache: bool = True) -> Array:
        """Logits ``(batch, classes)`` for images ``x`` ``(batch, channels, height, width)``.

        The first input places the model on its library, device and dtype. ``cache=False``
        keeps nothing for ``backward`` (inference). ``check=False`` skips the checks: for loops
        that checked their data once; the model must then be placed already.
        """
        if check:
            x = as_data(x)
            place, _ = _checks.images(self, x, "x")
            self._place_for(place)
        for layer in self.layers:
            x = layer.forward(x, check=False, cache=cache)
        return x

    def backward(self, d_logits: Array, *, check: bool = True, input_grad: bool = True) -> Array | None:
        """Backward pass from ``d_logits`` ``(batch, classes)`` through every layer, in reverse.

        Leaves every layer's parameter gradients (``d_weights``, ``d_bias``) for ``step`` and
        returns the gradient with respect to the last forward pass's input (``None`` when
        ``input_grad=False``, which skips that last product).
        """
        grad = as_data(d_logits) if check else d_logits
        for i in range(len(self.layers) - 1, -1, -1):
            grad = self.layers[i].backward(grad, check=check, input_grad=input_grad or i > 0)
        return grad

    def loss_and_grad(self, x: Array, y: Array, *, check: bool = True) -> tuple[Array, Array]:
        """Forward pass, loss, and the full backward pass; returns ``(loss, probabilities)``.

        Every layer's parameter gradients (``d_weights``, ``d_bias``) are left for ``step``.
        ``check=False`` (what ``fit`` runs per batch) skips the checks; ``y`` may then also be
        one-hot rows of ``x``'s dtype.
        """
        if check:
            x, y = as_data(x), as_labels(y)
            place = _checks.data(self, x, y)
            self._place_for(place)
        xp = placed(self).xp
        loss, probabilities, d_logits = softmax_cross_entropy(self.forward(x, check=False), y,
                                                              check=False, xp=xp)
        self.backward(d_logits, check=False, input_grad=False)
        return loss, probabilities

    def step(self, lr: float, momentum: float = 0.0, *, check: bool = True) -> None:
        """Update every trainable parameter: ``v <- momentum*v + grad``, ``param <- param - lr * v``."""
        if check:
            _checks.learning_rate(lr)
            _checks.momentum(momentum)
        for layer in self._trainable(self.layers):
            layer.step(lr, momentum, check=False)

    def predict(self, x: Array, *, eval_batch_size: int | None = None) -> Array:
        """Predicted class indices ``(batch,)``, on the input's device.

        Runs in chunks of ``eval_batch_size`` images (default
        ``evaluation.DEFAULT_EVAL_BATCH_SIZE``) without backward caches, so memory is that of one
        chunk, however many images.
        """
        x = as_data(x)
        place, _ = _checks.images(self, x, "x")
        chunk = evaluation.eval_batch_size(eval_batch_size)
        self._place_for(place)
        return evaluation.predict(self._infer, x, chunk, place.xp)

    def evaluate(self, x: Array, y: Array, *, eval_batch_size: int | None = None) -> float:
        """Accuracy (fraction of correct predictions) on ``x``, ``y``, in chunks like ``predict``."""
        x, y = as_data(x), as_labels(y)
        place = _checks.data(self, x, y)
        chunk = evaluation.eval_batch_size(eval_batch_size)
        self._place_for(place)
        _, correct = evaluation.totals(self._infer, x, y, chunk, place.xp, loss=False)
        return float(correct) / x.shape[0]

    def _infer(self, x: Array) -> Array:
        return self.forward(x, check=False, cache=False)

    # -- training ------------------------------------------------------------------------------
    def fit(self, x_train: Array, y_train: Array, x_val: Array, y_val: Array,
            epochs: int = 80, lr: float = 0.12, batch_size: int = 18, seed: int | None = 0, *,
            momentum: float = 0.0, verbose: bool = True, initial_epoch: int = 0,
            callback: training.Callback | None = None,
            eval_batch_size: int | None = None) -> History:
        """Mini-batch SGD over shuffled training data; returns the per-epoch history.

        ``history`` has ``train_loss`` (mean of the epoch's batch losses), ``val_loss``,
        ``train_acc``, ``val_acc`` (Python floats, one per epoch) and ``kernel_snapshots``
        (``{epoch: host NumPy copy of the first convolution's weights at the start of that
        epoch}`` for epochs 0, 1, 5, 15, 40 and the last); see ``tinycnn_xp.history.History``.
        Shuffling draws from ``numpy.random.default_rng(seed)`` on the host, so every backend
        sees the same batches.

        Everything stays on the data's device until an epoch ends; then the four metrics come to
        the host in one transfer. They are measured in chunks of ``eval_batch_size`` images (see
        ``predict``). If a loss or a parameter turns NaN or infinite, training stops at the end of
        that epoch with a ``RuntimeWarning`` and the parameters and velocities of the last finite
        epoch are restored (``history['diverged_epoch']`` says which epoch).

        Common stacks (``Conv2D [ReLU] [MaxPool2D] ...``, ``Flatten``, ``Dense [ReLU] ...``: the
        chapter's TinyCNN and every preset) train on the fast path (``tinycnn_xp.fastpath``), the
        whole step as one function of arrays, compiled with ``jax.jit`` on JAX; other stacks train
        layer by layer. Both give the same numbers. After a fast fit, ``weights``, ``bias``,
        ``velocity``, ``d_weights`` and ``d_bias`` are those of the last step (the gradients to
        rounding); ``last_input`` and ``last_mask`` still describe the last ``forward`` call: the
        fast path keeps no per-layer caches.

        ``callback(epoch, metrics)`` is called after every epoch; if it returns ``True``, training
        stops after that epoch (early stopping; ``history['stopped_epoch']``). ``verbose`` prints
        the chapter's progress lines.

        Ctrl-C stops after the current step (a step is never cut in half; a second Ctrl-C raises
        ``KeyboardInterrupt``) and returns the history of the whole epochs so far, with
        ``history['interrupted']`` and ``history['interrupted_steps']``, the steps of the
        unfinished epoch already applied to the model (0 when it stopped between epochs: then the
        run can be resumed exactly).

        ``initial_epoch=k`` resumes a run: it trains epochs ``k .. epochs-1`` with the shuffles those
        epochs would have had (the generator skips ``k`` permutations), so a run split in two (same
        model state, e.g. from a checkpoint) gives the history of the run in one piece.
        """
        return training.fit(self, x_train, y_train, x_val, y_val, epochs, lr, batch_size, seed,
                            momentum=momentum, verbose=verbose, initial_epoch=initial_epoch,
                            callback=callback, eval_batch_size=eval_batch_size)

    # -- configuration, state, checkpoints -----------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The architecture as JSON-able data: ``Sequential.from_config(model.config())`` rebuilds
        it (with fresh weights)."""
        return {"model": "Sequential",
                "layers": [{"class": type(layer).__name__, "config": layer.config()}
                           for layer in self.layers],
                "names": list(self.names),
                "input_shape": list(self.input_shape) if self.input_shape is not None else None}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        """A new model with the architecture ``config`` describes (see ``config``); ``ValueError``
        if it does not describe one."""
        try:
            kind = config["model"]
            if kind not in MODELS:
                raise ValueError(f"unknown model class {kind!r}; known: {sorted(MODELS)}")
            model = MODELS[kind]._build(config)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"the architecture cannot be rebuilt: {type(exc).__name__}: {exc}") from None
        if model.config() != config:
            raise ValueError(f"the layers {config['layers']!r:.300} do not make a {kind}")
        return model

    @classmethod
    def parameter_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        """``{qualified name: shape}`` of every parameter of the model ``config`` describes
        (``conv.weights``, ..., in the model's order), computed without building it: nothing is
        allocated, however large the declared layers. ``ValueError`` if ``config`` does not
        describe a model; ``from_config`` may still refuse one whose layers do not fit together."""
        try:
            if not isinstance(config, dict) or not isinstance(config.get("model"), str) \
                    or config["model"] not in MODELS:
                raise ValueError(f"unknown model class {config.get('model')!r:.60}; known: "
                                 f"{sorted(MODELS)}" if isinstance(config, dict) else
                                 f"expected a JSON object, got {type(config).__name__}")
            layers, names = config["layers"], config["names"]
            if not (isinstance(layers, list) and isinstance(names, list) and len(layers) == len(names)
                    and all(isinstance(name, str) for name in names) and len(set(names)) == len(names)):
                raise ValueError("'layers' and 'names' must be lists of one layer and one distinct "
                                 "name each")
            return {f"{name}.{attr}": shape for name, entry in zip(names, layers)
                    for attr, shape in parameter_shapes_from_config(entry).items()}
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"the architecture cannot be rebuilt: {type(exc).__name__}: {exc}") from None

    @classmethod
    def _build(cls, config: dict[str, Any]) -> Sequential:
        input_shape = config["input_shape"]
        return Sequential([layer_from_config(entry) for entry in config["layers"]],
                          names=config["names"],
                          input_shape=tuple(input_shape) if input_shape is not None else None)

    def state(self) -> dict[str, dict[str, Array]]:
        """The trained state: ``{"param": {name: array}, "velocity": {name: array}}`` by qualified
        name (``conv.weights``, ...), the arrays themselves (not copies), where they live."""
        return {"param": {name: getattr(layer, attr) for name, layer, attr in self.parameters()},
                "velocity": {name: layer.velocity[attr] for name, layer, attr in self.parameters()}}

    def load_state(self, state: dict[str, dict[str, Array]]) -> Sequential:
        """Take every parameter and velocity from ``state`` (as ``state()`` gives it; host NumPy
        arrays or arrays of any library), placed where the model is. ``ValueError`` before
        anything changes if an array is missing, unexpected, of the wrong shape, or not finite."""
        expected = {f"{group}/{name}": tuple(getattr(layer, attr).shape)
                    for name, layer, attr in self.parameters() for group in ("param", "velocity")}
        _checks.state_arrays({f"{group}/{name}": array for group in ("param", "velocity")
                              for name, array in state.get(group, {}).items()}, expected)
        place = self.placement
        for name, layer, attr in self.parameters():
            param, velocity = as_data(state["param"][name]), as_data(state["velocity"][name])
            if place is not None:
                param, velocity = move(param, place, place.dtype), move(velocity, place, place.dtype)
            setattr(layer, attr, param)
            layer.velocity[attr] = velocity
        return self

    def save(self, path: str | os.PathLike, history: History | None = None, *,
             meta: dict | None = None) -> Path:
        """Architecture, weights, momentum state, dtype and ``history`` in one ``.npz``
        (atomic write; see ``tinycnn_xp.checkpoint``). Returns the path written."""
        return checkpoint.save(self, path, history, meta=meta)

    @classmethod
    def load(cls, path: str | os.PathLike, xp: Any = None, device: Any = None,
             dtype: Any = None, *, max_parameters: int | None = None) -> Sequential:
        """The model saved at ``path``; a TinyCNN comes back as a TinyCNN.

        Without ``xp`` it is like a freshly built model: on the host (in ``dtype``, default the
        saved one) and placed by its first input. With ``xp`` (and optionally ``device``) it is
        placed there at once, in ``dtype`` (default: the saved one). Momentum velocities are
        restored, so ``fit(..., initial_epoch=len(history["train_loss"]))`` with
        ``history = checkpoint.load_history(path)`` continues the run as if it had never stopped.
        ``ValueError`` naming the file if it is not a checkpoint of a model.

        The file is checked against the architecture it declares before any array is read (see
        ``tinycnn_xp.checkpoint``): loading costs what the model costs. A declared architecture of
        more than ``max_parameters`` parameters (default ``checkpoint.MAX_PARAMETERS``, 10**8) is
        refused; pass a larger cap to load a larger model.
        """
        if xp is None and device is not None:
            raise ValueError(f"device={device!r} needs xp, the array library it belongs to")
        if dtype is not None:
            name = dtype if isinstance(dtype, str) else dtype_name(dtype)
            if name not in _checks.FLOAT_DTYPES:
                raise ValueError(f"dtype must be one of {_checks.FLOAT_DTYPES} or None, got {dtype!r}")
        saved = checkpoint.read(path, cls.parameter_shapes, max_parameters=max_parameters)
        name = saved.dtype if dtype is None else dtype if isinstance(dtype, str) else dtype_name(dtype)
        # Cast on the host, so that placing the model later is one transfer per array.
        state = {group: {key: array.astype(name, copy=False) for key, array in arrays.items()}
                 for group, arrays in saved.state.items()}
        try:
            model = cls.from_config(saved.config).load_state(state)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        return model if xp is None else model.to(xp, device, name)

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"{type(self).__name__}([{inner}])"


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

    def config(self) -> dict[str, Any]:
        return {**super().config(), "model": "TinyCNN"}

    @classmethod
    def _build(cls, config: dict[str, Any]) -> Sequential:
        return TinyCNN(num_classes=config["layers"][-1]["config"]["out_features"])


#: The model classes a configuration (and so a checkpoint) may name.
MODELS: dict[str, type[Sequential]] = {"Sequential": Sequential, "TinyCNN": TinyCNN}
