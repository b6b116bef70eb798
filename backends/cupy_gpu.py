"""CuPy on a CUDA GPU: usable only where a driver is present, CUDA reports a device, and a tiny
kernel actually runs (the plain wheel may lack the runtime compiler)."""

NAME = "cupy"
REQUIREMENTS = ["cupy-cuda12x"]


def probe() -> str | None:
    """Cheap check before installing CuPy (~140 MB): is there a CUDA driver at all?"""
    import ctypes
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no CUDA driver on this machine (libcuda.so.1 not found): CuPy needs an NVIDIA GPU"
    return None


def unavailable() -> str | None:
    reason = probe()
    if reason:
        return reason
    try:
        import cupy
    except ImportError:
        return "cupy is not installed (pip install cupy-cuda12x)"
    try:
        if not cupy.cuda.is_available():
            return "CuPy reports no CUDA device"
        if float((cupy.arange(3) + 1).sum()) != 6.0:
            return "a test kernel gave a wrong result on the GPU"
    except Exception as exc:  # CUDARuntimeError, compiler errors: any reason not to run here
        return f"CuPy cannot run a kernel here: {type(exc).__name__}: {exc}"
    return None


def namespace():
    import array_api_compat.cupy
    return array_api_compat.cupy


def device():
    import cupy
    return cupy.cuda.Device()


def asarray(host):
    import cupy
    return cupy.array(host, copy=True)


def to_numpy(array):
    return array.get()
