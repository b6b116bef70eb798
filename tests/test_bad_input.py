"""Bad input: a clear TypeError/ValueError naming the argument, raised before any state changes.

Every public entry point (layers' forward/backward/step, the models' fit/predict/evaluate/forward/
loss_and_grad/step, the gradient check, softmax and the loss, the dataset, the constructors) gets
the wrong things a user hands it. The values (NaN, infinity, labels out of range) are checked at
the entries that take a whole dataset (fit, predict, evaluate, the gradient check); the per-batch
methods of a hand loop check only what costs nothing
(``test_per_batch_methods_never_read_the_data``). Each case asserts the exception type, that the
message names the argument (as a word: ``x`` does not match inside ``x_train``), and that the
model or layer is unchanged: parameters, gradients, velocities, placement and the cached last
input.
"""

import math
import re

import numpy as np
import pytest

import tinycnn_xp as tc
from tinycnn_xp._xp import to_numpy


@pytest.fixture
def trained(put):
    """A model trained for two epochs on the backend, and its data."""
    x_train, y_train, x_val, y_val, _ = tc.make_dataset_bundle(train_per_class=10, val_per_class=5)
    data = {"x_train": put(x_train), "y_train": put(y_train), "x_val": put(x_val), "y_val": put(y_val)}
    model = tc.TinyCNN(seed=1)
    model.fit(**data, epochs=2, verbose=False, momentum=0.5)
    return model, data, (x_train, y_train, x_val, y_val)


def _placement(obj):
    place = getattr(obj, "placement", None)
    return None if place is None else (place.xp, repr(place.device), str(place.dtype))


def state(obj):
    """Host copies of every parameter, gradient and velocity, plus placement and cached input.

    ``obj`` is a model or a single layer.
    """
    layers = obj.layers if isinstance(obj, tc.Sequential) else [obj]
    out = {"placement": _placement(obj)}
    for i, layer in enumerate(layers):
        out[f"{i}.placement"] = _placement(layer)
        out[f"{i}.last_input"] = id(layer.last_input)
        for attr in getattr(layer, "param_names", ()):
            out[f"{i}.{attr}"] = to_numpy(getattr(layer, attr))
            out[f"{i}.d_{attr}"] = to_numpy(getattr(layer, "d_" + attr))
            out[f"{i}.velocity.{attr}"] = to_numpy(layer.velocity[attr])
    return out


def names_argument(message, word):
    """``word`` appears in ``message`` as a name of its own (not inside ``x_train`` or ``8x8``)."""
    return re.search(rf"(?<![\w.]){re.escape(word)}(?!\w)", message) is not None


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


def expect_rejected(subject, call, exc, words):
    """``call()`` raises exactly ``exc`` naming every word, and leaves ``subject`` unchanged."""
    before = state(subject) if subject is not None else None
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    message = str(info.value)
    assert type(info.value) is exc, f"{exc.__name__} expected, got {info.value!r}"
    for word in words:
        assert names_argument(message, word), f"{word!r} not named in {message!r}"
    if subject is not None:
        after = state(subject)
        assert after.keys() == before.keys()
        for key in before:
            np.testing.assert_array_equal(after[key], before[key], err_msg=key)


@pytest.mark.parametrize("case", list(bad_images((np.zeros((4, 1, 8, 8)), None))))
def test_bad_training_images(trained, put, case):
    model, data, host = trained
    bad = bad_images(host)[case]
    exc = TypeError if case.split()[0] in ("integer", "boolean", "complex") else ValueError
    expect_rejected(model, lambda: model.fit(**{**data, "x_train": put(bad)}, epochs=1,
                                             verbose=False), exc, ["x_train"])


@pytest.mark.parametrize("method,case", [
    (method, case) for method in ("predict", "forward")
    for case in ("3-D images", "two channels", "integer images", "NaN pixel")
    if (method, case) != ("forward", "NaN pixel")])  # values: not forward's to check
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
    expect_rejected(model, lambda: model.fit(**{**data, "x_train": host[0].tolist()},
                                             verbose=False), TypeError, ["x_train", "array"])


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


def test_per_batch_methods_never_read_the_data(trained, put):
    """forward, loss_and_grad, a layer's forward/backward and the loss take NaN and out-of-range
    labels without a pass over the data: the values are fit's, predict's and evaluate's to check."""
    model, _, host = trained
    x = np.array(host[0][:4], copy=True)
    x[0, 0, 0, 0] = np.nan
    assert np.isnan(to_numpy(model.forward(put(x)))).any()
    loss, _ = model.loss_and_grad(put(x), put(host[1][:4]))
    assert np.isnan(float(to_numpy(loss)))
    loss, _, _ = tc.softmax_cross_entropy(put(np.zeros((2, 3))), put(np.array([0, 3])))
    assert np.isfinite(float(to_numpy(loss)))  # the out-of-range label's row of the one-hot is 0
    with pytest.raises(ValueError, match="y"):  # where a dataset comes in, it is checked
        model.evaluate(put(host[0][:2]), put(np.array([0, 3])))


# -- every entry point, case by case -------------------------------------------------------------
#
# A case is ``case(id, exception, argument, call)``: ``call(c)`` (``c`` a ``Ctx``) must raise
# ``exception`` naming ``argument`` and leave the trained model (or the layer) unchanged.

def case(name, exc, arg, call):
    return pytest.param(exc, arg, call, id=name)




class Ctx:
    """What a case needs: the trained model and its data (placed and host), bad arrays, layers."""

    def __init__(self, trained, put, backend):
        self.model, self.data, self.host = trained
        self.put, self.backend = put, backend
        self.images, self.labels = self.host[0][:4], self.host[1][:4]
        self.x, self.y = put(self.images), put(self.labels)

    def fit(self, **changes):
        return self.model.fit(**{**self.data, **changes}, epochs=1, verbose=False)

    def bad(self, host=None, value=np.nan):
        """``host`` (default: 4 images) placed on the backend with one entry set to ``value``."""
        host = np.array(self.images if host is None else host, dtype=float, copy=True)
        host.flat[host.size // 2] = value
        return self.put(host)

    def elsewhere(self, host):
        """``host`` on another device (array_api_strict: device2) or library (the others)."""
        import array_api_strict as xs
        if self.backend.NAME == "array_api_strict":
            return xs.asarray(np.asarray(host), device=xs.Device("device2"))
        if self.backend.NAME == "numpy":
            return xs.asarray(np.asarray(host), device=xs.Device("device1"))
        return np.array(host)

    def zeros(self, shape, dtype=float):
        return self.put(np.zeros(shape, dtype))

    def layer(self, kind):
        """A layer placed on the backend, after a forward, a backward and a momentum step."""
        rng = np.random.default_rng(0)
        layer, shape = {"conv": (tc.Conv2D(1, 2, 3, seed=0, padding=1), (2, 1, 5, 5)),
                        "maxpool": (tc.MaxPool2D(2), (2, 2, 4, 4)),
                        "avgpool": (tc.AvgPool2D(2), (2, 2, 4, 4)),
                        "dense": (tc.Dense(4, 3, seed=0), (2, 4)),
                        "relu": (tc.ReLU(), (2, 3)),
                        "flatten": (tc.Flatten(), (2, 2, 2, 2))}[kind]
        out = layer.forward(self.put(rng.normal(size=shape)))
        layer.backward(self.put(rng.normal(size=tuple(out.shape))))
        if hasattr(layer, "step"):
            layer.step(0.1, momentum=0.5)  # non-zero velocities, so that a change would show
        return layer


MODEL_CASES = [
    # predict / forward --------------------------------------------------------------------------
    case("predict: empty batch", ValueError, "x", lambda c: c.model.predict(c.x[:0, ...])),
    case("predict: complex images", TypeError, "x",
         lambda c: c.model.predict(c.put(c.images.astype(complex)))),
    case("predict: boolean images", TypeError, "x",
         lambda c: c.model.predict(c.put(c.images > 0.5))),
    case("predict: +inf pixel", ValueError, "x", lambda c: c.model.predict(c.bad(value=np.inf))),
    case("predict: -inf pixel", ValueError, "x", lambda c: c.model.predict(c.bad(value=-np.inf))),
    case("predict: images of another device/library", ValueError, "x",
         lambda c: c.model.predict(c.elsewhere(c.images))),
    case("predict: float32 images, float64 model", TypeError, "x",
         lambda c: c.model.predict(c.put(c.images, "float32"))),
    case("forward: empty batch", ValueError, "x", lambda c: c.model.forward(c.x[:0, ...])),
    case("forward: complex images", TypeError, "x",
         lambda c: c.model.forward(c.put(c.images.astype(complex)))),
    case("forward: 10x10 images", ValueError, "x",
         lambda c: c.model.forward(c.zeros((2, 1, 10, 10)))),
    case("forward: a list", TypeError, "x", lambda c: c.model.forward(c.images.tolist())),
    case("forward: images of another device/library", ValueError, "x",
         lambda c: c.model.forward(c.elsewhere(c.images))),
    # evaluate -----------------------------------------------------------------------------------
    case("evaluate: NaN pixel", ValueError, "x", lambda c: c.model.evaluate(c.bad(), c.y)),
    case("evaluate: +inf pixel", ValueError, "x",
         lambda c: c.model.evaluate(c.bad(value=np.inf), c.y)),
    case("evaluate: empty batch", ValueError, "x",
         lambda c: c.model.evaluate(c.x[:0, ...], c.y[:0])),
    case("evaluate: complex images", TypeError, "x",
         lambda c: c.model.evaluate(c.put(c.images.astype(complex)), c.y)),
    case("evaluate: float labels", TypeError, "y",
         lambda c: c.model.evaluate(c.x, c.put(c.labels.astype(float)))),
    case("evaluate: one label too many", ValueError, "y",
         lambda c: c.model.evaluate(c.x, c.put(np.r_[c.labels, 0]))),
    case("evaluate: label = num_classes", ValueError, "y",
         lambda c: c.model.evaluate(c.x, c.put(np.r_[c.labels[:-1], 3]))),
    case("evaluate: labels on another device/library", ValueError, "y",
         lambda c: c.model.evaluate(c.x, c.elsewhere(c.labels))),
    case("evaluate: images and labels on another device/library", ValueError, "x",
         lambda c: c.model.evaluate(c.elsewhere(c.images), c.elsewhere(c.labels))),
    # loss_and_grad (it overwrites the gradients when it runs: they must stay as they were) -----
    case("loss_and_grad: empty batch", ValueError, "x",
         lambda c: c.model.loss_and_grad(c.x[:0, ...], c.y[:0])),
    case("loss_and_grad: boolean images", TypeError, "x",
         lambda c: c.model.loss_and_grad(c.put(c.images > 0.5), c.y)),
    case("loss_and_grad: two channels", ValueError, "x",
         lambda c: c.model.loss_and_grad(c.zeros((4, 2, 8, 8)), c.y)),
    case("loss_and_grad: labels on another device/library", ValueError, "y",
         lambda c: c.model.loss_and_grad(c.x, c.elsewhere(c.labels))),
    case("loss_and_grad: float32 images, float64 model", TypeError, "x",
         lambda c: c.model.loss_and_grad(c.put(c.images, "float32"), c.y)),
    # step ---------------------------------------------------------------------------------------
    case("step: lr=True", TypeError, "lr", lambda c: c.model.step(True)),
    case("step: lr='0.1'", TypeError, "lr", lambda c: c.model.step("0.1")),
    case("step: lr=inf", ValueError, "lr", lambda c: c.model.step(math.inf)),
    case("step: momentum=nan", ValueError, "momentum",
         lambda c: c.model.step(0.1, momentum=math.nan)),
    case("step: momentum=None", TypeError, "momentum", lambda c: c.model.step(0.1, momentum=None)),
    # fit: validation data, placement and counts -------------------------------------------------
    case("fit: NaN in x_val", ValueError, "x_val", lambda c: c.fit(x_val=c.bad(c.host[2]))),
    case("fit: empty x_val", ValueError, "x_val",
         lambda c: c.fit(x_val=c.data["x_val"][:0, ...], y_val=c.data["y_val"][:0])),
    case("fit: complex x_val", TypeError, "x_val",
         lambda c: c.fit(x_val=c.put(c.host[2].astype(complex)))),
    case("fit: y_val on another device/library", ValueError, "y_val",
         lambda c: c.fit(y_val=c.elsewhere(c.host[3]))),
    case("fit: validation data on another device/library", ValueError, "x_val",
         lambda c: c.fit(x_val=c.elsewhere(c.host[2]), y_val=c.elsewhere(c.host[3]))),
    case("fit: training data on another device/library", ValueError, "x_train",
         lambda c: c.fit(x_train=c.elsewhere(c.host[0]), y_train=c.elsewhere(c.host[1]))),
    case("fit: float32 x_val, float64 model", TypeError, "x_val",
         lambda c: c.fit(x_val=c.put(c.host[2], "float32"))),
    case("fit: new model, float64 x_train, float32 x_val", TypeError, "x_val",
         lambda c: tc.TinyCNN().fit(**{**c.data, "x_val": c.put(c.host[2], "float32")},
                                    epochs=1, verbose=False)),
    case("fit: epochs=np.float64(2)", TypeError, "epochs", lambda c: c.fit(epochs=np.float64(2))),
    case("fit: epochs=True", TypeError, "epochs", lambda c: c.fit(epochs=True)),
    case("fit: batch_size=True", TypeError, "batch_size", lambda c: c.fit(batch_size=True)),
    case("fit: batch_size=-2", ValueError, "batch_size", lambda c: c.fit(batch_size=-2)),
    case("fit: initial_epoch=0.5", TypeError, "initial_epoch", lambda c: c.fit(initial_epoch=0.5)),
    case("fit: initial_epoch=-1", ValueError, "initial_epoch", lambda c: c.fit(initial_epoch=-1)),
    case("fit: initial_epoch > epochs", ValueError, "initial_epoch",
         lambda c: c.fit(initial_epoch=2)),
    case("fit: lr=True", TypeError, "lr", lambda c: c.fit(lr=True)),
    case("fit: lr=-inf", ValueError, "lr", lambda c: c.fit(lr=-math.inf)),
    case("fit: momentum='0.9'", TypeError, "momentum", lambda c: c.fit(momentum="0.9")),
    case("fit: seed=1.5", TypeError, "seed", lambda c: c.fit(seed=1.5)),
    # the gradient check -------------------------------------------------------------------------
    case("check_gradients: NaN pixel", ValueError, "x",
         lambda c: tc.check_gradients(c.model, c.bad(), c.y)),
    case("check_gradients: empty batch", ValueError, "x",
         lambda c: tc.check_gradients(c.model, c.x[:0, ...], c.y[:0])),
    case("check_gradients: complex images", TypeError, "x",
         lambda c: tc.check_gradients(c.model, c.put(c.images.astype(complex)), c.y)),
    case("check_gradients: float32 images", TypeError, "x",
         lambda c: tc.check_gradients(c.model, c.put(c.images, "float32"), c.y)),
    case("check_gradients: float labels", TypeError, "y",
         lambda c: tc.check_gradients(c.model, c.x, c.put(c.labels.astype(float)))),
    case("check_gradients: labels on another device/library", ValueError, "y",
         lambda c: tc.check_gradients(c.model, c.x, c.elsewhere(c.labels))),
    case("check_gradients: data on another device/library", ValueError, "x",
         lambda c: tc.check_gradients(c.model, c.elsewhere(c.images), c.elsewhere(c.labels))),
    case("check_gradients: epsilon=0", ValueError, "epsilon",
         lambda c: tc.check_gradients(c.model, c.x[:1, ...], c.y[:1], epsilon=0.0)),
    case("check_gradients: epsilon='1e-5'", TypeError, "epsilon",
         lambda c: tc.check_gradients(c.model, c.x[:1, ...], c.y[:1], epsilon="1e-5")),
    case("check_gradients: a layer instead of a model", TypeError, "model",
         lambda c: tc.check_gradients(c.model.dense, c.zeros((4, 27)), c.y)),
    case("numerical_gradient: a copy of a parameter", ValueError, "param_array",
         lambda c: tc.numerical_gradient(c.model, c.x, c.y, c.put(to_numpy(c.model.conv.weights)))),
    case("numerical_gradient: epsilon=-1e-5", ValueError, "epsilon",
         lambda c: tc.numerical_gradient(c.model, c.x, c.y, c.model.conv.bias, epsilon=-1e-5)),
    case("numerical_gradient: NaN pixel", ValueError, "x",
         lambda c: tc.numerical_gradient(c.model, c.bad(), c.y, c.model.conv.bias)),
]


@pytest.mark.parametrize("exc,arg,call", MODEL_CASES)
def test_model_entry_points(trained, put, backend, exc, arg, call):
    c = Ctx(trained, put, backend)
    expect_rejected(c.model, lambda: call(c), exc, [arg])


# Layer cases: ``call(c, layer)`` with a placed layer of the kind the id starts with.
LAYER_CASES = [
    case("conv forward: empty batch", ValueError, "x",
         lambda c, layer: layer.forward(c.zeros((0, 1, 5, 5)))),
    case("conv forward: complex images", TypeError, "x",
         lambda c, layer: layer.forward(c.zeros((2, 1, 5, 5), complex))),
    case("conv forward: 3-D images", ValueError, "x", lambda c, layer: layer.forward(c.zeros((1, 5, 5)))),
    case("conv forward: two channels", ValueError, "x",
         lambda c, layer: layer.forward(c.zeros((2, 2, 5, 5)))),
    case("conv forward: smaller than the padded kernel", ValueError, "x",
         lambda c, layer: tc.Conv2D(1, 1, 5, padding=1).forward(c.zeros((1, 1, 2, 2)))),
    case("conv forward: zero width, padded", ValueError, "x",
         lambda c, layer: tc.Conv2D(1, 1, 1, padding=1).forward(c.zeros((1, 1, 3, 0)))),
    case("conv forward: images of another device/library", ValueError, "x",
         lambda c, layer: layer.forward(c.elsewhere(np.zeros((2, 1, 5, 5))))),
    case("conv forward: float32 images, float64 parameters", TypeError, "x",
         lambda c, layer: layer.forward(c.put(np.zeros((2, 1, 5, 5)), "float32"))),
    case("conv backward: wrong shape", ValueError, "d_output",
         lambda c, layer: layer.backward(c.zeros((2, 2, 4, 4)))),
    case("conv backward: float32 gradient, float64 parameters", TypeError, "d_output",
         lambda c, layer: layer.backward(c.put(np.ones((2, 2, 5, 5)), "float32"))),
    case("conv backward: integer gradient", TypeError, "d_output",
         lambda c, layer: layer.backward(c.zeros((2, 2, 5, 5), int))),
    case("conv backward: gradient on another device/library", ValueError, "d_output",
         lambda c, layer: layer.backward(c.elsewhere(np.ones((2, 2, 5, 5))))),
    case("conv step: lr=0", ValueError, "lr", lambda c, layer: layer.step(0.0)),
    case("maxpool forward: 2-D input", ValueError, "x", lambda c, layer: layer.forward(c.zeros((2, 8)))),
    case("maxpool forward: empty batch", ValueError, "x",
         lambda c, layer: layer.forward(c.zeros((0, 2, 4, 4)))),
    case("maxpool forward: zero channels", ValueError, "x",
         lambda c, layer: layer.forward(c.zeros((2, 0, 4, 4)))),
    case("maxpool backward: wrong shape", ValueError, "d_output",
         lambda c, layer: layer.backward(c.zeros((2, 2, 4, 4)))),
    case("avgpool forward: smaller than the pool", ValueError, "x",
         lambda c, layer: layer.forward(c.zeros((2, 2, 1, 4)))),
    case("avgpool forward: boolean images", TypeError, "x",
         lambda c, layer: layer.forward(c.zeros((2, 2, 4, 4), bool))),
    case("dense forward: wrong number of features", ValueError, "x",
         lambda c, layer: layer.forward(c.zeros((2, 5)))),
    case("dense forward: empty batch", ValueError, "x", lambda c, layer: layer.forward(c.zeros((0, 4)))),
    case("dense forward: integer features", TypeError, "x",
         lambda c, layer: layer.forward(c.zeros((2, 4), int))),
    case("dense backward: gradient on another device/library", ValueError, "d_output",
         lambda c, layer: layer.backward(c.elsewhere(np.ones((2, 3))))),
    case("dense backward: a list", TypeError, "d_output", lambda c, layer: layer.backward([[0.0] * 3] * 2)),
    case("dense step: momentum=1", ValueError, "momentum", lambda c, layer: layer.step(0.1, momentum=1.0)),
    case("relu forward: complex input", TypeError, "x",
         lambda c, layer: layer.forward(c.zeros((2, 3), complex))),
    case("relu forward: empty batch", ValueError, "x",
         lambda c, layer: layer.forward(c.zeros((0, 3)))),
    case("relu backward: wrong shape", ValueError, "d_output",
         lambda c, layer: layer.backward(c.zeros((3, 2)))),
    case("flatten forward: 1-D input", ValueError, "x", lambda c, layer: layer.forward(c.zeros(4))),
    case("flatten forward: empty batch", ValueError, "x",
         lambda c, layer: layer.forward(c.zeros((0, 2, 2, 2)))),
]


@pytest.mark.parametrize("exc,arg,call", LAYER_CASES)
def test_layer_entry_points(trained, put, backend, request, exc, arg, call):
    c = Ctx(trained, put, backend)
    layer = c.layer(request.node.callspec.id.split()[0])
    expect_rejected(layer, lambda: call(c, layer), exc, [arg])


def _loss(c, logits, targets=None):
    return tc.softmax_cross_entropy(logits, c.put(np.array([0, 2])) if targets is None else targets)


LOSS_CASES = [
    case("softmax: zero classes", ValueError, "logits",
         lambda c: tc.softmax(c.zeros((2, 0)))),
    case("softmax: 1-D logits", ValueError, "logits", lambda c: tc.softmax(c.zeros(3))),
    case("softmax: complex logits", TypeError, "logits",
         lambda c: tc.softmax(c.zeros((2, 3), complex))),
    case("softmax_cross_entropy: empty batch", ValueError, "logits",
         lambda c: _loss(c, c.zeros((0, 3)), c.zeros(0, int))),
    case("softmax_cross_entropy: integer logits", TypeError, "logits",
         lambda c: _loss(c, c.zeros((2, 3), int))),
    case("softmax_cross_entropy: float targets", TypeError, "targets",
         lambda c: _loss(c, c.zeros((2, 3)), c.put(np.array([0.0, 1.0])))),
    case("softmax_cross_entropy: one target too few", ValueError, "targets",
         lambda c: _loss(c, c.zeros((2, 3)), c.put(np.array([0])))),
    case("softmax_cross_entropy: targets on another device/library", ValueError, "targets",
         lambda c: _loss(c, c.zeros((2, 3)), c.elsewhere(np.array([0, 1])))),
]


@pytest.mark.parametrize("exc,arg,call", LOSS_CASES)
def test_loss_entry_points(trained, put, backend, exc, arg, call):
    expect_rejected(None, lambda: call(Ctx(trained, put, backend)), exc, [arg])


def _tiny(**kwargs):
    return tc.Sequential([tc.Flatten(), tc.Dense(4, 2)], **kwargs)


BUILD_CASES = [  # no model to compare: ``call()`` takes no argument
    case("make_dataset_bundle: train_per_class=2.5", TypeError, "train_per_class",
         lambda: tc.make_dataset_bundle(train_per_class=2.5)),
    case("make_dataset_bundle: val_per_class=0", ValueError, "val_per_class",
         lambda: tc.make_dataset_bundle(val_per_class=0)),
    case("make_dataset_bundle: size=8.0", TypeError, "size",
         lambda: tc.make_dataset_bundle(size=8.0)),
    case("make_dataset_bundle: seed=-1", ValueError, "seed",
         lambda: tc.make_dataset_bundle(seed=-1)),
    case("make_dataset_bundle: class_names a string", TypeError, "class_names",
         lambda: tc.make_dataset_bundle(class_names="dot")),
    case("make_dataset_bundle: no class_names", ValueError, "class_names",
         lambda: tc.make_dataset_bundle(class_names=())),
    case("make_dataset_bundle: repeated class_names", ValueError, "class_names",
         lambda: tc.make_dataset_bundle(class_names=("dot", "dot"))),
    case("make_dataset_bundle: class_names=3", TypeError, "class_names",
         lambda: tc.make_dataset_bundle(class_names=3)),
    case("Conv2D: in_channels=True", TypeError, "in_channels", lambda: tc.Conv2D(True, 3, 3)),
    case("Conv2D: out_channels='3'", TypeError, "out_channels", lambda: tc.Conv2D(1, "3", 3)),
    case("Conv2D: seed=-1", ValueError, "seed", lambda: tc.Conv2D(1, 3, 3, seed=-1)),
    case("MaxPool2D: stride=1.5", TypeError, "stride", lambda: tc.MaxPool2D(2, stride=1.5)),
    case("Dense: in_features=-1", ValueError, "in_features", lambda: tc.Dense(-1, 3)),
    case("Dense: seed=1.5", TypeError, "seed", lambda: tc.Dense(4, 3, seed=1.5)),
    case("Sequential: no layers", TypeError, "layers", lambda: tc.Sequential([])),
    case("Sequential: a string among the layers", TypeError, "layers",
         lambda: tc.Sequential([tc.Flatten(), "relu"])),
    case("Sequential: repeated names", ValueError, "names", lambda: _tiny(names=["a", "a"])),
    case("Sequential: seed=-1", ValueError, "seed", lambda: _tiny(seed=-1)),
    case("Sequential: input_shape of two numbers", ValueError, "input_shape",
         lambda: _tiny(input_shape=(2, 2))),
    case("Sequential: input_shape the layers cannot take", ValueError, "input_shape",
         lambda: _tiny(input_shape=(1, 3, 3))),
    case("Sequential: no layer with parameters", ValueError, "layers",
         lambda: tc.Sequential([tc.Flatten()])),
    case("TinyCNN: seed=-1", ValueError, "seed", lambda: tc.TinyCNN(seed=-1)),
    case("TinyCNN: num_classes=2.0", TypeError, "num_classes", lambda: tc.TinyCNN(num_classes=2.0)),
    case("deep_cnn: seed=1.5", TypeError, "seed", lambda: tc.deep_cnn(seed=1.5)),
    case("make_model: unknown preset", ValueError, "name", lambda: tc.make_model("huge")),
]


@pytest.mark.parametrize("exc,arg,call", BUILD_CASES)
def test_constructors_and_data(exc, arg, call):
    expect_rejected(None, call, exc, [arg])


def test_rejected_call_leaves_an_unplaced_model_unplaced(put):
    """A fresh model that rejects its first input is not placed by it: a later good call decides."""
    model = tc.TinyCNN(seed=3)
    x = np.random.default_rng(0).normal(size=(4, 1, 8, 8))
    y_bad, y_good = put(np.array([0, 1, 2, 5])), put(np.array([0, 1, 2, 0]))
    expect_rejected(model, lambda: model.fit(put(x), y_bad, put(x), y_good, epochs=1,
                                             verbose=False), ValueError, ["y_train"])
    expect_rejected(model, lambda: model.predict(put(x, "float32")[:0, ...]), ValueError, ["x"])
    assert model.placement is None and all(layer.placement is None for layer in model.layers)
    model.predict(put(x, "float32"))  # the first good input places the model
    assert str(model.conv.weights.dtype).endswith("float32")
