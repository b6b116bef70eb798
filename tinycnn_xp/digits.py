"""Real data: scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download).

Needs the optional extra ``digits`` (``pip install "tinycnn-xp[digits]"``), imported only when
the data is asked for.
"""

from __future__ import annotations

import numpy as np

from . import _checks
from .datafiles import check_val_fraction, stratified_split

__all__ = ["DIGIT_NAMES", "load_digits_split"]

DIGIT_NAMES = tuple(str(d) for d in range(10))


def load_digits_split(val_fraction: float = 0.2, seed: int = 0):
    """The digits with a fixed stratified train/validation split.

    Returns host NumPy arrays ``(x_train, y_train, x_val, y_val, class_names)`` like
    ``make_dataset_bundle``: images ``(n, 1, 8, 8)`` float64 scaled to [0, 1] (the raw pixels are
    0..16), labels ``(n,)`` int64, class names ``"0"`` .. ``"9"``. Each digit contributes
    ``round(val_fraction * count)`` of its images to validation, chosen by
    ``numpy.random.default_rng(seed)``, so the split is the same on every machine (the defaults
    give 1,438 training and 359 validation images).
    """
    check_val_fraction(val_fraction)
    _checks.non_negative_int(seed, "seed")
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError('the digits dataset needs scikit-learn: pip install "tinycnn-xp[digits]"') from exc

    bunch = load_digits()
    images = (np.asarray(bunch.images, dtype=np.float64) / 16.0)[:, None, :, :]
    labels = np.asarray(bunch.target, dtype=np.int64)

    # Stratified: the same fraction of every digit goes to validation; each part shuffled so
    # that the first images of x_train are a mix of digits, like the line patterns.
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    return images[train_idx], labels[train_idx], images[val_idx], labels[val_idx], DIGIT_NAMES
