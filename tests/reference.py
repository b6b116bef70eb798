"""An independent, deliberately naive reference: per-pixel loops in NumPy, float64.

Written from the formulas, not from the library: each output pixel and each gradient entry is a
plain sum. Slow, obvious, and what the vectorised layers are checked against.
"""

import numpy as np


def conv_forward(x, w, b, stride=1, padding=0):
    batch, cin, h, wd = x.shape
    cout, _, k, _ = w.shape
    xp_ = np.zeros((batch, cin, h + 2 * padding, wd + 2 * padding))
    xp_[:, :, padding:padding + h, padding:padding + wd] = x
    oh = (h + 2 * padding - k) // stride + 1
    ow = (wd + 2 * padding - k) // stride + 1
    out = np.zeros((batch, cout, oh, ow))
    for n in range(batch):
        for o in range(cout):
            for i in range(oh):
                for j in range(ow):
                    patch = xp_[n, :, i * stride:i * stride + k, j * stride:j * stride + k]
                    out[n, o, i, j] = np.sum(patch * w[o]) + b[o]
    return out


def conv_backward(x, w, d_out, stride=1, padding=0):
    """Returns (d_x, d_w, d_b) by scattering every output pixel's gradient onto its patch."""
    batch, cin, h, wd = x.shape
    cout, _, k, _ = w.shape
    xp_ = np.zeros((batch, cin, h + 2 * padding, wd + 2 * padding))
    xp_[:, :, padding:padding + h, padding:padding + wd] = x
    dxp = np.zeros_like(xp_)
    dw = np.zeros_like(w)
    db = np.zeros(cout)
    for n in range(batch):
        for o in range(cout):
            for i in range(d_out.shape[2]):
                for j in range(d_out.shape[3]):
                    g = d_out[n, o, i, j]
                    rows = slice(i * stride, i * stride + k)
                    cols = slice(j * stride, j * stride + k)
                    dw[o] += g * xp_[n, :, rows, cols]
                    dxp[n, :, rows, cols] += g * w[o]
                    db[o] += g
    return dxp[:, :, padding:padding + h, padding:padding + wd], dw, db


def pool_forward(x, pool, stride, mode):
    """Max or average pooling; for max also the winner mask (first maximum wins, counted per window)."""
    batch, ch, h, wd = x.shape
    oh = (h - pool) // stride + 1
    ow = (wd - pool) // stride + 1
    out = np.zeros((batch, ch, oh, ow))
    mask = np.zeros_like(x)
    for n in range(batch):
        for c in range(ch):
            for i in range(oh):
                for j in range(ow):
                    win = x[n, c, i * stride:i * stride + pool, j * stride:j * stride + pool]
                    if mode == "max":
                        out[n, c, i, j] = win.max()
                        best = None
                        for p in range(pool):
                            for q in range(pool):
                                if best is None or win[p, q] > win[best]:
                                    best = (p, q)
                        mask[n, c, i * stride + best[0], j * stride + best[1]] += 1.0
                    else:
                        out[n, c, i, j] = win.mean()
    return out, mask


def pool_backward(x, d_out, pool, stride, mode):
    batch, ch = x.shape[:2]
    dx = np.zeros_like(x)
    for n in range(batch):
        for c in range(ch):
            for i in range(d_out.shape[2]):
                for j in range(d_out.shape[3]):
                    rows = slice(i * stride, i * stride + pool)
                    cols = slice(j * stride, j * stride + pool)
                    g = d_out[n, c, i, j]
                    if mode == "max":
                        win = x[n, c, rows, cols]
                        flat = int(np.argmax(win))  # first maximum in row-major order
                        dx[n, c, i * stride + flat // pool, j * stride + flat % pool] += g
                    else:
                        dx[n, c, rows, cols] += g / (pool * pool)
    return dx


def dense_forward(x, w, b):
    out = np.zeros((x.shape[0], w.shape[1]))
    for n in range(x.shape[0]):
        for o in range(w.shape[1]):
            out[n, o] = sum(x[n, i] * w[i, o] for i in range(w.shape[0])) + b[o]
    return out


def dense_backward(x, w, d_out):
    dw = np.zeros_like(w)
    dx = np.zeros_like(x)
    for n in range(x.shape[0]):
        for i in range(w.shape[0]):
            for o in range(w.shape[1]):
                dw[i, o] += x[n, i] * d_out[n, o]
                dx[n, i] += w[i, o] * d_out[n, o]
    return dx, dw, d_out.sum(axis=0)


def softmax_cross_entropy(logits, targets):
    n = logits.shape[0]
    probs = np.zeros_like(logits)
    loss = 0.0
    for i in range(n):
        z = logits[i] - logits[i].max()
        e = np.exp(z)
        probs[i] = e / e.sum()
        loss -= np.log(max(probs[i, targets[i]], 1e-12))
    d = probs.copy()
    for i in range(n):
        d[i, targets[i]] -= 1.0
    return loss / n, probs, d / n
