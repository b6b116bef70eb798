"""``train --tensorboard DIR``: TensorBoard scalars (the four metrics and the learning rate) and
the first convolution's filters as images, per epoch, written with tensorboardX (the
``tensorboard`` extra: a small writer, no TensorFlow). A resumed run purges what a stopped one
wrote after its checkpoint's last epoch, so that no epoch is repeated or lost."""

from __future__ import annotations

import os
import secrets
from typing import Any

import numpy as np

from .._xp import to_numpy
from ..history import METRICS
from ..layers import Conv2D
from .common import UsageProblem

__all__ = ["Board", "filter_images"]


def filter_images(kernels: np.ndarray, scale: int = 8) -> np.ndarray:
    """``(filters, 1, kh * scale, kw * scale)`` images in [0, 1] of convolution weights
    ``(filters, channels, kh, kw)`` (averaged over the channels, each filter scaled by its own
    range, each pixel a ``scale`` x ``scale`` block)."""
    mean = kernels.mean(axis=1, keepdims=True)
    low = mean.min(axis=(1, 2, 3), keepdims=True)
    span = mean.max(axis=(1, 2, 3), keepdims=True) - low
    images = (mean - low) / np.where(span > 0, span, 1.0)
    return np.kron(images, np.ones((1, 1, scale, scale)))


class Board:
    """The TensorBoard writer of one run (``folder``), continuing after ``done`` epochs."""

    def __init__(self, folder: str, done: int, lr: float) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise UsageProblem('--tensorboard needs tensorboardX: pip install '
                               '"tinycnn-xp[tensorboard]"') from None
        try:
            # A file of its own: two runs within one second would otherwise share a name.
            self.writer = SummaryWriter(logdir=folder, purge_step=done if done else None,
                                        filename_suffix=f".{os.getpid()}.{secrets.token_hex(4)}")
        except OSError as exc:
            raise UsageProblem(f"cannot write into the TensorBoard folder {folder}: "
                               f"{exc.strerror or exc}") from None
        self.lr = lr

    def epoch_ended(self, epoch: int, metrics: dict, model: Any) -> None:
        for key in METRICS:
            self.writer.add_scalar(key, metrics[key], epoch)
        optimizer = getattr(model, "optimizer", None)  # the epoch's rate (a schedule's)
        self.writer.add_scalar("lr", optimizer.rate(epoch) if optimizer else self.lr, epoch)
        conv = next((layer for layer in model.layers if isinstance(layer, Conv2D)), None)
        if conv is not None:
            self.writer.add_images("filters", filter_images(to_numpy(conv.weights)), epoch,
                                   dataformats="NCHW")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
