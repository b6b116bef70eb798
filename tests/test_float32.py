"""float32 end to end, on every backend and also on array-api-strict's ``Device("no_float64")``.

Run there with ``pytest --backend array_api_strict --device no_float64 -m float32`` (the strict
nox session does): a device that refuses float64 arrays, like Apple's MPS, so any float64 array a
float32 model made on its device would fail these tests.
"""

import numpy as np
import pytest
from array_api_compat import device

import tinycnn_xp as tc

pytestmark = pytest.mark.float32


@pytest.fixture(scope="module")
def data():
    return tc.make_dataset_bundle()


def placed(put, data, labels="int64"):
    x_train, y_train, x_val, y_val = data[:4]
    return (put(x_train, "float32"), put(y_train.astype(labels)), put(x_val, "float32"),
            put(y_val.astype(labels)))


def assert_float32_on(model, backend):
    for name, layer, attr in model.parameters():
        for array in (getattr(layer, attr), getattr(layer, "d_" + attr), layer.velocity[attr]):
            assert str(array.dtype).endswith("float32"), name
            assert device(array) == backend.device(), name


@pytest.mark.parametrize("labels", ["int64", "int32"])
def test_chapter_fit_in_float32_reaches_full_accuracy(backend, put, data, labels):
    model = tc.TinyCNN(seed=42)
    history = model.fit(*placed(put, data, labels), verbose=False)
    assert history["val_acc"][-1] == 1.0
    assert all(type(v) is float for v in history["train_loss"])
    assert_float32_on(model, backend)


def test_momentum_predict_evaluate_in_chunks(backend, put, host, data):
    x_train, y_train, x_val, y_val = placed(put, data, "int32")
    model = tc.TinyCNN(seed=3)
    history = model.fit(x_train, y_train, x_val, y_val, epochs=10, momentum=0.9,
                        eval_batch_size=7, verbose=False)
    assert_float32_on(model, backend)
    predicted = model.predict(x_val, eval_batch_size=16)
    assert device(predicted) == backend.device()
    whole = host(model.predict(x_val, eval_batch_size=1000))
    np.testing.assert_array_equal(host(predicted), whole)
    assert model.evaluate(x_val, y_val, eval_batch_size=4) == history["val_acc"][-1]


def test_a_float64_checkpoint_loads_as_float32_on_the_device(backend, xp, put, host, data, tmp_path):
    model = tc.TinyCNN(seed=1)
    model.fit(*data[:4], epochs=2, verbose=False)  # float64, on the host
    path = model.save(tmp_path / "model.npz")
    loaded = tc.Sequential.load(path, xp=xp, device=backend.device(), dtype="float32")
    assert_float32_on(loaded, backend)
    expected = model.forward(data[2].astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(host(loaded.forward(put(data[2], "float32"))), expected,
                               rtol=0, atol=1e-5)
    unplaced = tc.Sequential.load(path, dtype="float32")  # cast on the host, placed by its input
    unplaced.predict(put(data[2], "float32"))
    assert_float32_on(unplaced, backend)


def test_to_moves_a_host_model_in_float32(backend, xp, put, data):
    model = tc.deep_cnn(seed=0).to(xp, backend.device(), "float32")
    assert model.placement.dtype == put(data[0][:1], "float32").dtype
    assert_float32_on(model, backend)
    history = model.fit(*placed(put, data), epochs=3, verbose=False)
    assert len(history["val_acc"]) == 3


def test_layers_forward_and_backward_in_float32(backend, put):
    x = put(np.random.default_rng(0).normal(size=(2, 1, 7, 7)), "float32")
    for layer in (tc.Conv2D(1, 2, 3, padding=1, stride=2), tc.MaxPool2D(2), tc.AvgPool2D(3, 1),
                  tc.ReLU()):
        out = layer.forward(x)
        d_input = layer.backward(out * 0 + 1)
        assert str(out.dtype).endswith("float32") and str(d_input.dtype).endswith("float32")
        assert device(d_input) == backend.device()


def test_sweep_in_float32(backend, put, data):
    histories = tc.learning_rate_sweep(tc.TinyCNN(seed=0), *placed(put, data), lrs=[0.05, 0.5],
                                       epochs=3, verbose=False)
    assert sorted(histories) == [0.05, 0.5]


@pytest.mark.parametrize("make", [lambda: tc.Adam(0.01), lambda: tc.RMSprop(0.005, momentum=0.5),
                                  lambda: tc.AdamW(0.01)], ids=["adam", "rmsprop", "adamw"])
def test_the_new_layers_and_optimizers_train_in_float32(backend, put, data, make):
    """Batch normalization, dropout and each optimizer's state in float32, on the input's device
    (on array-api-strict's no_float64 device, any float64 array made on it would raise)."""
    from tinycnn_xp.schedules import Cosine
    model = tc.Sequential([tc.Conv2D(1, 3, 3), tc.BatchNorm2D(3), tc.ReLU(), tc.MaxPool2D(2),
                           tc.Flatten(), tc.Dropout(0.2), tc.Dense(27, 3), tc.BatchNorm1D(3)],
                          seed=0)
    optimizer = make()
    optimizer.schedule = Cosine(20)
    history = model.fit(*placed(put, data), epochs=20, verbose=False, optimizer=optimizer)
    assert history["val_acc"][-1] >= 0.9
    assert_float32_on(model, backend)
    for name, layer, attr in model.buffer_slots():
        assert str(getattr(layer, attr).dtype).endswith("float32") and \
            device(getattr(layer, attr)) == backend.device(), name
    for slot in optimizer.slots if optimizer.state is not None else ():
        for name, array in optimizer.state[slot].items():
            assert str(array.dtype).endswith("float32") and device(array) == backend.device(), name
    model.predict(placed(put, data)[2])
