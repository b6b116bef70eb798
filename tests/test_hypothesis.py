"""Randomized tests with hypothesis, on every backend (``--backend``), reproducible in CI.

Hypothesis draws the architecture (batch, channels, image size, kernel, stride, padding, pool
size/stride, max or average) and a seed; the arrays themselves come from NumPy's generator with
that seed, so they are continuous (no accidental ties) and shrink well.

- ``test_gradients_of_random_networks``: ``check_gradients`` (float64 central differences) on a
  random ``Conv2D -> ReLU -> pool -> Flatten -> Dense`` network, every relative error < 1e-7.
  Finite differences are only valid where the loss is smooth within one step of ``epsilon`` and
  the gradients stand well above round-off: cases where a perturbation could flip a ReLU's sign
  or a max-pool winner, or where a gradient is tiny (a saturated softmax, samples that cancel),
  are ``assume``d away, decided with the loop reference only (see ``well_conditioned``).
- ``test_layers_match_the_loop_reference``: forward and backward of Conv2D, both poolings and
  Dense against the independent per-pixel loops in ``tests/reference.py``; max pooling also on
  integer-valued images full of ties (the first maximum wins in both).
"""

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

import backends
import reference as ref
import tinycnn_xp as tc
from tinycnn_xp._xp import to_numpy

THRESHOLD = 1e-7
EPSILON = 1e-5  # check_gradients' default step
RTOL = 1e-10    # forward/backward against the reference, relative to the largest value

# Bounded and derandomized: the same examples every run (CI is reproducible), no example
# database written into the tree, no per-example deadline (backends differ a lot in speed).
# A backend may run a share of them (its EXAMPLE_SCALE: JAX compiles each new architecture and
# shape); the numpy session runs them all, on every Python.
SCALE = getattr(backends.selected, "EXAMPLE_SCALE", 1.0)
BOUNDED = settings(max_examples=int(50 * SCALE), deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])
CHEAP = settings(BOUNDED, max_examples=int(100 * SCALE))  # the reference takes milliseconds


@st.composite
def architectures(draw):
    """A conv + pool configuration and an image size that the pool still fits after the conv."""
    kernel = draw(st.integers(1, 5))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, 3))
    pool = draw(st.integers(1, 3))
    pool_stride = draw(st.integers(1, 3))
    # Smallest image whose convolution output still holds one pool window.
    low = max(1, (pool - 1) * stride + kernel - 2 * padding)
    return {"batch": draw(st.integers(1, 3)), "in_channels": draw(st.integers(1, 3)),
                "out_channels": draw(st.integers(1, 4)), "kernel": kernel, "stride": stride,
                "padding": padding, "pool": pool, "pool_stride": pool_stride,
                "mode": draw(st.sampled_from(["max", "avg"])),
                "height": low + draw(st.integers(0, 4)), "width": low + draw(st.integers(0, 4)),
                "classes": draw(st.integers(2, 4))}


def build(arch, seed):
    """The network for ``arch`` (random conv bias) and its random host input and labels."""
    rng = np.random.default_rng(seed)
    conv = tc.Conv2D(arch["in_channels"], arch["out_channels"], arch["kernel"],
                     stride=arch["stride"], padding=arch["padding"])
    pool_type = tc.MaxPool2D if arch["mode"] == "max" else tc.AvgPool2D
    pool = pool_type(arch["pool"], arch["pool_stride"])
    shape = (arch["batch"], arch["in_channels"], arch["height"], arch["width"])
    features = int(np.prod(pool.output_shape(conv.output_shape(shape))[1:]))
    layers = [conv, tc.ReLU(), pool, tc.Flatten(), tc.Dense(features, arch["classes"])]
    model = tc.Sequential(layers, seed=seed, names=["conv", "relu", "pool", "flatten", "dense"])
    # A random bias (set on the host before the model is placed): with a zero bias, outputs that
    # read only padding are exactly 0, on the ReLU's kink.
    conv.bias = rng.normal(0.0, 0.5, size=arch["out_channels"])
    x = rng.normal(size=shape)
    y = rng.integers(0, arch["classes"], size=arch["batch"])
    return model, x, y


def reference_gradients(model, x, y, arch):
    """Loss gradients by the loop reference alone: ``(conv pre-activations, {name: gradient})``."""
    conv, dense = model.layers[0], model.layers[-1]
    q, t, mode = arch["pool"], arch["pool_stride"], arch["mode"]
    z = ref.conv_forward(x, conv.weights, conv.bias, arch["stride"], arch["padding"])
    relu = np.maximum(z, 0.0)
    pooled = ref.pool_forward(relu, q, t, mode)[0]
    flat = pooled.reshape(len(x), -1)
    logits = ref.dense_forward(flat, dense.weights, dense.bias)
    _, probabilities, d_logits = ref.softmax_cross_entropy(logits, y)
    d_flat, d_dense_w, d_dense_b = ref.dense_backward(flat, dense.weights, d_logits)
    d_relu = ref.pool_backward(relu, d_flat.reshape(pooled.shape), q, t, mode)
    d_x, d_w, d_b = ref.conv_backward(x, conv.weights, d_relu * (z > 0), arch["stride"],
                                      arch["padding"])
    grads = {"conv.weights": d_w, "conv.bias": d_b, "dense.weights": d_dense_w,
             "dense.bias": d_dense_b, "input": d_x}
    return z, probabilities[np.arange(len(y)), y], grads


def well_conditioned(model, x, y, arch, delta):
    """True if central differences can resolve every gradient to 1e-7 (decided on the host,
    with the loop reference only, so a library bug cannot hide a case).

    - No perturbation (moving a conv output by up to ``delta``) crosses a kink: no ReLU input
      within ``2 delta`` of 0, no max-pool window whose two largest ReLU outputs are within
      ``4 delta`` (an all-zero window is safe: its negative inputs stay negative). Otherwise the
      central difference straddles the kink and disagrees with the one-sided analytic gradient.
    - Every gradient is exactly 0 (a dead unit: the perturbation changes nothing either) or well
      above round-off: ``L(p + eps) - L(p - eps)`` carries an error of ~1e-16 per entry, ~1e-11
      after dividing by ``2 eps``, so a gradient of norm 1e-5 (a saturated softmax, or samples
      whose gradients cancel) gives relative errors ~1e-6 that shrink as ``eps`` grows:
      conditioning, not a bug. We ask for a norm above ``1e-3 * sqrt(size)``.
    - The true-class probability is above the loss's 1e-12 clip (whose gradient is 0).
    """
    z, p_true, grads = reference_gradients(model, x, y, arch)
    if np.abs(z).min() <= 2 * delta or p_true.min() <= 1e-10:
        return False
    q, t = arch["pool"], arch["pool_stride"]
    if arch["mode"] == "max" and q > 1:
        windows = sliding_window_view(np.maximum(z, 0.0), (q, q), axis=(2, 3))[:, :, ::t, ::t]
        top = np.sort(windows.reshape((*windows.shape[:4], -1)), axis=-1)
        if np.any((top[..., -1] > 0) & (top[..., -1] - top[..., -2] <= 4 * delta)):
            return False
    norms = {name: (np.linalg.norm(g), g.size) for name, g in grads.items()}
    return all(norm == 0.0 or norm > 1e-3 * np.sqrt(size) for norm, size in norms.values())


@BOUNDED
@given(arch=architectures(), seed=st.integers(0, 2**32 - 1))
def test_gradients_of_random_networks(put, arch, seed):
    model, x, y = build(arch, seed)
    conv = model.layers[0]
    # The largest change one perturbation of a weight, a bias or a pixel makes to a conv output.
    delta = EPSILON * max(1.0, np.abs(x).max(), np.abs(conv.weights).max())
    assume(well_conditioned(model, x, y, arch, delta))
    errors = tc.check_gradients(model, put(x), put(y))
    assert set(errors) == {"conv.weights", "conv.bias", "dense.weights", "dense.bias", "input"}
    bad = {name: err for name, err in errors.items() if not err < THRESHOLD}
    assert not bad, f"relative errors above {THRESHOLD} for {arch}, seed {seed}: {bad}"


def close(actual, expected):
    actual = to_numpy(actual)
    assert actual.shape == expected.shape
    scale = max(np.abs(expected).max(initial=0.0), 1e-300)
    assert np.abs(actual - expected).max(initial=0.0) <= RTOL * scale


@CHEAP
@given(arch=architectures(), seed=st.integers(0, 2**32 - 1), ties=st.booleans())
def test_layers_match_the_loop_reference(put, arch, seed, ties):
    rng = np.random.default_rng(seed)
    shape = (arch["batch"], arch["in_channels"], arch["height"], arch["width"])
    # With ``ties`` the images take values in {-1, 0, 1}: max-pool windows full of equal maxima.
    x = rng.integers(-1, 2, size=shape).astype(float) if ties else rng.normal(size=shape)

    conv = tc.Conv2D(arch["in_channels"], arch["out_channels"], arch["kernel"], seed=seed,
                     stride=arch["stride"], padding=arch["padding"])
    conv.bias = rng.normal(size=arch["out_channels"])
    w0, b0 = conv.weights.copy(), conv.bias.copy()
    out = conv.forward(put(x))
    expected = ref.conv_forward(x, w0, b0, arch["stride"], arch["padding"])
    close(out, expected)
    d_out = rng.normal(size=expected.shape)
    d_x, d_w, d_b = ref.conv_backward(x, w0, d_out, arch["stride"], arch["padding"])
    close(conv.backward(put(d_out)), d_x)
    close(conv.d_weights, d_w)
    close(conv.d_bias, d_b)

    # Pool the (host) conv output: integer images give integer-valued sums, so ties survive.
    pooled_input = np.rint(expected) if ties else expected
    q, t = arch["pool"], arch["pool_stride"]
    pool = (tc.MaxPool2D if arch["mode"] == "max" else tc.AvgPool2D)(q, t)
    pooled = pool.forward(put(pooled_input))
    expected_pool, mask = ref.pool_forward(pooled_input, q, t, arch["mode"])
    close(pooled, expected_pool)
    d_pool = rng.normal(size=expected_pool.shape)
    close(pool.backward(put(d_pool)), ref.pool_backward(pooled_input, d_pool, q, t, arch["mode"]))
    if arch["mode"] == "max":
        close(pool.last_mask, mask)

    flat = expected_pool.reshape(arch["batch"], -1)
    dense = tc.Dense(flat.shape[1], arch["classes"], seed=seed)
    dense.bias = rng.normal(size=arch["classes"])
    w0, b0 = dense.weights.copy(), dense.bias.copy()
    close(dense.forward(put(flat)), ref.dense_forward(flat, w0, b0))
    d_dense = rng.normal(size=(arch["batch"], arch["classes"]))
    d_flat, d_w, d_b = ref.dense_backward(flat, w0, d_dense)
    close(dense.backward(put(d_dense)), d_flat)
    close(dense.d_weights, d_w)
    close(dense.d_bias, d_b)
