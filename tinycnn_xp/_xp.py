"""Array-namespace plumbing: which library and device an input lives on, and the host boundary.

Everything the layers need from here is taken once per public call (resolving a namespace costs
microseconds, more than a small array operation), then handed down explicitly as ``xp``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, device, is_array_api_obj
from array_api_compat import is_cupy_array, is_numpy_array, is_torch_array

__all__ = ["Placement", "placement_of", "to_numpy", "on_device", "describe"]


class Placement:
    """Where a model's arrays live: a namespace, a device on it and a floating dtype."""

    __slots__ = ("xp", "device", "dtype")

    def __init__(self, xp: Any, device: Any, dtype: Any):
        self.xp, self.device, self.dtype = xp, device, dtype

    # Immutable, and it holds a module (which cannot be copied): copies of a model share it.
    def __copy__(self) -> "Placement":
        return self

    def __deepcopy__(self, memo: dict) -> "Placement":
        return self

    def same_place(self, other: "Placement") -> bool:
        # Devices are compared with ==, never hashed: CuPy devices are not hashable.
        return self.xp is other.xp and self.device == other.device

    def __repr__(self) -> str:
        return f"{describe_namespace(self.xp)} on {self.device!r} ({dtype_name(self.dtype)})"


def describe_namespace(xp: Any) -> str:
    return getattr(xp, "__name__", repr(xp)).replace("array_api_compat.", "")


def dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "").replace("array_api_strict.", "")


def describe(x: Any) -> str:
    """A short description of an array for error messages: library, device, dtype, shape."""
    if not is_array_api_obj(x):
        return f"{type(x).__name__}"
    xp = array_namespace(x)
    return f"{describe_namespace(xp)} array on {device(x)!r}, dtype {dtype_name(x.dtype)}, shape {tuple(x.shape)}"


def placement_of(*arrays: Any) -> Placement:
    """The namespace and device shared by ``arrays`` (the first one's dtype).

    Raises ``ValueError`` naming both when two of them live on different libraries or devices.
    """
    first = arrays[0]
    xp = array_namespace(first)
    dev = device(first)
    for other in arrays[1:]:
        if other is None:
            continue
        if array_namespace(other) is not xp or device(other) != dev:
            raise ValueError(f"arrays must live on one library and device: got {describe(first)} "
                             f"and {describe(other)}")
    return Placement(xp, dev, first.dtype)


def on_device(host: np.ndarray, place: Placement, dtype: Any = None) -> Any:
    """Copy a host NumPy array onto ``place`` (one transfer), optionally casting to ``dtype``."""
    xp = place.xp
    if xp is np or getattr(xp, "__name__", "") == "array_api_compat.numpy":
        out = np.asarray(host)
        return out if dtype is None or out.dtype == dtype else out.astype(dtype)
    out = xp.asarray(host, device=place.device)
    return out if dtype is None or out.dtype == dtype else xp.astype(out, dtype)


def to_numpy(x: Any) -> np.ndarray:
    """A host NumPy copy of ``x`` (a deliberate, explicit transfer; never a view of ``x``)."""
    if is_cupy_array(x):
        return x.get()
    if is_torch_array(x):
        return x.detach().cpu().numpy().copy()
    if is_numpy_array(x) or not is_array_api_obj(x):
        return np.array(x, copy=True)
    # Any other array-API library: move to its default (host) device, then DLPack.
    xp = array_namespace(x)
    host_device = xp.__array_namespace_info__().default_device()
    return np.array(np.from_dlpack(x.to_device(host_device)), copy=True)
