"""Dtypes at the edges, on every backend: half precision is refused at every entry with the list of
supported dtypes, and every integer dtype a backend has works as labels (or gets an error that
names the labels).

float16 underflows the chapter's 1e-12 clip, so float16 and bfloat16 (where the backend has them;
array-api-strict has neither) are refused rather than trained. torch cannot compare its
uint16/32/64 tensors; the entries cast labels to the library's default integer dtype first.
"""

import numpy as np
import pytest

import tinycnn_xp as tc
from tinycnn_xp import checkpoint
from tinycnn_xp.losses import softmax, softmax_cross_entropy

HALF = ("float16", "bfloat16")
INTEGERS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


@pytest.fixture(scope="module")
def data():
    return tc.make_dataset_bundle(train_per_class=4, val_per_class=2)[:4]


def library_dtype(backend, xp, name):
    """The backend's dtype called ``name``, or ``None`` where it has none."""
    dtype = getattr(xp, name, None)
    library = {"torch": "torch", "jax": "jax.numpy", "numpy": "ml_dtypes"}.get(backend.NAME)
    if dtype is None and library is not None:  # NumPy's bfloat16 comes with ml_dtypes (JAX's)
        try:
            dtype = getattr(__import__(library, fromlist=["_"]), name, None)
        except ImportError:
            return None
    return dtype


def cast(backend, xp, put, host, name):
    """``host`` on the backend as dtype ``name`` (skip if the backend has no such dtype)."""
    dtype = library_dtype(backend, xp, name)
    if dtype is None:
        pytest.skip(f"{backend.NAME} has no {name}")
    try:
        array = xp.astype(put(host), dtype)
    except Exception as exc:  # e.g. a device that cannot hold it
        pytest.skip(f"{backend.NAME} cannot make {name} here: {exc}")
    if not str(array.dtype).endswith(name):  # JAX quietly narrows 64-bit types without x64
        pytest.skip(f"{backend.NAME} made {array.dtype} for {name}")
    return array


# -- half precision ------------------------------------------------------------------------------
def _entries(model, half, good, labels, model_half_state):
    """Each public entry, given one half-precision argument: ``(name, call)``."""
    x, y = good
    layer = tc.Conv2D(1, 2, 3, seed=0)
    return [
        ("fit x_train", lambda: model.fit(half, labels, x, y, epochs=1, verbose=False)),
        ("fit x_val", lambda: model.fit(x, y, half, labels, epochs=1, verbose=False)),
        ("predict", lambda: model.predict(half)),
        ("evaluate", lambda: model.evaluate(half, labels)),
        ("forward", lambda: model.forward(half)),
        ("loss_and_grad", lambda: model.loss_and_grad(half, labels)),
        ("layer forward", lambda: layer.forward(half)),
        ("softmax", lambda: softmax(half[:, 0, 0, :])),
        ("softmax_cross_entropy", lambda: softmax_cross_entropy(half[:, 0, 0, :3], labels)),
        ("check_gradients", lambda: tc.check_gradients(model, half, labels)),
        ("learning_rate_sweep", lambda: tc.learning_rate_sweep(model, half, labels, x, y, [0.1],
                                                                epochs=1, verbose=False)),
        ("load_state", lambda: model.load_state(model_half_state)),
    ]


@pytest.mark.parametrize("half", HALF)
def test_half_precision_is_refused_at_every_entry(backend, xp, put, data, half, dtype_name):
    x_train, y_train = data[0][:6], data[1][:6]
    x_half = cast(backend, xp, put, x_train, half)
    labels, good = put(y_train), (put(x_train, dtype_name), put(y_train))
    model = tc.TinyCNN(seed=0)
    state = {"param": {}, "velocity": {}}
    for name, layer, attr in model.parameters():
        for group in state:
            state[group][name] = cast(backend, xp, put, np.zeros(getattr(layer, attr).shape), half)
    for name, call in _entries(model, x_half, good, labels, state):
        with pytest.raises((TypeError, ValueError)) as info:
            call()
        message = str(info.value)
        assert "float32" in message and "float64" in message and half in message, (name, message)
    assert model.placement is None or tc.to_numpy(model.conv.weights).dtype == np.dtype(dtype_name)


@pytest.mark.parametrize("half", HALF)
def test_half_precision_gradients_and_placements_are_refused(backend, xp, put, data, half, dtype_name,
                                                            tmp_path):
    x, y = put(data[0][:6], dtype_name), put(data[1][:6])
    model = tc.TinyCNN(seed=0)
    logits = model.forward(x)
    d_half = cast(backend, xp, put, np.zeros(tuple(logits.shape)), half)
    dtype = library_dtype(backend, xp, half)
    for call in (lambda: model.backward(d_half), lambda: model.layers[-1].backward(d_half),
                 lambda: model.to(xp, backend.device(), dtype), lambda: model.to(xp, dtype=half)):
        with pytest.raises((TypeError, ValueError), match=r"float32.*float64|float64.*float32"):
            call()
    with pytest.raises(ValueError, match=r"dtype must be one of \('float32', 'float64'\)"):
        tc.Sequential.load(checkpoint.save(model, tmp_path / "model.npz"), dtype=half)
    assert model.evaluate(x, y) >= 0.0  # the model is untouched and usable


def test_the_command_line_offers_only_the_two_dtypes():
    from tinycnn_xp.cli import build_parser
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--dtype", "float16"])


# -- integer labels ------------------------------------------------------------------------------
@pytest.mark.parametrize("integer", INTEGERS)
def test_every_integer_label_dtype_trains_like_int64(backend, xp, put, host, data, integer, dtype_name):
    x_train, y_train, x_val, y_val = data
    y_cast, yv_cast = (cast(backend, xp, put, y, integer) for y in (y_train, y_val))
    x, xv = put(x_train, dtype_name), put(x_val, dtype_name)
    reference, model = tc.TinyCNN(seed=0), tc.TinyCNN(seed=0)
    expected = reference.fit(x, put(y_train), xv, put(y_val), epochs=2, batch_size=8, verbose=False)
    history = model.fit(x, y_cast, xv, yv_cast, epochs=2, batch_size=8, verbose=False)
    for key in ("train_loss", "val_loss", "train_acc", "val_acc"):
        assert history[key] == expected[key], key
    assert model.evaluate(xv, yv_cast) == reference.evaluate(xv, put(y_val))
    loss, _ = model.loss_and_grad(x, y_cast)
    loss_ref, _ = reference.loss_and_grad(x, put(y_train))
    assert float(loss) == float(loss_ref)
    logits = model.forward(xv)
    assert float(softmax_cross_entropy(logits, yv_cast)[0]) == \
        float(softmax_cross_entropy(logits, put(y_val))[0])
    if dtype_name == "float64":
        errors = tc.check_gradients(tc.TinyCNN(seed=0), xv[:3, ...], yv_cast[:3])
        assert max(errors.values()) < 1e-6


@pytest.mark.parametrize("integer", ["uint8", "uint16", "uint32", "uint64", "int8"])
def test_labels_out_of_range_are_named_in_any_integer_dtype(backend, xp, put, data, integer):
    x = put(data[0][:4])
    y = cast(backend, xp, put, np.array([0, 1, 2, 3]), integer)
    model = tc.TinyCNN(seed=0)
    for call in (lambda: model.evaluate(x, y), lambda: model.fit(x, y, x, y, epochs=1, verbose=False)):
        with pytest.raises(ValueError, match=r"y(_train)? must hold labels in \[0, 2\].*from 0 to 3"):
            call()


def test_uint64_labels_beyond_int64_are_refused_by_name(backend, xp, put, data):
    x = put(data[0][:2])
    y = cast(backend, xp, put, np.array([0, 2**64 - 1], dtype=np.uint64), "uint64")
    with pytest.raises(ValueError, match=r"y must hold labels in \[0, 2\]"):
        tc.TinyCNN(seed=0).evaluate(x, y)


def test_boolean_and_float_labels_are_refused_by_name(backend, xp, put, data):
    x = put(data[0][:2])
    for labels, dtype in ((xp.asarray([True, False], device=backend.device()), "bool"),
                          (put(np.array([0.0, 1.0])), "float")):
        with pytest.raises(TypeError, match=f"y must hold integer class labels, got dtype {dtype}"):
            tc.TinyCNN(seed=0).evaluate(x, labels)
