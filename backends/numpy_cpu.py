"""NumPy on the CPU: the required baseline."""

NAME = "numpy"
REQUIREMENTS: list[str] = []  # numpy is a runtime dependency of tinycnn_xp


def probe() -> str | None:
    return None


def unavailable() -> str | None:
    return None


def namespace():
    import numpy
    return numpy


def device():
    return "cpu"


def asarray(host):
    import numpy
    return numpy.array(host, copy=True)


def to_numpy(array):
    import numpy
    return numpy.asarray(array)
