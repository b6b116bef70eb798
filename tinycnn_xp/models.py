"""Models: a stack of layers, its placement, its forward and backward passes, and its update.

``Sequential`` is the general form; ``TinyCNN`` is the chapter's network as one preset of it.
The model lives where its first input lives: the same code trains on NumPy, CuPy, torch, JAX, ...

A model runs through a ``Program`` (one per input size and placement): its layers' pure
``apply``/``vjp`` in a row on batch-last rows, neighbours fused where they match
(``layers.ConvReluMaxPool``). The training step ``fit`` applies (``Program.train_step``), the
chapter's ``loss_and_grad``/``backward``, ``check_gradients`` and inference all go through it.
Training (``fit``) is in ``training``, inference in chunks in ``evaluation``, the file format in
``checkpoint``; the methods here delegate to them.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from . import _checks, checkpoint, evaluation, training
from ._xp import Placement, as_data, as_labels, dtype_name, move, placed
from .history import History
from .layers import (
    Context,
    Conv2D,
    ConvReluMaxPool,
    Dense,
    Flatten,
    Layer,
    MaxPool2D,
    ParametrizedLayer,
    ReLU,
    buffer_shapes_from_config,
    from_rows,
    layer_from_config,
    parameter_shapes_from_config,
    to_rows,
)
from .losses import cross_entropy_columns, cross_entropy_gradient, one_hot_columns, softmax_columns
from .optim import Optimizer, sgd_update

__all__ = ["Sequential", "TinyCNN", "MODELS", "Program"]

Array = Any


class _Single:
    """One layer as a stage of a ``Program``: its own pure pair with its prepared constants."""

    def __init__(self, layer: Layer, shape: tuple[int, ...]) -> None:
        self.layer, self.prep = layer, layer.prepared(shape)

    def apply(self, params: tuple, x: Array, ctx: Context) -> tuple[Array, Any]:
        return self.layer.apply(params, x, self.prep, ctx)

    def next_buffers(self, buffers: tuple, saved: Any, ctx: Context) -> tuple:
        return self.layer.next_buffers(buffers, saved, ctx)

    def vjp(self, params: tuple, saved: Any, dy: Array, ctx: Context,
            input_grad: bool) -> tuple[Array | None, tuple]:
        return self.layer.vjp(params, saved, dy, self.prep, ctx, input_grad)


def _fusion(layers: Sequence[Layer], i: int, shape: tuple[int, ...], place: Placement) -> tuple[Any, int]:
    """``(ConvReluMaxPool stage, layers it covers)`` if ``layers[i:]`` starts with ``Conv2D
    [ReLU] MaxPool2D(stride == pool_size) [ReLU]`` (exact classes: a subclass may change the
    math), else ``(None, 0)``."""
    kinds = [type(layer) for layer in layers[i:i + 4]] + [None] * 4
    if kinds[0] is not Conv2D:
        return None, 0
    j = 2 if kinds[1] is ReLU else 1
    pool = layers[i + j] if kinds[j] is MaxPool2D else None
    if pool is None or cast(MaxPool2D, pool).stride != cast(MaxPool2D, pool).pool_size:
        return None, 0
    out = layers[i].output_shape((1, *shape))
    if min(out[2:]) < cast(MaxPool2D, pool).pool_size:
        return None, 0
    relu = layers[i + 1] if j == 2 else layers[i + j + 1] if kinds[j + 1] is ReLU else None
    covered = j + 1 + (kinds[j + 1] is ReLU)  # relu(max(relu(z))) is relu(max(z)): one ReLU
    stage = ConvReluMaxPool(cast(Conv2D, layers[i]), cast(MaxPool2D, pool),
                              cast(ReLU, relu) if relu is not None else None, shape, place)
    return stage, covered


class Program:
    """A model's pure functions for one input size and placement: its stages (single layers, or
    a fusion of neighbours) in a row, on batch-last rows.

    ``params`` is the flat tuple of every parameter in ``Sequential.parameters()`` order, in the
    chapter's shapes; ``buffers`` that of every buffer (``Sequential.buffers()``), ``masks`` one
    boolean ``(features, batch)`` mask per dropout layer (``mask_layers``); ``targets`` are
    one-hot ``(classes, batch)`` columns. Nothing here reads or writes a layer's arrays, so
    ``training`` compiles ``train_step`` with ``jax.jit`` on JAX.
    """

    def __init__(self, layers: Sequence[Layer], shape: tuple[int, ...], place: Placement) -> None:
        self.xp, self.shape = place.xp, tuple(shape)
        #: ``(stage, first layer, layers covered, parameter slice, buffer slice, mask index)``
        self.stages: list[tuple[Any, int, int, slice, slice, int | None]] = []
        #: ``(layer index, features per sample)`` of every layer that takes a mask, in order
        self.mask_layers: list[tuple[int, int]] = []
        i, start, first_buffer = 0, 0, 0
        while i < len(layers):
            stage, covered = _fusion(layers, i, shape, place)
            if stage is None:
                stage, covered = _Single(layers[i], shape), 1
            count = sum(len(layer.param_names) for layer in layers[i:i + covered])
            buffers = sum(len(layer.buffer_names) for layer in layers[i:i + covered])
            mask = None
            if covered == 1 and layers[i].uses_mask:
                mask = len(self.mask_layers)
                self.mask_layers.append((i, math.prod(shape)))
            self.stages.append((stage, i, covered, slice(start, start + count),
                                slice(first_buffer, first_buffer + buffers), mask))
            for layer in layers[i:i + covered]:
                shape = layer.output_shape((1, *shape))[1:]
            i, start, first_buffer = i + covered, start + count, first_buffer + buffers
        self.param_count = start
        #: only layers with their own pure pair may be compiled (not chapter-style subclasses)
        self.pure = all(layer.pure for layer in layers)
        self._contexts = {(train, evaluation): Context(self.xp, train, evaluation)
                          for train in (False, True) for evaluation in (False, True)}

    def forward(self, params: tuple, x: Array, train: bool = True, *, evaluation: bool = False,
                buffers: tuple = (), masks: tuple = ()) -> tuple[Array, list]:
        """``(logits (classes, batch), what each stage kept)`` for input rows ``x``: in
        training mode (batch statistics, the dropout ``masks``) unless ``evaluation``."""
        plain, saved = self._contexts[train, evaluation], []
        for stage, _, _, part, held, mask in self.stages:
            ctx = plain
            if held.stop > held.start or mask is not None:
                ctx = Context(self.xp, train, evaluation, buffers[held],
                              None if mask is None or evaluation else masks[mask])
            x, kept = stage.apply(params[part], x, ctx)
            saved.append(kept)
        return x, saved

    def next_buffers(self, saved: list, buffers: tuple) -> tuple:
        """The buffers after a training-mode ``forward`` that kept ``saved``."""
        if not buffers:
            return buffers
        new: list = []
        for (stage, _, _, _, held, _), kept in zip(self.stages, saved):
            if held.stop > held.start:
                new.extend(stage.next_buffers(buffers[held], kept, self._contexts[True, False]))
        return tuple(new)

    def logits(self, arrays: tuple, x: Array) -> Array:
        """Inference in evaluation mode: ``(classes, batch)`` logits of input rows ``x``,
        nothing kept; ``arrays`` is the parameters, then the buffers (if any)."""
        n = self.param_count
        return self.forward(arrays[:n], x, train=False, evaluation=True, buffers=arrays[n:])[0]

    def backward(self, params: tuple, saved: list, d_logits: Array,
                 input_grad: bool = False) -> tuple[tuple, Array | None]:
        """``(gradients of params, gradient of the input rows or None)`` from ``d_logits``."""
        ctx, grads = self._contexts[True, False], [None] * len(params)
        grad: Any = d_logits
        for k in range(len(self.stages) - 1, -1, -1):
            stage, _, _, part, _, _ = self.stages[k]
            kept, saved[k] = saved[k], None  # freed as soon as it is used
            grad, grads[part] = stage.vjp(params[part], kept, grad, ctx, input_grad or k > 0)
        return tuple(grads), grad

    def gradients(self, params: tuple, x: Array, targets: Array, input_grad: bool = False, *,
                  buffers: tuple = (), masks: tuple = ()) -> tuple[tuple, Array, Array | None]:
        """``(gradients, probabilities, input gradient or None)`` of the mean cross-entropy, in
        training mode (the buffers are read, not updated)."""
        grads, probabilities, d_input, _ = self.train_gradients(params, x, targets, input_grad,
                                                           buffers, masks)
        return grads, probabilities, d_input

    def train_gradients(self, params: tuple, x: Array, targets: Array, input_grad: bool,
                        buffers: tuple, masks: tuple) -> tuple[tuple, Array, Array | None, tuple]:
        """``gradients``, and the buffers after the pass (a training step's)."""
        logits, saved = self.forward(params, x, buffers=buffers, masks=masks)
        new_buffers = self.next_buffers(saved, buffers)
        probabilities = softmax_columns(logits, self.xp)
        grads, d_input = self.backward(params, saved, cross_entropy_gradient(probabilities, targets),
                                       input_grad)
        return grads, probabilities, d_input, new_buffers

    def train_step(self, update: Callable, params: tuple, state: tuple, buffers: tuple,
                   masks: tuple, x: Array, targets: Array,
                   hyper: tuple) -> tuple[tuple, tuple, tuple, tuple, Array]:
        """One step: the gradients, then ``update(params, grads, state, hyper, xp)`` (an
        optimizer's, ``optim``): ``(params, state, buffers, gradients, probabilities)``, all new
        arrays."""
        grads, probabilities, _, buffers = self.train_gradients(params, x, targets, False, buffers, masks)
        params, state = update(params, grads, state, hyper, self.xp)
        return params, state, buffers, grads, probabilities


class _PassInput:
    """A layer's input in a model's pass, recomputed when first asked for: layer by layer from
    the pass's input, with the parameters the pass used (``Layer.last_input``)."""

    __slots__ = ("run", "index")

    def __init__(self, run: _Pass, index: int) -> None:
        self.run, self.index = run, index

    def input(self) -> Array:
        return self.run.input_of(self.index)

    def context(self, xp: Any) -> Context:
        return self.run.context(self.index, True)


class _Pass:
    """A model's forward pass as the layers saw it: the input, each layer's parameters, buffers
    and mask, and the mode."""

    def __init__(self, layers: Sequence[Layer], x: Array, params: list[tuple], buffers: list[tuple],
                 masks: dict[int, Any], evaluation: bool, xp: Any) -> None:
        self.layers, self.params, self.buffers, self.masks = layers, params, buffers, masks
        self.evaluation, self.xp = evaluation, xp
        self.inputs: list[Any] = [x]  # chapter layout

    def context(self, index: int, train: bool) -> Context:
        return Context(self.xp, train, self.evaluation, self.buffers[index], self.masks.get(index))

    def input_of(self, index: int) -> Array:
        xp = self.xp
        while len(self.inputs) <= index:
            k = len(self.inputs) - 1
            layer, x = self.layers[k], self.inputs[k]
            y, _ = layer.apply(self.params[k], to_rows(x, xp), layer.prepared(tuple(x.shape[1:])),
                               self.context(k, False))
            self.inputs.append(from_rows(y, layer.output_shape(tuple(x.shape))[1:], xp))
        return self.inputs[index]


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
        self._programs: dict[tuple[int, ...], Program] = {}  # per input size, for this placement
        self._pass: Any = None  # (program, params, what it kept, batch) of the last forward
        #: the optimizer the model was last trained with (``fit``, ``optimizer.step``), or None
        self.optimizer: Optimizer | None = None
        #: the mode (``train()`` / ``eval()``): batch statistics and dropout in training mode
        self.training = True

    # -- structure -----------------------------------------------------------------------------
    @staticmethod
    def _trainable(layers: Sequence[Layer]) -> list[ParametrizedLayer]:
        return [layer for layer in layers if isinstance(layer, ParametrizedLayer)]

    def parameters(self) -> list[tuple[str, Layer, str]]:
        """``(qualified name, layer, attribute)`` for every trainable array, e.g. ``conv.weights``."""
        return [(f"{name}.{attr}", layer, attr) for name, layer in zip(self.names, self.layers)
                for attr in layer.param_names]

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
        last = [layer for layer in self.layers if isinstance(layer, (Dense, Conv2D))][-1]
        return last.out_features if isinstance(last, Dense) else last.out_channels

    def buffer_slots(self) -> list[tuple[str, Layer, str]]:
        """``(qualified name, layer, attribute)`` for every buffer, e.g. ``bn.running_mean``."""
        return [(f"{name}.{attr}", layer, attr) for name, layer in zip(self.names, self.layers)
                for attr in layer.buffer_names]

    def buffers(self) -> tuple[Array, ...]:
        """Every buffer (batch normalization's running statistics), in ``buffer_slots()`` order."""
        return tuple(getattr(layer, attr) for _, layer, attr in self.buffer_slots())

    def train(self, mode: bool = True) -> Sequential:
        """Training mode (``mode=False``: evaluation mode) for ``forward`` and ``loss_and_grad``:
        batch statistics and dropout on. ``fit`` trains in training mode and measures in
        evaluation mode whatever the mode; ``predict`` and ``evaluate`` always use evaluation
        mode. Returns the model."""
        if not isinstance(mode, bool):
            raise TypeError(f"mode must be True or False, got {mode!r}")
        self.training = mode
        for layer in self.layers:
            layer.training = mode
        return self

    def eval(self) -> Sequential:
        """Evaluation mode (running statistics, no dropout): ``train(False)``."""
        return self.train(False)

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
        self.placement, self._programs, self._pass = place, {}, None
        return self

    def program(self, shape: tuple[int, ...]) -> Program:
        """The model's ``Program`` for inputs of per-sample ``shape`` on its placement (built
        once per size). The model must be placed."""
        program = self._programs.get(tuple(shape))
        if program is None:
            program = self._programs[tuple(shape)] = Program(self.layers, shape, placed(self))
        return program

    def _slots(self) -> list[tuple[Layer, str, str]]:
        """``(layer, attribute, gradient attribute)`` per parameter, built once per layer list."""
        key = [id(layer) for layer in self.layers]
        cached = self.__dict__.get("_slot_cache")
        if cached is None or cached[0] != key:
            cached = self._slot_cache = (key, [(layer, attr, "d_" + attr) for _, layer, attr
                                               in self.parameters()])
        return cached[1]

    def params(self) -> tuple[Array, ...]:
        """Every parameter array, in ``parameters()`` order: what a ``Program`` takes."""
        return tuple([getattr(layer, attr) for layer, attr, _ in self._slots()])

    def velocities(self) -> tuple[Array, ...]:
        """Every parameter's momentum velocity, in ``params()`` order."""
        return tuple(layer.velocity[attr] for _, layer, attr in self.parameters())

    def bind(self, params: tuple, velocities: tuple | None = None, grads: tuple | None = None,
             buffers: tuple | None = None) -> None:
        """Bind new parameter arrays (and velocities, gradients and buffers, if given) to the
        layers, in ``parameters()`` (``buffer_slots()``) order: how a step's results become the
        model's state."""
        for k, (layer, attr, grad) in enumerate(self._slots()):
            setattr(layer, attr, params[k])
            if velocities is not None:
                layer.velocity[attr] = velocities[k]
            if grads is not None:
                setattr(layer, grad, grads[k])
        if buffers:
            for (_, layer, attr), value in zip(self.buffer_slots(), buffers):
                setattr(layer, attr, value)

    def bind_velocities(self, velocities: tuple) -> None:
        """Bind new momentum velocities, in ``parameters()`` order (SGD's state)."""
        for k, (layer, attr, _) in enumerate(self._slots()):
            layer.velocity[attr] = velocities[k]

    def remember(self, x: Array, params: tuple, buffers: tuple = (), masks: tuple = (),
                 evaluation: bool = False) -> None:
        """A pass of this model saw images ``x`` with ``params`` (and ``buffers``, the dropout
        ``masks``, in evaluation mode or not): each layer's ``last_input`` now describes it
        (recomputed when first read)."""
        by_layer, by_buffers, k, b = [], [], 0, 0
        for layer in self.layers:
            count, held = len(layer.param_names), len(layer.buffer_names)
            by_layer.append(params[k:k + count])
            by_buffers.append(buffers[b:b + held] if buffers else ())
            k, b = k + count, b + held
        masked = [i for i, layer in enumerate(self.layers) if layer.uses_mask]
        run = _Pass(self.layers, x, by_layer, by_buffers, dict(zip(masked, masks)), evaluation,
                    placed(self).xp)
        for i, layer in enumerate(self.layers):
            layer.remember(_PassInput(run, i))

    def draw_masks(self, program: Program, batch: int, fixed: bool = False) -> tuple:
        """One mask per dropout layer for a pass of ``batch`` images outside ``fit``, from each
        layer's own generator (``fixed``: from a copy, which leaves the generator as it was)."""
        place, masks = placed(self), []
        for index, features in program.mask_layers:
            layer = self.layers[index]
            if fixed:
                layer = copy.copy(layer)
                layer.rng = copy.deepcopy(self.layers[index].rng)  # type: ignore[attr-defined]
            masks.append(move(layer.draw_mask(features, batch), place))
        return tuple(masks)

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
        return {**self.__dict__, "placement": None, "_programs": {}, "_pass": None,
                "_slot_cache": None}

    def __copy__(self) -> Sequential:
        """``copy.copy``: shallow, like any object's: the copy shares the layers and placement."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    # -- forward, loss, backward, update -------------------------------------------------------
    def forward(self, x: Array, **deprecated: Any) -> Array:
        """Logits ``(batch, classes)`` for images ``x`` ``(batch, channels, height, width)``.

        The first input places the model on its library, device and dtype. What the pass keeps
        serves ``backward``; each layer's ``last_input`` describes it.
        """
        _checks.deprecated("forward", deprecated)
        x = as_data(x)
        place, _ = _checks.images(self, x, "x")
        self._place_for(place)
        program, params, buffers = self.program(tuple(x.shape[1:])), self.params(), self.buffers()
        evaluation = not self.training
        masks = () if evaluation else self.draw_masks(program, x.shape[0])
        logits, saved = program.forward(params, to_rows(x, place.xp), evaluation=evaluation,
                                        buffers=buffers, masks=masks)
        if not evaluation:
            self.bind(params, buffers=program.next_buffers(saved, buffers))
        self._pass = (program, params, saved, x.shape[0])
        self.remember(x, params, buffers, masks, evaluation)
        return logits.mT

    def backward(self, d_logits: Array, *, input_grad: bool = True, **deprecated: Any) -> Array | None:
        """Backward pass from ``d_logits`` ``(batch, classes)`` through every layer, in reverse.

        Binds every layer's parameter gradients (``d_weights``, ``d_bias``) for ``step`` and
        returns the gradient with respect to the last ``forward``'s input (``None`` when
        ``input_grad=False``, which skips that last product).
        """
        _checks.deprecated("backward", deprecated)
        d_logits = as_data(d_logits)
        if self._pass is None:
            raise RuntimeError("Sequential.backward called before forward")
        program, params, saved, batch = self._pass
        _checks.gradient(d_logits, (batch, self.num_classes), self.placement, type(self).__name__)
        xp = placed(self).xp
        grads, d_input = program.backward(params, list(saved), d_logits.mT, input_grad)
        self.bind(self.params(), grads=grads)
        return None if d_input is None else from_rows(d_input, program.shape, xp)

    def loss_and_grad(self, x: Array, y: Array, **deprecated: Any) -> tuple[Array, Array]:
        """Forward pass, loss, and the full backward pass; returns ``(loss, probabilities)``.

        Every layer's parameter gradients (``d_weights``, ``d_bias``) are bound for ``step`` (or
        ``optimizer.step(model)``). The same pure functions as ``fit``'s training step
        (``Program.gradients``), in training mode (batch statistics, which move the running
        ones as a training step does; dropout masks from each layer's own generator); only free
        checks run (shapes, dtypes, devices), so a hand-written loop is as fast as ``fit``'s.
        """
        _checks.deprecated("loss_and_grad", deprecated)
        x, y = as_data(x), as_labels(y)
        place = _checks.data(self, x, y)
        self._place_for(place)
        xp, params, buffers = place.xp, self.params(), self.buffers()
        program = self.program(tuple(x.shape[1:]))
        masks = self.draw_masks(program, x.shape[0])
        targets = one_hot_columns(y, self.num_classes, x.dtype, xp)
        grads, probabilities, _, new_buffers = training.gradients_of(self, tuple(x.shape[1:]))(
            params, to_rows(x, xp), targets, buffers, masks)
        self.bind(params, grads=grads, buffers=new_buffers)
        self.remember(x, params, buffers, masks)
        return xp.mean(cross_entropy_columns(probabilities, targets, xp)), probabilities.mT

    def step(self, lr: float, momentum: float = 0.0, **deprecated: Any) -> None:
        """Update every trainable parameter: ``v <- momentum*v + grad``, ``param <- param - lr * v``
        (``optim.sgd_update``, the update ``fit`` applies)."""
        _checks.deprecated("step", deprecated)
        lr, momentum = _checks.learning_rate(lr), _checks.momentum(momentum)
        params, velocities = sgd_update(
            self.params(), tuple(getattr(layer, "d_" + attr) for _, layer, attr in self.parameters()),
            self.velocities(), lr, momentum or None)
        self.bind(params, velocities)

    def predict(self, x: Array, *, eval_batch_size: int | None = None) -> Array:
        """Predicted class indices ``(batch,)``, on the input's device.

        Runs in chunks of ``eval_batch_size`` images (default: ``evaluation.DEFAULT_EVAL_VALUES``
        input values' worth) without backward caches, so memory is that of one chunk, however
        many images.
        """
        x = as_data(x)
        place = _checks.dataset(self, x, None)
        chunk = evaluation.eval_batch_size(eval_batch_size, tuple(x.shape[1:]))
        self._place_for(place)
        return evaluation.predict(training.logits_of(self, tuple(x.shape[1:])), x, chunk, place.xp)

    def predict_proba(self, x: Array, *, eval_batch_size: int | None = None) -> Array:
        """Class probabilities ``(batch, classes)`` (the softmax of the logits), on the input's
        device, in chunks like ``predict``."""
        x = as_data(x)
        place = _checks.dataset(self, x, None)
        chunk = evaluation.eval_batch_size(eval_batch_size, tuple(x.shape[1:]))
        self._place_for(place)
        return evaluation.probabilities(training.logits_of(self, tuple(x.shape[1:])), x, chunk,
                                        place.xp)

    def evaluate(self, x: Array, y: Array, *, eval_batch_size: int | None = None) -> float:
        """Accuracy (fraction of correct predictions) on ``x``, ``y``, in chunks like ``predict``."""
        x, y = as_data(x), as_labels(y)
        place = _checks.dataset(self, x, y)
        chunk = evaluation.eval_batch_size(eval_batch_size, tuple(x.shape[1:]))
        self._place_for(place)
        correct = evaluation.correct_count(training.logits_of(self, tuple(x.shape[1:])), x, y,
                                           chunk, place.xp)
        return float(correct) / x.shape[0]

    # -- training ------------------------------------------------------------------------------
    def fit(self, x_train: Array, y_train: Array, x_val: Array, y_val: Array,
            epochs: int = 80, lr: float = training.DEFAULT_LR, batch_size: int = 18,
            seed: int | np.random.Generator | None = 0, *,
            momentum: float = training.DEFAULT_MOMENTUM, verbose: bool = True,
            initial_epoch: int = 0, callback: training.Callback | None = None,
            eval_batch_size: int | None = None, history: History | None = None,
            optimizer: Optimizer | None = None, drop_last: bool = False) -> History:
        """Mini-batch training over shuffled training data; returns the per-epoch history.

        Parameters
        ----------
        x_train, x_val : array, ``(n, channels, height, width)``
            Images, float32 or float64 (training runs in their dtype), on one library and device.
        y_train, y_val : array, ``(n,)``
            Integer labels in ``[0, classes)``, on the same device.
        epochs, lr, batch_size, seed
            The chapter's: shuffles draw from ``numpy.random.default_rng(seed)`` on the host, so
            every backend sees the same batches. ``seed`` may also be a
            ``numpy.random.Generator``: its stream continues (one permutation per epoch).
        momentum : float
            Exercise 24.1's ``v <- momentum * v + grad``; 0 is plain SGD.
        optimizer : Optimizer, optional
            ``tinycnn_xp.optim.SGD``, ``RMSprop``, ``Adam`` or ``AdamW`` (with its schedule), in
            place of ``lr`` and ``momentum`` (passing both is a ``ValueError``). Without any of
            the three, a model that has an optimizer (``model.optimizer``: from an earlier
            ``fit`` or a checkpoint) continues with it, state and all; else the chapter's
            ``SGD(lr=0.12)``. The model keeps the optimizer it trained with.
        drop_last : bool
            Leave out each epoch's last batch when it is smaller than ``batch_size`` (a batch
            normalization layer cannot train on one value per channel).
        callback : callable, optional
            ``callback(epoch, metrics)`` after every epoch; a truthy return value (``True``,
            ``np.True_``, 1, ...) stops training after that epoch (``history['stopped_epoch']``).
        initial_epoch : int
            Resume a run: train epochs ``initial_epoch .. epochs - 1`` with the shuffles those
            epochs would have had, so a run split in two gives the history of the run in one.
            With an integer ``seed`` the shuffles of the epochs trained are drawn again first (at
            most ``training.MAX_REPLAY``); pass the first run's Generator to skip that.
        eval_batch_size : int, optional
            Images per chunk of the per-epoch metrics (see ``predict``).
        history : History, optional
            The history of the ``initial_epoch`` epochs already trained, continued in place and
            returned: each epoch is in it before ``callback`` runs, so a callback can save a
            checkpoint of the whole run so far.

        Returns
        -------
        History
            ``train_loss`` (mean of the epoch's batch losses, in training mode: dropout on, as
            in every framework), ``val_loss``, ``train_acc``, ``val_acc`` (in evaluation mode,
            after the epoch's last step), ``lr`` (each epoch's rate), all floats, one per epoch,
            and ``kernel_snapshots`` (host copies of the first convolution's weights at the
            start of epochs 0, 1, 5, 15, 40 and the last).

        Notes
        -----
        Each step is ``Program.train_step``: the layers' own pure functions in a row, then the
        optimizer's update (compiled with ``jax.jit`` on JAX), with the new arrays bound to the
        layers after every step. After ``fit``, ``d_weights``/``d_bias`` are the last step's
        gradients and each layer's ``last_input`` (and ``last_mask``) describes the last step's
        batch. Everything stays on the device until an epoch ends; then the four metrics come to
        the host in one transfer. Images are checked for NaN and infinity, and labels for their
        range, once, here. If a loss or a parameter turns NaN or infinite, training stops at the
        end of that epoch with a ``TrainingDiverged`` warning and the parameters and velocities of
        the last finite epoch are restored (``history['diverged_epoch']``).

        Ctrl-C stops after the current step (a second Ctrl-C raises ``KeyboardInterrupt``),
        puts the parameters and velocities back to the end of the last whole epoch, and returns
        the history of the whole epochs, with ``history['interrupted']``: resuming with
        ``initial_epoch=len(history['train_loss'])`` is exact.
        """
        return training.fit(self, x_train, y_train, x_val, y_val, epochs, lr, batch_size, seed,
                            momentum=momentum, verbose=verbose, initial_epoch=initial_epoch,
                            callback=callback, eval_batch_size=eval_batch_size, history=history,
                            optimizer=optimizer, drop_last=drop_last)

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
    def buffer_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        """``{qualified name: shape}`` of every buffer of the model ``config`` describes, like
        ``parameter_shapes`` (call that first: it checks ``config``)."""
        try:
            return {f"{name}.{attr}": shape for name, entry in zip(config["names"], config["layers"])
                    for attr, shape in buffer_shapes_from_config(entry).items()}
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"the architecture cannot be rebuilt: {type(exc).__name__}: {exc}") from None

    @classmethod
    def _build(cls, config: dict[str, Any]) -> Sequential:
        input_shape = config["input_shape"]
        return Sequential([layer_from_config(entry) for entry in config["layers"]],
                          names=config["names"],
                          input_shape=tuple(input_shape) if input_shape is not None else None)

    def state(self) -> dict[str, dict[str, Array]]:
        """The trained state: ``{"param": {name: array}, "velocity": {name: array}, "buffer":
        {name: array}}`` by qualified name (``conv.weights``, ``bn.running_mean``, ...), the
        arrays themselves (not copies), where they live."""
        return {"param": {name: getattr(layer, attr) for name, layer, attr in self.parameters()},
                "velocity": {name: layer.velocity[attr] for name, layer, attr in self.parameters()},
                "buffer": {name: getattr(layer, attr) for name, layer, attr in self.buffer_slots()}}

    def load_state(self, state: dict[str, dict[str, Array]]) -> Sequential:
        """Take every parameter, velocity and buffer from ``state`` (as ``state()`` gives it;
        host NumPy arrays or arrays of any library), placed where the model is. ``ValueError``
        before anything changes if an array is missing, unexpected, of the wrong shape, or not
        finite."""
        slots = {"param": self.parameters(), "velocity": self.parameters(),
                 "buffer": self.buffer_slots()}
        expected = {f"{group}/{name}": tuple(getattr(layer, attr).shape)
                    for group, entries in slots.items() for name, layer, attr in entries}
        _checks.state_arrays({f"{group}/{name}": array for group in slots
                              for name, array in state.get(group, {}).items()}, expected)
        place = self.placement
        for group, entries in slots.items():
            for name, layer, attr in entries:
                array = as_data(state[group][name])
                if place is not None:
                    array = move(array, place, place.dtype)
                if group == "velocity":
                    layer.velocity[attr] = array
                else:
                    setattr(layer, attr, array)
        return self

    def save(self, path: str | os.PathLike, history: History | None = None, *,
             meta: dict | None = None) -> Path:
        """Architecture, weights, buffers, the optimizer (settings, schedule, step count and
        state), dtype and ``history`` in one ``.npz`` (atomic write; see
        ``tinycnn_xp.checkpoint``). Returns the path written."""
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
        saved = checkpoint.read(path, cls.parameter_shapes, max_parameters=max_parameters,
                                buffer_shapes=cls.buffer_shapes)
        name = saved.dtype if dtype is None else dtype if isinstance(dtype, str) else dtype_name(dtype)
        # Cast on the host, so that placing the model later is one transfer per array.
        state = {group: {key: array.astype(name, copy=False) for key, array in arrays.items()}
                 for group, arrays in saved.state.items()}
        try:
            model = cls.from_config(saved.config).load_state(state)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if saved.optimizer is not None:
            model.optimizer = checkpoint.optimizer_of(saved, name)
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
