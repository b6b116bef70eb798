"""Layers: each one's forward and backward math, written once, side by side.

Every layer has two faces over one piece of math:

- ``apply(params, x, prep, ctx) -> (y, saved)`` and ``vjp(params, saved, dy, prep, ctx,
  input_grad) -> (dx, grads)``: pure functions of arrays on **batch-last rows**, the layout every
  model runs in. An image batch ``(batch, channels, height, width)`` travels as
  ``(channels * height * width, batch)``, a feature batch ``(batch, features)`` as ``(features,
  batch)``: a convolution is then one matrix product over the whole batch, and ``Flatten`` costs
  nothing. ``prep`` holds what depends only on the input size (index maps, built once on the
  device); ``ctx`` the namespace and the mode. Parameters come in and gradients go out in the
  chapter's shapes. Nothing here reads or writes the layer's arrays: a model's training step is
  these functions in a row (``models``), and JAX compiles it.
- ``forward(x)`` / ``backward(d_output)`` / ``step(lr)``: the chapter's stateful API, in the
  chapter's layout, thin wrappers around the pure pair: they keep ``last_input`` (and
  ``MaxPool2D.last_mask``) and bind ``d_weights``, ``d_bias`` and the updated parameters to the
  layer (``self.weights = ...``, never an in-place change, so immutable arrays work too).

A fusion of neighbouring layers (``ConvReluMaxPool``, at the end) joins the layers' own pieces
in another order; it is chosen by ``Sequential`` when the layers match and tested against them.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, NamedTuple

import numpy as np

from . import _checks
from ._windows import output_size, transpose_index, window_index
from ._xp import Placement, as_data, dtype_name, move, placed, row_dots, to_numpy
from .optim import sgd_update

__all__ = ["Layer", "ParametrizedLayer", "Conv2D", "ReLU", "MaxPool2D", "AvgPool2D", "Flatten",
           "Dense", "BatchNorm2D", "BatchNorm1D", "Dropout", "LAYERS", "Context", "to_rows",
           "from_rows", "ConvReluMaxPool", "layer_from_config", "parameter_shapes_from_config",
           "buffer_shapes_from_config"]

Array = Any  # any array-API array


class Context(NamedTuple):
    """What a pure ``apply``/``vjp`` needs besides parameters and inputs.

    ``xp``: the namespace. ``train``: whether ``vjp`` will follow (``False``: nothing need be
    kept). ``evaluation``: the model's mode (``True``: batch normalization uses its running
    statistics and dropout is the identity). ``buffers``: this layer's buffers (``buffer_names``
    order); ``mask``: this layer's boolean mask for the batch (``uses_mask``), batch-last rows.
    """

    xp: Any
    train: bool = True
    evaluation: bool = False
    buffers: tuple = ()
    mask: Any = None


def to_rows(x: Array, xp: Any) -> Array:
    """``(batch, *features)`` -> ``(prod(features), batch)``: batch-last rows (a view)."""
    return xp.reshape(x, (x.shape[0], -1)).mT


def from_rows(rows: Array, shape: tuple[int, ...], xp: Any) -> Array:
    """Batch-last rows -> ``(batch, *shape)``, the chapter's layout."""
    return xp.reshape(rows.mT, (rows.shape[1], *shape))


class Layer:
    """Base class: placement on the first input's library/device/dtype, the chapter's wrappers.

    A subclass implements ``apply``/``vjp`` (and ``prepare`` if it needs constants per input
    size, ``output_shape`` if it changes the shape). A subclass written in the chapter's style
    instead, overriding ``forward(x)``/``backward(d_output)`` in the chapter's layout and storing
    ``d_<name>`` for each of ``param_names``, trains too: the default ``apply``/``vjp`` call it.
    """

    #: names of trainable parameter attributes; each has a gradient ``d_<name>``.
    param_names: tuple[str, ...] = ()
    #: constructor arguments that rebuild this layer (``type(layer)(**layer.config())``).
    config_names: tuple[str, ...] = ()
    #: names of state arrays that are not trained (batch normalization's running statistics):
    #: a training step returns them anew (``next_buffers``) and checkpoints carry them.
    buffer_names: tuple[str, ...] = ()
    #: whether ``apply`` reads a random boolean mask in training mode (``Context.mask``, dropout)
    uses_mask: bool = False
    #: the mode of the chapter-style ``forward``: set by ``Sequential.train()`` / ``eval()``
    training: bool = True
    #: a layer with parameters keeps a momentum velocity per name (Exercise 24.1)
    velocity: dict[str, Array]

    def __init__(self) -> None:
        self.placement: Placement | None = None
        self._seen: Any = None     # the last forward's input: ``.input()`` gives it
        self._saved: Any = None    # (what ``apply`` kept, input shape) of this layer's own forward
        self._prepared: dict = {}  # input shape -> ``prepare``'s constants, on the device

    def config(self) -> dict[str, int]:
        """The constructor arguments of this layer, e.g. for a checkpoint."""
        return {name: getattr(self, name) for name in self.config_names}

    def params(self) -> tuple[Array, ...]:
        """The current parameter arrays, in ``param_names`` order."""
        return tuple(getattr(self, name) for name in self.param_names)

    def buffers(self) -> tuple[Array, ...]:
        """The current buffers, in ``buffer_names`` order."""
        return tuple(getattr(self, name) for name in self.buffer_names)

    def next_buffers(self, buffers: tuple, saved: Any, ctx: Context) -> tuple:
        """The buffers after a training-mode ``apply`` that kept ``saved`` (default: unchanged)."""
        return buffers

    def draw_mask(self, features: int, batch: int) -> Any:
        """A host boolean mask ``(features, batch)`` for a ``forward`` outside ``fit``."""
        raise NotImplementedError

    # -- shape contract ------------------------------------------------------------------------
    def output_shape(self, shape: tuple[int, ...], name: str = "x") -> tuple[int, ...]:
        """Output shape for an input of ``shape``; ``ValueError`` naming ``name`` if it does not fit."""
        _checks.non_empty_batch(shape, name, type(self).__name__)
        return tuple(shape)

    # -- the math --------------------------------------------------------------------------------
    def prepare(self, shape: tuple[int, ...], place: Placement) -> Any:
        """Constants of ``apply``/``vjp`` for inputs of per-sample ``shape`` (default: the shape)."""
        return shape

    def prepared(self, shape: tuple[int, ...]) -> Any:
        """``prepare(shape, placement)``, built once per input size."""
        prep = self._prepared.get(shape)
        if prep is None:
            prep = self._prepared[shape] = self.prepare(shape, placed(self))
        return prep

    def apply(self, params: tuple, x: Array, prep: Any, ctx: Context) -> tuple[Array, Any]:
        """``(y, saved)``: the output rows for input rows ``x``, and what ``vjp`` needs."""
        if type(self).forward is Layer.forward:
            raise NotImplementedError(f"{type(self).__name__} implements neither apply nor forward")
        # A chapter-style layer: its own forward, in the chapter's layout (not pure: it keeps
        # its own caches, so it trains eagerly, never inside a compiled step).
        y = self.forward(from_rows(x, prep, ctx.xp))
        return to_rows(y, ctx.xp), tuple(y.shape[1:])

    def vjp(self, params: tuple, saved: Any, dy: Array, prep: Any, ctx: Context,
            input_grad: bool = True) -> tuple[Array | None, tuple]:
        """``(dx, grads)``: the input rows' gradient (``None`` if not ``input_grad``) and the
        parameters' gradients (chapter shapes), from the output rows' gradient ``dy``."""
        if type(self).backward is Layer.backward:
            raise NotImplementedError(f"{type(self).__name__} implements neither vjp nor backward")
        dx = self.backward(from_rows(dy, saved, ctx.xp))
        grads = tuple(getattr(self, "d_" + name) for name in self.param_names)
        return (to_rows(dx, ctx.xp) if input_grad else None), grads

    @property
    def pure(self) -> bool:
        """Whether ``apply``/``vjp`` are this class's own pure functions (not the chapter-style
        adapter): only then may a training step be compiled."""
        return type(self).apply is not Layer.apply

    # -- the chapter's API ---------------------------------------------------------------------
    def forward(self, x: Array, **deprecated: Any) -> Array:
        """This layer's output for ``x`` (chapter layout); the first input places the layer."""
        _checks.deprecated("forward", deprecated)
        x = as_data(x)
        place, out_shape = _checks.images(self, x, "x")
        if self.placement is None:
            self.to(place.xp, place.device, place.dtype)
        xp, shape = placed(self).xp, tuple(x.shape[1:])
        ctx = self._context(xp, x.shape[0], math.prod(shape))
        y, saved = self.apply(self.params(), to_rows(x, xp), self.prepared(shape), ctx)
        self._seen, self._saved = _Seen(x), (saved, tuple(x.shape), ctx)
        if self.buffer_names and not ctx.evaluation:
            self.bind_buffers(self.next_buffers(ctx.buffers, saved, ctx))
        return from_rows(y, out_shape[1:], xp)

    def _context(self, xp: Any, batch: int, features: int) -> Context:
        """The context of this layer's own ``forward``: its mode, buffers and (dropout, in
        training mode) a mask drawn from its own generator."""
        mask = None
        if self.uses_mask and self.training:
            mask = move(self.draw_mask(features, batch), placed(self))
        return Context(xp, True, not self.training, self.buffers(), mask)

    def bind_buffers(self, buffers: tuple) -> None:
        for name, value in zip(self.buffer_names, buffers):
            setattr(self, name, value)

    def backward(self, d_output: Array, *, input_grad: bool = True, **deprecated: Any) -> Array | None:
        """Gradient with respect to this layer's last input; binds ``d_<name>`` for its parameters.

        ``input_grad=False`` skips the input gradient and returns ``None`` (the first layer's is
        never used in training).
        """
        _checks.deprecated("backward", deprecated)
        d_output = as_data(d_output)
        saved, shape, ctx = self._last_saved()
        _checks.gradient(d_output, self.output_shape(shape), self.placement, type(self).__name__)
        xp = placed(self).xp
        dx, grads = self.vjp(self.params(), saved, to_rows(d_output, xp), self.prepared(shape[1:]),
                             ctx, input_grad)
        self.bind_gradients(grads)
        return None if dx is None else from_rows(dx, shape[1:], xp)

    def _last_saved(self) -> tuple[Any, tuple[int, ...], Context]:
        """``(what apply kept, input shape, context)`` of the last forward: this layer's own, or
        recomputed from its input in the last model pass (a model keeps only what its own
        backward needs), in that pass's mode and with its mask."""
        if self._saved is None:
            x = self.last_input
            if self.placement is None or x is None:
                raise RuntimeError(f"{type(self).__name__}.backward called before forward")
            xp = placed(self).xp
            ctx = self._seen.context(xp)
            _, saved = self.apply(self.params(), to_rows(x, xp), self.prepared(tuple(x.shape[1:])),
                                  ctx)
            self._saved = (saved, tuple(x.shape), ctx)
        return self._saved

    def bind_gradients(self, grads: tuple) -> None:
        for name, grad in zip(self.param_names, grads):
            setattr(self, "d_" + name, grad)

    @property
    def last_input(self) -> Array | None:
        """The input of the last forward pass (chapter layout), or ``None`` before one.

        After a model's pass (``forward``, ``loss_and_grad``, the last step of ``fit``) it is this
        layer's input in that pass, recomputed from the pass's input and parameters when first
        read (a model keeps only what its backward needs)."""
        return None if self._seen is None else self._seen.input()

    @last_input.setter
    def last_input(self, value: Array | None) -> None:
        self._seen, self._saved = (None if value is None else _Seen(value)), None

    def remember(self, seen: Any) -> None:
        """A model's pass went through this layer: ``seen.input()`` will give its input."""
        self._seen, self._saved = seen, None

    # -- placement -----------------------------------------------------------------------------
    def to(self, xp: Any, device: Any = None, dtype: Any = None) -> Layer:
        """Move this layer's arrays to namespace ``xp`` on ``device`` in floating ``dtype``
        (defaults: ``xp``'s default device, the current dtype); one transfer per array."""
        default = dtype_name(self.placement.dtype) if self.placement is not None else "float64"
        self._move_to(_checks.target(xp, device, dtype, default))
        return self

    def _move_to(self, place: Placement) -> None:
        self.placement = place
        self._prepared, self._seen, self._saved = {}, None, None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- copies and pickles --------------------------------------------------------------------
    def __reduce__(self) -> tuple:
        """Pickling and ``copy.deepcopy``: the layer travels as its configuration and host NumPy
        copies of its arrays (parameters, gradients, velocities), unplaced and without per-call
        caches, so the copy is placed again by its first input, like a loaded model. It is rebuilt
        as ``type(layer)(**layer.config())``, the checkpoints' contract."""
        return (_rebuild_layer, (type(self), self.config(), self._host_arrays()))

    def _host_arrays(self) -> dict[str, Any]:
        """What a copy keeps besides the configuration (host NumPy copies), by attribute."""
        return {"training": self.training}

    def __copy__(self) -> Layer:
        """``copy.copy``: shallow, like any object's: the copy shares arrays and placement."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new


class _Seen:
    """The input of a layer's own ``forward`` call."""

    __slots__ = ("x",)

    def __init__(self, x: Array) -> None:
        self.x = x

    def input(self) -> Array:
        return self.x

    def context(self, xp: Any) -> Context:
        """The context of a forward of this input: the default, training mode."""
        return Context(xp)


def _rebuild_layer(cls: type[Layer], config: dict[str, Any], arrays: dict[str, Any]) -> Layer:
    """The unpickled (or deep-copied) layer: built from ``config``, then given ``arrays``."""
    layer = cls(**config)
    for name, value in arrays.items():
        setattr(layer, name, value)
    return layer


class ParametrizedLayer(Layer):
    """A layer with trainable parameters, their gradients, a momentum velocity each, and ``step``."""

    param_names = ("weights", "bias")

    def _init_parameters(self, seed: int | None, fan_in: int, weight_shape: tuple[int, ...],
                         bias_size: int) -> None:
        # He initialisation drawn on the host, exactly as the chapter does, then placed on the
        # first input's device; the same seed gives the same network on every backend.
        rng = np.random.default_rng(_checks.seed(seed))
        self.weights = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=weight_shape)
        self.bias = np.zeros(bias_size)
        self.d_weights = np.zeros_like(self.weights)
        self.d_bias = np.zeros_like(self.bias)
        self.velocity = {name: np.zeros_like(getattr(self, name)) for name in self.param_names}
        if self.placement is not None:
            self._move_to(self.placement)

    def reset_parameters(self, seed: int | None) -> None:
        """Draw fresh initial weights from ``numpy.random.default_rng(seed)``; zero bias and velocity."""
        raise NotImplementedError

    @classmethod
    def parameter_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        """``{"weights": shape, "bias": shape}`` of ``cls(**config)``, from the arguments alone.

        Nothing is allocated (a checkpoint declaring ``Dense(27, 10**12)`` is measured, not
        built); ``TypeError``/``ValueError`` for arguments the constructor would refuse.
        """
        arguments = inspect.signature(cls).bind(**config).arguments  # unknown or missing: TypeError
        return cls._shapes(arguments)

    @classmethod
    def _shapes(cls, arguments: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _move_to(self, place: Placement) -> None:
        for name in self.param_names:
            setattr(self, name, move(getattr(self, name), place, place.dtype))
            setattr(self, "d_" + name, move(getattr(self, "d_" + name), place, place.dtype))
            self.velocity[name] = move(self.velocity[name], place, place.dtype)
        for name in self.buffer_names:
            setattr(self, name, move(getattr(self, name), place, place.dtype))
        super()._move_to(place)

    @classmethod
    def buffer_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        """``{buffer name: shape}`` of ``cls(**config)``, from the arguments alone (``{}``: none)."""
        return {}

    def step(self, lr: float, momentum: float = 0.0, **deprecated: Any) -> None:
        """Gradient descent: ``v <- momentum * v + grad``, ``param <- param - lr * v``.

        With ``momentum=0`` this is exactly the chapter's plain update ``param -= lr * grad``.
        The new arrays are bound to the layer (``self.weights = ...``).
        """
        _checks.deprecated("step", deprecated)
        lr, momentum = _checks.learning_rate(lr), _checks.momentum(momentum)
        names = self.param_names
        params, velocities = sgd_update(self.params(), tuple(getattr(self, "d_" + n) for n in names),
                                        tuple(self.velocity[n] for n in names), lr, momentum or None)
        for name, param, velocity in zip(names, params, velocities):
            setattr(self, name, param)
            self.velocity[name] = velocity

    def _host_arrays(self) -> dict[str, Any]:
        arrays: dict[str, Any] = super()._host_arrays()
        for name in (*self.param_names, *self.buffer_names):
            arrays[name] = to_numpy(getattr(self, name))
        for name in self.param_names:
            arrays["d_" + name] = to_numpy(getattr(self, "d_" + name))
        arrays["velocity"] = {name: to_numpy(self.velocity[name]) for name in self.param_names}
        return arrays

    @property
    def parameter_count(self) -> int:
        return int(sum(math.prod(getattr(self, name).shape) for name in self.param_names))


# -- windows: what convolution and pooling share ------------------------------------------------
class _Windows(NamedTuple):
    """Index maps of a windowed layer for one input size, on the layer's device.

    ``gather`` picks, from the input rows with a zero row (for padding) and, for a convolution, a
    row of ones (for its bias) appended, the rows of every window element at every
    output position. ``scatter`` is its transpose: ``fan`` groups of ``in_rows`` indices into the
    gathered rows' gradient whose sum is each input row's gradient; a row read fewer than ``fan``
    times reads ``zero``, a gradient row that is zero (a convolution's bias tap, whose gradient
    the backward product leaves zero) or, if ``zero`` is the row count, a zero row to append.
    """

    gather: Array
    pads: bool               # a zero row is appended to the input (windows read padding) ...
    ones: bool               # ... then a row of ones (a convolution's bias tap)
    scatter: Array
    fan: int
    zero: int | None         # the gradient row read for padding (None: no padding)
    in_rows: int
    out_hw: tuple[int, int]  # output height and width
    positions: int           # output positions computed (all, or those a fused pool reads)


def _windows(shape: tuple[int, ...], window: int, stride: int, padding: int, place: Placement,
             positions: np.ndarray | None = None, bias: bool = False, blocks: int = 1,
             element_major: bool = False) -> _Windows:
    """The maps of ``window`` x ``window`` windows every ``stride`` pixels of ``(channels, height,
    width)`` inputs padded by ``padding``, gathered as rows ``(block, tap, position in block)``:
    a tap is ``(channel, window element)``, or ``(window element, channel)`` if
    ``element_major`` (a pool's); ``bias`` adds one more tap per block reading the row of ones.
    ``positions`` picks and orders the output positions (default: all, row by row), in
    ``blocks`` equal consecutive blocks (a fused pool's window elements)."""
    channels, height, width = shape
    pixels, in_rows = height * width, channels * height * width
    index = window_index(height, width, window, stride, padding)  # (window element, position)
    out_hw = (output_size(height, window, stride, padding), output_size(width, window, stride, padding))
    if positions is not None:
        index = index[:, positions]
    sources = np.where(index[None] == pixels, in_rows,  # the zero row, appended after the input
                       np.arange(channels)[:, None, None] * pixels + index[None])
    if element_major:
        sources = np.transpose(sources, (1, 0, 2))
    taps, npos = sources.shape[0] * sources.shape[1], sources.shape[2]
    rows = np.transpose(sources.reshape(taps, blocks, npos // blocks), (1, 0, 2))
    pads = bool(np.any(sources == in_rows))
    if bias:  # the tap reading the row of ones, after the zero row if there is one
        rows = np.concatenate([rows, np.full((blocks, 1, npos // blocks), in_rows + pads)], axis=1)
    flat = rows.reshape(-1)
    reads = np.flatnonzero(flat < in_rows)  # gathered rows that carry a gradient back
    back = transpose_index(flat[reads], in_rows)  # (in_rows, fan), padded with reads.size
    padded = back == reads.size
    zero = (taps * (npos // blocks) if bias else flat.size) if padded.any() else None  # a bias tap
    back = np.where(padded, zero if zero is not None else 0, reads[np.where(padded, 0, back)]
                    if reads.size else 0)
    return _Windows(move(flat, place), pads, bias, move(back.T.reshape(-1), place), back.shape[1],
                    zero, in_rows, out_hw, npos)


def _gather(x: Array, maps: _Windows, xp: Any) -> Array:
    """The window rows of ``x`` (batch-last rows): ``take`` by ``maps.gather``."""
    if maps.pads or maps.ones:
        first = x[:1, ...]  # *_like: on x's device, in its dtype
        x = xp.concat([x, *[xp.zeros_like(first)] * maps.pads, *[xp.ones_like(first)] * maps.ones],
                      axis=0)
    return xp.take(x, maps.gather, axis=0)


def _scatter(rows: Array, maps: _Windows, xp: Any) -> Array:
    """The transpose of ``_gather``: sum each gathered row's gradient onto the row it read."""
    if maps.zero is not None and maps.zero == rows.shape[0]:  # no zero row among them: append one
        rows = xp.concat([rows, xp.zeros_like(rows[:1, ...])], axis=0)
    gathered = xp.take(rows, maps.scatter, axis=0)
    if maps.fan == 1:
        return gathered
    return xp.sum(xp.reshape(gathered, (maps.fan, maps.in_rows, rows.shape[1])), axis=0)


class Conv2D(ParametrizedLayer):
    """2-D cross-correlation: ``weights`` ``(out_channels, in_channels, k, k)``, ``bias`` ``(out_channels,)``.

    Forward gathers every k x k patch of the batch at once ("im2col": rows ``(tap, position)``
    of batch columns) and applies all filters with one matrix product; the bias rides in it, as
    one more tap reading a row of ones. Backward reuses the patches: ``d_weights`` is the
    correlation of the input with the upstream gradient; the input gradient multiplies by the
    transposed filters and scatters each patch back, which is the chapter's full convolution with
    the 180-degree rotated kernel.
    """

    config_names = ("in_channels", "out_channels", "kernel_size", "stride", "padding")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, seed: int | None = 42,
                 stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.in_channels = _checks.positive_int(in_channels, "in_channels")
        self.out_channels = _checks.positive_int(out_channels, "out_channels")
        self.kernel_size = _checks.positive_int(kernel_size, "kernel_size")
        self.stride = _checks.positive_int(stride, "stride")
        self.padding = _checks.non_negative_int(padding, "padding")
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int | None) -> None:
        k = self.kernel_size
        self._init_parameters(seed, self.in_channels * k * k,
                              (self.out_channels, self.in_channels, k, k), self.out_channels)

    @classmethod
    def _shapes(cls, arguments: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        out = _checks.positive_int(arguments["out_channels"], "out_channels")
        inner = _checks.positive_int(arguments["in_channels"], "in_channels")
        k = _checks.positive_int(arguments["kernel_size"], "kernel_size")
        _checks.positive_int(arguments.get("stride", 1), "stride")
        _checks.non_negative_int(arguments.get("padding", 0), "padding")
        return {"weights": (out, inner, k, k), "bias": (out,)}

    def output_shape(self, shape: tuple[int, ...], name: str = "x") -> tuple[int, ...]:
        _checks.image_shape(shape, self.in_channels, self.kernel_size, self.padding, name, repr(self))
        k, s, p = self.kernel_size, self.stride, self.padding
        return (shape[0], self.out_channels, output_size(shape[2], k, s, p),
                output_size(shape[3], k, s, p))

    def prepare(self, shape: tuple[int, ...], place: Placement,
                positions: np.ndarray | None = None, blocks: int = 1) -> _Windows:
        """Patch maps for ``(channels, height, width)`` inputs; ``positions``: the output positions
        to compute, in order (default all, row by row), in ``blocks`` (a fused pool's windows)."""
        return _windows(shape, self.kernel_size, self.stride, self.padding, place, positions,
                        bias=True, blocks=blocks)

    def apply(self, params: tuple, x: Array, prep: _Windows, ctx: Context) -> tuple[Array, Any]:
        cols, filters = _patches(x, prep, None, ctx.xp), _filters(params, ctx.xp)
        z = filters @ cols  # (out_channels, positions x batch)
        return ctx.xp.reshape(z, (-1, x.shape[1])), ((cols, filters) if ctx.train else None)

    def vjp(self, params: tuple, saved: Any, dy: Array, prep: _Windows, ctx: Context,
            input_grad: bool = True) -> tuple[Array | None, tuple]:
        xp, (cols, filters) = ctx.xp, saved
        d_z = xp.reshape(dy, (filters.shape[0], -1))
        grads = _filter_grads(d_z @ cols.mT, params, xp)
        if not input_grad:
            return None, grads
        return _scatter(_patch_grads(filters, d_z, dy.shape[1], xp), prep, xp), grads

    def __repr__(self) -> str:
        extra = "".join(f", {n}={getattr(self, n)}" for n in ("stride", "padding")
                        if getattr(self, n) != (1 if n == "stride" else 0))
        return f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}{extra})"


def _patches(x: Array, maps: _Windows, blocks: int | None, xp: Any) -> Array:
    """``(blocks, taps + 1, positions in a block x batch)`` (2-D ``(taps + 1, positions x
    batch)`` if ``blocks`` is None): every patch of the rows ``x``, and the bias tap."""
    cols = _gather(x, maps, xp)
    shape = (-1, maps.positions * x.shape[1]) if blocks is None else (
        blocks, -1, maps.positions // blocks * x.shape[1])
    return xp.reshape(cols, shape)


def _filters(params: tuple, xp: Any) -> Array:
    """``(out_channels, taps + 1)``: the filters as rows, and the bias as one more tap."""
    w, b = params
    return xp.concat([xp.reshape(w, (w.shape[0], -1)), b[:, None]], axis=1)


def _filter_grads(d_filters: Array, params: tuple, xp: Any) -> tuple[Array, Array]:
    """``_filters``' gradient split into the weights' (chapter shape) and the bias'."""
    return xp.reshape(d_filters[:, :-1], params[0].shape), d_filters[:, -1]


def _patch_grads(filters: Array, d_z: Array, batch: int, xp: Any) -> Array:
    """The patches' gradient as rows: the transposed filters times ``d_z``, with the bias tap's
    rows zero (a zero column in place of the bias): ``_scatter`` reads them for padding."""
    weights = xp.concat([filters[:, :-1], xp.zeros_like(filters[:, :1])], axis=1)
    return xp.reshape(weights.mT @ d_z, (-1, batch))


class ReLU(Layer):
    """Element-wise ``max(0, x)``; the gradient passes where the input was positive."""

    def apply(self, params: tuple, x: Array, prep: Any, ctx: Context) -> tuple[Array, Any]:
        y = ctx.xp.maximum(x, 0.0)
        return y, (y if ctx.train else None)

    def vjp(self, params: tuple, saved: Any, dy: Array, prep: Any, ctx: Context,
            input_grad: bool = True) -> tuple[Array | None, tuple]:
        # The chapter's d * (x > 0): sign of the output is that mask as a number, in one call.
        return dy * ctx.xp.sign(saved), ()


def _first_max(windows: Array, ranks: Array, xp: Any, train: bool = True) -> tuple[Array, Array | None]:
    """The maximum over the first axis of ``windows`` ``(element, ...)``, and (if ``train``) which
    element is the first maximum, as booleans of ``windows``' shape: with ties (all-zero windows
    are common) the gradient must reach one element only, the first, as ``argmax`` would pick, or
    it would be counted twice. ``ranks`` (``_ranks``) scores the tied elements, earlier higher."""
    best = xp.max(windows, axis=0)
    if not train:
        return best, None
    hits = windows == best[None, ...]
    del windows  # the largest of a step's temporaries: let it go before the next ones come
    score = xp.astype(hits, ranks.dtype)
    del hits
    score *= ranks  # in place: a local temporary
    return best, score == xp.max(score, axis=0)[None, ...]


def _ranks(elements: int, place: Placement) -> Array:
    """``(elements, 1, 1)`` int8: ``elements, ..., 2, 1``, for ``_first_max``."""
    return move(np.arange(elements, 0, -1, dtype=np.int8).reshape(-1, 1, 1), place)


def _route(grad: Array, first: Array, xp: Any) -> Array:
    """``_first_max``'s gradient: ``grad`` to the winning element of each window, zero elsewhere."""
    routed = xp.astype(first, grad.dtype)
    routed *= grad[None, ...]  # in place: a local temporary, the size of the windows
    return routed


class _Pool2D(Layer):
    """Pooling over ``pool_size`` windows every ``stride`` pixels (default: non-overlapping).

    Sizes that do not divide are floored, like the chapter: the last rows/columns are dropped.
    """

    config_names = ("pool_size", "stride")

    def __init__(self, pool_size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.pool_size = _checks.positive_int(pool_size, "pool_size")
        self.stride = self.pool_size if stride is None else _checks.positive_int(stride, "stride")

    def output_shape(self, shape: tuple[int, ...], name: str = "x") -> tuple[int, ...]:
        _checks.image_shape(shape, None, self.pool_size, 0, name, repr(self))
        q, s = self.pool_size, self.stride
        return (shape[0], shape[1], output_size(shape[2], q, s, 0), output_size(shape[3], q, s, 0))

    def prepare(self, shape: tuple[int, ...], place: Placement) -> _Windows:
        return _windows(shape, self.pool_size, self.stride, 0, place, element_major=True)

    def _elements(self, x: Array, prep: _Windows, xp: Any) -> Array:
        """``(window element, channel x position, batch)``: every window of ``x``."""
        return xp.reshape(_gather(x, prep, xp), (self.pool_size ** 2, -1, x.shape[1]))

    def _to_input(self, per_element: Array, prep: _Windows, xp: Any) -> Array:
        """Gradients of the window elements ``(element, channel x position, batch)``, scattered
        back onto the input rows."""
        return _scatter(xp.reshape(per_element, (-1, per_element.shape[2])), prep, xp)

    def __repr__(self) -> str:
        extra = "" if self.stride == self.pool_size else f", stride={self.stride}"
        return f"{type(self).__name__}(pool_size={self.pool_size}{extra})"


class MaxPool2D(_Pool2D):
    """Maximum of each window; the gradient flows only to the element that won it.

    The first maximum in a window wins ties (like ``argmax``). ``last_mask`` has the input's shape,
    1 where an element won its window (with overlapping windows: the number of windows it won).
    """

    def prepare(self, shape: tuple[int, ...], place: Placement) -> Any:
        return super().prepare(shape, place), _ranks(self.pool_size ** 2, place)

    def apply(self, params: tuple, x: Array, prep: Any, ctx: Context) -> tuple[Array, Any]:
        maps, ranks = prep
        return _first_max(self._elements(x, maps, ctx.xp), ranks, ctx.xp, ctx.train)

    def vjp(self, params: tuple, saved: Any, dy: Array, prep: Any, ctx: Context,
            input_grad: bool = True) -> tuple[Array | None, tuple]:
        return self._to_input(_route(dy, saved, ctx.xp), prep[0], ctx.xp), ()

    @property
    def last_mask(self) -> Array | None:
        """Input-shaped mask of the last forward pass's winners (computed when asked for)."""
        x = self.last_input
        if x is None:
            return None
        xp, shape = placed(self).xp, tuple(x.shape[1:])
        prep = self.prepared(shape)
        best, first = self.apply((), to_rows(x, xp), prep, Context(xp))
        return from_rows(self._to_input(_route(xp.ones_like(best), first, xp), prep[0], xp), shape, xp)


class AvgPool2D(_Pool2D):
    """Mean of each window; every element of a window receives ``1 / pool_size**2`` of its gradient."""

    def apply(self, params: tuple, x: Array, prep: _Windows, ctx: Context) -> tuple[Array, Any]:
        return ctx.xp.mean(self._elements(x, prep, ctx.xp), axis=0), None

    def vjp(self, params: tuple, saved: Any, dy: Array, prep: _Windows, ctx: Context,
            input_grad: bool = True) -> tuple[Array | None, tuple]:
        elements = self.pool_size ** 2
        share = ctx.xp.broadcast_to((dy / elements)[None, ...], (elements, *dy.shape))
        return self._to_input(share, prep, ctx.xp), ()


class Flatten(Layer):
    """``(batch, channels, height, width) -> (batch, channels*height*width)``, and back.

    In batch-last rows both are the same array: this layer's pure pair is the identity."""

    def output_shape(self, shape: tuple[int, ...], name: str = "x") -> tuple[int, ...]:
        if len(shape) < 2:
            raise ValueError(f"{name}: Flatten expects at least 2 dimensions (batch, ...), got shape {shape}")
        _checks.non_empty_batch(shape, name, "Flatten")  # reshape(x, (0, -1)) is ambiguous
        return (shape[0], math.prod(shape[1:]))

    @property
    def last_shape(self) -> tuple[int, ...] | None:
        """The shape of the last forward pass's input (the chapter's attribute)."""
        x = self.last_input
        return None if x is None else tuple(x.shape)

    def apply(self, params: tuple, x: Array, prep: Any, ctx: Context) -> tuple[Array, Any]:
        return x, None

    def vjp(self, params: tuple, saved: Any, dy: Array, prep: Any, ctx: Context,
            input_grad: bool = True) -> tuple[Array | None, tuple]:
        return dy, ()


class Dense(ParametrizedLayer):
    """Fully connected ``y = x @ weights + bias`` with ``weights`` ``(in_features, out_features)``.

    In batch-last rows: ``weights.T @ x + bias``; backward ``d_weights = x @ dy.T``,
    ``d_bias = sum(dy)`` over the batch, ``dx = weights @ dy`` (the chapter's formulas, transposed).
    """

    config_names = ("in_features", "out_features")

    def __init__(self, in_features: int, out_features: int, seed: int | None = 42) -> None:
        super().__init__()
        self.in_features = _checks.positive_int(in_features, "in_features")
        self.out_features = _checks.positive_int(out_features, "out_features")
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int | None) -> None:
        self._init_parameters(seed, self.in_features, (self.in_features, self.out_features),
                              self.out_features)

    @classmethod
    def _shapes(cls, arguments: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        inner = _checks.positive_int(arguments["in_features"], "in_features")
        out = _checks.positive_int(arguments["out_features"], "out_features")
        return {"weights": (inner, out), "bias": (out,)}

    def output_shape(self, shape: tuple[int, ...], name: str = "x") -> tuple[int, ...]:
        if len(shape) != 2 or shape[1] != self.in_features:
            raise ValueError(f"{name}: {self!r} expects shape (batch, {self.in_features}), got {shape}")
        _checks.non_empty_batch(shape, name, repr(self))
        return (shape[0], self.out_features)

    def apply(self, params: tuple, x: Array, prep: Any, ctx: Context) -> tuple[Array, Any]:
        w, b = params
        return w.mT @ x + b[:, None], (x if ctx.train else None)

    def vjp(self, params: tuple, saved: Any, dy: Array, prep: Any, ctx: Context,
            input_grad: bool = True) -> tuple[Array | None, tuple]:
        w, _ = params
        grads = (saved @ dy.mT, ctx.xp.sum(dy, axis=1))
        return (w @ dy if input_grad else None), grads

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features})"


# -- normalization and dropout -------------------------------------------------------------------
class _BatchNorm(ParametrizedLayer):
    """Batch normalization per channel: ``y = gamma * (x - mean) / sqrt(var + eps) + beta``.

    In training mode ``mean`` and ``var`` are the batch's (biased) statistics over every value of
    a channel, and each training step moves the buffers ``running_mean`` and ``running_var``
    towards them by ``momentum`` (the variance unbiased, as PyTorch does); in evaluation mode
    the running statistics are used. Backward (training mode), with ``x_hat`` the normalized
    input and ``n`` the values per channel: ``d_beta = sum(dy)``, ``d_gamma = sum(dy * x_hat)``,
    ``dx = gamma / (n sqrt(var + eps)) * (n dy - d_beta - x_hat d_gamma)``.

    The arrays are kept per channel as ``(channel, pixel, batch)`` views of the batch-last rows,
    and what is per channel is folded into one factor before touching the data: forward is
    ``(x - mean) * (gamma / sqrt(var + eps)) + beta``, backward ``dx = dy * k1 - (x - mean) * k2
    - k3`` with ``k1 = gamma / s``, ``k2 = gamma d_gamma / (n s^2)``, ``k3 = gamma d_beta / (n
    s)`` (``s = sqrt(var + eps)``): the formulas above, in fewer passes over the data.
    """

    param_names = ("gamma", "beta")
    buffer_names = ("running_mean", "running_var")

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.channels = _checks.positive_int(channels, "channels")
        self.eps = _checks.positive_number(eps, "eps")
        self.momentum = _checks.fraction(momentum, "momentum", closed=True)
        self.reset_parameters(None)

    config_names = ("channels", "eps", "momentum")  # the first: the size's name
    spatial = ""  # the input's dimensions after (batch, channels), in words

    def output_shape(self, shape: tuple[int, ...], name: str = "x") -> tuple[int, ...]:
        if len(shape) != 2 + self.spatial.count(",") or shape[1] != self.channels:
            raise ValueError(f"{name}: {self!r} expects shape (batch, {self.channels}"
                             f"{self.spatial}), got {tuple(shape)}")
        _checks.non_empty_batch(shape, name, repr(self))
        return tuple(shape)

    def reset_parameters(self, seed: int | None) -> None:
        """Ones for ``gamma``, zeros for ``beta`` and the running mean, ones for the running
        variance (``seed`` is not used: nothing is random)."""
        c = self.channels
        self.gamma, self.beta = np.ones(c), np.zeros(c)
        self.d_gamma, self.d_beta = np.zeros(c), np.zeros(c)
        self.running_mean, self.running_var = np.zeros(c), np.ones(c)
        self.velocity = {"gamma": np.zeros(c), "beta": np.zeros(c)}
        if self.placement is not None:
            self._move_to(self.placement)

    @classmethod
    def _shapes(cls, arguments: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        size = cls.config_names[0]
        c = _checks.positive_int(arguments[size], size)
        _checks.positive_number(arguments.get("eps", 1e-5), "eps")
        _checks.fraction(arguments.get("momentum", 0.1), "momentum", closed=True)
        return {"gamma": (c,), "beta": (c,)}

    @classmethod
    def buffer_shapes(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        c = cls.parameter_shapes(config)["gamma"]
        return {"running_mean": c, "running_var": c}

    def values_per_channel(self, shape: tuple[int, ...]) -> int:
        """How many values of one channel a batch of ``shape`` (chapter layout) holds: the batch
        statistics' count (1 makes the unbiased running variance undefined)."""
        return math.prod(shape) // self.channels

    def apply(self, params: tuple, x: Array, prep: Any, ctx: Context) -> tuple[Array, Any]:
        xp, (gamma, beta) = ctx.xp, params
        v = xp.reshape(x, (self.channels, -1, x.shape[1]))  # (channel, pixel, batch)
        if ctx.evaluation:
            mean, var = ctx.buffers
        else:
            mean = xp.mean(v, axis=(1, 2))
        centered = v - mean[:, None, None]
        if not ctx.evaluation:  # the mean square, as one dot product per channel
            var = _channel_dots(centered, centered, xp) / (centered.shape[1] * centered.shape[2])
        inv = 1.0 / xp.sqrt(var + self.eps)
        y = centered * (gamma * inv)[:, None, None]
        y += beta[:, None, None]  # in place: a local temporary
        saved = (centered, inv, mean, var, ctx.evaluation) if ctx.train else None
        return xp.reshape(y, x.shape), saved

    def vjp(self, params: tuple, saved: Any, dy: Array, prep: Any, ctx: Context,
            input_grad: bool = True) -> tuple[Array | None, tuple]:
        xp, (gamma, _), (centered, inv, _, _, evaluation) = ctx.xp, params, saved
        d = xp.reshape(dy, centered.shape)
        d_beta = xp.sum(d, axis=(1, 2))
        d_gamma = inv * _channel_dots(d, centered, xp)
        if not input_grad:
            return None, (d_gamma, d_beta)
        k1 = gamma * inv
        dx = d * k1[:, None, None]
        if not evaluation:  # the batch statistics depend on every input too
            n = centered.shape[1] * centered.shape[2]
            dx -= centered * (k1 * inv * d_gamma / n)[:, None, None]  # in place: a local temporary
            dx -= (k1 * d_beta / n)[:, None, None]
        return xp.reshape(dx, dy.shape), (d_gamma, d_beta)

    def next_buffers(self, buffers: tuple, saved: Any, ctx: Context) -> tuple:
        running_mean, running_var = buffers
        _, _, mean, var, _ = saved
        n, m = saved[0].shape[1] * saved[0].shape[2], self.momentum
        return ((1 - m) * running_mean + m * mean,
                (1 - m) * running_var + m * (var * (n / max(n - 1, 1))))

    def __repr__(self) -> str:
        extra = "".join(f", {n}={getattr(self, n)}" for n, d in (("eps", 1e-5), ("momentum", 0.1))
                        if getattr(self, n) != d)
        return f"{type(self).__name__}({self.channels}{extra})"


def _channel_dots(a: Array, b: Array, xp: Any) -> Array:
    """``sum(a * b)`` per channel of two ``(channel, ...)`` arrays (``_xp.row_dots``)."""
    c = a.shape[0]
    return row_dots(xp.reshape(a, (c, -1)), xp.reshape(b, (c, -1)), xp)


class BatchNorm2D(_BatchNorm):
    """Batch normalization of ``(batch, channels, height, width)`` images per channel, over the
    batch, height and width (``torch.nn.BatchNorm2d``)."""

    spatial = ", height, width"


class BatchNorm1D(_BatchNorm):
    """Batch normalization of ``(batch, features)`` per feature, over the batch (after a
    ``Dense`` layer; ``torch.nn.BatchNorm1d``)."""

    config_names = ("features", "eps", "momentum")

    def __init__(self, features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(features, eps, momentum)

    @property
    def features(self) -> int:
        return self.channels


class Dropout(Layer):
    """Inverted dropout: in training mode each value is kept with probability ``1 - p`` and
    scaled by ``1 / (1 - p)``, else zeroed; in evaluation mode the identity. Backward lets the
    gradient through the kept values, scaled alike.

    Masks are drawn on the host, so every backend sees the same ones: ``fit`` draws epoch
    ``e``'s masks from ``numpy.random.default_rng((seed, e, index))`` (``index``: the layer's
    position in the model), a ``forward`` outside ``fit`` from the layer's own generator
    (``default_rng(seed)``, advancing with each call).
    """

    config_names = ("p", "seed")
    uses_mask = True

    def __init__(self, p: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        self.p = _checks.fraction(p, "p")
        self.seed = _checks.non_negative_int(seed, "seed")
        self.rng = np.random.default_rng(self.seed)

    def draw_mask(self, features: int, batch: int) -> np.ndarray:
        return self.keep(self.rng, features, batch)

    def epoch_mask(self, features: int, count: int, epoch: int, index: int) -> np.ndarray:
        """``fit``'s mask for epoch ``epoch``: ``(features, count)`` booleans, one column per
        position in the epoch's shuffled order."""
        return self.keep(np.random.default_rng((self.seed, epoch, index)), features, count)

    def keep(self, rng: np.random.Generator, features: int, count: int) -> np.ndarray:
        """``(features, count)`` booleans, True with probability ``1 - p``, drawn sample by sample."""
        return np.ascontiguousarray((rng.random((count, features)) >= self.p).T)

    def apply(self, params: tuple, x: Array, prep: Any, ctx: Context) -> tuple[Array, Any]:
        if ctx.evaluation or self.p == 0.0:
            return x, None
        if ctx.mask is None:
            raise RuntimeError("Dropout in training mode needs a mask (Context.mask)")
        kept = ctx.xp.astype(ctx.mask, x.dtype)
        kept *= 1.0 / (1.0 - self.p)  # in place: a local temporary; the scale of what is kept
        return x * kept, (kept if ctx.train else None)

    def vjp(self, params: tuple, saved: Any, dy: Array, prep: Any, ctx: Context,
            input_grad: bool = True) -> tuple[Array | None, tuple]:
        if saved is None:  # evaluation mode, or p == 0: the identity
            return dy, ()
        return dy * saved, ()

    def __repr__(self) -> str:
        return f"Dropout(p={self.p}{'' if self.seed == 0 else f', seed={self.seed}'})"


# -- fusion --------------------------------------------------------------------------------------
class ConvReluMaxPool:
    """``Conv2D -> [ReLU] -> MaxPool2D(stride == pool_size) -> [ReLU]`` as one pure pair.

    The convolution computes its output window element by window element (``Conv2D.prepare``'s
    ``positions`` and ``blocks``): one product per element, ``(element, out_channels, pooled
    positions x batch)``, so the pool's windows are whole contiguous blocks and its maximum is a
    reduction over the first axis (``_first_max``). The ReLU runs after the pool, on a quarter of
    the data: ``max(relu(a)) == relu(max(a))``, and the gradient reaches the same element either
    way; its own gradient (it passes where the pooled value is positive) joins the pool's winners,
    so the backward pass keeps one boolean mask. The pieces are the layers' own: the
    convolution's ``_patches``/``_filters``/``_filter_grads``/``_patch_grads``/``_scatter``, the
    pool's ``_first_max``/``_route``, ``ReLU.apply``.
    """

    def __init__(self, conv: Conv2D, pool: MaxPool2D, relu: ReLU | None,
                 shape: tuple[int, ...], place: Placement) -> None:
        out_h, out_w = conv.output_shape((1, *shape))[2:]
        q = pool.pool_size
        rows, cols = (out_h // q) * q, (out_w // q) * q
        grid = np.arange(out_h * out_w).reshape(out_h, out_w)[:rows, :cols]
        # (window element, pooled position): element (p, r) of every window, row by row.
        order = grid.reshape(rows // q, q, cols // q, q).transpose(1, 3, 0, 2).reshape(-1)
        self.relu, self.elements, self.ranks = relu, q * q, _ranks(q * q, place)
        self.maps = conv.prepare(shape, place, positions=order, blocks=q * q)

    def apply(self, params: tuple, x: Array, ctx: Context) -> tuple[Array, Any]:
        xp, batch = ctx.xp, x.shape[1]
        cols, filters = _patches(x, self.maps, self.elements, xp), _filters(params, xp)
        # (element, out_channels, pooled positions x batch): the products, reduced at once
        best, first = _first_max(filters @ cols, self.ranks, xp, ctx.train)
        if self.relu:
            best, _ = self.relu.apply((), best, None, Context(xp, train=False))
            if first is not None:  # the ReLU's gradient: only where the pooled value is positive
                first &= (best > 0.0)[None, ...]  # in place: a local temporary
        return xp.reshape(best, (-1, batch)), ((cols, filters, first) if ctx.train else None)

    def vjp(self, params: tuple, saved: Any, dy: Array, ctx: Context,
            input_grad: bool = True) -> tuple[Array | None, tuple]:
        xp, (cols, filters, first), batch = ctx.xp, saved, dy.shape[1]
        d_z = _route(xp.reshape(dy, (filters.shape[0], -1)), first, xp)  # like the products
        grads = _filter_grads(xp.sum(d_z @ cols.mT, axis=0), params, xp)
        if not input_grad:
            return None, grads
        return _scatter(_patch_grads(filters, d_z, batch, xp), self.maps, xp), grads


#: Every layer class by name: what a checkpoint's architecture may name (``layer_from_config``).
LAYERS: dict[str, type[Layer]] = {cls.__name__: cls for cls in
                                  (Conv2D, ReLU, MaxPool2D, AvgPool2D, Flatten, Dense, BatchNorm2D,
                                   BatchNorm1D, Dropout)}


def layer_from_config(entry: dict[str, Any]) -> Layer:
    """A new layer from ``{"class": name, "config": constructor arguments}`` (``LAYERS``)."""
    cls, config = _class_and_config(entry)
    return cls(**config)


def buffer_shapes_from_config(entry: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The buffer shapes of the layer ``layer_from_config(entry)`` would build (``{}``: none),
    without allocating them."""
    cls, config = _class_and_config(entry)
    return cls.buffer_shapes(config) if issubclass(cls, ParametrizedLayer) else {}


def parameter_shapes_from_config(entry: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The parameter shapes (``{"weights": ..., "bias": ...}``, ``{}`` for a layer without
    parameters) of the layer ``layer_from_config(entry)`` would build, without allocating them;
    the same errors for an entry it would refuse."""
    cls, config = _class_and_config(entry)
    if issubclass(cls, ParametrizedLayer):
        return cls.parameter_shapes(config)
    cls(**config)  # no parameters: building it costs nothing, and checks its arguments
    return {}


def _class_and_config(entry: Any) -> tuple[type[Layer], dict[str, Any]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("class"), str) \
            or entry["class"] not in LAYERS:
        raise ValueError(f"a layer must be {{'class': one of {sorted(LAYERS)}, 'config': {{...}}}}, "
                         f"got {entry!r:.200}")
    config = entry.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"the config of a {entry['class']} layer must be a dict, got {config!r:.200}")
    return LAYERS[entry["class"]], config
