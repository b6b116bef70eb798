"""Training: the chapter's numbers, accuracy, placement on the input's device, agreement with NumPy."""

import json
from pathlib import Path

import numpy as np
import pytest
from array_api_compat import array_namespace, device

import tinycnn_xp as tc
from tinycnn_xp._xp import to_numpy

REFERENCE = json.loads((Path(__file__).parent / "chapter24_reference_history.json").read_text())
METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")


@pytest.fixture(scope="module")
def data():
    return tc.make_dataset_bundle()


@pytest.fixture(scope="module")
def numpy_run(data):
    """The chapter's fit on NumPy float64, shared by the agreement tests."""
    model = tc.TinyCNN(seed=42)
    history = model.fit(*data[:4], epochs=80, lr=0.12, batch_size=18, seed=0, verbose=False)
    return model, history


def test_dataset_is_the_chapters(data):
    x_train, y_train, x_val, _y_val, names = data
    assert names == tc.CLASS_NAMES == ("vertical", "horizontal", "diagonal")
    assert x_train.shape == (180, 1, 8, 8) and x_val.shape == (90, 1, 8, 8)
    assert y_train[0] == REFERENCE["dataset_first_train_label"]
    np.testing.assert_array_equal(x_train[0, 0, 0], REFERENCE["dataset_first_train_image_row0"])
    np.testing.assert_array_equal(np.bincount(y_train), REFERENCE["dataset_label_counts_train"])
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0


def test_chapter_fit_reproduced(backend, put, data):
    """Same seeds, same data, same shuffles: the chapter's history and final weights (float64)."""
    model = tc.TinyCNN(seed=42)
    np.testing.assert_array_equal(model.conv.weights, REFERENCE["initial_conv_weights"])
    np.testing.assert_array_equal(model.dense.weights[0], REFERENCE["initial_dense_weights_first_row"])
    history = model.fit(*(put(a) for a in data[:4]), epochs=80, lr=0.12, batch_size=18, seed=0,
                        verbose=False)
    tol = 1e-8 if backend.NAME == "numpy" else 1e-9
    for key in METRICS:
        assert len(history[key]) == 80
        assert all(type(v) is float for v in history[key])
        np.testing.assert_allclose(history[key], REFERENCE[key], rtol=0, atol=tol, err_msg=key)
    np.testing.assert_allclose(to_numpy(model.conv.weights), REFERENCE["final_conv_weights"],
                               rtol=0, atol=tol)
    np.testing.assert_allclose(to_numpy(model.conv.bias), REFERENCE["final_conv_bias"], rtol=0, atol=tol)
    np.testing.assert_allclose(to_numpy(model.dense.bias), REFERENCE["final_dense_bias"], rtol=0, atol=tol)
    assert history["val_acc"][-1] == 1.0
    snapshots = history["kernel_snapshots"]
    assert sorted(snapshots) == [0, 1, 5, 15, 40, 79]
    assert all(type(s) is np.ndarray and s.shape == (3, 1, 3, 3) for s in snapshots.values())
    np.testing.assert_array_equal(snapshots[0], REFERENCE["initial_conv_weights"])


def test_final_dense_weights_match_the_chapters_loops(put, data):
    """The reference file has no final dense weights: the chapter's loop code (our per-pixel
    transcription of it) trained from the same start gives them, independently, on the host."""
    from benchmarks.chapter_loops import LoopCNN
    model = tc.TinyCNN(seed=42)
    loops = LoopCNN.from_model(model)
    history = model.fit(*(put(a) for a in data[:4]), verbose=False)
    loop_history = loops.fit(*data[:4])
    for key in METRICS:
        np.testing.assert_allclose(history[key], loop_history[key], rtol=0, atol=1e-10, err_msg=key)
    for layer, loop_layer in ((model.conv, loops.conv), (model.dense, loops.dense)):
        for attr in ("weights", "bias"):
            np.testing.assert_allclose(to_numpy(getattr(layer, attr)), getattr(loop_layer, attr),
                                       rtol=0, atol=1e-10, err_msg=f"{layer!r}.{attr}")


def test_parameters_live_on_the_inputs_device(backend, put, data, xp):
    model = tc.TinyCNN(seed=42)
    model.fit(*(put(a) for a in data[:4]), epochs=1, verbose=False)
    for _, layer, attr in model.parameters():
        for array in (getattr(layer, attr), getattr(layer, "d_" + attr)):
            assert array_namespace(array) is array_namespace(put(np.zeros(1)))
            assert device(array) == backend.device()


def test_agrees_with_numpy(put, data, numpy_run):
    """Every backend matches NumPy on the same 80-epoch fit (float64): history and parameters."""
    ref_model, ref_history = numpy_run
    model = tc.TinyCNN(seed=42)
    history = model.fit(*(put(a) for a in data[:4]), epochs=80, verbose=False)
    for key in METRICS:
        np.testing.assert_allclose(history[key], ref_history[key], rtol=0, atol=1e-9)
    for name, layer, attr in model.parameters():
        ref_layer = {n: layer for n, layer, _ in ref_model.parameters()}[name]
        np.testing.assert_allclose(to_numpy(getattr(layer, attr)), getattr(ref_layer, attr), atol=1e-9)
    np.testing.assert_array_equal(to_numpy(model.predict(put(data[2]))), ref_model.predict(data[2]))


def test_trains_above_90_percent_in_each_float_dtype(put, data, dtype_name):
    x_train, y_train, x_val, y_val, _ = data
    model = tc.TinyCNN(seed=42)
    history = model.fit(put(x_train, dtype_name), put(y_train), put(x_val, dtype_name), put(y_val),
                        epochs=30, verbose=False)
    assert history["val_acc"][-1] > 0.9
    assert history["train_loss"][-1] < history["train_loss"][0] / 3
    assert str(model.conv.weights.dtype).endswith(dtype_name)
    assert model.evaluate(put(x_val, dtype_name), put(y_val)) == history["val_acc"][-1]


def test_progress_lines_and_quiet(put, data, capsys):
    model = tc.TinyCNN(seed=42)
    model.fit(*(put(a) for a in data[:4]), epochs=12, verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["Epoch   0/12", "Epoch  10/12", "Epoch  11/12"]
    assert "train_acc=" in lines[0] and "val_acc=" in lines[0]
    model.fit(*(put(a) for a in data[:4]), epochs=2, verbose=False)
    assert capsys.readouterr().out == ""


def test_loss_and_grad_step_predict_evaluate(put, data):
    x, y = put(data[0][:18]), put(data[1][:18])
    model = tc.TinyCNN(seed=42)
    loss, probs = model.loss_and_grad(x, y)
    assert tuple(probs.shape) == (18, 3)
    np.testing.assert_allclose(to_numpy(probs).sum(axis=1), 1.0)
    before = to_numpy(model.dense.weights)
    model.step(0.12)
    np.testing.assert_allclose(to_numpy(model.dense.weights),
                               before - 0.12 * to_numpy(model.dense.d_weights), rtol=1e-14)
    loss2, _ = model.loss_and_grad(x, y)
    assert float(loss2) < float(loss)
    preds = model.predict(x)
    assert tuple(preds.shape) == (18,)
    acc = model.evaluate(x, y)
    assert type(acc) is float and acc == float(np.mean(to_numpy(preds) == data[1][:18]))


def test_parameter_counts():
    model = tc.TinyCNN()
    assert model.conv.parameter_count == 30 and model.dense.parameter_count == 84
    assert model.parameter_count == 114
    assert tc.deep_cnn().parameter_count == 273


def test_other_namespace_or_dtype_is_rejected(put, data):
    model = tc.TinyCNN(seed=42)
    model.fit(*(put(a) for a in data[:4]), epochs=1, verbose=False)
    other = data[2].astype(np.float32)
    with pytest.raises((TypeError, ValueError), match="TinyCNN"):
        model.predict(put(other))
    # a different library altogether: the message names both
    try:
        import array_api_strict as xs
    except ImportError:
        pytest.skip("array-api-strict not installed")
    foreign = xs.asarray(data[2], device=xs.Device("device2"))
    with pytest.raises(ValueError, match="lives on"):
        model.predict(foreign)


def test_a_callback_can_stop_training_after_an_epoch(put, data):
    """Early stopping: a callback that returns True ends training after that epoch."""
    seen = []

    def patience(epoch, metrics):
        seen.append(epoch)
        return metrics["val_acc"] == 1.0 or None  # only True stops; None, False, 0 do not

    model = tc.TinyCNN(seed=42)
    history = model.fit(*(put(a) for a in data[:4]), epochs=80, verbose=False, callback=patience)
    stop = history["stopped_epoch"]
    assert seen == list(range(stop + 1)) and stop < 79
    assert len(history["val_acc"]) == stop + 1 and history["val_acc"][-1] == 1.0
    assert all(acc < 1.0 for acc in history["val_acc"][:-1])
    # the same model as a run told to stop there
    reference = tc.TinyCNN(seed=42)
    full = reference.fit(*(put(a) for a in data[:4]), epochs=stop + 1, verbose=False)
    assert full["val_acc"] == history["val_acc"] and "stopped_epoch" not in full
    np.testing.assert_array_equal(to_numpy(model.dense.weights), to_numpy(reference.dense.weights))
    # any truthy value stops (np.True_ from a comparison of NumPy floats, 1, ...); falsy ones don't
    for truthy in (np.True_, 1, "yes"):
        again = tc.TinyCNN(seed=42).fit(*(put(a) for a in data[:4]), epochs=3, verbose=False,
                                        callback=lambda epoch, metrics, value=truthy: value)
        assert len(again["val_acc"]) == 1 and again["stopped_epoch"] == 0
    for falsy in (np.False_, 0, None, ""):
        again = tc.TinyCNN(seed=42).fit(*(put(a) for a in data[:4]), epochs=2, verbose=False,
                                        callback=lambda epoch, metrics, value=falsy: value)
        assert len(again["val_acc"]) == 2 and "stopped_epoch" not in again
    stop_at_half = tc.TinyCNN(seed=42).fit(
        *(put(a) for a in data[:4]), epochs=20, verbose=False,
        callback=lambda epoch, metrics: np.float64(metrics["val_acc"]) >= 0.5)
    assert len(stop_at_half["val_acc"]) < 20 and stop_at_half["val_acc"][-1] >= 0.5
