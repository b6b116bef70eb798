"""The fast path: a whole training step of a common stack as one function of arrays.

``plan(model, image_shape, placement)`` reads a model made of blocks
``Conv2D [ReLU] [MaxPool2D with stride == pool_size] [ReLU]``, then ``Flatten`` and
``Dense [ReLU]`` layers (TinyCNN, every preset, most small CNNs) and returns a ``Plan``; any other
stack gets ``None`` and ``fit`` trains it layer by layer (the general path). A plan computes what
the layers compute, to the last bits, in three changes of form:

- Batch last. Activations are ``(rows, batch)``, rows being channels x positions, so each
  convolution is one matrix product over every image of the batch, and ``Flatten`` is free.
- A convolution followed by a max-pool computes its output window by window: ``(window element,
  channel, pooled position x batch)``. The pool is then an element-wise maximum of a few
  contiguous slices, and a ReLU runs after the pool on a quarter of the data:
  ``max(relu(a)) == relu(max(a))``, and the gradient reaches the same element either way.
- ``train_step`` returns new arrays for every parameter and velocity and changes nothing: a pure
  function, which ``training`` hands to ``jax.jit`` on JAX.

The step returns the batch's probabilities rather than its loss: ``batch_losses`` turns a whole
epoch of them into the chapter's per-batch mean losses at once, saving a handful of small array
calls per step (at 8x8 the cost of a step is the number of calls, not the arithmetic).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._windows import output_size, transpose_index, window_index
from ._xp import Placement, move
from .layers import Conv2D, Dense, Flatten, MaxPool2D, ReLU

__all__ = ["Plan", "plan", "train_step", "batch_losses"]

Array = Any


class _ConvBlock:
    """``Conv2D [ReLU] [MaxPool2D(s, stride=s)] [ReLU]`` on ``(channels * height * width, batch)``.

    The bias rides in the matrix product: each window gets one more tap, reading a row of ones
    appended to the input (after a row of zeros for the padding, if any), and the filters one
    more column, the bias. That saves a pass over the output and a reduction for its gradient.
    """

    def __init__(self, conv: Conv2D, relu: bool, pool: int, shape: tuple[int, int, int],
                 place: Placement, first: bool, max_batch: int) -> None:
        channels, height, width = shape
        k, pixels = conv.kernel_size, height * width
        out_h = output_size(height, k, conv.stride, conv.padding)
        out_w = output_size(width, k, conv.stride, conv.padding)
        index = window_index(height, width, k, conv.stride, conv.padding)  # (k*k, out_h*out_w)
        # Output positions by (window element, pooled position): a pool's windows become slices.
        pooled_h, pooled_w = out_h // pool, out_w // pool
        elements = np.arange(pool * pool)
        rows = (np.arange(pooled_h)[:, None] * pool)[None] + (elements // pool)[:, None, None]
        cols = (np.arange(pooled_w)[None, :] * pool)[None] + (elements % pool)[:, None, None]
        positions = (rows * out_w + cols).reshape(pool * pool, -1)       # (elements, pooled)
        taps = index[:, positions]                                       # (k*k, elements, pooled)
        padding = taps == pixels                                         # reads of the border
        zero_row = bool(padding.any())
        source = np.arange(channels)[:, None, None, None] * pixels + taps[None]
        source = np.where(padding[None], channels * pixels, source)      # one shared zero row
        self.elements, self.taps = pool * pool, channels * k * k
        self.positions = pooled_h * pooled_w
        gather = np.transpose(source, (2, 0, 1, 3)).reshape(self.elements, self.taps, -1)
        ones = np.full((self.elements, 1, self.positions), channels * pixels + zero_row)
        self.gather = move(np.concatenate([gather, ones], axis=1).reshape(-1), place)
        self.relu, self.first = relu, first
        self.out_channels = conv.out_channels
        self.out_shape = (conv.out_channels, pooled_h, pooled_w)
        self.device = place.device
        # The rows appended to every input, for batches up to ``max_batch`` (sliced, not rebuilt).
        extra = np.concatenate([np.zeros((int(zero_row), max_batch)), np.ones((1, max_batch))])
        self.extra = move(extra, place, place.dtype)
        if not first:  # the input gradient: the transposed gather, then a sum per input row
            flat = gather.reshape(-1)                                    # (element, c, tap, q)
            back = transpose_index(flat, channels * pixels)
            self.fan = back.shape[1]
            self.back_pads = bool(np.any(back == flat.size))
            self.back = move(back.reshape(-1), place)
            self.in_rows = channels * pixels

    def _extra(self, batch: int, xp: Any) -> Array:
        if batch <= self.extra.shape[1]:
            return self.extra[:, :batch]
        rows = self.extra.shape[0]
        return xp.concat([xp.zeros((rows - 1, batch), dtype=self.extra.dtype, device=self.device),
                          xp.ones((1, batch), dtype=self.extra.dtype, device=self.device)], axis=0)

    def forward(self, w: Array, b: Array, h: Array, xp: Any,
                train: bool = True) -> tuple[Array, tuple | None]:
        batch = h.shape[1]
        h = xp.concat([h, self._extra(batch, xp)], axis=0)
        cols = xp.reshape(xp.take(h, self.gather, axis=0),
                          (self.elements, self.taps + 1, self.positions * batch))
        z = xp.concat([w, b[:, None]], axis=1) @ cols   # (elements, out_channels, pooled x batch)
        best = z[0, ...]
        for e in range(1, self.elements):
            best = xp.maximum(best, z[e, ...])
        out = xp.maximum(best, 0.0) if self.relu else best
        if not train:
            return out, None
        # The pool's winners are found here, while ``z`` is at hand: the backward pass keeps them
        # (a quarter of ``z``'s size, as booleans) instead of ``z``. A large step's memory is then
        # small enough for the allocator to reuse it, rather than fault it in again each step.
        winners = None
        if self.elements > 1:  # the first maximum of each window takes the gradient
            hit = z[0, ...] == best
            taken, firsts = hit, [hit]
            for e in range(1, self.elements):
                hit = z[e, ...] == best
                firsts.append(hit & ~taken)
                if e < self.elements - 1:
                    taken = taken | hit
            winners = xp.stack(firsts)
        return out, (cols, winners, out)

    def infer(self, w: Array, b: Array, h: Array, xp: Any) -> Array:
        return self.forward(w, b, h, xp, train=False)[0]

    def backward(self, w: Array, cache: tuple, grad: Array, xp: Any) -> tuple[Array | None, Array, Array]:
        cols, winners, out = cache
        if self.relu:  # sign(relu(x)) is the chapter's (x > 0) as a number, in one call
            grad = grad * xp.sign(out)
        if winners is not None:
            d_z = xp.astype(winners, grad.dtype)
            d_z *= grad  # in place: a local temporary, the size of the convolution's output
            d_wb = xp.sum(d_z @ cols.mT, axis=0)
        else:
            d_z = grad[None, ...]
            d_wb = grad @ cols[0, ...].mT
        d_w, d_b = d_wb[:, :self.taps], d_wb[:, self.taps]
        if self.first:  # the data's gradient is never used
            return None, d_w, d_b
        batch = grad.shape[1] // self.positions
        d_cols = xp.reshape(w.mT @ d_z, (-1, batch))  # (element, c, tap, q) rows
        if self.back_pads:
            d_cols = xp.concat([d_cols, xp.zeros((1, batch), dtype=grad.dtype, device=self.device)],
                               axis=0)
        d_in = xp.take(d_cols, self.back, axis=0)
        if self.fan > 1:
            d_in = xp.sum(xp.reshape(d_in, (self.in_rows, self.fan, batch)), axis=1)
        return d_in, d_w, d_b


class _DenseBlock:
    """``Dense [ReLU]`` on ``(features, batch)``."""

    def __init__(self, relu: bool, first: bool) -> None:
        self.relu, self.first = relu, first

    def forward(self, w: Array, b: Array, h: Array, xp: Any) -> tuple[Array, tuple]:
        out = w.mT @ h + b[:, None]
        if self.relu:
            out = xp.maximum(out, 0.0)
        return out, (h, out)

    def infer(self, w: Array, b: Array, h: Array, xp: Any) -> Array:
        return self.forward(w, b, h, xp)[0]

    def backward(self, w: Array, cache: tuple, grad: Array, xp: Any) -> tuple[Array | None, Array, Array]:
        h, out = cache
        if self.relu:
            grad = grad * xp.sign(out)
        d_w = h @ grad.mT
        d_b = xp.sum(grad, axis=1)
        return (None if self.first else w @ grad), d_w, d_b


class Plan:
    """A model's training step and inference as functions of its parameters (see the module).

    Parameters travel as a tuple ``(w0, b0, w1, b1, ...)`` in the plan's shapes (a convolution's
    weights as ``(out_channels, in_channels * k * k)``); ``params``/``bind`` convert from and to
    the layers' own attributes, in the chapter's shapes.
    """

    def __init__(self, blocks: list, layers: list, place: Placement) -> None:
        self.blocks, self.layers, self.xp = blocks, layers, place.xp

    # ``params``/``bind`` in three parts, so that a compiled path can compile the array work
    # (``to_plan``, ``to_layers``: pure functions) and leave the attributes to Python.
    def layer_arrays(self) -> tuple[Array, ...]:
        """``(weights, bias, weights' velocity, bias' velocity)`` of every layer, flat."""
        return tuple(array for layer in self.layers for array in (
            layer.weights, layer.bias, layer.velocity["weights"], layer.velocity["bias"]))

    def to_plan(self, arrays: tuple) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
        """``layer_arrays`` as ``(params, velocities)`` in the plan's shapes (views on NumPy)."""
        xp, params, velocities = self.xp, [], []
        for i, layer in enumerate(self.layers):
            w, b, vw, vb = arrays[4 * i:4 * i + 4]
            shape = (w.shape[0], -1) if isinstance(layer, Conv2D) else w.shape
            params += [xp.reshape(w, shape), b]
            velocities += [xp.reshape(vw, shape), vb]
        return tuple(params), tuple(velocities)

    def to_layers(self, params: tuple, velocities: tuple, grads: tuple, grad_scale: Any) -> tuple:
        """The layers' arrays (``layer_arrays``, then the gradients) from the plan's, the
        gradients divided by ``grad_scale`` (``train_step``'s are times ``lr`` without momentum)."""
        xp, arrays, gradients = self.xp, [], []
        for i, layer in enumerate(self.layers):
            shape = layer.weights.shape
            arrays += [xp.reshape(params[2 * i], shape), params[2 * i + 1],
                       xp.reshape(velocities[2 * i], shape), velocities[2 * i + 1]]
            gradients += [xp.reshape(grads[2 * i] / grad_scale, shape),
                          grads[2 * i + 1] / grad_scale]
        return tuple(arrays + gradients)

    def assign(self, arrays: tuple) -> None:
        """Bind ``to_layers``' arrays to the layers' attributes (gradients only if given)."""
        n = 4 * len(self.layers)
        for i, layer in enumerate(self.layers):
            layer.weights, layer.bias = arrays[4 * i], arrays[4 * i + 1]
            layer.velocity["weights"], layer.velocity["bias"] = arrays[4 * i + 2], arrays[4 * i + 3]
            if len(arrays) > n:
                layer.d_weights, layer.d_bias = arrays[n + 2 * i], arrays[n + 2 * i + 1]

    def params(self) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
        """The layers' parameters and velocities, in the plan's shapes (views where possible)."""
        return self.to_plan(self.layer_arrays())

    def bind(self, params: tuple, velocities: tuple, grads: tuple | None,
             grad_scale: Any = None) -> None:
        """Give the layers these parameters, velocities and (if known) gradients, divided by
        ``grad_scale`` if given."""
        if grads is None:  # no step was taken: the parameters are the layers' already
            return
        self.assign(self.to_layers(params, velocities, grads, 1 if grad_scale is None else grad_scale))

    def logits(self, params: tuple, x: Array) -> Array:
        """``(classes, batch)`` logits of images ``x`` ``(batch, channels, height, width)``."""
        xp = self.xp
        h = xp.reshape(x, (x.shape[0], -1)).mT
        for i, block in enumerate(self.blocks):
            h = block.infer(params[2 * i], params[2 * i + 1], h, xp)
            if isinstance(block, _ConvBlock):
                h = xp.reshape(h, (-1, x.shape[0]))
        return h



def train_step(blocks: list, xp: Any, use_momentum: bool, params: tuple, velocities: tuple,
               x: Array, targets: Array, lr: Any, momentum: Any) -> tuple[tuple, tuple, tuple, Array]:
    """One SGD step on images ``x`` with one-hot ``targets`` ``(classes, batch)``, as a pure
    function of the plan's ``blocks`` (what ``jax.jit`` compiles: ``blocks``, ``xp`` and
    ``use_momentum`` static, every other argument traced).

    Returns ``(params, velocities, grads, probabilities)``, all new arrays; ``velocities`` come
    back unchanged, and ``grads`` times ``lr``, when ``use_momentum`` is false.
    """
    batch = x.shape[0]
    h = xp.reshape(x, (batch, -1)).mT
    caches = []
    for i, block in enumerate(blocks):
        h, cache = block.forward(params[2 * i], params[2 * i + 1], h, xp)
        caches.append(cache)
        if isinstance(block, _ConvBlock):
            h = xp.reshape(h, (-1, batch))
    probabilities = _softmax_rows(h, xp)
    # Plain SGD takes the learning rate into the first gradient, so that each update is one
    # subtraction: the gradients come back times ``lr`` then (``Plan.bind`` divides it out).
    grad = (probabilities - targets) / batch if use_momentum else (probabilities - targets) * (
        lr / batch)
    grads: list = [None] * len(params)
    for i in range(len(blocks) - 1, -1, -1):
        block, cache, caches[i] = blocks[i], caches[i], None  # freed as soon as it is used
        if isinstance(block, _ConvBlock):
            grad = xp.reshape(grad, (block.out_channels, -1))
        grad, grads[2 * i], grads[2 * i + 1] = block.backward(params[2 * i], cache, grad, xp)
        del cache
    if use_momentum:
        velocities = tuple(momentum * v + g for v, g in zip(velocities, grads))
        params = tuple(p - lr * v for p, v in zip(params, velocities))
    else:
        params = tuple(p - g for p, g in zip(params, grads))
    return params, velocities, tuple(grads), probabilities


def _softmax_rows(logits: Array, xp: Any) -> Array:
    """Softmax over the classes of ``(classes, batch)`` logits; a few classes are unrolled
    (element-wise calls on contiguous rows are cheaper than a reduction along axis 0)."""
    classes = logits.shape[0]
    if classes <= 4:
        top = logits[0, ...]
        for c in range(1, classes):
            top = xp.maximum(top, logits[c, ...])
        exp_values = xp.exp(logits - top)
        total = exp_values[0, ...]
        for c in range(1, classes):
            total = total + exp_values[c, ...]
        return exp_values / total
    exp_values = xp.exp(logits - xp.max(logits, axis=0, keepdims=True))
    return exp_values / xp.sum(exp_values, axis=0, keepdims=True)


def batch_losses(probabilities: Array, targets: Array, batch_size: int, xp: Any) -> Array:
    """Mean of the per-batch mean cross-entropies of an epoch, a 0-d array (the chapter's
    ``train_loss``), from the epoch's probabilities and one-hot targets, both ``(classes, n)``."""
    true_class = xp.sum(probabilities * targets, axis=0)
    losses = -xp.log(xp.maximum(true_class, 1e-12))
    n = losses.shape[0]
    full = n // batch_size
    means = xp.mean(xp.reshape(losses[:full * batch_size], (full, batch_size)), axis=1)
    if full * batch_size < n:  # a smaller last batch
        means = xp.concat([means, xp.mean(losses[full * batch_size:], keepdims=True)])
    return xp.mean(means)


def plan(model: Any, image_shape: tuple[int, ...], place: Placement,
         max_batch: int = 1024) -> Plan | None:
    """The fast path for ``model`` on images of ``image_shape`` ``(channels, height, width)``
    on ``place``, or ``None`` if its stack is not one the fast path knows (see the module).
    ``max_batch``: the largest batch expected (larger ones work, at a few more calls each)."""
    layers, i, n = model.layers, 0, len(model.layers)
    blocks: list = []
    trainable: list = []
    shape: Any = tuple(image_shape)
    while i < n and isinstance(layers[i], Conv2D):
        conv, i = layers[i], i + 1
        relu = i < n and isinstance(layers[i], ReLU)
        i += relu
        pool = 1
        if i < n and isinstance(layers[i], MaxPool2D) and layers[i].stride == layers[i].pool_size:
            pool, i = layers[i].pool_size, i + 1
            if not relu and i < n and isinstance(layers[i], ReLU):
                relu, i = True, i + 1
        block = _ConvBlock(conv, relu, pool, shape, place, first=not blocks, max_batch=max_batch)
        if min(block.out_shape[1:]) < 1:
            return None
        blocks.append(block)
        trainable.append(conv)
        shape = block.out_shape
    if i < n and isinstance(layers[i], Flatten):
        i += 1
    elif blocks:
        return None
    while i < n and isinstance(layers[i], Dense):
        dense, i = layers[i], i + 1
        relu = i < n and isinstance(layers[i], ReLU)
        i += relu
        if dense.in_features != math.prod(shape):
            return None
        blocks.append(_DenseBlock(relu, first=not blocks))
        trainable.append(dense)
        shape = (dense.out_features,)
    if i != n or not isinstance(trainable[-1] if trainable else None, Dense) or blocks[-1].relu:
        return None
    return Plan(blocks, trainable, place)
