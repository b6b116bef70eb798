"""Finite-difference gradient checks (float64) for every parameter and the input, per backend."""

import numpy as np
import pytest

import tinycnn_xp as tc
from tinycnn_xp._xp import to_numpy

THRESHOLD = 1e-7


def batch(put, shape=(4, 1, 8, 8), classes=3, seed=123):
    rng = np.random.default_rng(seed)
    return put(rng.normal(0, 1, size=shape)), put(rng.integers(0, classes, size=shape[0]))


def assert_all_small(errors, names):
    assert set(errors) == set(names)
    bad = {name: err for name, err in errors.items() if not err < THRESHOLD}
    assert not bad, f"relative errors above {THRESHOLD}: {bad}"


def test_tinycnn_gradients(put):
    model = tc.TinyCNN(seed=99)
    x, y = batch(put)
    model.forward(x)  # place the parameters on the backend first
    before = {name: to_numpy(getattr(layer, attr)) for name, layer, attr in model.parameters()}
    errors = tc.check_gradients(model, x, y)
    assert_all_small(errors, ["conv.weights", "conv.bias", "dense.weights", "dense.bias", "input"])
    for name, layer, attr in model.parameters():  # restored exactly after the perturbations
        np.testing.assert_array_equal(to_numpy(getattr(layer, attr)), before[name])


def test_deep_model_gradients(put):
    errors = tc.check_gradients(tc.deep_cnn(seed=3), *batch(put, seed=5))
    assert_all_small(errors, [f"{n}.{a}" for n in ("conv1", "conv2", "dense")
                              for a in ("weights", "bias")] + ["input"])


@pytest.mark.parametrize("pool", [tc.MaxPool2D, tc.AvgPool2D])
@pytest.mark.parametrize("stride,padding,pool_size,pool_stride", [(1, 1, 2, None), (2, 0, 2, 1),
                                                                   (1, 2, 3, 2)])
def test_strided_padded_pooled_gradients(put, pool, stride, padding, pool_size, pool_stride):
    conv = tc.Conv2D(2, 3, 3, stride=stride, padding=padding)
    shape = (3, 2, 9, 7)
    out = conv.output_shape(shape)
    pooled = pool(pool_size, pool_stride).output_shape(out)
    model = tc.Sequential([conv, tc.ReLU(), pool(pool_size, pool_stride), tc.Flatten(),
                           tc.Dense(int(np.prod(pooled[1:])), 4)], seed=11)
    errors = tc.check_gradients(model, *batch(put, shape, classes=4, seed=stride + padding))
    assert all(err < THRESHOLD for err in errors.values()), errors


def test_numerical_gradient_matches_chapter_usage(put):
    """The chapter's call: numerical_gradient(model, x, y, model.conv.weights) after loss_and_grad."""
    model = tc.TinyCNN(seed=99)
    x, y = batch(put)
    model.loss_and_grad(x, y)
    numeric = tc.numerical_gradient(model, x, y, model.conv.weights)
    assert tc.relative_error(model.conv.d_weights, numeric) < THRESHOLD
    numeric_b = tc.numerical_gradient(model, x, y, model.dense.bias, epsilon=1e-6)
    assert tc.relative_error(model.dense.d_bias, numeric_b) < 1e-6


def test_wrong_gradient_is_caught(put):
    """The check can fail: a corrupted analytic gradient gives a large relative error."""
    model = tc.TinyCNN(seed=99)
    x, y = batch(put)
    model.loss_and_grad(x, y)
    numeric = tc.numerical_gradient(model, x, y, model.conv.weights)
    assert tc.relative_error(model.conv.d_weights * 1.01, numeric) > 1e-3


def test_gradient_check_needs_float64(put):
    x, y = batch(put)
    with pytest.raises(TypeError, match="float64"):
        tc.check_gradients(tc.TinyCNN(), put(to_numpy(x), "float32"), y)
