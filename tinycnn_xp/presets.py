"""Named model presets, all for 1x8x8 images: ``make_model("tiny" | "deep" | "vgg", seed, num_classes)``."""

from __future__ import annotations

from collections.abc import Callable

from .layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU
from .models import Sequential, TinyCNN

__all__ = ["deep_cnn", "vgg_cnn", "PRESETS", "make_model"]


def deep_cnn(seed: int = 42, num_classes: int = 3) -> Sequential:
    """Exercise 24.3: ``Conv2D(1,3,3) -> ReLU -> Conv2D(3,6,3) -> ReLU -> MaxPool(2) -> Flatten ->
    Dense(24, num_classes)`` for 8x8 images (273 parameters with 3 classes)."""
    return Sequential([Conv2D(1, 3, 3), ReLU(), Conv2D(3, 6, 3), ReLU(), MaxPool2D(2), Flatten(),
                       Dense(24, num_classes)], seed=seed,
                      names=["conv1", "relu1", "conv2", "relu2", "pool", "flatten", "dense"],
                      input_shape=(1, 8, 8))


def vgg_cnn(seed: int = 42, num_classes: int = 3) -> Sequential:
    """A small VGG-style network for the 8x8 digits: two padded 3x3 convolutions, pool, a third,
    pool, ``Dense(128, num_classes)``. Padding keeps the 8x8 border that TinyCNN's valid
    convolution loses; 8,410 parameters with 10 classes, about 99% on the digits."""
    return Sequential([Conv2D(1, 16, 3, padding=1), ReLU(), Conv2D(16, 16, 3, padding=1), ReLU(),
                       MaxPool2D(2), Conv2D(16, 32, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(),
                       Dense(32 * 2 * 2, num_classes)], seed=seed,
                      names=["conv1", "relu1", "conv2", "relu2", "pool1", "conv3", "relu3", "pool2",
                             "flatten", "dense"],
                      input_shape=(1, 8, 8))


#: Named model builders, ``builder(seed=..., num_classes=...)``, all for 1x8x8 images.
PRESETS: dict[str, Callable[..., Sequential]] = {"tiny": TinyCNN, "deep": deep_cnn, "vgg": vgg_cnn}


def make_model(name: str, seed: int = 42, num_classes: int = 3) -> Sequential:
    """Build the preset called ``name`` (see ``PRESETS``)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"name must be a model preset, one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name](seed=seed, num_classes=num_classes)
