"""Lazy array libraries (dask.array): refused at every public entry with a TypeError that names the
argument and says what to pass instead, before anything changes; never an error from inside."""

import numpy as np
import pytest

import tinycnn_xp as tc
from helpers import param_state

da = pytest.importorskip("dask.array", reason="dask is not installed (pip install 'dask[array]')")


@pytest.fixture(scope="module")
def data():
    return tc.make_dataset_bundle(train_per_class=4, val_per_class=2)


def lazy(a):
    return da.from_array(a, chunks=4)


def entries(data):
    x, y, xv, yv = data[:4]
    model = tc.TinyCNN(seed=0)
    return model, [
        ("x_train", lambda: model.fit(lazy(x), y, xv, yv, epochs=1, verbose=False)),
        ("y_train", lambda: model.fit(x, lazy(y), xv, yv, epochs=1, verbose=False)),
        ("x_val", lambda: model.fit(x, y, lazy(xv), yv, epochs=1, verbose=False)),
        ("y_val", lambda: model.fit(x, y, xv, lazy(yv), epochs=1, verbose=False)),
        ("x", lambda: model.predict(lazy(xv))),
        ("x", lambda: model.evaluate(lazy(xv), yv)),
        ("y", lambda: model.evaluate(xv, lazy(yv))),
        ("x", lambda: model.forward(lazy(xv))),
        ("x", lambda: model.loss_and_grad(lazy(x), y)),
        ("xp", lambda: model.to(da)),
        ("x", lambda: tc.Conv2D(1, 2, 3).forward(lazy(xv))),
        ("logits", lambda: tc.softmax(lazy(np.zeros((2, 3))))),
        ("x_val", lambda: tc.learning_rate_sweep(model, x, y, lazy(xv), yv, lrs=[0.1], epochs=1,
                                             verbose=False)),
    ]


def test_every_entry_refuses_dask_arrays_before_changing_anything(backend, data):
    if backend.NAME != "numpy":
        pytest.skip(f"the refusal does not depend on the backend; it runs in the numpy session "
                    f"(this is {backend.NAME})")
    model, calls = entries(data)
    before = param_state(model)
    for name, call in calls:
        with pytest.raises(TypeError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"{name} ") or message.startswith(f"{name}:"), message
        assert "lazy" in message and ("compute()" in message or "eager" in message), message
        assert model.placement is None, name
    after = param_state(model)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key])
    # computed first, as the message says, the same data trains
    x, y, xv, yv = data[:4]
    history = model.fit(lazy(x).compute(), y, xv, yv, epochs=1, verbose=False)
    assert len(history["train_loss"]) == 1
