"""Bad input: a clear TypeError/ValueError naming the argument, raised before any state changes."""

import math

import numpy as np
import pytest

import tinycnn_xp as tc
from tinycnn_xp._xp import to_numpy


@pytest.fixture
def trained(put):
    """A model trained for two epochs on the backend, and its data."""
    x_train, y_train, x_val, y_val, _ = tc.make_dataset_bundle(train_per_class=10, val_per_class=5)
    data = dict(x_train=put(x_train), y_train=put(y_train), x_val=put(x_val), y_val=put(y_val))
    model = tc.TinyCNN(seed=1)
    model.fit(**data, epochs=2, verbose=False, momentum=0.5)
    return model, data, (x_train, y_train, x_val, y_val)


def state(model):
    """Host copies of every parameter, gradient and velocity."""
    out = {}
    for name, layer, attr in model.parameters():
        out[name] = to_numpy(getattr(layer, attr))
        out[name + ".grad"] = to_numpy(getattr(layer, "d_" + attr))
        out[name + ".velocity"] = to_numpy(layer.velocity[attr])
    return out


def bad_images(host):
    x = host[0]
    return {
        "3-D images": x[:, 0],
        "5-D images": x[:, :, None],
        "two channels": np.concatenate([x, x], axis=1),
        "smaller than the kernel": x[:, :, :2, :2],
        "wrong size for the dense layer": x[:, :, :7, :7],
        "integer images": (x * 10).astype(np.int64),
        "boolean images": x > 0.5,
        "complex images": x.astype(np.complex128),
        "empty batch": x[:0],
        "NaN pixel": np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x),
        "infinite pixel": np.where(np.arange(x.size).reshape(x.shape) == 7, np.inf, x),
    }


def bad_labels(host):
    y = host[1]
    return {
        "float labels": y.astype(np.float64),
        "negative label": np.where(np.arange(y.size) == 3, -1, y),
        "label >= classes": np.where(np.arange(y.size) == 3, 3, y),
        "too few labels": y[:-1],
        "2-D labels": y[:, None],
        "boolean labels": y > 0,
    }


def expect_rejected(model, call, exc, words):
    before = state(model)
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    after = state(model)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


@pytest.mark.parametrize("case", list(bad_images((np.zeros((4, 1, 8, 8)), None))))
def test_bad_training_images(trained, put, case):
    model, data, host = trained
    bad = bad_images(host)[case]
    exc = TypeError if case.split()[0] in ("integer", "boolean", "complex") else ValueError
    expect_rejected(model, lambda: model.fit(**{**data, "x_train": put(bad)}, epochs=1, verbose=False),
                    exc, ["x_train"])


@pytest.mark.parametrize("method", ["predict", "forward"])
@pytest.mark.parametrize("case", ["3-D images", "two channels", "integer images", "NaN pixel"])
def test_bad_images_elsewhere(trained, put, method, case):
    model, _, host = trained
    bad = put(bad_images(host)[case])
    exc = TypeError if case.startswith("integer") else ValueError
    expect_rejected(model, lambda: getattr(model, method)(bad), exc, ["x"])


@pytest.mark.parametrize("case", list(bad_labels((None, np.zeros(5, dtype=np.int64)))))
@pytest.mark.parametrize("which", ["y_train", "y_val"])
def test_bad_labels(trained, put, case, which):
    model, data, host = trained
    labels = host[1] if which == "y_train" else host[3]
    bad = bad_labels((None, labels))[case]
    exc = TypeError if case.split()[0] in ("float", "boolean") else ValueError
    expect_rejected(model, lambda: model.fit(**{**data, which: put(bad)}, epochs=1, verbose=False),
                    exc, [which])


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 2.5}, TypeError, "batch_size"),
    ({"epochs": -1}, ValueError, "epochs"),
    ({"epochs": 1.0}, TypeError, "epochs"),
    ({"lr": 0.0}, ValueError, "lr"),
    ({"lr": -0.1}, ValueError, "lr"),
    ({"lr": math.nan}, ValueError, "lr"),
    ({"lr": math.inf}, ValueError, "lr"),
    ({"lr": "0.1"}, TypeError, "lr"),
    ({"momentum": 1.0}, ValueError, "momentum"),
    ({"momentum": -0.1}, ValueError, "momentum"),
    ({"seed": -3}, ValueError, "seed"),
    ({"callback": 3}, TypeError, "callback"),
])
def test_bad_hyperparameters(trained, kwargs, exc, name):
    model, data, _ = trained
    expect_rejected(model, lambda: model.fit(**data, **{"verbose": False, **kwargs}), exc, [name])


def test_not_an_array(trained):
    model, data, host = trained
    expect_rejected(model, lambda: model.fit(**{**data, "x_train": host[0].tolist()}, verbose=False),
                    TypeError, ["x_train", "array"])


def test_labels_on_another_library(trained, backend):
    model, data, host = trained
    if backend.NAME == "numpy":
        import array_api_strict as xs
        other = xs.asarray(host[1])
    else:
        other = host[1]
    expect_rejected(model, lambda: model.fit(**{**data, "y_train": other}, epochs=1, verbose=False),
                    ValueError, ["y_train"])


def test_step_rejects_bad_rates(trained):
    model, _, _ = trained
    expect_rejected(model, lambda: model.step(-1.0), ValueError, ["lr"])
    expect_rejected(model, lambda: model.step(0.1, momentum=1.5), ValueError, ["momentum"])
    expect_rejected(model, lambda: model.conv.step(math.nan), ValueError, ["lr"])


@pytest.mark.parametrize("make,exc,name", [
    (lambda: tc.Conv2D(0, 3, 3), ValueError, "in_channels"),
    (lambda: tc.Conv2D(1, 3, 3.0), TypeError, "kernel_size"),
    (lambda: tc.Conv2D(1, 3, 3, stride=0), ValueError, "stride"),
    (lambda: tc.Conv2D(1, 3, 3, padding=-1), ValueError, "padding"),
    (lambda: tc.MaxPool2D(0), ValueError, "pool_size"),
    (lambda: tc.AvgPool2D(2, stride=0), ValueError, "stride"),
    (lambda: tc.Dense(27, 0), ValueError, "out_features"),
    (lambda: tc.TinyCNN(num_classes=0), ValueError, "num_classes"),
    (lambda: tc.make_dataset_bundle(train_per_class=0), ValueError, "train_per_class"),
    (lambda: tc.make_dataset_bundle(class_names=("vertical", "spiral")), ValueError, "class_names"),
    (lambda: tc.make_dataset_bundle(size=2), ValueError, "size"),
])
def test_bad_constructor_arguments(make, exc, name):
    with pytest.raises(exc, match=name):
        make()


def test_pool_larger_than_input(put):
    with pytest.raises(ValueError, match="smaller than"):
        tc.MaxPool2D(3).forward(put(np.zeros((1, 1, 2, 2))))


def test_layer_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        tc.Dense(3, 2).backward(np.zeros((1, 2)))


def test_loss_rejects_out_of_range_targets(put):
    with pytest.raises(ValueError, match="targets"):
        tc.softmax_cross_entropy(put(np.zeros((2, 3))), put(np.array([0, 3])))
