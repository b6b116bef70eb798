"""array-api-strict with every array on a non-default device: ``Device("device1")``, or
``Device("no_float64")`` (``pytest --device no_float64 -m float32``).

The GPU proxy: an array created without the input's device lands on ``CPU_DEVICE`` and mixing it
with a device1 array raises, and ``numpy.asarray`` of a device1 array raises, exactly where CuPy
would fail on a GPU. ``no_float64`` refuses float64 arrays, like Apple's MPS: a float32 model
must never make one.
"""

NAME = "array_api_strict"
REQUIREMENTS = ["array-api-strict==2.6.1"]
DEVICES = ("device1", "no_float64")
DEVICE = "device1"
#: after the whole suite on device1, the float32 tests again on the device without float64
RUNS = [["--device=no_float64", "-m", "float32"]]
#: a quarter of the randomized architectures: every operation here is a wrapped NumPy call
#: (10x slower), and the numpy session draws them all on every Python
EXAMPLE_SCALE = 0.25


def probe() -> str | None:
    return None


def unavailable() -> str | None:
    try:
        import array_api_strict  # noqa: F401
    except ImportError:
        return "array-api-strict is not installed (pip install array-api-strict)"
    return None


def namespace():
    import array_api_strict
    return array_api_strict


def device():
    import array_api_strict
    return array_api_strict.Device(DEVICE)


def asarray(host):
    import array_api_strict
    return array_api_strict.asarray(host, device=device(), copy=True)


def to_numpy(array):
    import array_api_strict
    import numpy
    return numpy.from_dlpack(array.to_device(array_api_strict.Device("CPU_DEVICE")))
