"""Backends by name: ``resolve("torch", "cpu")`` gives a namespace and a device, or says why not.

The one runtime resolver of the package; the command line and the benchmarks use it. (The test
matrix in ``backends/`` runs where only nox is installed, so it keeps its own list; a test checks
that both name the same backends.)
"""

from __future__ import annotations

import ctypes
from typing import Any, NamedTuple

import numpy as np

__all__ = ["NAMES", "Backend", "BackendUnavailable", "resolve"]

#: every backend name, in the order the test matrix runs them.
NAMES = ("numpy", "array_api_strict", "torch", "jax", "cupy")


class BackendUnavailable(Exception):
    """A backend that cannot run here; the message says why in one line."""


class Backend(NamedTuple):
    """A resolved backend: its ``name``, array namespace ``xp`` and ``device``."""

    name: str
    xp: Any
    device: Any

    def put(self, host: np.ndarray, dtype: str | None = None) -> Any:
        """A host array placed on this backend's device (cast to ``dtype`` on the host first)."""
        host = np.ascontiguousarray(host if dtype is None else host.astype(dtype))
        if self.name == "numpy":
            return host
        return self.xp.asarray(host, device=self.device)

    def sync(self) -> None:
        """Wait for the work queued on the device (a no-op where calls are synchronous)."""
        if self.name == "cupy":
            import cupy
            cupy.cuda.Device().synchronize()
        elif self.name == "torch" and getattr(self.device, "type", "cpu") == "cuda":
            import torch
            torch.cuda.synchronize(self.device)


def resolve(name: str, device: str | None = None) -> Backend:
    """The namespace and device of backend ``name`` (see ``NAMES``) on ``device`` (default: the
    library's CPU, or GPU 0 for cupy); ``BackendUnavailable`` saying why if it cannot run here."""
    if name not in NAMES:
        raise BackendUnavailable(f"unknown backend {name!r}; choose from {', '.join(NAMES)}")
    return {"numpy": _numpy, "array_api_strict": _strict, "torch": _torch, "jax": _jax,
            "cupy": _cupy}[name](device)


def _numpy(device: str | None) -> Backend:
    if device not in (None, "cpu"):
        raise BackendUnavailable(f"the numpy backend runs on the CPU only (device cpu), got {device!r}")
    return Backend("numpy", np, "cpu")


def _strict(device: str | None) -> Backend:
    try:
        import array_api_strict as xp
    except ImportError:
        raise BackendUnavailable("backend array_api_strict is not installed: "
                                 "pip install array-api-strict") from None
    try:
        return Backend("array_api_strict", xp, xp.Device(device or "CPU_DEVICE"))
    except ValueError:
        names = ", ".join(str(d).split("'")[1] for d in xp.__array_namespace_info__().devices())
        raise BackendUnavailable(f"array_api_strict has no device {device!r}; its devices: {names}") from None


def _torch(device: str | None) -> Backend:
    try:
        import array_api_compat.torch as xp
        import torch
    except ImportError:
        raise BackendUnavailable("backend torch is not installed: pip install torch") from None
    try:
        dev = torch.device(device or "cpu")
        torch.zeros(1, device=dev)  # fails here, not mid-training, if the device is absent
    except (RuntimeError, AssertionError) as exc:
        raise BackendUnavailable(f"torch cannot use device {device!r}: "
                                 f"{str(exc).splitlines()[0]}") from None
    return Backend("torch", xp, dev)


def _jax(device: str | None) -> Backend:
    try:
        import jax
        import jax.numpy as xp
    except ImportError:
        raise BackendUnavailable("backend jax is not installed: pip install jax") from None
    platform = device or "cpu"
    try:
        dev = jax.devices(platform.split(":")[0])[int(platform.split(":")[1]) if ":" in platform else 0]
    except (RuntimeError, IndexError, ValueError) as exc:
        raise BackendUnavailable(f"jax cannot use device {device!r}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else 'no such device'}") from None
    return Backend("jax", xp, dev)


def _cupy(device: str | None) -> Backend:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        raise BackendUnavailable("cupy needs an NVIDIA GPU: no CUDA driver on this machine "
                                 "(libcuda.so.1 not found)") from None
    try:
        import array_api_compat.cupy as xp
        import cupy
    except ImportError:
        raise BackendUnavailable('backend cupy is not installed: pip install "tinycnn-xp[cupy]" '
                                 "(needs an NVIDIA GPU with CUDA 12)") from None
    try:
        dev = cupy.cuda.Device(int(device or 0))
        with dev:
            # A kernel that runs proves driver, device and runtime compiler.
            if float((cupy.arange(3) + 1).sum()) != 6.0:
                raise RuntimeError("a test kernel gave a wrong result")
    except Exception as exc:  # CUDARuntimeError, CompileException, ValueError (bad device)
        raise BackendUnavailable(f"cupy cannot run on GPU {device or 0}: {type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else 'no details'}") from None
    return Backend("cupy", xp, dev)
