"""Host-side index maps that turn sliding windows into one gather, and the gather's transpose.

A convolution or pooling layer reads, for every output position, a k x k window of its input. We
precompute (once per input size, with NumPy on the host) the flat input index of every window
element, move that index array to the device once, and then one ``take`` produces all windows of a
whole batch. The backward pass needs the transpose of that gather (a scatter-add), which the array
API does not have; it is again a gather, by the transposed map, followed by a sum.
"""

from __future__ import annotations

import numpy as np


def output_size(size: int, window: int, stride: int, padding: int) -> int:
    """Number of window positions along one axis (floored, like the chapter's pooling)."""
    return (size + 2 * padding - window) // stride + 1


def window_index(height: int, width: int, window: int, stride: int, padding: int) -> np.ndarray:
    """Flat input index of every window element, shape ``(window*window, out_h*out_w)``.

    Element ``[p*window + q, i*out_w + j]`` is the index into a flattened ``(height*width)`` image
    of pixel ``(i*stride + p - padding, j*stride + q - padding)``; a pixel in the zero padding gets
    index ``height*width``, a slot the caller appends as zero.
    """
    out_h = output_size(height, window, stride, padding)
    out_w = output_size(width, window, stride, padding)
    offsets = np.arange(window)
    rows = offsets[:, None, None, None] + stride * np.arange(out_h)[None, None, :, None] - padding
    cols = offsets[None, :, None, None] + stride * np.arange(out_w)[None, None, None, :] - padding
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    flat = np.where(inside, rows * width + cols, height * width)
    return flat.reshape(window * window, out_h * out_w)


def transpose_index(index: np.ndarray, source_size: int) -> np.ndarray:
    """The gather that undoes ``take(source, index)``: shape ``(source_size, fan)``.

    Row ``n`` lists every position of ``index.ravel()`` that read source element ``n``, padded with
    ``index.size`` (a zero slot the caller appends). Summing ``take(grad, rows)`` over the last axis
    is then the scatter-add of ``grad`` back onto the source: the backward of the gather.
    """
    flat = index.ravel()
    used = flat < source_size  # reads of the zero padding slot carry no gradient back
    positions = np.flatnonzero(used)
    targets = flat[used]
    order = np.argsort(targets, kind="stable")
    positions, targets = positions[order], targets[order]
    counts = np.bincount(targets, minlength=source_size)
    fan = max(int(counts.max(initial=0)), 1)
    rank = np.arange(targets.size) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.full((source_size, fan), flat.size, dtype=np.int64)
    out[targets, rank] = positions
    return out
