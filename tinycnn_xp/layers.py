"""Layers with their forward and backward passes side by side.

Every layer works on whatever array library its input comes from (NumPy, CuPy, torch,
array-api-strict, ...) through the array API standard. Shapes follow the chapter:
images are ``(batch, channels, height, width)``, features ``(batch, features)``.

Each public ``forward``/``backward`` checks its argument and takes the namespace from the layer's
placement, then calls ``_forward``/``_backward``, which take ``xp`` explicitly. A model's training
step calls ``forward(x, check=False)``, having checked its data once. State changes rebind the
layer's attributes (``self.d_weights = ...``), never mutate an array another reference may hold.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, NamedTuple

import numpy as np

from . import _checks
from ._windows import output_size, transpose_index, window_index
from ._xp import Placement, as_data, dtype_name, move, placed, placement_of, to_numpy
from .optim import sgd_update

__all__ = ["Layer", "ParametrizedLayer", "Conv2D", "ReLU", "MaxPool2D", "AvgPool2D", "Flatten",
           "Dense", "LAYERS", "layer_from_config", "parameter_shapes_from_config"]

Array = Any  # any array-API array


class Layer:
    """Base class: placement on the first input's library/device/dtype, and the public wrappers.

    Subclasses implement ``_forward(x, xp, cache)`` and ``_backward(d_output, xp, input_grad)``
    side by side; ``forward``/``backward`` check their argument and resolve the namespace first.
    """

    #: names of trainable parameter attributes; each has a gradient ``d_<name>``.
    param_names: tuple[str, ...] = ()
    #: constructor arguments that rebuild this layer (``type(layer)(**layer.config())``).
    config_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.last_input: Array = None  # the last forward input (``None`` before one)
        self.placement: Placement | None = None
        self._index_cache: dict = {}  # device-side index arrays, per input size

    def config(self) -> dict[str, int]:
        """The constructor arguments of this layer, e.g. for a checkpoint."""
        return {name: getattr(self, name) for name in self.config_names}

    # -- shape contract ------------------------------------------------------------------------
    def output_shape(self, shape: tuple[int, ...], name: str = "x") -> tuple[int, ...]:
        """Output shape for an input of ``shape``; ``ValueError`` naming ``name`` if it does not fit."""
        if len(shape) < 1 or shape[0] < 1:
            raise ValueError(f"{name}: {type(self).__name__} expects a non-empty batch (batch, ...), "
                             f"got shape {shape}")
        return tuple(shape)

    # -- public API ----------------------------------------------------------------------------
    def forward(self, x: Array, *, check: bool = True, cache: bool = True) -> Array:
        """This layer's output for ``x``; the first input places the layer on its device.

        ``cache=False`` keeps nothing for ``backward`` (inference). ``check=False`` skips the
        argument checks and the placement: for loops that placed the layer and checked their
        data once (a model's training step); ``x`` must then already fit the layer.
        """
        if check:
            x = as_data(x)
            place, _ = _checks.images(self, x, "x")
            if self.placement is None:
                self.to(place.xp, place.device, place.dtype)
        return self._forward(x, placed(self).xp, cache)

    def backward(self, d_output: Array, *, check: bool = True, input_grad: bool = True) -> Array | None:
        """Gradient with respect to this layer's last input; stores parameter gradients.

        ``input_grad=False`` skips the input gradient (returns ``None`` where that saves work:
        the first layer's is never used in training).
        """
        if check:
            d_output = as_data(d_output)
            self._check_gradient(d_output)
        return self._backward(d_output, placed(self).xp, input_grad)

    def _check_gradient(self, d_output: Array) -> None:
        if self.placement is None or self.last_input is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        xp = _checks.floating_array(d_output, "d_output")
        # The dtype too: a float64 gradient would make a float32 layer's d_weights float64.
        _checks.compatible(self.placement, placement_of(d_output), type(self).__name__, "d_output")
        expected = self.output_shape(tuple(self.last_input.shape))
        if tuple(d_output.shape) != expected:
            raise ValueError(f"d_output must have the shape of the last forward output {expected}, "
                             f"got {tuple(d_output.shape)}")
        _checks.finite(d_output, xp, "d_output")

    # -- placement -----------------------------------------------------------------------------
    def to(self, xp: Any, device: Any = None, dtype: Any = None) -> Layer:
        """Move this layer's arrays to namespace ``xp`` on ``device`` in floating ``dtype``
        (defaults: ``xp``'s default device, the current dtype); one transfer per array."""
        default = dtype_name(self.placement.dtype) if self.placement is not None else "float64"
        self._move_to(_checks.target(xp, device, dtype, default))
        return self

    def _move_to(self, place: Placement) -> None:
        self.placement = place
        self._index_cache = {}

    def _forward(self, x: Array, xp: Any, cache: bool) -> Array:
        raise NotImplementedError

    def _backward(self, d_output: Array, xp: Any, input_grad: bool) -> Array | None:
        raise NotImplementedError

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
        return {}

    def __copy__(self) -> Layer:
        """``copy.copy``: shallow, like any object's: the copy shares arrays and placement."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new


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
        super()._move_to(place)

    def step(self, lr: float, momentum: float = 0.0, *, check: bool = True) -> None:
        """Gradient descent: ``v <- momentum * v + grad``, ``param <- param - lr * v``.

        With ``momentum=0`` this is exactly the chapter's plain update ``param -= lr * grad``.
        The new arrays are bound to the layer (``self.weights = ...``): nothing is changed in
        place, so the same code is right for immutable arrays (JAX).
        """
        if check:
            _checks.learning_rate(lr)
            _checks.momentum(momentum)
        sgd_update(self, lr, momentum)

    def _host_arrays(self) -> dict[str, Any]:
        arrays: dict[str, Any] = {}
        for name in self.param_names:
            arrays[name] = to_numpy(getattr(self, name))
            arrays["d_" + name] = to_numpy(getattr(self, "d_" + name))
        arrays["velocity"] = {name: to_numpy(self.velocity[name]) for name in self.param_names}
        return arrays

    @property
    def parameter_count(self) -> int:
        return int(sum(math.prod(getattr(self, name).shape) for name in self.param_names))


class _WindowMaps(NamedTuple):
    """Everything a windowed layer needs for one input size, on the layer's device."""

    gather: Array            # flat pixel index of every (window element, position)
    scatter: Array           # the transposed map: window slots that read each pixel
    fan: int                 # window slots per pixel in ``scatter`` (1 for non-overlapping pools)
    scatter_pads: bool       # ``scatter`` uses the zero slot (pixels read by fewer windows)
    gather_pads: bool        # ``gather`` reads the zero padding slot
    out_hw: tuple[int, int]  # output height and width


class _Windowed(Layer):
    """Shared machinery of convolution and pooling: windows by one gather, and its transpose."""

    window: int
    stride: int
    padding: int = 0

    def _windows(self, height: int, width: int) -> _WindowMaps:
        """Device index arrays for this input size (built on the host once, moved once)."""
        key = (height, width)
        cached = self._index_cache.get(key)
        if cached is None:
            # (window element, position): reductions over a window run along a middle axis with
            # long contiguous rows, far faster than along a short last axis.
            index = window_index(height, width, self.window, self.stride, self.padding)
            back = transpose_index(index, height * width)
            place = placed(self)
            cached = _WindowMaps(move(index.ravel(), place), move(back.ravel(), place),
                                 back.shape[1], bool(np.any(back == index.size)),
                                 bool(np.any(index == height * width)), self._out_hw(height, width))
            self._index_cache[key] = cached
        return cached

    def _gather(self, x: Array, xp: Any) -> Array:
        """All windows of ``x``: ``(batch, channels, height, width) -> (batch, channels, n)``."""
        batch, channels, height, width = x.shape
        maps = self._windows(height, width)
        flat = xp.reshape(x, (batch, channels, height * width))
        if maps.gather_pads:  # one zero slot per image stands for the whole zero border
            zero = xp.zeros((batch, channels, 1), dtype=x.dtype, device=placed(self).device)
            flat = xp.concat([flat, zero], axis=2)
        return xp.take(flat, maps.gather, axis=2)

    def _scatter(self, grad: Array, xp: Any, input_shape: tuple[int, ...]) -> Array:
        """Backward of ``_gather``: sum each window element's gradient onto the pixel it read."""
        batch, channels, height, width = input_shape
        maps = self._windows(height, width)
        if maps.scatter_pads:  # pixels read by fewer than ``fan`` windows pad with a zero gradient
            zero = xp.zeros((batch, channels, 1), dtype=grad.dtype, device=placed(self).device)
            grad = xp.concat([grad, zero], axis=2)
        gathered = xp.take(grad, maps.scatter, axis=2)
        if maps.fan > 1:
            gathered = xp.sum(xp.reshape(gathered, (batch, channels, height * width, maps.fan)),
                              axis=3)
        return xp.reshape(gathered, input_shape)

    def _out_hw(self, height: int, width: int) -> tuple[int, int]:
        return (output_size(height, self.window, self.stride, self.padding),
                output_size(width, self.window, self.stride, self.padding))


class Conv2D(_Windowed, ParametrizedLayer):
    """2-D cross-correlation: ``weights`` ``(out_channels, in_channels, k, k)``, ``bias`` ``(out_channels,)``.

    Forward gathers every k x k patch of the batch at once ("im2col") and applies all filters with
    one matrix product. Backward reuses those patches: ``d_weights`` is the correlation of the input
    with the upstream gradient; the input gradient multiplies by the transposed filters and scatters
    each patch back, which is the chapter's full convolution with the 180-degree rotated kernel.
    """

    config_names = ("in_channels", "out_channels", "kernel_size", "stride", "padding")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, seed: int | None = 42,
                 stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.in_channels = _checks.positive_int(in_channels, "in_channels")
        self.out_channels = _checks.positive_int(out_channels, "out_channels")
        self.kernel_size = self.window = _checks.positive_int(kernel_size, "kernel_size")
        self.stride = _checks.positive_int(stride, "stride")
        self.padding = _checks.non_negative_int(padding, "padding")
        self.reset_parameters(seed)
        self._cols: Array = None

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
        return (shape[0], self.out_channels, *self._out_hw(shape[2], shape[3]))

    def _forward(self, x: Array, xp: Any, cache: bool) -> Array:
        batch, _, height, width = x.shape
        out_h, out_w = self._windows(height, width).out_hw
        taps = self.in_channels * self.kernel_size ** 2
        cols = xp.reshape(self._gather(x, xp), (batch, taps, out_h * out_w))
        if cache:
            self.last_input, self._cols = x, cols
        filters = xp.reshape(self.weights, (self.out_channels, taps))
        out = filters @ cols + self.bias[:, None]
        return xp.reshape(out, (batch, self.out_channels, out_h, out_w))

    def _backward(self, d_output: Array, xp: Any, input_grad: bool) -> Array | None:
        batch, _, out_h, out_w = d_output.shape
        d_out = xp.reshape(d_output, (batch, self.out_channels, out_h * out_w))
        self.d_bias = xp.sum(d_out, axis=(0, 2))
        # sum over the batch of d_out_b @ cols_b^T: one batched matmul, no transposed copies
        d_filters = xp.sum(d_out @ xp.matrix_transpose(self._cols), axis=0)
        self.d_weights = xp.reshape(d_filters, self.weights.shape)
        if not input_grad:  # the first layer's input gradient is never used in training
            return None
        filters = xp.reshape(self.weights, (self.out_channels, -1))
        d_cols = xp.matrix_transpose(filters) @ d_out  # (batch, in_channels*k*k, positions)
        d_cols = xp.reshape(d_cols, (batch, self.in_channels, -1))
        return self._scatter(d_cols, xp, tuple(self.last_input.shape))

    def __repr__(self) -> str:
        extra = "".join(f", {n}={getattr(self, n)}" for n in ("stride", "padding")
                        if getattr(self, n) != (1 if n == "stride" else 0))
        return f"Conv2D({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}{extra})"


class ReLU(Layer):
    """Element-wise ``max(0, x)``; the gradient passes where the input was positive."""

    def _forward(self, x: Array, xp: Any, cache: bool) -> Array:
        if cache:
            self.last_input = x
        return xp.maximum(x, 0.0)

    def _backward(self, d_output: Array, xp: Any, input_grad: bool) -> Array:
        # The chapter's d * (x > 0): the gradient at exactly 0 is 0, and NaN still propagates.
        return d_output * xp.astype(self.last_input > 0.0, d_output.dtype)


class _Pool2D(_Windowed):
    """Pooling over ``pool_size`` windows every ``stride`` pixels (default: non-overlapping).

    Sizes that do not divide are floored, like the chapter: the last rows/columns are dropped.
    """

    config_names = ("pool_size", "stride")

    def __init__(self, pool_size: int = 2, stride: int | None = None) -> None:
        super().__init__()
        self.pool_size = self.window = _checks.positive_int(pool_size, "pool_size")
        self.stride = self.pool_size if stride is None else _checks.positive_int(stride, "stride")

    def output_shape(self, shape: tuple[int, ...], name: str = "x") -> tuple[int, ...]:
        _checks.image_shape(shape, None, self.pool_size, 0, name, repr(self))
        return (shape[0], shape[1], *self._out_hw(shape[2], shape[3]))

    def _windows_of(self, x: Array, xp: Any) -> Array:
        """``(batch, channels, window element, position)``: every window of ``x``."""
        batch, channels, height, width = x.shape
        positions = math.prod(self._windows(height, width).out_hw)
        return xp.reshape(self._gather(x, xp), (batch, channels, self.pool_size ** 2, positions))

    def _to_image(self, pooled: Array, xp: Any, input_shape: tuple[int, ...]) -> Array:
        """``(batch, channels, positions)`` -> ``(batch, channels, out_h, out_w)``."""
        out_hw = self._windows(input_shape[2], input_shape[3]).out_hw
        return xp.reshape(pooled, tuple(input_shape[:2]) + out_hw)

    def _to_input(self, per_element: Array, xp: Any) -> Array:
        """Scatter ``(batch, channels, window element, position)`` values back onto the input."""
        batch, channels = per_element.shape[:2]
        flat = xp.reshape(per_element, (batch, channels, -1))
        return self._scatter(flat, xp, tuple(self.last_input.shape))

    def __repr__(self) -> str:
        extra = "" if self.stride == self.pool_size else f", stride={self.stride}"
        return f"{type(self).__name__}(pool_size={self.pool_size}{extra})"


class MaxPool2D(_Pool2D):
    """Maximum of each window; the gradient flows only to the element that won it.

    The first maximum in a window wins ties (like ``argmax``). ``last_mask`` has the input's shape,
    1 where an element won its window (with overlapping windows: the number of windows it won).
    """

    def __init__(self, pool_size: int = 2, stride: int | None = None) -> None:
        super().__init__(pool_size, stride)
        self._windows_and_max: Any = None  # (windows, their maxima) of the last forward

    def _forward(self, x: Array, xp: Any, cache: bool) -> Array:
        windows = self._windows_of(x, xp)
        best = xp.max(windows, axis=2)
        if cache:
            self.last_input, self._windows_and_max = x, (windows, best)
        return self._to_image(best, xp, tuple(x.shape))

    def _winners(self, xp: Any) -> Array:
        """Boolean ``(batch, channels, window element, position)``: the first maximum of each window.

        A loop over window offsets with boolean ops: ``argmax`` would do, but is many times slower
        on every library we measured, and ties (all-zero windows after a ReLU are common) must go
        to the first maximum only, or the gradient would be counted twice.
        """
        windows, best = self._windows_and_max
        is_max = windows == best[:, :, None, :]
        taken = is_max[:, :, 0, :]
        firsts = [taken]
        for k in range(1, self.pool_size ** 2):
            firsts.append(is_max[:, :, k, :] & ~taken)
            taken = taken | is_max[:, :, k, :]
        return xp.stack(firsts, axis=2)

    def _backward(self, d_output: Array, xp: Any, input_grad: bool) -> Array:
        batch, channels = d_output.shape[:2]
        d_out = xp.reshape(d_output, (batch, channels, 1, -1))
        return self._to_input(xp.astype(self._winners(xp), d_out.dtype) * d_out, xp)

    @property
    def last_mask(self) -> Array | None:
        """Input-shaped mask of the last forward pass's winners (computed when asked for)."""
        if self._windows_and_max is None:
            return None
        xp = placed(self).xp
        return self._to_input(xp.astype(self._winners(xp), self.last_input.dtype), xp)


class AvgPool2D(_Pool2D):
    """Mean of each window; every element of a window receives ``1 / pool_size**2`` of its gradient."""

    def _forward(self, x: Array, xp: Any, cache: bool) -> Array:
        if cache:
            self.last_input = x
        return self._to_image(xp.mean(self._windows_of(x, xp), axis=2), xp, tuple(x.shape))

    def _backward(self, d_output: Array, xp: Any, input_grad: bool) -> Array:
        batch, channels = d_output.shape[:2]
        share = xp.reshape(d_output, (batch, channels, 1, -1)) / (self.pool_size ** 2)
        elements = (batch, channels, self.pool_size ** 2, share.shape[3])
        return self._to_input(xp.broadcast_to(share, elements), xp)


class Flatten(Layer):
    """``(batch, channels, height, width) -> (batch, channels*height*width)``, and back."""

    def __init__(self) -> None:
        super().__init__()
        self.last_shape: Any = None  # the last forward input's shape

    def output_shape(self, shape: tuple[int, ...], name: str = "x") -> tuple[int, ...]:
        if len(shape) < 2:
            raise ValueError(f"{name}: Flatten expects at least 2 dimensions (batch, ...), got shape {shape}")
        if shape[0] < 1:  # reshape(x, (0, -1)) is ambiguous: NumPy and torch refuse it
            raise ValueError(f"{name}: expected a non-empty batch, got shape {shape}")
        return (shape[0], math.prod(shape[1:]))

    def _forward(self, x: Array, xp: Any, cache: bool) -> Array:
        if cache:
            self.last_shape, self.last_input = tuple(x.shape), x
        return xp.reshape(x, (x.shape[0], -1))

    def _backward(self, d_output: Array, xp: Any, input_grad: bool) -> Array:
        return xp.reshape(d_output, self.last_shape)


class Dense(ParametrizedLayer):
    """Fully connected ``y = x @ weights + bias`` with ``weights`` ``(in_features, out_features)``."""

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
        if shape[0] < 1:
            raise ValueError(f"{name}: expected a non-empty batch, got shape {shape}")
        return (shape[0], self.out_features)

    def _forward(self, x: Array, xp: Any, cache: bool) -> Array:
        if cache:
            self.last_input = x
        return x @ self.weights + self.bias

    def _backward(self, d_output: Array, xp: Any, input_grad: bool) -> Array | None:
        self.d_weights = self.last_input.T @ d_output
        self.d_bias = xp.sum(d_output, axis=0)
        return d_output @ self.weights.T if input_grad else None

    def __repr__(self) -> str:
        return f"Dense({self.in_features}, {self.out_features})"


#: Every layer class by name: what a checkpoint's architecture may name (``layer_from_config``).
LAYERS: dict[str, type[Layer]] = {cls.__name__: cls for cls in
                                  (Conv2D, ReLU, MaxPool2D, AvgPool2D, Flatten, Dense)}


def layer_from_config(entry: dict[str, Any]) -> Layer:
    """A new layer from ``{"class": name, "config": constructor arguments}`` (``LAYERS``)."""
    cls, config = _class_and_config(entry)
    return cls(**config)


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
