"""The chapter's synthetic line-pattern dataset: shifted, noisy 8x8 images of oriented lines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _checks

__all__ = ["CLASS_NAMES", "PATTERNS", "make_dataset_bundle"]

CLASS_NAMES = ("vertical", "horizontal", "diagonal")


def _pattern_for_class(class_name: str, size: int) -> np.ndarray:
    """The clean ``(size, size)`` pattern of one class, values in [0, 1]."""
    pattern = np.zeros((size, size))
    center = size // 2
    if class_name == "vertical":        # a 2-pixel-wide vertical bar through the centre
        pattern[:, center - 1:center + 1] = 1.0
    elif class_name == "horizontal":    # the same bar, horizontal
        pattern[center - 1:center + 1, :] = 1.0
    elif class_name == "diagonal":      # the main diagonal with fainter neighbours
        pattern += np.eye(size) + 0.35 * np.eye(size, k=1) + 0.35 * np.eye(size, k=-1)
    elif class_name == "dot":           # Exercise 24.5: a small blob (2x2 core, faint rim)
        pattern[center - 2:center + 2, center - 2:center + 2] = 0.35
        pattern[center - 1:center + 1, center - 1:center + 1] = 1.0
    return np.clip(pattern, 0.0, 1.0)


#: Every class name ``make_dataset_bundle`` knows.
PATTERNS = ("vertical", "horizontal", "diagonal", "dot")


def make_dataset_bundle(train_per_class: int = 60, val_per_class: int = 30, size: int = 8,
                        seed: int = 7, class_names: Sequence[str] = CLASS_NAMES):
    """Shifted (by -2..2 pixels, wrapping), noisy (sigma 0.15, clipped to [0, 1]) class patterns.

    Returns host NumPy arrays ``(x_train, y_train, x_val, y_val, class_names)``: images
    ``(n, 1, size, size)`` float64, labels ``(n,)`` int64, shuffled together and split.
    Identical to the chapter's data for the same arguments. Move them to another library with
    ``xp.asarray(x, device=...)``.
    """
    train_per_class = _checks.positive_int(train_per_class, "train_per_class")
    val_per_class = _checks.positive_int(val_per_class, "val_per_class")
    size = _checks.positive_int(size, "size")
    if size < 4:
        raise ValueError(f"size must be at least 4 (room for a pattern and its shifts), got {size}")
    _checks.non_negative_int(seed, "seed")
    if (isinstance(class_names, str) or not isinstance(class_names, Sequence)
            or not all(isinstance(name, str) for name in class_names)):
        raise TypeError(f"class_names must be a sequence of class names, got {class_names!r}")
    class_names = tuple(class_names)
    unknown = [name for name in class_names if name not in PATTERNS]
    if not class_names or unknown or len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names must be distinct names from {PATTERNS}, got {class_names}")

    rng = np.random.default_rng(seed)
    per_class = train_per_class + val_per_class
    images = np.empty((len(class_names) * per_class, size, size))
    # One sample at a time on the host: the shifts and the noise must come from the generator in
    # the chapter's order (two shifts, then the noise, per sample) to give the chapter's images.
    for cls_idx, name in enumerate(class_names):
        base = _pattern_for_class(name, size)
        for i in range(cls_idx * per_class, (cls_idx + 1) * per_class):
            shift = (rng.integers(-2, 3), rng.integers(-2, 3))
            noise = rng.normal(0, 0.15, size=(size, size))
            images[i] = np.clip(np.roll(base, shift, axis=(0, 1)) + noise, 0.0, 1.0)
    labels = np.repeat(np.arange(len(class_names), dtype=np.int64), per_class)

    order = rng.permutation(labels.size)
    images, labels = images[order][:, None, :, :], labels[order]
    n_train = train_per_class * len(class_names)
    return images[:n_train], labels[:n_train], images[n_train:], labels[n_train:], class_names
