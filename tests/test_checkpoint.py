"""Checkpoints: round trips on the selected backend, portability to NumPy and array-api-strict,
exact resumes, atomic writes, and clear errors for files that are not (good) checkpoints."""

import json
import zipfile

import numpy as np
import pytest

import tinycnn_xp as tc
from tinycnn_xp import checkpoint
from tinycnn_xp.layers import AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU

METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")


@pytest.fixture(scope="module")
def data():
    return tc.make_dataset_bundle(train_per_class=12, val_per_class=6)


def _trained(put, data, dtype_name="float64", epochs=3, model=None):
    """A model trained with momentum on the backend (so its velocities are not zero)."""
    model = model or tc.TinyCNN(seed=3)
    history = model.fit(*(put(a, dtype_name if a.dtype.kind == "f" else None) for a in data[:4]),
                        epochs=epochs, lr=0.1, batch_size=8, momentum=0.9, verbose=False)
    return model, history


def _state(model, host):
    return {f"{prefix}{name}": host(array) for name, layer, attr in model.parameters()
            for prefix, array in (("", getattr(layer, attr)), ("v:", layer.velocity[attr]))}


def test_round_trip_on_the_backend(backend, xp, put, host, data, dtype_name, tmp_path):
    model, history = _trained(put, data, dtype_name)
    path = checkpoint.save(model, tmp_path / "model.npz", history, meta={"note": "hi"})
    loaded = tc.Sequential.load(path, xp=xp, device=backend.device())

    assert type(loaded) is tc.TinyCNN and loaded.conv is loaded.layers[0]
    assert str(loaded.conv.weights.dtype).endswith(dtype_name)
    before, after = _state(model, host), _state(loaded, host)
    assert before.keys() == after.keys()
    for key in before:  # weights and velocities, bit for bit
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    x_val = put(data[2], dtype_name)
    np.testing.assert_array_equal(host(loaded.forward(x_val)), host(model.forward(x_val)))

    saved = checkpoint.load_history(path)
    for key in METRICS:
        assert saved[key] == history[key]
    assert sorted(saved["kernel_snapshots"]) == sorted(history["kernel_snapshots"])
    for epoch, kernels in history["kernel_snapshots"].items():
        np.testing.assert_array_equal(saved["kernel_snapshots"][epoch], kernels)
    assert checkpoint.load_meta(path) == {"note": "hi"}


def test_saved_on_the_backend_loads_on_numpy_and_strict_device1(backend, put, host, data, tmp_path):
    """The issue's portability check: the same predictions wherever the checkpoint is loaded."""
    model, history = _trained(put, data, epochs=4)
    path = checkpoint.save(model, tmp_path / "model.npz", history)
    expected = host(model.predict(put(data[2])))
    logits = host(model.forward(put(data[2])))

    on_numpy = tc.Sequential.load(path)
    assert on_numpy.placement is None  # like a new model: placed by its first input
    np.testing.assert_array_equal(on_numpy.predict(data[2]), expected)
    assert on_numpy.placement.xp.__name__.endswith("numpy")
    np.testing.assert_allclose(on_numpy.forward(data[2]), logits, rtol=0, atol=1e-12)

    xps = pytest.importorskip("array_api_strict")
    device1 = xps.Device("device1")
    on_strict = tc.Sequential.load(path, xp=xps, device=device1)
    predicted = on_strict.predict(xps.asarray(data[2], device=device1))
    assert predicted.device == device1
    np.testing.assert_array_equal(np.from_dlpack(predicted.to_device(xps.Device("CPU_DEVICE"))), expected)


def test_resume_from_a_checkpoint_gives_the_uninterrupted_run(backend, xp, put, host, data, tmp_path):
    placed = [put(a) for a in data[:4]]
    whole = tc.TinyCNN(seed=5)
    full = whole.fit(*placed, epochs=6, lr=0.1, batch_size=8, momentum=0.9, verbose=False)

    first = tc.TinyCNN(seed=5)
    part = first.fit(*placed, epochs=3, lr=0.1, batch_size=8, momentum=0.9, verbose=False)
    path = checkpoint.save(first, tmp_path / "half.npz", part)
    second = tc.Sequential.load(path, xp=xp, device=backend.device())
    done = len(checkpoint.load_history(path)["train_loss"])
    rest = second.fit(*placed, epochs=6, lr=0.1, batch_size=8, momentum=0.9, verbose=False,
                      initial_epoch=done)

    for key in METRICS:
        assert part[key] + rest[key] == full[key], key
    for (name, a), b in zip(_state(whole, host).items(), _state(second, host).values()):
        np.testing.assert_array_equal(b, a, err_msg=name)


def test_float32_checkpoint_keeps_its_dtype_unless_asked(put, data, tmp_path):
    model, _ = _trained(put, data, "float32", epochs=1)
    path = checkpoint.save(model, tmp_path / "f32.npz")
    assert tc.Sequential.load(path).conv.weights.dtype == np.float32
    as64 = tc.Sequential.load(path, dtype="float64")
    assert as64.conv.weights.dtype == np.float64
    assert as64.forward(data[2]).dtype == np.float64
    assert checkpoint.load_history(path) is None


def test_any_sequential_round_trips_with_its_configuration(tmp_path):
    model = tc.Sequential([Conv2D(1, 4, 3, stride=2, padding=1), ReLU(), AvgPool2D(2),
                           Conv2D(4, 5, 2), ReLU(), MaxPool2D(1, stride=1), Flatten(), Dense(5, 3)],
                          seed=11, names=["a", "b", "c", "d", "e", "f", "g", "h"], input_shape=(1, 8, 8))
    x = np.random.default_rng(0).random((4, 1, 8, 8))
    expected = model.forward(x)
    loaded = tc.Sequential.load(checkpoint.save(model, tmp_path / "seq.npz"))
    assert type(loaded) is tc.Sequential
    assert loaded.names == model.names and loaded.input_shape == (1, 8, 8)
    assert [(type(layer).__name__, layer.config()) for layer in loaded.layers] == \
           [(type(layer).__name__, layer.config()) for layer in model.layers]
    np.testing.assert_array_equal(loaded.forward(x), expected)


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    checkpoint.save(tc.TinyCNN(seed=1), path)
    before = path.read_bytes()

    def crash(handle, **arrays):
        handle.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.np, "savez_compressed", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(tc.TinyCNN(seed=2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary file left
    np.testing.assert_array_equal(tc.Sequential.load(path).conv.weights, tc.TinyCNN(seed=1).conv.weights)


# -- files that are not good checkpoints ---------------------------------------------------------
@pytest.fixture
def good(tmp_path):
    model = tc.TinyCNN(seed=4)
    return checkpoint.save(model, tmp_path / "good.npz", {key: [0.5] for key in METRICS})


def _rewrite(path, target, change):
    """A copy of the checkpoint at ``path`` with its arrays changed by ``change(dict)``."""
    with np.load(path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    change(arrays)
    np.savez(target, **arrays)
    return target


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"just some text\n", r"not an \.npz"),
    (b"\x93NUMPY\x01\x00", r"not an \.npz"),
])
def test_files_that_are_not_npz(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        tc.Sequential.load(path)
    assert str(path) in str(info.value)


def test_truncated_file(good, tmp_path):
    path = tmp_path / "cut.npz"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"unreadable \.npz") as info:
        tc.Sequential.load(path)
    assert str(path) in str(info.value)


def test_corrupted_weights_are_caught_by_the_checksum(good, tmp_path):
    with zipfile.ZipFile(good) as archive:
        member = archive.getinfo("param/dense.weights.npy")
    raw = bytearray(good.read_bytes())
    # The member's data starts after its 30-byte local header, its name and its extra field.
    name_len = int.from_bytes(raw[member.header_offset + 26: member.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[member.header_offset + 28: member.header_offset + 30], "little")
    start = member.header_offset + 30 + name_len + extra_len
    raw[start + member.compress_size // 2] ^= 0xFF
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"unreadable \.npz"):
        tc.Sequential.load(path)


def test_foreign_npz_and_pickles(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(ValueError, match=r"not a tinycnn_xp checkpoint.*no 'format'"):
        tc.Sequential.load(foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, format=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled"):
        tc.Sequential.load(pickled)


@pytest.mark.parametrize("change, message", [
    (lambda a: a.__setitem__("param/dense.weights", np.zeros((27, 4))),
     r"dense\.weights has shape \(27, 4\)"),
    (lambda a: a.pop("velocity/conv.bias"), r"missing \['velocity/conv\.bias'\]"),
    (lambda a: a.__setitem__("param/extra.weights", np.zeros(2)), r"unexpected \['param/extra\.weights'\]"),
    (lambda a: a.__setitem__("architecture", np.array("{not json")), "'architecture' is not valid JSON"),
    (lambda a: a.__setitem__("architecture", np.array(json.dumps(
        {"model": "Sequential", "layers": [{"class": "Softmax", "config": {}}], "names": ["s"],
         "input_shape": None}))), "cannot be rebuilt.*Softmax"),
    (lambda a: a.__setitem__("format", np.array("tinycnn_xp-checkpoint/99")), "checkpoint/99"),
    (lambda a: a.__setitem__("dtype", np.array("float16")), "float16"),
    (lambda a: a.pop("meta"), "'meta' is missing"),
    (lambda a: a.__setitem__("param/conv.weights", np.full((3, 1, 3, 3), np.nan)),
     r"param/conv\.weights holds NaN or infinite"),
    (lambda a: a.__setitem__("velocity/dense.bias", np.array([0.0, np.inf, 0.0])),
     r"velocity/dense\.bias holds NaN or infinite"),
])
def test_mismatched_contents(good, tmp_path, change, message):
    path = _rewrite(good, tmp_path / "changed.npz", change)
    with pytest.raises(ValueError, match=message) as info:
        tc.Sequential.load(path)
    assert str(path) in str(info.value)


def test_history_that_does_not_fit_its_epochs(good, tmp_path):
    path = _rewrite(good, tmp_path / "short.npz", lambda a: a.__setitem__("epochs", np.array(5)))
    with pytest.raises(ValueError, match="'train_loss' list of 5 epochs"):
        checkpoint.load_history(path)


def test_missing_file_and_bad_arguments(tmp_path, good):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.npz"):
        tc.Sequential.load(tmp_path / "nowhere.npz")
    with pytest.raises(ValueError, match="dtype must be one of"):
        tc.Sequential.load(good, dtype="float16")
    with pytest.raises(TypeError, match="model must be"):
        checkpoint.save("not a model", tmp_path / "x.npz")
    with pytest.raises(ValueError, match="needs xp"):
        tc.Sequential.load(good, device="gpu7")
    with pytest.raises(ValueError, match="cannot make a float64 array"):
        tc.Sequential.load(good, xp=np, device="gpu7")
