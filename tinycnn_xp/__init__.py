"""tinycnn_xp: a small convolutional network with hand-derived backpropagation, written once
against the Python array API standard, so the same code trains on NumPy, CuPy, torch, ...

The library follows Chapter 24 ("Training a CNN with Backpropagation"): its classes, arguments,
attributes and numbers. Pass NumPy arrays to train on the CPU, CuPy arrays to train on a GPU.
"""

__version__ = "0.2.0"  # the one place the version is written (pyproject.toml reads it)

from ._xp import Placement, to_numpy
from .data import CLASS_NAMES, PATTERNS, make_dataset_bundle
from .gradcheck import check_gradients, numerical_gradient, relative_error
from .history import METRICS, History
from .layers import LAYERS, AvgPool2D, Conv2D, Dense, Flatten, Layer, MaxPool2D, ReLU
from .losses import softmax, softmax_cross_entropy
from .models import Sequential, TinyCNN
from .presets import PRESETS, deep_cnn, make_model, vgg_cnn
from .sweep import learning_rate_sweep

__all__ = [
    "AvgPool2D", "CLASS_NAMES", "Conv2D", "Dense", "Flatten", "History", "LAYERS", "Layer",
    "METRICS", "MaxPool2D", "PATTERNS", "PRESETS", "Placement", "ReLU", "Sequential", "TinyCNN",
    "check_gradients", "deep_cnn", "learning_rate_sweep", "make_dataset_bundle", "make_model",
    "numerical_gradient", "relative_error", "softmax", "softmax_cross_entropy", "to_numpy",
    "vgg_cnn",
]
