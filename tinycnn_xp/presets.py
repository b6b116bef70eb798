"""Named model presets, all for 1x8x8 images: ``make_model("tiny" | "deep" | ..., seed, num_classes)``."""

from __future__ import annotations

from typing import Callable

from . import _checks
from .layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from .models import Sequential, TinyCNN

__all__ = ["deep_cnn", "PRESETS", "make_model"]


def deep_cnn(seed: int = 42, num_classes: int = 3) -> Sequential:
    """Exercise 24.3: ``Conv2D(1,3,3) -> ReLU -> Conv2D(3,6,3) -> ReLU -> MaxPool(2) -> Flatten ->
    Dense(24, num_classes)`` for 8x8 images (273 parameters with 3 classes)."""
    return Sequential([Conv2D(1, 3, 3), ReLU(), Conv2D(3, 6, 3), ReLU(), MaxPool2D(2), Flatten(),
                       Dense(24, num_classes)], seed=seed,
                      names=["conv1", "relu1", "conv2", "relu2", "pool", "flatten", "dense"],
                      input_shape=(1, 8, 8))


#: Named model builders, ``builder(seed=..., num_classes=...)``, all for 1x8x8 images.
PRESETS: dict[str, Callable[..., Sequential]] = {"tiny": TinyCNN, "deep": deep_cnn}


def make_model(name: str, seed: int = 42, num_classes: int = 3) -> Sequential:
    """Build the preset called ``name`` (see ``PRESETS``)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"model must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name](seed=seed, num_classes=num_classes)
