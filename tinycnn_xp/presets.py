"""Named model presets, sized for their input: ``make_model("tiny" | "deep" | "vgg" | "lenet" |
"lenet_bn", seed, num_classes, input_shape=(channels, height, width))``; each preset's default
input is its own: the chapter's 1x8x8, or MNIST's 1x28x28 for the LeNets."""

from __future__ import annotations

from collections.abc import Callable

from . import _checks
from .layers import BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, ReLU
from .models import Sequential, TinyCNN

__all__ = ["tiny_cnn", "deep_cnn", "vgg_cnn", "lenet", "lenet_bn", "PRESETS", "make_model"]

CHAPTER_INPUT = (1, 8, 8)
MNIST_INPUT = (1, 28, 28)


def tiny_cnn(seed: int = 42, num_classes: int = 3,
             input_shape: tuple[int, int, int] = CHAPTER_INPUT) -> Sequential:
    """The chapter's ``Conv2D(c->3, 3x3) -> ReLU -> MaxPool(2) -> Flatten -> Dense`` for
    ``(c, h, w)`` images; on the chapter's 1x8x8 it is ``TinyCNN`` itself."""
    channels, height, width = _checks.image_size(input_shape)
    if (channels, height, width) == CHAPTER_INPUT:
        return TinyCNN(seed=seed, num_classes=num_classes)
    _at_least("tiny", input_shape, 4)
    return _sized([Conv2D(channels, 3, 3), ReLU(), MaxPool2D(2), Flatten(), None],
                  ["conv", "relu", "pool", "flatten", "dense"], seed, num_classes, input_shape)


def deep_cnn(seed: int = 42, num_classes: int = 3,
             input_shape: tuple[int, int, int] = CHAPTER_INPUT) -> Sequential:
    """Exercise 24.3: ``Conv2D(c,3,3) -> ReLU -> Conv2D(3,6,3) -> ReLU -> MaxPool(2) -> Flatten
    -> Dense`` (273 parameters for 8x8 images and 3 classes)."""
    channels = _checks.image_size(input_shape)[0]
    _at_least("deep", input_shape, 6)
    return _sized([Conv2D(channels, 3, 3), ReLU(), Conv2D(3, 6, 3), ReLU(), MaxPool2D(2), Flatten(),
                   None], ["conv1", "relu1", "conv2", "relu2", "pool", "flatten", "dense"], seed,
                  num_classes, input_shape)


def vgg_cnn(seed: int = 42, num_classes: int = 3,
            input_shape: tuple[int, int, int] = CHAPTER_INPUT) -> Sequential:
    """A small VGG-style network: two padded 3x3 convolutions, pool, a third, pool, ``Dense``.
    Padding keeps the border that TinyCNN's valid convolution loses; 8,410 parameters for the
    8x8 digits, about 99% on them."""
    channels = _checks.image_size(input_shape)[0]
    _at_least("vgg", input_shape, 4)
    return _sized([Conv2D(channels, 16, 3, padding=1), ReLU(), Conv2D(16, 16, 3, padding=1), ReLU(),
                   MaxPool2D(2), Conv2D(16, 32, 3, padding=1), ReLU(), MaxPool2D(2), Flatten(), None],
                  ["conv1", "relu1", "conv2", "relu2", "pool1", "conv3", "relu3", "pool2", "flatten",
                   "dense"], seed, num_classes, input_shape)


def lenet(seed: int = 42, num_classes: int = 10,
          input_shape: tuple[int, int, int] = MNIST_INPUT) -> Sequential:
    """LeNet-5 as it is usually written today, for 28x28 digits: ``Conv2D(c,6,5, padding=2) ->
    ReLU -> MaxPool(2) -> Conv2D(6,16,5) -> ReLU -> MaxPool(2) -> Flatten -> Dense(400,120) ->
    ReLU -> Dense(120,84) -> ReLU -> Dense(84,classes)`` (61,706 parameters for 1x28x28 and
    10 classes; the first ``Dense`` takes what the convolutions give other images, at least 12x12)."""
    return _lenet("lenet", seed, num_classes, input_shape, normalized=False)


def lenet_bn(seed: int = 42, num_classes: int = 10,
             input_shape: tuple[int, int, int] = MNIST_INPUT) -> Sequential:
    """``lenet`` with batch normalization after each convolution (before its ReLU,
    ``BatchNorm2D``) and after the two hidden ``Dense`` layers (``BatchNorm1D``), and
    ``Dropout(0.25)`` before the last two ``Dense`` layers (its masks seeded by ``seed``)."""
    return _lenet("lenet_bn", seed, num_classes, input_shape, normalized=True)


def _lenet(name: str, seed: int, num_classes: int, input_shape: tuple[int, int, int],
           normalized: bool) -> Sequential:
    channels = _checks.image_size(input_shape)[0]
    _at_least(name, input_shape, 12)
    _checks.non_negative_int(seed, "seed")
    layers: list[Layer] = []
    names: list[str] = []

    def add(*pairs: tuple[str, Layer]) -> None:
        for layer_name, layer in pairs:
            names.append(layer_name)
            layers.append(layer)

    for k, (inner, outer, padding) in enumerate(((channels, 6, 2), (6, 16, 0)), start=1):
        add((f"conv{k}", Conv2D(inner, outer, 5, padding=padding)))
        if normalized:
            add((f"bn{k}", BatchNorm2D(outer)))
        add((f"relu{k}", ReLU()), (f"pool{k}", MaxPool2D(2)))
    add(("flatten", Flatten()))
    shape: tuple[int, ...] = (1, *input_shape)
    for layer in layers:
        shape = layer.output_shape(shape, "input_shape")
    for k, (inner, outer) in enumerate(((shape[1], 120), (120, 84)), start=3):
        if normalized and k == 4:
            add(("drop1", Dropout(0.25, seed=seed)))
        add((f"dense{k - 2}", Dense(inner, outer)))
        if normalized:
            add((f"bn{k}", BatchNorm1D(outer)))
        add((f"relu{k}", ReLU()))
    if normalized:
        add(("drop2", Dropout(0.25, seed=seed + 1)))
    add(("dense3", Dense(84, _checks.positive_int(num_classes, "num_classes"))))
    return Sequential(layers, seed=seed, names=names, input_shape=_checks.image_size(input_shape))


def _at_least(name: str, input_shape: tuple[int, int, int], side: int) -> None:
    if min(input_shape[1:]) < side:
        raise ValueError(f"input_shape: the {name!r} preset needs images of at least {side}x{side}, "
                         f"got {input_shape[1]}x{input_shape[2]}")


def _sized(layers: list, names: list[str], seed: int, num_classes: int,
           input_shape: tuple[int, int, int]) -> Sequential:
    """The layers with their last entry (``None``) made the ``Dense`` that takes what the
    others give for ``input_shape``."""
    _checks.non_negative_int(seed, "seed")
    shape: tuple[int, ...] = (1, *input_shape)
    for layer in layers[:-1]:
        shape = layer.output_shape(shape, "input_shape")
    features = shape[1]
    dense = Dense(features, _checks.positive_int(num_classes, "num_classes"))
    return Sequential([*layers[:-1], dense], seed=seed, names=names,
                      input_shape=_checks.image_size(input_shape))


#: Named model builders, ``builder(seed=..., num_classes=..., input_shape=...)``.
PRESETS: dict[str, Callable[..., Sequential]] = {"tiny": tiny_cnn, "deep": deep_cnn, "vgg": vgg_cnn,
                                                 "lenet": lenet, "lenet_bn": lenet_bn}


def make_model(name: str, seed: int = 42, num_classes: int = 3,
               input_shape: tuple[int, int, int] | None = None) -> Sequential:
    """The preset called ``name`` (see ``PRESETS``) for ``(channels, height, width)`` images
    (default: the preset's own, 1x8x8 or, for the LeNets, 1x28x28); ``ValueError`` if it cannot
    take them (too small for its convolutions and pools)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"name must be a model preset, one of {sorted(PRESETS)}, got {name!r}")
    if input_shape is None:
        return PRESETS[name](seed=seed, num_classes=num_classes)
    return PRESETS[name](seed=seed, num_classes=num_classes, input_shape=tuple(input_shape))
