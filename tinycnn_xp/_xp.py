"""Array-namespace plumbing: where an array lives, moving arrays there, and the host boundary.

Everything the layers need from here is taken once per public call (resolving a namespace costs
microseconds, more than a small array operation), then handed down explicitly as ``xp``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
from array_api_compat import (
    array_namespace,
    device,
    is_array_api_obj,
    is_cupy_array,
    is_jax_array,
    is_numpy_array,
    is_torch_array,
    to_device,
)

__all__ = ["Placement", "namespace_of", "placement_of", "placed", "move", "to_numpy", "describe",
           "as_data", "as_labels"]

Array = Any  # any array-API array


class Placement:
    """Where a model's arrays live: an array namespace ``xp``, a ``device`` of it, a floating ``dtype``.

    ``model.placement`` is one of these (or ``None`` before the model has seen an input).
    """

    __slots__ = ("xp", "device", "dtype")

    def __init__(self, xp: Any, device: Any, dtype: Any) -> None:
        self.xp, self.device, self.dtype = xp, device, dtype

    # Immutable, and it holds a module (which cannot be copied): copies of a model share it.
    def __copy__(self) -> Placement:
        return self

    def __deepcopy__(self, memo: dict) -> Placement:
        return self

    def same_place(self, other: Placement) -> bool:
        """Same library and device (any dtype)."""
        # Devices are compared with ==, never hashed: CuPy devices are not hashable.
        return self.xp is other.xp and self.device == other.device

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Placement) and self.same_place(other)
                and self.dtype == other.dtype)

    __hash__ = None  # type: ignore[assignment]  # devices may be unhashable

    def __repr__(self) -> str:
        return f"{describe_namespace(self.xp)} on {self.device!r} ({dtype_name(self.dtype)})"


def _numpy_namespace() -> ModuleType:
    """NumPy's namespace, with the functions that are a Python wrapper around a C method
    (``reshape``, ``astype``, ``take``, the reductions, ``permute_dims``, ...) calling the method
    directly: one name, one meaning, the faster routine (as array-api-extra delegates per
    function). At 8x8 a training step costs its array calls: a wrapper costs about a call."""
    fast = ModuleType("numpy", "NumPy, as tinycnn_xp calls it: numpy's own functions and methods.")
    fast.__dict__.update({k: v for k, v in vars(np).items() if not k.startswith("__")})

    def reshape(x: Any, /, shape: tuple[int, ...], *, copy: bool | None = None) -> Any:
        return np.reshape(x, shape, copy=copy) if copy is not None else x.reshape(shape)

    def astype(x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Any:
        return x.astype(dtype, copy=copy) if device is None else np.astype(x, dtype, copy=copy, device=device)

    def method(name: str, call: str) -> Any:  # the standard's signature is the method's
        def function(x: Any, /, *args: Any, **kwargs: Any) -> Any:
            return getattr(x, call)(*args, **kwargs)
        function.__name__ = name
        return function

    def matrix_transpose(x: Any, /) -> Any:
        return x.mT

    for function in (reshape, astype, matrix_transpose):
        setattr(fast, function.__name__, function)
    for name, call in (("take", "take"), ("sum", "sum"), ("mean", "mean"), ("max", "max"),
                       ("min", "min"), ("argmax", "argmax"), ("all", "all"), ("any", "any"),
                       ("permute_dims", "transpose")):
        setattr(fast, name, method(name, call))
    return fast


#: The namespace of NumPy arrays (``namespace_of``).
NUMPY = _numpy_namespace()


def namespace_of(*arrays: Any) -> Any:
    """The array namespace of ``arrays``: ``array_api_compat.array_namespace``, except that NumPy
    arrays get NumPy itself (``NUMPY``; NumPy >= 2.1 implements the standard, and its compat
    wrapper would only add a Python call to every array call)."""
    xp = array_namespace(*arrays)
    return NUMPY if xp.__name__ == "array_api_compat.numpy" else xp


def placed(owner: Any) -> Placement:
    """``owner.placement`` (a layer's or a model's), or ``RuntimeError`` if it has none yet."""
    if owner.placement is None:
        raise RuntimeError(f"{type(owner).__name__} is not placed yet: call forward(x) (with "
                           f"checks) or to(xp, device, dtype) first")
    return owner.placement


def describe_namespace(xp: Any) -> str:
    return getattr(xp, "__name__", repr(xp)).replace("array_api_compat.", "")


def dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "").replace("array_api_strict.", "")


def describe(x: Any) -> str:
    """A short description of an array for error messages: library, device, dtype, shape."""
    if not is_array_api_obj(x):
        return f"{type(x).__name__}"
    xp = array_namespace(x)
    return (f"{describe_namespace(xp)} array on {device(x)!r}, dtype {dtype_name(x.dtype)}, "
            f"shape {tuple(x.shape)}")


def placement_of(*arrays: Any) -> Placement:
    """The namespace and device shared by ``arrays`` (the first one's dtype).

    Raises ``ValueError`` naming both when two of them live on different libraries or devices.
    """
    first = arrays[0]
    xp = namespace_of(first)
    dev = device(first)
    for other in arrays[1:]:
        if other is None:
            continue
        if namespace_of(other) is not xp or device(other) != dev:
            raise ValueError(f"arrays must live on one library and device: got {describe(first)} "
                             f"and {describe(other)}")
    return Placement(xp, dev, first.dtype)


def _is_numpy_namespace(xp: Any) -> bool:
    return getattr(xp, "__name__", "") in ("numpy", "array_api_compat.numpy")


def row_dots(a: Array, b: Array, xp: Any) -> Array:
    """``sum(a * b, axis=-1)`` of two 2-D arrays: one meaning, the faster routine per library.
    NumPy's ``vecdot`` is a fused loop (the sum of a product first writes a product the size of
    the data: 6x slower); array_api_compat's ``vecdot`` for torch is a batched matrix product
    (60x slower than torch's sum of a product), so everywhere else it is the sum of the product."""
    if _is_numpy_namespace(xp):
        return xp.vecdot(a, b)
    return xp.sum(a * b, axis=-1)


def move(array: Array, place: Placement, dtype: Any = None) -> Array:
    """``array`` (host NumPy, or any library's) on ``place``, cast to ``dtype`` if given.

    One transfer at most: a host array is cast on the host, then copied to the device once (so a
    float32 model never makes a float64 array on a device without float64); an array already on
    ``place``'s library is cast and moved there; anything else goes through the host.
    """
    xp = place.xp
    array = as_data(array)  # a parameter never joins the caller's autograd graph
    if is_numpy_array(array) or not is_array_api_obj(array):
        host = np.asarray(array)
        if dtype is not None:
            host = host.astype(_host_dtype(dtype), copy=False)
        return host if _is_numpy_namespace(xp) else xp.asarray(host, device=place.device)
    if namespace_of(array) is xp:
        if dtype is not None and array.dtype != dtype:
            array = xp.astype(array, dtype)  # on its own device, before the move
        return array if device(array) == place.device else to_device(array, place.device)
    return move(to_numpy(array), place, dtype)


def as_data(x: Any) -> Any:
    """``x`` as plain data: a torch tensor that autograd tracks (``requires_grad``) is detached.

    Public entries call this on every floating input, so a tracked tensor never pulls the
    parameters into its autograd graph (they would gain a ``grad_fn``, and every step would keep
    the graph of all steps before it). Anything else comes back unchanged, at no cost.
    """
    if getattr(x, "requires_grad", False) and is_torch_array(x):
        return x.detach()
    return x


def as_labels(y: Any) -> Any:
    """Integer labels in their library's default integer dtype (int64; int32 on JAX without
    ``jax_enable_x64``), on their device; anything else (not an array, not integers) unchanged,
    for the checks to refuse by name.

    torch cannot compare or one-hot its ``uint16``/``uint32``/``uint64`` tensors, and mixing
    integer dtypes promotes differently from library to library; one dtype at the entry makes
    every integer dtype a library has work the same. Values that do not fit the default dtype
    (``uint64`` above 2**63 - 1) become its largest value, which the label checks then refuse
    as out of range.
    """
    if not is_array_api_obj(y):
        return y
    xp = array_namespace(y)
    try:
        if not xp.isdtype(y.dtype, "integral"):
            return y
        target = _default_integer(xp, device(y))
    except Exception:  # a library without the inspection API: leave the labels to the checks
        return y
    if y.dtype == target:
        return y
    if np.iinfo(dtype_name(y.dtype)).max > np.iinfo(dtype_name(target)).max:
        # Too wide to cast exactly, and torch cannot even compare uint64: clip on the host.
        host = np.minimum(to_numpy(y), np.iinfo(dtype_name(target)).max)
        return xp.asarray(host.astype(dtype_name(target)), device=device(y))
    return xp.astype(y, target)


def _default_integer(xp: Any, dev: Any) -> Any:
    info = getattr(xp, "__array_namespace_info__", None)
    if info is None:
        return xp.int64
    return info().default_dtypes(device=dev)["integral"]


def _host_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype of the same name as ``dtype`` (``torch.float32`` -> ``float32``)."""
    return np.dtype(dtype_name(dtype))


def to_numpy(x: Any) -> np.ndarray:
    """A host NumPy copy of ``x`` (a deliberate, explicit transfer; never a view of ``x``)."""
    if is_cupy_array(x):
        return x.get()
    if is_torch_array(x):
        return x.detach().cpu().numpy().copy()
    if is_numpy_array(x) or is_jax_array(x) or not is_array_api_obj(x):
        return np.array(x, copy=True)
    # Any other array-API library: move to its default (host) device, then DLPack.
    xp = array_namespace(x)
    host_device = xp.__array_namespace_info__().default_device()
    return np.array(np.from_dlpack(x.to_device(host_device)), copy=True)
