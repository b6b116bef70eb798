"""Every layer's forward and backward against the loop reference, on random shapes, per backend."""

import numpy as np
import pytest

import reference as ref
import tinycnn_xp as tc
from tinycnn_xp._xp import to_numpy

RTOL = 1e-10


def close(actual, expected):
    actual = to_numpy(actual)
    scale = max(np.abs(expected).max(), 1e-300)
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= RTOL * scale, np.abs(actual - expected).max() / scale


CONV_CASES = [  # batch, in, out, size (h, w), kernel, stride, padding
    (4, 1, 3, (8, 8), 3, 1, 0),
    (2, 3, 6, (6, 6), 3, 1, 0),
    (3, 2, 4, (7, 9), 3, 2, 1),
    (1, 2, 2, (5, 6), 2, 3, 2),
    (2, 1, 5, (4, 4), 4, 1, 0),
    (2, 3, 2, (9, 7), 1, 2, 0),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_matches_reference(case, put, xp):
    batch, cin, cout, (h, w), k, stride, padding = case
    rng = np.random.default_rng(batch * 100 + cin * 10 + cout + k)
    x = rng.normal(size=(batch, cin, h, w))
    layer = tc.Conv2D(cin, cout, k, seed=3, stride=stride, padding=padding)
    layer.bias = rng.normal(size=cout)
    w0, b0 = layer.weights.copy(), layer.bias.copy()
    out = layer.forward(put(x))
    expected = ref.conv_forward(x, w0, b0, stride, padding)
    close(out, expected)
    d_out = rng.normal(size=expected.shape)
    d_x = layer.backward(put(d_out))
    ex_dx, ex_dw, ex_db = ref.conv_backward(x, w0, d_out, stride, padding)
    close(d_x, ex_dx)
    close(layer.d_weights, ex_dw)
    close(layer.d_bias, ex_db)


POOL_CASES = [  # batch, channels, (h, w), pool, stride
    (3, 2, (6, 6), 2, None),
    (2, 3, (7, 5), 2, None),   # sizes that do not divide: floored
    (2, 2, (6, 7), 3, 1),      # overlapping windows
    (1, 4, (9, 9), 3, 2),
    (2, 1, (4, 4), 4, None),
]


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_matches_reference(case, mode, put):
    batch, ch, (h, w), pool, stride = case
    rng = np.random.default_rng(h * 10 + w)
    x = rng.normal(size=(batch, ch, h, w))
    layer = (tc.MaxPool2D if mode == "max" else tc.AvgPool2D)(pool, stride)
    out = layer.forward(put(x))
    expected, mask = ref.pool_forward(x, pool, stride or pool, mode)
    close(out, expected)
    d_out = rng.normal(size=expected.shape)
    close(layer.backward(put(d_out)), ref.pool_backward(x, d_out, pool, stride or pool, mode))
    if mode == "max":
        close(layer.last_mask, mask)


def test_maxpool_first_maximum_wins_ties(put):
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = 5.0   # a tie inside the first window
    pool = tc.MaxPool2D(2)
    pool.forward(put(x))
    mask = to_numpy(pool.last_mask)[0, 0]
    assert mask[0, 1] == 1.0 and mask[1, 0] == 0.0   # row-major first maximum, like argmax
    assert mask[2:, 2:].sum() == 1.0 and mask[2, 2] == 1.0   # all-zero window: the first element
    assert mask.sum() == 4.0


@pytest.mark.parametrize("shape", [(5, 7, 3), (2, 27, 3), (1, 4, 10)])
def test_dense_matches_reference(shape, put):
    batch, fin, fout = shape
    rng = np.random.default_rng(fin)
    x = rng.normal(size=(batch, fin))
    layer = tc.Dense(fin, fout, seed=5)
    layer.bias = rng.normal(size=fout)
    w0, b0 = layer.weights.copy(), layer.bias.copy()
    close(layer.forward(put(x)), ref.dense_forward(x, w0, b0))
    d_out = rng.normal(size=(batch, fout))
    ex_dx, ex_dw, ex_db = ref.dense_backward(x, w0, d_out)
    close(layer.backward(put(d_out)), ex_dx)
    close(layer.d_weights, ex_dw)
    close(layer.d_bias, ex_db)


def test_relu_and_flatten(put):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 2, 4, 5))
    x[0, 0, 0, :2] = 0.0  # the gradient at exactly 0 is 0, as in the chapter
    relu, flat = tc.ReLU(), tc.Flatten()
    close(relu.forward(put(x)), np.maximum(x, 0.0))
    d = rng.normal(size=x.shape)
    close(relu.backward(put(d)), d * (x > 0))
    close(flat.forward(put(x)), x.reshape(3, -1))
    close(flat.backward(put(d.reshape(3, -1))), d)


def test_softmax_cross_entropy_matches_reference(put):
    rng = np.random.default_rng(4)
    logits = rng.normal(scale=3.0, size=(6, 4))
    logits[0] = [1000.0, -1000.0, 0.0, 0.0]   # extreme logits stay finite
    targets = np.array([1, 0, 3, 2, 2, 1])
    loss, probs, d = tc.softmax_cross_entropy(put(logits), put(targets))
    ex_loss, ex_probs, ex_d = ref.softmax_cross_entropy(logits, targets)
    close(loss, np.asarray(ex_loss))
    close(probs, ex_probs)
    close(d, ex_d)
    assert np.isfinite(float(loss))
    close(tc.softmax(put(logits)), ex_probs)
