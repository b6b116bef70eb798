"""The chapter's straightforward implementation, kept as the benchmark's baseline (NumPy only).

Conv2D/ReLU/MaxPool2D/Flatten/Dense with Python loops over output pixels (and, in max pooling,
over batch and channels), softmax cross-entropy, plain SGD and the chapter's fit loop: the code
of Chapter 24 with two changes that do not touch the arithmetic: the initial parameters are
handed in (so the benchmark starts it from a library model's weights) and ``fit`` prints only
when asked. Float64 throughout, like the chapter. Not part of the installed package: the tests
check the library against it (``from benchmarks.chapter_loops import LoopCNN``).

Like the chapter, backward also computes the first layer's input gradient (which nobody uses).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Conv2D:
    """Valid 3-D cross-correlation, stride 1: ``weights`` ``(out, in, k, k)``, ``bias`` ``(out,)``."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray) -> None:
        self.weights = np.array(weights, dtype=np.float64)
        self.bias = np.array(bias, dtype=np.float64)
        self.out_channels, self.in_channels, self.kernel_size, _ = self.weights.shape
        self.d_weights = np.zeros_like(self.weights)
        self.d_bias = np.zeros_like(self.bias)
        self.last_input = None

    def forward(self, x):
        self.last_input = x
        batch_size, _, height, width = x.shape
        out_h = height - self.kernel_size + 1
        out_w = width - self.kernel_size + 1
        output = np.zeros((batch_size, self.out_channels, out_h, out_w))
        for row in range(out_h):
            for col in range(out_w):
                patch = x[:, :, row:row + self.kernel_size, col:col + self.kernel_size]
                output[:, :, row, col] = (np.tensordot(patch, self.weights, axes=([1, 2, 3], [1, 2, 3]))
                                          + self.bias)
        return output

    def backward(self, d_output):
        x = self.last_input
        _, _, out_h, out_w = d_output.shape
        self.d_weights.fill(0.0)
        self.d_bias = d_output.sum(axis=(0, 2, 3))
        d_input = np.zeros_like(x)
        for row in range(out_h):
            for col in range(out_w):
                patch = x[:, :, row:row + self.kernel_size, col:col + self.kernel_size]
                # dL/dK: upstream gradient dot input patch
                self.d_weights += np.tensordot(d_output[:, :, row, col], patch, axes=([0], [0]))
                # dL/dX: upstream gradient dot kernel
                d_input[:, :, row:row + self.kernel_size, col:col + self.kernel_size] += np.tensordot(
                    d_output[:, :, row, col], self.weights, axes=([1], [0]))
        return d_input

    def step(self, lr):
        self.weights -= lr * self.d_weights
        self.bias -= lr * self.d_bias


class ReLU:
    def __init__(self):
        self.last_input = None

    def forward(self, x):
        self.last_input = x
        return np.maximum(0.0, x)

    def backward(self, d_output):
        return d_output * (self.last_input > 0.0)


class MaxPool2D:
    """Non-overlapping max pooling; the first maximum of a window wins (argmax)."""

    def __init__(self, pool_size=2):
        self.pool_size = pool_size
        self.last_input = None
        self.last_mask = None

    def forward(self, x):
        self.last_input = x
        batch_size, channels, height, width = x.shape
        out_h = height // self.pool_size
        out_w = width // self.pool_size
        output = np.zeros((batch_size, channels, out_h, out_w))
        mask = np.zeros_like(x)
        for row in range(out_h):
            for col in range(out_w):
                rs = row * self.pool_size
                cs = col * self.pool_size
                window = x[:, :, rs:rs + self.pool_size, cs:cs + self.pool_size]
                output[:, :, row, col] = window.max(axis=(2, 3))
                flat_idx = window.reshape(batch_size, channels, -1).argmax(axis=2)
                for b in range(batch_size):
                    for c in range(channels):
                        winner = flat_idx[b, c]
                        wr = winner // self.pool_size
                        wc = winner % self.pool_size
                        mask[b, c, rs + wr, cs + wc] = 1.0
        self.last_mask = mask
        return output

    def backward(self, d_output):
        d_input = np.zeros_like(self.last_input)
        out_h, out_w = d_output.shape[2], d_output.shape[3]
        for row in range(out_h):
            for col in range(out_w):
                rs = row * self.pool_size
                cs = col * self.pool_size
                mask_w = self.last_mask[:, :, rs:rs + self.pool_size, cs:cs + self.pool_size]
                d_input[:, :, rs:rs + self.pool_size, cs:cs + self.pool_size] += (
                    mask_w * d_output[:, :, row, col][:, :, None, None])
        return d_input


class Flatten:
    def __init__(self):
        self.last_shape = None

    def forward(self, x):
        self.last_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, d_output):
        return d_output.reshape(self.last_shape)


class Dense:
    """``y = x @ weights + bias`` with ``weights`` ``(in_features, out_features)``."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray) -> None:
        self.weights = np.array(weights, dtype=np.float64)
        self.bias = np.array(bias, dtype=np.float64)
        self.d_weights = np.zeros_like(self.weights)
        self.d_bias = np.zeros_like(self.bias)
        self.last_input = None

    def forward(self, x):
        self.last_input = x
        return x @ self.weights + self.bias

    def backward(self, d_output):
        self.d_weights = self.last_input.T @ d_output
        self.d_bias = d_output.sum(axis=0)
        return d_output @ self.weights.T

    def step(self, lr):
        self.weights -= lr * self.d_weights
        self.bias -= lr * self.d_bias


def softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp_values = np.exp(shifted)
    return exp_values / exp_values.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits, targets):
    """``(loss, probabilities, d_logits)``; the true-class probability is clipped to [1e-12, 1]."""
    probabilities = softmax(logits)
    batch_idx = np.arange(targets.shape[0])
    clipped = np.clip(probabilities[batch_idx, targets], 1e-12, 1.0)
    loss = -np.log(clipped).mean()
    d_logits = probabilities.copy()
    d_logits[batch_idx, targets] -= 1.0
    d_logits /= targets.shape[0]
    return loss, probabilities, d_logits


class LoopCNN:
    """``Conv2D -> ReLU -> MaxPool2D -> Flatten -> Dense`` from given initial parameters."""

    def __init__(self, conv_weights, conv_bias, dense_weights, dense_bias, pool_size=2):
        self.conv = Conv2D(conv_weights, conv_bias)
        self.relu = ReLU()
        self.pool = MaxPool2D(pool_size)
        self.flatten = Flatten()
        self.dense = Dense(dense_weights, dense_bias)
        self.layers = [self.conv, self.relu, self.pool, self.flatten, self.dense]

    @classmethod
    def from_model(cls, model: Any) -> LoopCNN:
        """The same network as a tinycnn_xp ``TinyCNN``-shaped model, with a copy of its parameters."""
        from tinycnn_xp import to_numpy
        return cls(to_numpy(model.conv.weights), to_numpy(model.conv.bias),
                   to_numpy(model.dense.weights), to_numpy(model.dense.bias), model.pool.pool_size)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss_and_grad(self, x, y):
        logits = self.forward(x)
        loss, probs, d_logits = softmax_cross_entropy(logits, y)
        grad = d_logits
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return loss, probs

    def step(self, lr):
        self.conv.step(lr)
        self.dense.step(lr)

    def predict(self, x):
        return np.argmax(self.forward(x), axis=1)

    def evaluate(self, x, y):
        return np.mean(self.predict(x) == y)

    def fit(self, x_train, y_train, x_val, y_val, epochs=80, lr=0.12, batch_size=18, seed=0,
            verbose=False):
        """The chapter's mini-batch SGD loop; the history holds Python floats."""
        rng = np.random.default_rng(seed)
        n_train = x_train.shape[0]
        snapshot_epochs = {0, 1, 5, 15, 40, epochs - 1}
        history = {"train_loss": [], "val_loss": [], "train_acc": [], "val_acc": [],
                   "kernel_snapshots": {}}
        for epoch in range(epochs):
            if epoch in snapshot_epochs:
                history["kernel_snapshots"][epoch] = self.conv.weights.copy()
            perm = rng.permutation(n_train)
            x_shuf = x_train[perm]
            y_shuf = y_train[perm]
            epoch_loss = 0.0
            n_batches = 0
            for start in range(0, n_train, batch_size):
                end = min(start + batch_size, n_train)
                loss, _ = self.loss_and_grad(x_shuf[start:end], y_shuf[start:end])
                self.step(lr)
                epoch_loss += loss
                n_batches += 1
            avg_loss = epoch_loss / n_batches
            train_acc = self.evaluate(x_train, y_train)
            val_acc = self.evaluate(x_val, y_val)
            val_loss, _, _ = softmax_cross_entropy(self.forward(x_val), y_val)
            for key, value in (("train_loss", avg_loss), ("val_loss", val_loss),
                               ("train_acc", train_acc), ("val_acc", val_acc)):
                history[key].append(float(value))
            if verbose and (epoch % 10 == 0 or epoch == epochs - 1):
                print(f"Epoch {epoch:3d}/{epochs}: loss={avg_loss:.4f}  "
                      f"train_acc={train_acc:.1%}  val_acc={val_acc:.1%}")
        return history
