"""tinycnn_xp: a small convolutional network with hand-derived backpropagation, written once
against the Python array API standard, so the same code trains on NumPy, CuPy, torch, ...

The library follows Chapter 24 ("Training a CNN with Backpropagation"): its classes, arguments,
attributes and numbers. Pass NumPy arrays to train on the CPU, CuPy arrays to train on a GPU.

Names are imported when first used (``tinycnn_xp.TinyCNN`` imports the models then): importing
the package costs nothing, so the ``tinycnn-xp`` command can answer Ctrl-C while NumPy loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.4.0"  # the one place the version is written (pyproject.toml reads it)

#: where each public name lives
_EXPORTS = {
    "._xp": ("Placement", "to_numpy"),
    ".data": ("CLASS_NAMES", "PATTERNS", "make_dataset_bundle"),
    ".gradcheck": ("check_gradients", "numerical_gradient", "relative_error"),
    ".history": ("METRICS", "History"),
    ".layers": ("LAYERS", "AvgPool2D", "BatchNorm1D", "BatchNorm2D", "Conv2D", "Dense", "Dropout",
                "Flatten", "Layer", "MaxPool2D", "ReLU"),
    ".optim": ("SGD", "RMSprop", "Adam", "AdamW"),
    ".losses": ("softmax", "softmax_cross_entropy"),
    ".models": ("Sequential", "TinyCNN"),
    ".presets": ("PRESETS", "deep_cnn", "make_model", "vgg_cnn"),
    ".sweep": ("learning_rate_sweep",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "Adam", "AdamW", "AvgPool2D", "BatchNorm1D", "BatchNorm2D", "CLASS_NAMES", "Conv2D", "Dense",
    "Dropout", "Flatten", "History", "LAYERS", "Layer", "RMSprop", "SGD",
    "METRICS", "MaxPool2D", "PATTERNS", "PRESETS", "Placement", "ReLU", "Sequential", "TinyCNN",
    "check_gradients", "deep_cnn", "learning_rate_sweep", "make_dataset_bundle", "make_model",
    "numerical_gradient", "relative_error", "softmax", "softmax_cross_entropy", "to_numpy",
    "vgg_cnn",
]


def __getattr__(name: str) -> Any:
    """A public name (``TinyCNN``, ...) or a submodule (``checkpoint``, ...), imported now."""
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers and editors see: the same names, imported eagerly
    from ._xp import Placement, to_numpy
    from .data import CLASS_NAMES, PATTERNS, make_dataset_bundle
    from .gradcheck import check_gradients, numerical_gradient, relative_error
    from .history import METRICS, History
    from .layers import (
        LAYERS,
        AvgPool2D,
        BatchNorm1D,
        BatchNorm2D,
        Conv2D,
        Dense,
        Dropout,
        Flatten,
        Layer,
        MaxPool2D,
        ReLU,
    )
    from .losses import softmax, softmax_cross_entropy
    from .models import Sequential, TinyCNN
    from .optim import SGD, Adam, AdamW, RMSprop
    from .presets import PRESETS, deep_cnn, make_model, vgg_cnn
    from .sweep import learning_rate_sweep
