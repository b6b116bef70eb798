"""The chapter's exercises as features, per backend: strided/padded convolutions and overlapping
pooling (gradient checks), momentum, learning-rate sweeps with a diverging rate, wrong options,
four classes, and ``Sequential.summary``."""

import math
import os
import re
import signal
import warnings

import numpy as np
import pytest
from array_api_compat import array_namespace

import tinycnn_xp as tc
from helpers import param_state
from tinycnn_xp._xp import to_numpy
from tinycnn_xp.sweep import learning_rate_sweep

THRESHOLD = 1e-7
FOUR_CLASSES = ("vertical", "horizontal", "diagonal", "dot")


def batch(put, shape, classes, seed):
    rng = np.random.default_rng(seed)
    return put(rng.normal(0, 1, size=shape)), put(rng.integers(0, classes, size=shape[0]))


def grads(model):
    return {name: to_numpy(getattr(layer, "d_" + attr)) for name, layer, attr in model.parameters()}


def small_data(put, class_names=tc.CLASS_NAMES, train=12, val=6):
    host = tc.make_dataset_bundle(train_per_class=train, val_per_class=val, class_names=class_names)
    return [put(a) for a in host[:4]]


# -- gradient checks: the options tests/test_gradients.py does not reach -----------------------
# Each case: input shape, then the layers before Flatten; a Dense layer to 3 classes closes it.
GRADIENT_CASES = {
    "conv stride 2 and padding 1, odd 7x9": ((2, 1, 7, 9), lambda: [tc.Conv2D(1, 3, 3, stride=2, padding=1)]),
    "conv stride 3 > kernel 2 (skipped pixels), padding 2": (
        (2, 2, 8, 7), lambda: [tc.Conv2D(2, 2, 2, stride=3, padding=2)]),
    "conv padding 3 (windows entirely in the padding)":
        ((2, 1, 5, 5), lambda: [tc.Conv2D(1, 2, 3, padding=3)]),
    "conv kernel as large as the image (1x1 output)": ((3, 2, 5, 5), lambda: [tc.Conv2D(2, 3, 5)]),
    "max pool first: non-overlapping 3x3, floored 8x7": ((2, 2, 8, 7), lambda: [tc.MaxPool2D(3)]),
    "avg pool first: non-overlapping 3x3, floored 8x7": ((2, 2, 8, 7), lambda: [tc.AvgPool2D(3)]),
    "max pool first: overlapping 3x3 stride 1": ((2, 1, 6, 5), lambda: [tc.MaxPool2D(3, stride=1)]),
    "avg pool first: overlapping 3x3 stride 1": ((2, 1, 6, 5), lambda: [tc.AvgPool2D(3, stride=1)]),
    "max pool with stride 3 > pool 2 (gaps)": ((2, 1, 8, 8), lambda: [tc.MaxPool2D(2, stride=3)]),
    "avg pool with stride 3 > pool 2 (gaps)": ((2, 1, 8, 8), lambda: [tc.AvgPool2D(2, stride=3)]),
    "padded strided conv, then overlapping avg pool": (
        (2, 1, 9, 9),
        lambda: [tc.Conv2D(1, 3, 3, stride=2, padding=1), tc.ReLU(), tc.AvgPool2D(2, stride=1)]),
    "two strided convs and overlapping max pool, odd 11x9": (
        (2, 1, 11, 9), lambda: [tc.Conv2D(1, 2, 3, padding=1), tc.ReLU(), tc.Conv2D(2, 3, 3, stride=2),
                                tc.ReLU(), tc.MaxPool2D(2, stride=1)]),
}


@pytest.mark.parametrize("case", list(GRADIENT_CASES))
def test_gradients_of_strides_padding_and_pooling(put, case):
    shape, make = GRADIENT_CASES[case]
    layers = [*make(), tc.Flatten()]
    out = shape
    for layer in layers:
        out = layer.output_shape(out)
    model = tc.Sequential([*layers, tc.Dense(out[1], 3)], seed=sum(shape))
    x, y = batch(put, shape, 3, seed=len(case))
    errors = tc.check_gradients(model, x, y)
    expected = {name for name, _, _ in model.parameters()} | {"input"}
    assert set(errors) == expected
    bad = {name: err for name, err in errors.items() if not err < THRESHOLD}
    assert not bad, f"relative errors above {THRESHOLD}: {bad}"


# -- momentum -----------------------------------------------------------------------------------
def test_momentum_two_steps_by_hand(put):
    """v1 = g1, p1 = p0 - lr g1; v2 = beta v1 + g2, p2 = p1 - lr v2 (g2 taken at p1)."""
    lr, beta = 0.1, 0.9
    x, y = batch(put, (6, 1, 8, 8), 3, seed=1)
    x2, y2 = batch(put, (6, 1, 8, 8), 3, seed=2)
    model = tc.TinyCNN(seed=5)
    model.loss_and_grad(x, y)
    p0, g1 = param_state(model), grads(model)
    model.step(lr, momentum=beta)
    p1 = param_state(model)
    model.loss_and_grad(x2, y2)
    g2 = grads(model)
    model.step(lr, momentum=beta)
    p2 = param_state(model)
    for name in g1:
        np.testing.assert_allclose(p1[name + ".velocity"], g1[name], rtol=1e-15, atol=0)
        np.testing.assert_allclose(p1[name], p0[name] - lr * g1[name], rtol=1e-14, atol=1e-16)
        v2 = beta * g1[name] + g2[name]
        np.testing.assert_allclose(p2[name + ".velocity"], v2, rtol=1e-14, atol=1e-16)
        np.testing.assert_allclose(p2[name], p1[name] - lr * v2, rtol=1e-14, atol=1e-16)
    # the second step really differs from plain SGD (the velocity carried g1 over)
    assert not np.allclose(p2["dense.weights"], p1["dense.weights"] - lr * g2["dense.weights"])


def test_layer_step_momentum_by_hand(put):
    """A single Dense layer's ``step(lr, momentum)`` with gradients set by hand."""
    layer = tc.Dense(4, 2, seed=0)
    layer.forward(put(np.zeros((1, 4))))  # place it on the backend
    rng = np.random.default_rng(0)
    g1, g2 = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    w0 = to_numpy(layer.weights)
    layer.d_weights, layer.d_bias = put(g1), put(np.zeros(2))
    layer.step(0.5, momentum=0.75)
    layer.d_weights = put(g2)
    layer.step(0.5, momentum=0.75)
    expected = w0 - 0.5 * g1 - 0.5 * (0.75 * g1 + g2)
    np.testing.assert_allclose(to_numpy(layer.weights), expected, rtol=1e-14)


def test_fit_with_momentum_is_the_manual_loop(put):
    """fit(momentum=) = loss_and_grad + step(lr, momentum) over fit's shuffles (two batches/epoch)."""
    x_train, y_train, x_val, y_val = small_data(put, train=12)  # 36 images: batches of 18
    fitted, manual = tc.TinyCNN(seed=3), tc.TinyCNN(seed=3)
    fitted.fit(x_train, y_train, x_val, y_val, epochs=2, lr=0.1, seed=4, momentum=0.8, verbose=False)
    rng = np.random.default_rng(4)
    for _ in range(2):
        order = rng.permutation(36)
        for part in (order[:18], order[18:]):
            index = put(part)
            xp = array_namespace(x_train)
            manual.loss_and_grad(xp.take(x_train, index, axis=0), xp.take(y_train, index, axis=0))
            manual.step(0.1, momentum=0.8)
    got, want = param_state(fitted), param_state(manual)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_momentum_zero_is_exactly_plain_sgd(put):
    """momentum=0 ignores any velocity: bitwise the plain run, history and parameters."""
    data = small_data(put)
    plain, zero = tc.TinyCNN(seed=8), tc.TinyCNN(seed=8)
    zero.forward(data[0])
    for _, layer, attr in zero.parameters():  # a stale velocity that momentum=0 must not use
        layer.velocity[attr] += 1.0
    h_plain = plain.fit(*data, epochs=4, verbose=False)
    h_zero = zero.fit(*data, epochs=4, momentum=0.0, verbose=False)
    for key in ("train_loss", "val_loss", "train_acc", "val_acc"):
        assert h_zero[key] == h_plain[key], key  # exact float equality, every epoch
    got, want = param_state(zero), param_state(plain)
    for name, _, _ in plain.parameters():
        np.testing.assert_array_equal(got[name], want[name])


def test_plain_step_is_the_chapters_update_bitwise(put):
    x, y = batch(put, (5, 1, 8, 8), 3, seed=9)
    model = tc.TinyCNN(seed=1)
    model.loss_and_grad(x, y)
    before, g = param_state(model), grads(model)
    model.step(0.12, momentum=0.0)
    after = param_state(model)
    for name in g:
        np.testing.assert_array_equal(after[name], before[name] - 0.12 * g[name])


# -- learning-rate sweeps -----------------------------------------------------------------------
HUGE_LR = 1e200  # overflows the float64 logits within the first epoch on this data


# NumPy-based backends also warn about the overflow itself; those warnings are expected here.
OVERFLOW = pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")


@OVERFLOW
def test_sweep_survives_a_diverging_rate(put):
    data = small_data(put)
    model = tc.TinyCNN(seed=42)
    model.forward(data[0])  # already placed on the backend
    before = param_state(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        histories = learning_rate_sweep(model, *data, lrs=(0.05, HUGE_LR, 0.12), epochs=3,
                                        verbose=False)
    diverged = [str(w.message) for w in caught if "diverged" in str(w.message)]
    assert len(diverged) == 1 and issubclass(
        next(w.category for w in caught if "diverged" in str(w.message)), RuntimeWarning)
    assert "lr=1e+200" in diverged[0] and "epoch 0" in diverged[0]
    assert list(histories) == [0.05, HUGE_LR, 0.12]
    bad = histories[HUGE_LR]
    assert bad["diverged_epoch"] == 0 and len(bad["train_loss"]) == bad["diverged_epoch"]
    for lr in (0.05, 0.12):  # the other runs are complete, finite, and exactly a run of their own
        good = histories[lr]
        assert "diverged_epoch" not in good and len(good["train_loss"]) == 3
        assert all(math.isfinite(v) for key in ("train_loss", "val_loss") for v in good[key])
        alone = tc.TinyCNN(seed=42).fit(*data, epochs=3, lr=lr, verbose=False)
        assert good["train_loss"] == alone["train_loss"] and good["val_acc"] == alone["val_acc"]
    after = param_state(model)  # the caller's model was never trained
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
        assert np.all(np.isfinite(after[name]))


@OVERFLOW
def test_diverged_fit_restores_finite_parameters(put):
    data = small_data(put)
    model = tc.TinyCNN(seed=42)
    model.forward(data[0])
    start = param_state(model)
    with pytest.warns(RuntimeWarning, match=r"diverged at epoch 0 with lr=1e\+200"):
        history = model.fit(*data, epochs=3, lr=HUGE_LR, verbose=False)
    assert history["diverged_epoch"] == 0
    for name, value in param_state(model).items():
        assert np.all(np.isfinite(value)), name
        np.testing.assert_array_equal(value, start[name])  # the last finite state: the start


def test_sweep_runs_start_from_the_same_state(put):
    data = small_data(put)
    model = tc.deep_cnn(seed=2)
    histories = learning_rate_sweep(model, *data, lrs=[0.01, 0.5], epochs=2, verbose=False)
    first = {lr: h["kernel_snapshots"][0] for lr, h in histories.items()}
    np.testing.assert_array_equal(first[0.01], first[0.5])
    np.testing.assert_array_equal(first[0.01], to_numpy(model.layers[0].weights))
    assert histories[0.01]["train_loss"] != histories[0.5]["train_loss"]
    assert model.placement is None  # the caller's unplaced model stays unplaced


def test_ctrl_c_ends_the_whole_sweep(put):
    """One Ctrl-C stops the sweep (not only the current rate); the rates done so far come back."""
    def interrupt(epoch, metrics):
        os.kill(os.getpid(), signal.SIGINT)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        histories = learning_rate_sweep(tc.TinyCNN(), *small_data(put), lrs=[0.1, 0.2, 0.3],
                                        epochs=3, verbose=False, callback=interrupt)
    assert list(histories) == [0.1]
    assert histories[0.1]["interrupted"] and len(histories[0.1]["train_loss"]) == 1


def test_sweep_prints_one_line_per_rate_when_verbose(put, capsys):
    learning_rate_sweep(tc.TinyCNN(), *small_data(put), lrs=[0.1, 0.2], epochs=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["run 1/2  lr=0.1", "run 2/2  lr=0.2"]
    assert all("train loss" in line and "val acc" in line for line in lines)


@pytest.mark.parametrize("lrs,exc", [((), ValueError), ((0.1, 0.0), ValueError), ((-0.5,), ValueError),
                                     ((0.1, math.nan), ValueError), ((math.inf,), ValueError),
                                     ((0.1, 0.1), ValueError), (0.1, TypeError), ("0.1", TypeError),
                                     ((0.1, "0.2"), TypeError)])
def test_sweep_rejects_bad_rates(put, lrs, exc):
    model = tc.TinyCNN()
    with pytest.raises(exc, match="lrs"):
        learning_rate_sweep(model, *small_data(put), lrs=lrs, epochs=1, verbose=False)
    assert model.placement is None


def test_sweep_rejects_lr_and_non_models(put):
    data = small_data(put)
    with pytest.raises(TypeError, match="lrs"):
        learning_rate_sweep(tc.TinyCNN(), *data, lr=0.1)
    with pytest.raises(TypeError, match="model"):
        learning_rate_sweep(tc.Dense(3, 2), *data)


# -- wrong options ------------------------------------------------------------------------------
@pytest.mark.parametrize("make,exc,name", [
    (lambda: tc.Conv2D(1, 3, 3, stride=-2), ValueError, "stride"),
    (lambda: tc.Conv2D(1, 3, 3, stride=1.5), TypeError, "stride"),
    (lambda: tc.Conv2D(1, 3, 3, padding=-3), ValueError, "padding"),
    (lambda: tc.Conv2D(1, 3, 3, padding=0.5), TypeError, "padding"),
    (lambda: tc.MaxPool2D(2, stride=0), ValueError, "stride"),
    (lambda: tc.AvgPool2D(0), ValueError, "pool_size"),
    (lambda: tc.AvgPool2D(-1, stride=1), ValueError, "pool_size"),
    (lambda: tc.TinyCNN(num_classes=-4), ValueError, "num_classes"),
])
def test_wrong_layer_options(make, exc, name):
    with pytest.raises(exc, match=name):
        make()


@pytest.mark.parametrize("pool", [tc.MaxPool2D, tc.AvgPool2D])
def test_pool_larger_than_its_input_in_a_model(put, pool):
    """Conv 8x8 -> 6x6, then a 7x7 pool: rejected up front, naming the input and the pool."""
    model = tc.Sequential([tc.Conv2D(1, 3, 3), pool(7), tc.Flatten(), tc.Dense(3, 3)])
    data = small_data(put)
    with pytest.raises(ValueError, match=r"x_train.*6x6.*7x7"):
        model.fit(*data, epochs=1, verbose=False)
    with pytest.raises(ValueError, match="input_shape"):
        model.summary((1, 8, 8))
    assert model.placement is None


@pytest.mark.parametrize("beta", [1.0, 1.5, -0.1, -1e-12, math.nan, math.inf])
def test_momentum_outside_unit_interval(put, beta):
    x, y = batch(put, (3, 1, 8, 8), 3, seed=0)
    model = tc.TinyCNN()
    model.loss_and_grad(x, y)
    before = param_state(model)
    with pytest.raises(ValueError, match="momentum"):
        model.step(0.1, momentum=beta)
    with pytest.raises(ValueError, match="momentum"):
        model.dense.step(0.1, momentum=beta)
    with pytest.raises(ValueError, match="momentum"):
        model.fit(x, y, x, y, epochs=1, momentum=beta, verbose=False)
    with pytest.raises(ValueError, match="momentum"):
        learning_rate_sweep(model, x, y, x, y, lrs=[0.1], epochs=1, momentum=beta, verbose=False)
    after = param_state(model)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])


def test_momentum_must_be_a_number(put):
    with pytest.raises(TypeError, match="momentum"):
        tc.TinyCNN().step(0.1, momentum="0.9")
    with pytest.raises(TypeError, match="momentum"):
        tc.TinyCNN().step(0.1, momentum=True)


# -- four classes and summaries -----------------------------------------------------------------
def test_four_class_run(put):
    host = tc.make_dataset_bundle(train_per_class=30, val_per_class=15, class_names=FOUR_CLASSES)
    assert host[4] == FOUR_CLASSES and set(np.unique(host[1])) == {0, 1, 2, 3}
    data = [put(a) for a in host[:4]]
    model = tc.TinyCNN(seed=42, num_classes=4)
    assert model.num_classes == 4 and model.dense.weights.shape == (27, 4)
    history = model.fit(*data, epochs=30, verbose=False)
    assert history["val_acc"][-1] > 0.9
    assert history["train_loss"][-1] < history["train_loss"][0] / 3
    predictions = to_numpy(model.predict(data[2]))
    assert predictions.shape == (60,) and set(np.unique(predictions)) <= {0, 1, 2, 3}
    with pytest.raises(ValueError, match="y_train"):  # a 3-class model rejects label 3
        tc.TinyCNN(num_classes=3).fit(*data, epochs=1, verbose=False)


def test_dot_is_a_shifting_blob():
    from tinycnn_xp.data import _pattern_for_class
    x, y, *_ = tc.make_dataset_bundle(train_per_class=40, val_per_class=1, class_names=("dot",))
    pattern = _pattern_for_class("dot", 8)
    assert 1 < np.count_nonzero(pattern == 1.0) <= 9  # a small bright core
    rows, cols = np.nonzero(pattern)
    assert rows.max() - rows.min() < 5 and cols.max() - cols.min() < 5  # a blob, not a line
    # the bright core sits in different places across the samples (shifted like the other classes)
    peaks = {np.unravel_index(np.argmax(img[0] * (img[0] > 0)), img[0].shape) for img in x}
    assert len(peaks) > 5 and set(y) == {0}


def parse_summary(text):
    """``[(name, output shape, params)]`` from a summary table, one row per layer."""
    rows = []
    for line in text.splitlines()[2:-1]:
        match = re.match(r"(\S+)\s.*\(([\d, ]+?),?\)\s+(\d+)$", line)
        assert match, line
        shape = tuple(int(v) for v in match.group(2).split(","))
        rows.append((match.group(1), shape, int(match.group(3))))
    return rows


def test_summary_shapes_and_counts(capsys):
    text = tc.deep_cnn().summary()
    assert capsys.readouterr().out.strip() == text.strip()
    conv1, conv2, dense = 3 * 1 * 9 + 3, 6 * 3 * 9 + 6, 24 * 3 + 3
    assert parse_summary(text) == [("conv1", (3, 6, 6), conv1), ("relu1", (3, 6, 6), 0),
                                   ("conv2", (6, 4, 4), conv2), ("relu2", (6, 4, 4), 0),
                                   ("pool", (6, 2, 2), 0), ("flatten", (24,), 0),
                                   ("dense", (3,), dense)]
    assert text.splitlines()[-1] == f"total parameters: {conv1 + conv2 + dense}" == "total parameters: 273"


def test_summary_of_strided_padded_model():
    # 9x9, 3x3 kernel, stride 2, padding 1 -> (9 + 2 - 3) // 2 + 1 = 5; 2x2 pool, stride 1 -> 4
    model = tc.Sequential([tc.Conv2D(1, 4, 3, stride=2, padding=1), tc.AvgPool2D(2, stride=1),
                           tc.Flatten(), tc.Dense(4 * 4 * 4, 5)], names=["c", "p", "f", "d"])
    rows = parse_summary(model.summary((1, 9, 9)))
    assert rows == [("c", (4, 5, 5), 4 * 9 + 4), ("p", (4, 4, 4), 0), ("f", (64,), 0),
                    ("d", (5,), 64 * 5 + 5)]
    assert model.parameter_count == 4 * 9 + 4 + 64 * 5 + 5
    four = parse_summary(tc.TinyCNN(num_classes=4).summary())
    assert four[-1] == ("dense", (4,), 27 * 4 + 4)


def test_summary_without_input_shape_uses_the_last_images(put):
    model = tc.Sequential([tc.Conv2D(1, 2, 3), tc.Flatten(), tc.Dense(2 * 5 * 5, 3)])
    with pytest.raises(ValueError, match="input_shape"):
        model.summary()
    model.forward(put(np.zeros((2, 1, 7, 7))))
    assert parse_summary(model.summary())[0] == ("conv2d0", (2, 5, 5), 2 * 9 + 2)
