"""The benchmark's PyTorch baseline: a tinycnn_xp model's twin in PyTorch eager mode, on the CPU.

``twin(model, dtype)`` builds the same layers as ``torch.nn`` modules holding a copy of the
model's current parameters; ``fit`` is the library's ``fit`` loop (same shuffles from
``numpy.random.default_rng(seed)``, same batches, same per-epoch metrics, one host transfer per
epoch) with autograd and ``torch.optim.SGD``; ``train_step`` is one forward + backward + update.
torch is imported inside the functions, so importing this module never needs it. Uses the
library's public API only.

The loss is ``torch.nn.functional.cross_entropy``; the library clips the true-class probability
at 1e-12 before the log, which changes nothing unless a probability falls below 1e-12.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinycnn_xp import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    ReLU,
    to_numpy,
)
from tinycnn_xp.evaluation import eval_batch_size


def twin(model: Any, dtype: str = "float64") -> Any:
    """A ``torch.nn.Sequential`` with ``model``'s layers and a copy of its parameters, on the CPU."""
    import torch

    kind = getattr(torch, dtype)  # parameters made in this dtype: copies into float32 would round
    modules = []
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            module = torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                     stride=layer.stride, padding=layer.padding, dtype=kind)
            weights = to_numpy(layer.weights)
        elif isinstance(layer, Dense):
            module = torch.nn.Linear(layer.in_features, layer.out_features, dtype=kind)
            weights = to_numpy(layer.weights).T  # torch keeps (out_features, in_features)
        elif isinstance(layer, MaxPool2D):
            module = torch.nn.MaxPool2d(layer.pool_size, stride=layer.stride)
        elif isinstance(layer, AvgPool2D):
            module = torch.nn.AvgPool2d(layer.pool_size, stride=layer.stride)
        elif isinstance(layer, ReLU):
            module = torch.nn.ReLU()
        elif isinstance(layer, Flatten):
            module = torch.nn.Flatten()
        elif isinstance(layer, (BatchNorm2D, BatchNorm1D)):
            kind_of = torch.nn.BatchNorm2d if isinstance(layer, BatchNorm2D) else torch.nn.BatchNorm1d
            module = kind_of(layer.channels, eps=layer.eps, momentum=layer.momentum, dtype=kind)
        elif isinstance(layer, Dropout):
            module = torch.nn.Dropout(layer.p)
        else:
            raise TypeError(f"no PyTorch twin for {type(layer).__name__}")
        if isinstance(layer, (Conv2D, Dense)):
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights)))
                module.bias.copy_(torch.from_numpy(to_numpy(layer.bias)))
        modules.append(module)
    return torch.nn.Sequential(*modules)


def tensor(host: np.ndarray, dtype: str | None = None) -> Any:
    """A CPU tensor copy of a host array (cast to ``dtype`` if given)."""
    import torch
    if dtype is not None:
        host = host.astype(dtype)
    return torch.asarray(np.array(host, copy=True))


def train_step(net: Any, optimizer: Any, x: Any, y: Any) -> Any:
    """Forward, cross-entropy, backward, SGD update; returns the (device) loss."""
    import torch.nn.functional as F
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    optimizer.step()
    return loss


def fit(net: Any, x_train: Any, y_train: Any, x_val: Any, y_val: Any, epochs: int = 80,
        lr: float = 0.12, batch_size: int = 18, seed: int = 0, adam: bool = False) -> dict:
    """The library's ``fit`` loop in PyTorch (``torch.optim.SGD``, or ``Adam`` if ``adam``);
    returns the four per-epoch metric lists. Steps in training mode, metrics in evaluation mode
    (``net.train()``/``net.eval()``), in the library's chunks (``evaluation.eval_batch_size``),
    as ``fit`` measures them: the same memory, and the same work."""
    import torch
    import torch.nn.functional as F

    optimizer = (torch.optim.Adam if adam else torch.optim.SGD)(net.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    n_train = x_train.shape[0]
    n_batches = -(-n_train // batch_size)
    chunk = eval_batch_size(None, tuple(x_train.shape[1:]))
    history: dict = {"train_loss": [], "val_loss": [], "train_acc": [], "val_acc": []}
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(n_train))
        x_epoch, y_epoch = x_train[order], y_train[order]
        total = torch.zeros((), dtype=x_train.dtype)
        net.train()
        for start in range(0, n_train, batch_size):
            loss = train_step(net, optimizer, x_epoch[start:start + batch_size],
                              y_epoch[start:start + batch_size])
            total += loss.detach()
        net.eval()
        with torch.no_grad():
            train_hits = sum((net(x_train[i:i + chunk]).argmax(dim=1) == y_train[i:i + chunk]).sum()
                             for i in range(0, n_train, chunk))
            val_loss = val_hits = 0
            for i in range(0, x_val.shape[0], chunk):
                logits = net(x_val[i:i + chunk])
                val_loss = val_loss + F.cross_entropy(logits, y_val[i:i + chunk], reduction="sum")
                val_hits = val_hits + (logits.argmax(dim=1) == y_val[i:i + chunk]).sum()
            n_val = x_val.shape[0]
            values = torch.stack([total / n_batches, val_loss / n_val,
                                  torch.as_tensor(train_hits, dtype=x_train.dtype) / n_train,
                                  torch.as_tensor(val_hits, dtype=x_train.dtype) / n_val]).tolist()
        for key, value in zip(("train_loss", "val_loss", "train_acc", "val_acc"), values):
            history[key].append(value)
    return history
