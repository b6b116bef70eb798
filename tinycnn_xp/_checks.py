"""Argument checks shared by the public entry points.

Each raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right kind, wrong value) with a
message that names the argument, says what was expected and what came. They run before any state
changes, once per public call, never inside a training step.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

from array_api_compat import (
    device,
    is_array_api_obj,
    is_dask_array,
    is_dask_namespace,
    is_jax_array,
    is_lazy_array,
    is_ndonnx_array,
    is_ndonnx_namespace,
    is_torch_array,
)
from array_api_compat import device as device_of

from ._xp import Placement, describe, describe_namespace, dtype_name, namespace_of, placement_of

#: the floating dtypes a model trains in (float16 underflows the chapter's 1e-12 clip).
FLOAT_DTYPES = ("float32", "float64")


def positive_int(value: Any, name: str) -> int:
    return _int_at_least(value, name, 1)


def non_negative_int(value: Any, name: str) -> int:
    return _int_at_least(value, name, 0)


def _int_at_least(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {low}, got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value}")
    return int(value)


def seed(value: Any, name: str = "seed") -> int | None:
    """``None`` (fresh entropy) or an integer >= 0, as ``numpy.random.default_rng`` takes it."""
    return None if value is None else non_negative_int(value, name)


def positive_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive finite number, got {value!r} "
                        f"({type(value).__name__})")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def learning_rate(lr: Any, name: str = "lr") -> float:
    return positive_number(lr, name)


def momentum(beta: Any, name: str = "momentum") -> float:
    return fraction(beta, name)


def non_negative_number(value: Any, name: str) -> float:
    """A finite number >= 0 (a weight decay, an epsilon, a schedule's floor)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number >= 0, got {value!r} ({type(value).__name__})")
    if not (math.isfinite(float(value)) and float(value) >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def fraction(value: Any, name: str, closed: bool = False) -> float:
    """A number in [0, 1) (``closed``: [0, 1])."""
    interval = "[0, 1]" if closed else "[0, 1)"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in {interval}, got {value!r} "
                        f"({type(value).__name__})")
    if not (0.0 <= float(value) <= 1.0 and (closed or float(value) < 1.0)):
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def array(x: Any, name: str) -> Any:
    """The array namespace of ``x``; ``TypeError`` if ``x`` is not an eager array-API array.

    Lazy arrays (dask, ndonnx) are refused here, at the public entry: training reads values back
    every epoch, which a lazy graph can only do by computing everything so far each time.
    """
    if not is_array_api_obj(x):
        raise TypeError(f"{name} must be an array (NumPy, CuPy, torch or another array-API "
                        f"library), got {type(x).__name__}")
    if is_dask_array(x) or is_ndonnx_array(x) or (is_lazy_array(x) and not is_jax_array(x)):
        kind = "dask" if is_dask_array(x) else type(x).__module__.split(".")[0]
        how = f"{name}.compute()" if is_dask_array(x) else f"numpy.asarray({name})"
        raise TypeError(f"{name} is a lazy {kind} array, which tinycnn_xp cannot train on or "
                        f"evaluate; pass an eager array instead, e.g. {how} (NumPy), or a CuPy, "
                        f"torch or JAX array")
    if is_torch_array(x):
        if x.is_meta:
            raise TypeError(f"{name} is a torch tensor on the 'meta' device, which holds no values; "
                            f"pass one on a real device (cpu, cuda)")
        if str(x.layout) != "torch.strided":
            raise TypeError(f"{name} is a torch tensor of layout {x.layout} (sparse); pass a dense "
                            f"one: {name}.to_dense()")
    return namespace_of(x)


def floating_array(x: Any, name: str) -> Any:
    xp = array(x, name)
    if dtype_name(x.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have a real floating dtype (float32 or float64), "
                        f"got {dtype_name(x.dtype)}")
    return xp


#: Elements checked at once by ``finite``: its temporaries stay a few MiB, whatever the data.
FINITE_CHUNK = 1 << 20


def finite(x: Any, xp: Any, name: str) -> None:
    """Reject NaN or infinite entries (one host read per public call).

    Checked in chunks of rows, so that the check's temporaries (a library may make several of
    the array's size) stay small however large ``x`` is; the verdicts are combined on the device.
    """
    rows = max(1, FINITE_CHUNK // max(1, math.prod(x.shape[1:]))) if x.ndim else 1
    if x.ndim == 0 or x.shape[0] <= rows:
        ok = xp.all(xp.isfinite(x))
    else:
        n = x.shape[0]  # out-of-range slice stops are not standard: min()
        ok = xp.all(xp.stack([xp.all(xp.isfinite(x[start:min(start + rows, n), ...]))
                              for start in range(0, n, rows)]))
    if not bool(ok):
        # Counted only on the error path: the check itself is one reduction and one host read.
        bad = int(xp.sum(xp.astype(xp.logical_not(xp.isfinite(x)), xp.int64)))
        raise ValueError(f"{name} must hold finite numbers, got {bad} NaN or infinite "
                         f"value(s) in shape {tuple(x.shape)}")


def logits(x: Any, name: str = "logits") -> Any:
    """A ``(batch, classes)`` floating array with at least one row and one class."""
    xp = floating_array(x, name)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have shape (batch, classes) with batch >= 1 and "
                         f"classes >= 1, got shape {tuple(x.shape)}")
    return xp


def image_size(shape: Any, name: str = "input_shape") -> tuple[int, int, int]:
    """A ``(channels, height, width)`` tuple of positive integers."""
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{name} must be a tuple (channels, height, width), got {shape!r}")
    if len(shape) != 3:
        raise ValueError(f"{name} must be (channels, height, width), got {shape!r}")
    channels, height, width = (positive_int(value, name) for value in shape)
    return channels, height, width


def labels(y: Any, batch: int, name: str = "y", images: str = "x") -> None:
    """Integer class labels of shape ``(batch,)`` (their range: ``label_values``)."""
    xp = array(y, name)
    if not xp.isdtype(y.dtype, "integral"):
        raise TypeError(f"{name} must hold integer class labels, got dtype {dtype_name(y.dtype)}")
    if y.ndim != 1 or y.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},), one label per image of {images}, "
                         f"got shape {tuple(y.shape)}")


def label_values(y: Any, num_classes: int, name: str = "y") -> None:
    """Labels in ``[0, num_classes)``: a pass over the data and one host read, so only at the
    entries that take a whole dataset (``fit``, ``evaluate``)."""
    xp = namespace_of(y)
    if y.shape[0] and bool(xp.any((y < 0) | (y >= num_classes))):
        low, high = int(xp.min(y)), int(xp.max(y))
        raise ValueError(f"{name} must hold labels in [0, {num_classes - 1}] "
                         f"(the model has {num_classes} classes), got values from {low} to {high}")


def image_shape(shape: tuple[int, ...], channels: int | None, window: int, padding: int,
                name: str, layer: str) -> None:
    """``(batch, channels, height, width)`` with a non-empty batch and room for one window."""
    expect = f"(batch, {channels if channels is not None else 'channels'}, height, width)"
    if len(shape) != 4:
        raise ValueError(f"{name}: {layer} expects a 4-D array {expect}, got shape {shape}")
    non_empty_batch(shape, name, layer)
    if min(shape[1:]) < 1:  # an empty image has no window, however large the padding
        raise ValueError(f"{name}: {layer} expects at least one channel, row and column "
                         f"{expect}, got shape {shape}")
    if channels is not None and shape[1] != channels:
        raise ValueError(f"{name}: {layer} expects {channels} input channel(s) {expect}, "
                         f"got {shape[1]} (shape {shape})")
    if min(shape[2], shape[3]) + 2 * padding < window:
        raise ValueError(f"{name}: images of {shape[2]}x{shape[3]} are smaller than the "
                         f"{window}x{window} window of {layer}")


def same_place(x: Any, place: Placement, name: str) -> None:
    """``x`` lives on the library and device of ``place`` (any dtype: labels are integers)."""
    if namespace_of(x) is not place.xp or device(x) != place.device:
        where = f"{describe_namespace(place.xp)} on {place.device!r}"
        raise ValueError(f"{name} must live on {where}, like the other inputs, got a "
                         f"{describe(x)}; move it there first")


def compatible(current: Placement, new: Placement, owner: str, name: str | None = None) -> None:
    """A model placed on ``current`` accepts inputs from the same library, device and dtype only.

    ``name`` is the argument that brought ``new`` (``"x"``, ``"x_val"``, ...), for the message.
    """
    what = name if name is not None else "an input"
    if not current.same_place(new):
        raise ValueError(f"{owner} lives on {current}, got {what} on {new}; "
                         f"pass arrays of one library and device, or save and load the model")
    if current.dtype != new.dtype:
        raise TypeError(f"{owner} has {dtype_name(current.dtype)} parameters, got {what} of "
                        f"dtype {dtype_name(new.dtype)}; cast {name or 'the input'} to "
                        f"{dtype_name(current.dtype)}")


def state_arrays(given: dict[str, Any], expected: dict[str, tuple[int, ...]]) -> None:
    """Arrays by name (``param/conv.weights``, ...) that are exactly the ``expected`` shapes,
    floating and finite: a trained model's state (``fit`` never leaves anything else)."""
    if set(given) != set(expected):
        raise ValueError(f"the parameter arrays do not match the architecture: missing "
                         f"{sorted(set(expected) - set(given))}, unexpected "
                         f"{sorted(set(given) - set(expected))}")
    for key, shape in expected.items():
        array = given[key]
        if tuple(array.shape) != shape or dtype_name(array.dtype) not in FLOAT_DTYPES:
            raise ValueError(f"{key} has shape {tuple(array.shape)} and dtype "
                             f"{dtype_name(array.dtype)}, the architecture needs a float32 or "
                             f"float64 array of shape {shape}")
        xp = namespace_of(array)
        if not bool(xp.all(xp.isfinite(array))):
            raise ValueError(f"{key} holds NaN or infinite values; a trained model's "
                             "parameters and velocities are finite")


def images(model: Any, x: Any, name: str) -> tuple[Placement, tuple[int, ...]]:
    """``x`` fits ``model`` (and its placement, if it has one): its placement and the logits' shape.

    ``model`` is anything with ``output_shape(shape, name)`` and ``placement`` (a layer or model).
    Free checks only (kind, dtype, shape, library and device): the values are checked once, at the
    entries that read a whole dataset (``finite``).
    """
    floating_array(x, name)
    logits_shape = model.output_shape(tuple(x.shape), name)
    place = placement_of(x)
    if model.placement is not None:
        compatible(model.placement, place, type(model).__name__, name)
    return place, logits_shape


def non_empty_batch(shape: tuple[int, ...], name: str, owner: str) -> None:
    """At least one dimension, and a batch of at least one."""
    if len(shape) < 1 or shape[0] < 1:
        raise ValueError(f"{name}: {owner} expects a non-empty batch (batch, ...), got shape {shape}")


def gradient(d_output: Any, expected: tuple[int, ...], place: Placement | None, owner: str) -> None:
    """An upstream gradient of the last forward output's shape, library, device and dtype."""
    floating_array(d_output, "d_output")
    if place is not None:  # the dtype too: a float64 gradient would make float32 d_weights float64
        compatible(place, placement_of(d_output), owner, "d_output")
    if tuple(d_output.shape) != tuple(expected):
        raise ValueError(f"d_output must have the shape of the last forward output {tuple(expected)}, "
                         f"got {tuple(d_output.shape)}")


def train_and_validation(place: Placement, val_place: Placement) -> None:
    """Training and validation data on one library and device, in one floating dtype."""
    if not place.same_place(val_place):
        raise ValueError(f"x_val is on {val_place} but x_train is on {place}; "
                         f"pass training and validation data on one library and device")
    if place.dtype != val_place.dtype:
        raise TypeError(f"x_val has dtype {dtype_name(val_place.dtype)} but x_train "
                        f"{dtype_name(place.dtype)}; pass training and validation images of one "
                        f"floating dtype")


def data(model: Any, x: Any, y: Any, x_name: str = "x", y_name: str = "y") -> Placement:
    """Images ``x`` that fit ``model`` and integer labels ``y`` for them, on one device (free
    checks: the values are ``dataset``'s)."""
    place, (batch, _) = images(model, x, x_name)
    labels(y, batch, y_name, x_name)
    same_place(y, place, y_name)
    return place


def dataset(model: Any, x: Any, y: Any | None, x_name: str = "x", y_name: str = "y") -> Placement:
    """``data`` (``images`` without labels), then the values: finite images, labels in range."""
    if y is None:
        place, _ = images(model, x, x_name)
    else:
        place = data(model, x, y, x_name, y_name)
        label_values(y, model.output_shape(tuple(x.shape), x_name)[1], y_name)
    finite(x, place.xp, x_name)
    return place


def target(xp: Any, device: Any, dtype: Any, default_dtype: str) -> Placement:
    """The placement that ``to(xp, device, dtype)`` asks for, proven by making an array there.

    ``dtype``: ``"float32"``, ``"float64"``, one of ``xp``'s dtype objects, or ``None`` for
    ``default_dtype``; ``device``: one of ``xp``'s devices, or ``None`` for its default.
    """
    if isinstance(xp, str) or not hasattr(xp, "asarray") or not hasattr(xp, "zeros"):
        raise TypeError(f"xp must be an array namespace (numpy, cupy, torch, jax.numpy, "
                        f"array_api_strict, ...), got {xp!r:.80}")
    if is_dask_namespace(xp) or is_ndonnx_namespace(xp):
        raise TypeError(f"xp: {describe_namespace(xp)} is a lazy array library, which tinycnn_xp "
                        f"cannot train on; use numpy (and .compute() your data) or another "
                        f"eager library")
    name = default_dtype if dtype is None else dtype if isinstance(dtype, str) else dtype_name(dtype)
    if name not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be one of {FLOAT_DTYPES} (or None), got {dtype!r}")
    try:
        probe = xp.zeros((1,), dtype=getattr(xp, name),
                         **({} if device is None else {"device": device}))
    except Exception as exc:  # a device the library does not have, a dtype it cannot hold there
        raise ValueError(f"cannot make a {name} array with {describe_namespace(xp)} on device "
                         f"{device!r}: {type(exc).__name__}: {exc}") from None
    if getattr(getattr(probe, "device", None), "type", None) == "meta":  # torch: shapes, no values
        raise ValueError(f"device={device!r}: torch's meta device holds no values, so a model "
                         f"there would lose its weights; use a real device (cpu, cuda)")
    if dtype_name(probe.dtype) != name:  # JAX without jax_enable_x64 quietly makes float32
        raise ValueError(f"{describe_namespace(xp)} made a {dtype_name(probe.dtype)} array when "
                         f"asked for {name}; with JAX, turn float64 on first: "
                         f"jax.config.update('jax_enable_x64', True)")
    return Placement(namespace_of(probe), device_of(probe), probe.dtype)


def deprecated(method: str, legacy: dict[str, Any]) -> None:
    """``check=``/``cache=`` of 0.2.0: accepted for one release, with a ``DeprecationWarning``."""
    unknown = set(legacy) - {"check", "cache"}
    if unknown:
        raise TypeError(f"{method}() got unexpected keyword arguments {sorted(unknown)}")
    if legacy:
        warnings.warn(f"{method}({', '.join(f'{k}=' for k in legacy)}) is deprecated and ignored: "
                      f"the public methods check only what costs nothing; it will be removed in "
                      f"0.4", DeprecationWarning, stacklevel=3)
