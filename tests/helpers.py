"""Small helpers shared by several test modules."""

from tinycnn_xp._xp import to_numpy


def param_state(model):
    """Host copies of every parameter and velocity, by qualified name (``conv.weights``, ...)."""
    out = {}
    for name, layer, attr in model.parameters():
        out[name] = to_numpy(getattr(layer, attr))
        out[name + ".velocity"] = to_numpy(layer.velocity[attr])
    return out
