"""``tinycnn-xp gradcheck``: backprop against finite differences, in float64, like the chapter."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ..presets import make_model
from . import datasets
from .common import UsageProblem, resolve_backend

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    from ..gradcheck import check_gradients, zero_by_construction
    backend = resolve_backend(args.backend, args.device, dtype=None)  # float64, no --dtype
    shape: Any = None  # the preset's own: 1x8x8, or 1x28x28 for the LeNets
    classes = args.classes or 3
    if args.data:  # the model sized for these images, with their classes
        data = datasets.load(args, "float64")
        shape, classes = tuple(data.x_train.shape[1:]), args.classes or len(data.names)
    try:
        model = make_model(args.model or "tiny", seed=args.seed, num_classes=classes,
                           input_shape=shape)
    except ValueError as exc:
        raise UsageProblem(f"--model {args.model or 'tiny'}: {exc}") from None
    shape = tuple(model.input_shape or (1, 8, 8))
    # A batch of a few images gives batch normalization a few values per feature: with 2 its
    # output is +-1 whatever the input, and the gradients through it vanish into rounding.
    if args.samples is None:
        args.samples = 8 if any(layer.buffer_names for layer in model.layers) else 4
    # The chapter's check: N(0, 1) images. Real images have exact zeros, and a window of zeros
    # puts a ReLU exactly on its kink, where a finite difference is not a derivative.
    rng = np.random.default_rng(123)
    x = backend.put(rng.normal(0.0, 1.0, size=(args.samples, *shape)))  # float64: needed here
    y = backend.put(np.arange(args.samples, dtype=np.int64) % classes)
    print(f"gradient check: model {args.model or 'tiny'} (seed {args.seed}, {classes} classes), "
          f"{args.samples} random {'x'.join(map(str, shape))} images, backend {backend.name} on "
          f"{backend.device}, float64, epsilon {args.epsilon:g}")
    errors = check_gradients(model, x, y, epsilon=args.epsilon)
    shapes = {name: tuple(getattr(layer, attr).shape) for name, layer, attr in model.parameters()}
    shapes["input"] = tuple(x.shape)
    zero = zero_by_construction(model)  # their relative error compares two roundings
    width = max(len(name) for name in errors)
    print(f"{'array':<{width}}  {'shape':<14s}  relative error")
    failed = 0
    for name, error in errors.items():
        ok = error < args.threshold
        failed += not ok and name not in zero
        verdict = "zero gradient: a bias before batch normalization" if name in zero else (
            "ok" if ok else "FAIL")
        print(f"{name:<{width}}  {shapes[name]!s:<14s}  {error:.2e}  {verdict}")
    checked = len(errors) - len(zero)
    print(f"{checked - failed} of {checked} below the threshold {args.threshold:g}"
          + (f" ({len(zero)} zero by construction, not counted)" if zero else ""))
    return 1 if failed else 0
