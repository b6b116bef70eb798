"""A checkpoint is data: reading one costs what its model costs, and every value in it is checked.

Crafted files (``benchmarks.crafted_checkpoints`` writes the zip by hand, so members can lie about
their shapes, sizes and checksums) are refused from their headers, before anything is inflated:
``tracemalloc`` (which sees NumPy's allocations) bounds the peak. Files written before the
redesign (``tests/checkpoints/v0.1_*``, by tinycnn_xp 0.1.0) keep loading, on every backend.
"""

import json
import struct
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import tinycnn_xp as tc
from benchmarks.crafted_checkpoints import Member, npy, npy_header, tiny_members, write_zip
from tinycnn_xp import checkpoint

OLD = Path(__file__).parent / "checkpoints"
METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")
MIB = 1 << 20


def members_of(changes=None, **named):
    """The good TinyCNN checkpoint's members, with ``changes`` by entry name (``None`` drops one;
    an ndarray becomes its ``.npy``; a ``Member`` is used as it is)."""
    members = {m.name[:-4]: m for m in tiny_members()}
    for key, value in {**(changes or {}), **named}.items():
        if value is None:
            members.pop(key)
        elif isinstance(value, Member):
            members[key] = value
        else:
            members[key] = Member(f"{key}.npy", npy(np.asarray(value)))
    return list(members.values())


def load_bounded(path, peak_mib=2.0, seconds=5.0, call=None):
    """Run ``call(path)`` (default ``Sequential.load``) and return its ``ValueError``; check the
    peak of traced memory and the time it took."""
    call = call or tc.Sequential.load
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError) as info:
            call(path)
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < peak_mib * MIB, f"{peak / MIB:.1f} MiB traced while refusing {path}"
    assert elapsed < seconds
    assert str(path) in str(info.value)
    return info.value


# -- files written before keep loading ----------------------------------------------------------
def test_a_checkpoint_written_by_version_0_1_loads_on_the_backend(backend, xp, host):
    path = OLD / "v0.1_cli_tiny.npz"
    model = tc.Sequential.load(path, xp=xp, device=backend.device())
    with np.load(path) as npz:
        stored = {key: npz[key] for key in npz.files}
    assert type(model) is tc.TinyCNN
    for name, layer, attr in model.parameters():
        np.testing.assert_array_equal(host(getattr(layer, attr)), stored[f"param/{name}"])
        np.testing.assert_array_equal(host(layer.velocity[attr]), stored[f"velocity/{name}"])
    history = checkpoint.load_history(path)
    saved = json.loads(str(stored["history"]))
    for key in METRICS:
        assert history[key] == saved[key] and len(history[key]) == 3
    assert sorted(history["kernel_snapshots"]) == [0, 1, 2]
    meta = checkpoint.load_meta(path)
    assert meta["model"] == "tiny" and meta["momentum"] == 0.5


def test_a_float32_sequential_written_by_version_0_1_predicts_as_it_did(backend, xp, put, host):
    path = OLD / "v0.1_sequential_f32.npz"
    model = tc.Sequential.load(path, xp=xp, device=backend.device())
    assert type(model) is tc.Sequential and model.names == list("abcdefgh")
    x_val = tc.make_dataset_bundle(train_per_class=4, val_per_class=2)[2].astype("float32")
    logits = host(model.forward(put(x_val)))
    np.testing.assert_allclose(logits, np.load(OLD / "v0.1_sequential_f32_logits.npy"), rtol=1e-5,
                               atol=1e-6)
    assert checkpoint.load_meta(path) == {"note": "before the redesign"}


def test_a_checkpoint_written_by_version_0_2_trains_on_as_it_would_have(backend, xp, put, host):
    """0.2.0's vgg preset after 2 epochs with momentum: the same logits, and it trains on."""
    path = OLD / "v0.2_vgg_momentum.npz"
    model = tc.Sequential.load(path, xp=xp, device=backend.device())
    x, y, x_val, y_val, _ = tc.make_dataset_bundle()
    logits = host(model.forward(put(x_val[:12])))
    np.testing.assert_allclose(logits, np.load(OLD / "v0.2_vgg_momentum_logits.npy"), rtol=1e-10,
                               atol=1e-12)
    history = checkpoint.load_history(path)
    assert len(history["train_loss"]) == 2 and sorted(history["kernel_snapshots"]) == [0, 1]
    more = model.fit(put(x), put(y), put(x_val), put(y_val), epochs=3, initial_epoch=2,
                     momentum=0.5, batch_size=16, verbose=False)
    assert len(more["train_loss"]) == 1 and more["train_loss"][0] < history["train_loss"][0]


# -- loading costs what the model costs ----------------------------------------------------------
@pytest.mark.parametrize("out_features", [10**7, 10**12])
def test_a_huge_declared_architecture_is_refused_by_the_cap(tmp_path, out_features):
    path = write_zip(tmp_path / "huge.npz", tiny_members(out_features))
    error = load_bounded(path)
    assert "more than the cap of 100,000,000" in str(error) and "max_parameters" in str(error)
    assert checkpoint.MAX_PARAMETERS == 10**8


@pytest.mark.parametrize("out_features", [10**7, 10**12])
def test_above_the_cap_the_headers_still_refuse_before_anything_is_built(tmp_path, out_features):
    """With the cap raised, the declared shapes are checked against the headers: nothing of
    Dense(27, out_features) is ever allocated."""
    path = write_zip(tmp_path / "huge.npz", tiny_members(out_features))
    error = load_bounded(path, call=lambda p: tc.Sequential.load(p, max_parameters=10**14))
    assert "param/dense.weights has shape (27, 3)" in str(error)
    assert f"(27, {out_features})" in str(error)


def test_the_cap_can_be_lowered_and_is_checked(tmp_path):
    path = write_zip(tmp_path / "good.npz", tiny_members())
    with pytest.raises(ValueError, match="114 parameters, more than the cap of 100"):
        tc.Sequential.load(path, max_parameters=100)
    assert tc.Sequential.load(path, max_parameters=114).parameter_count == 114
    with pytest.raises(ValueError, match="max_parameters"):
        tc.Sequential.load(path, max_parameters=0)
    with pytest.raises(ValueError, match="more than the cap"):
        checkpoint.load_history(path, max_parameters=10)


@pytest.mark.parametrize("reader", ["load", "read", "load_history", "load_meta"])
def test_an_unknown_member_is_refused_without_being_inflated(tmp_path, reader):
    junk = Member("junk.npy", npy_header((64 * MIB,), "|u1"), zeros=64 * MIB)
    path = write_zip(tmp_path / "junk.npz", [*tiny_members(), junk])
    assert path.stat().st_size < MIB  # 64 MiB of zeros deflate to ~64 KB
    call = {"load": tc.Sequential.load, "read": checkpoint.read,
            "load_history": checkpoint.load_history, "load_meta": checkpoint.load_meta}[reader]
    error = load_bounded(path, call=call)
    assert "unexpected entry 'junk.npy'" in str(error) and "not read" in str(error)


def test_a_known_name_with_a_huge_declared_shape_is_refused_from_its_header(tmp_path):
    """A snapshot declaring 2**23 float64 (64 MiB of zeros): its header's shape is not a kernel's."""
    snapshot = Member("snapshot/0.npy", npy_header((2**23,), "<f8"), zeros=64 * MIB)
    members = members_of(history=np.array(json.dumps({k: [] for k in METRICS})))
    path = write_zip(tmp_path / "big_snapshot.npz", [*members, snapshot])
    for call in (tc.Sequential.load, checkpoint.load_history):
        error = load_bounded(path, call=call)
        assert "snapshot/0 has shape (8388608,)" in str(error)


def test_a_member_whose_size_disagrees_with_its_header_is_refused(tmp_path):
    """The header says (3, 1, 3, 3) float64, the zip says 64 MiB more: refused, not inflated."""
    header = npy_header((3, 1, 3, 3), "<f8")
    lying = Member("param/conv.weights.npy", header + bytes(27 * 8), zeros=64 * MIB)
    path = write_zip(tmp_path / "lying.npz", members_of({"param/conv.weights": lying}))
    error = load_bounded(path)
    assert ("'param/conv.weights' is 67109208 bytes, but its header declares (3, 1, 3, 3) float64 "
            "(344 bytes)") in str(error)


def test_a_deflate_stream_longer_than_the_directory_says_is_cut_and_caught(tmp_path):
    """The directory says the true size; the stream inflates to 64 MiB more. Reading stops at the
    declared size and the checksum (of what was read) does not match."""
    good = npy(np.zeros((3, 1, 3, 3)))
    bomb = Member("param/conv.weights.npy", good, zeros=64 * MIB, file_size=len(good))
    path = write_zip(tmp_path / "bomb.npz", members_of({"param/conv.weights": bomb}))
    error = load_bounded(path)
    assert "unreadable .npz" in str(error)


def test_a_wrong_checksum_is_caught(tmp_path):
    member = Member("param/conv.bias.npy", npy(np.zeros(3)), crc=12345)
    path = write_zip(tmp_path / "crc.npz", members_of({"param/conv.bias": member}))
    error = load_bounded(path)
    assert "unreadable .npz" in str(error) and "CRC" in str(error)


def test_loading_a_real_model_costs_a_few_times_its_size(tmp_path):
    """Dense(27, 40000): 1.08 M parameters, 8.6 MB; loading peaks at a small multiple of that
    (the arrays read, and the model built to take them), whatever the file's compression."""
    model = tc.Sequential([tc.Flatten(), tc.Dense(64, 40_000)], seed=0, input_shape=(1, 8, 8))
    path = checkpoint.save(model, tmp_path / "wide.npz")
    size = model.parameter_count * 8
    tracemalloc.start()
    try:
        loaded = tc.Sequential.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * size, f"peak {peak / size:.1f} times the parameters"
    np.testing.assert_array_equal(loaded.layers[1].weights, model.layers[1].weights)


def test_text_entries_are_capped_before_they_are_read(tmp_path):
    long_meta = json.dumps({"note": "x" * checkpoint.TEXT_LIMITS["meta"]})
    path = write_zip(tmp_path / "meta.npz", members_of(meta=np.array(long_meta)))
    error = load_bounded(path, call=checkpoint.load_meta)
    assert "'meta' holds 65548 characters, more than the 65536" in str(error)
    chars = checkpoint.TEXT_LIMITS["history"] + 1
    huge = Member("history.npy", npy_header((), f"<U{chars}"), zeros=4 * chars)
    path = write_zip(tmp_path / "history.npz", members_of(history=huge))
    error = load_bounded(path, call=checkpoint.load_history)
    assert f"'history' holds {chars} characters, more than the {chars - 1}" in str(error)


def test_a_huge_zip_directory_is_refused_before_it_is_parsed(tmp_path):
    path = write_zip(tmp_path / "dir.npz", tiny_members())
    raw = bytearray(path.read_bytes())
    end = raw.rfind(b"PK\x05\x06")
    raw[end + 12:end + 16] = struct.pack("<I", 50 * MIB)
    path.write_bytes(bytes(raw))
    error = load_bounded(path)
    assert "the zip directory is 52428800 bytes" in str(error)


# -- every value is checked ----------------------------------------------------------------------
def history_text(**changes):
    record = {key: [0.5] for key in METRICS}
    record.update(changes)
    return np.array(json.dumps(record))


@pytest.mark.parametrize("changes, message", [
    ({"history": history_text(train_loss=["0.5"])}, r"train_loss\[0\] is '0.5', not a finite number"),
    ({"history": history_text(val_acc=[1.5])}, r"val_acc\[0\] is 1.5, not a fraction in \[0, 1\]"),
    ({"history": history_text(val_loss=[-1.0])}, r"val_loss\[0\] is -1.0"),
    ({"history": history_text(val_loss=[10**400])}, r"val_loss\[0\] is 1000000"),
    ({"history": np.array('{"train_loss": [NaN], "val_loss": [0], "train_acc": [0], "val_acc": [0]}')},
     r"train_loss\[0\] is nan"),
    ({"history": history_text(train_acc=[0.5, 0.5])}, "no 'train_acc' list of 1 epochs"),
    ({"history": history_text(interrupted="yes")}, "'interrupted' is 'yes', not true or false"),
    ({"history": history_text(diverged_epoch=2.0)}, "'diverged_epoch' is 2.0, not an integer"),
    ({"history": history_text(stopped_epoch=-1)}, "'stopped_epoch' is -1"),
    ({"history": history_text(out="/tmp/x")}, r"entries \['out'\] that fit never writes"),
    ({"history": np.array("[1, 2]")}, "history is not a JSON object"),
    ({"history": np.array("[" * 100_000)}, "'history' is not valid JSON"),
    ({"epochs": np.array(3), "history": np.array("")}, "says 3 epochs, but there is no history"),
    ({"epochs": np.array(-1)}, "'epochs' is negative"),
    ({"epochs": np.array(1.0)}, "'epochs' is missing or not an integer"),
])
def test_bad_histories_are_refused_naming_the_file_and_the_entry(tmp_path, changes, message):
    changes.setdefault("epochs", np.array(1))
    path = write_zip(tmp_path / "bad.npz", members_of(changes))
    for call in (checkpoint.load_history, tc.Sequential.load, checkpoint.read):
        with pytest.raises(ValueError, match=message) as info:
            call(path)
        assert str(path) in str(info.value)


@pytest.mark.parametrize("changes, message", [
    ({"meta": np.array("[1]")}, "'meta' is not a JSON object"),
    ({"meta": np.array("{")}, "'meta' is not valid JSON"),
    ({"architecture": np.array("[]")}, "'architecture' is not a JSON object"),
    ({"dtype": np.array("bfloat16")}, r"saved dtype 'bfloat16' is not one of \('float32', 'float64'\)"),
    ({"param/conv.bias": np.zeros(3, dtype=np.float16)}, "param/conv.bias has dtype float16"),
    ({"param/conv.bias": np.zeros(3, dtype=np.int64)}, "param/conv.bias has dtype int64"),
    ({"param/conv.bias": np.zeros(3, dtype=np.float32)},
     r"param/conv.bias has shape \(3,\) and dtype float32, the architecture needs a float64"),
    ({"param/conv.bias": np.zeros((1, 3))}, r"param/conv.bias has shape \(1, 3\)"),
    ({"format": np.array(["tinycnn_xp-checkpoint/1"])}, "not text"),
    ({"format": np.array("x" * 100_000)}, "not a tinycnn_xp checkpoint"),
    ({"snapshot/0": np.zeros((3, 1, 3, 3))}, "kernel snapshots but no history"),
    ({"snapshot/01": np.zeros((3, 1, 3, 3))}, "unexpected entry 'snapshot/01.npy'"),
    ({"architecture": np.array(json.dumps({"model": "TinyCNN", "layers": [], "names": ["a"],
                                           "input_shape": None}))}, "cannot be rebuilt"),
    ({"architecture": np.array(json.dumps({"model": ["TinyCNN"]}))}, "unknown model class"),
])
def test_bad_entries_are_refused_naming_the_file_and_the_entry(tmp_path, changes, message):
    path = write_zip(tmp_path / "bad.npz", members_of(changes))
    with pytest.raises(ValueError, match=message) as info:
        tc.Sequential.load(path)
    assert str(path) in str(info.value)


def test_snapshots_are_kernels_and_capped(tmp_path):
    history = history_text()
    too_many = {f"snapshot/{k}": np.zeros((3, 1, 3, 3)) for k in range(checkpoint.MAX_SNAPSHOTS + 1)}
    path = write_zip(tmp_path / "many.npz", members_of(too_many, history=history, epochs=np.array(1)))
    with pytest.raises(ValueError, match="257 kernel snapshots, more than the 256"):
        checkpoint.load_history(path)
    path = write_zip(tmp_path / "shape.npz", members_of({"snapshot/0": np.zeros((27, 3))},
                                                        history=history, epochs=np.array(1)))
    with pytest.raises(ValueError, match=r"snapshot/0 has shape \(27, 3\).*of shape \(3, 1, 3, 3\)"):
        checkpoint.load_history(path)
    path = write_zip(tmp_path / "nan.npz", members_of({"snapshot/0": np.full((3, 1, 3, 3), np.inf)},
                                                      history=history, epochs=np.array(1)))
    with pytest.raises(ValueError, match="snapshot/0 holds NaN or infinite"):
        checkpoint.load_history(path)


def test_duplicate_members_are_refused(tmp_path):
    members = tiny_members()
    path = write_zip(tmp_path / "twice.npz", [*members, members[-1]])
    with pytest.raises(ValueError, match=r"entry 'velocity/dense\.bias' appears twice"):
        tc.Sequential.load(path)


def test_fortran_order_and_big_endian_members_load_as_what_they_say(tmp_path):
    weights = np.arange(81.0).reshape(27, 3) / 100
    fortran = Member("param/dense.weights.npy",
                     npy_header((27, 3), "<f8", fortran=True) + np.asfortranarray(weights).tobytes("F"))
    big = np.arange(3.0).astype(">f8")
    path = write_zip(tmp_path / "layouts.npz", members_of({"param/dense.weights": fortran,
                                                          "param/dense.bias": big}))
    model = tc.Sequential.load(path)
    np.testing.assert_array_equal(model.dense.weights, weights)
    np.testing.assert_array_equal(model.dense.bias, [0.0, 1.0, 2.0])
    assert model.dense.bias.dtype == np.float64 and model.dense.bias.dtype.isnative
    model.dense.bias[0] = 5.0  # ordinary, writable arrays


# -- save refuses what load would refuse ---------------------------------------------------------
@pytest.mark.parametrize("history, message", [
    ({"train_loss": ["a"], "val_loss": [1.0], "train_acc": [1.0], "val_acc": [1.0]}, r"train_loss\[0\]"),
    ({"train_loss": [1.0], "val_loss": [], "train_acc": [1.0], "val_acc": [1.0]}, "'val_loss' list of 1"),
    ({**{k: [0.5] for k in METRICS}, "note": "mine"}, r"entries \['note'\]"),
    ({**{k: [0.5] for k in METRICS}, "kernel_snapshots": {0: np.zeros((2, 2))}}, "snapshot/0 has shape"),
    ({**{k: [0.5] for k in METRICS}, "kernel_snapshots": {"0": np.zeros((3, 1, 3, 3))}}, "epochs"),
    ({**{k: [0.5] for k in METRICS}, "kernel_snapshots": {-1: np.zeros((3, 1, 3, 3))}}, "snapshot/-1"),
])
def test_save_refuses_what_load_would_refuse(tmp_path, history, message):
    with pytest.raises(ValueError, match=message) as info:
        checkpoint.save(tc.TinyCNN(seed=0), tmp_path / "model.npz", history)
    assert str(tmp_path / "model.npz") in str(info.value)
    assert not list(tmp_path.iterdir())


def test_save_refuses_half_precision_and_non_finite_parameters(tmp_path):
    model = tc.TinyCNN(seed=0)
    model.conv.bias = np.zeros(3, dtype=np.float16)
    with pytest.raises(ValueError, match="float16"):
        model.save(tmp_path / "model.npz")
    model = tc.TinyCNN(seed=0)
    model.dense.bias = np.array([0.0, np.nan, 0.0])
    with pytest.raises(ValueError, match=r"param/dense\.bias holds NaN"):
        model.save(tmp_path / "model.npz")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_history_of_100000_epochs_saves_and_loads_in_bounded_memory_and_time(tmp_path):
    rng = np.random.default_rng(0)
    epochs = 100_000
    history = {key: list(rng.uniform(0, 1, epochs)) for key in METRICS}  # 17-digit floats
    history["kernel_snapshots"] = {}
    start = time.perf_counter()
    path = checkpoint.save(tc.TinyCNN(seed=0), tmp_path / "long.npz", history)
    tracemalloc.start()
    loaded = checkpoint.load_history(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    elapsed = time.perf_counter() - start
    assert loaded["val_acc"] == history["val_acc"] and len(loaded["train_loss"]) == epochs
    text = checkpoint.read(path).history  # the JSON history (text of ~4 * 20 characters an epoch)
    assert len(text["train_loss"]) == epochs
    # A bound, not a timing: 400,000 floats as JSON text and back (about 0.3 s and 60 MiB here).
    assert peak < 200 * MIB and elapsed < 30


def test_the_history_limit_follows_the_declared_epochs(tmp_path):
    epochs = 50_000
    chars = checkpoint.text_limit("history", epochs) + 1
    assert chars - 1 == checkpoint.HISTORY_CHARS_PER_EPOCH * epochs
    huge = Member("history.npy", npy_header((), f"<U{chars}"), zeros=4 * chars)
    path = write_zip(tmp_path / "history.npz", members_of(history=huge, epochs=np.int64(epochs)))
    error = load_bounded(path, call=checkpoint.load_history)
    assert f"'history' holds {chars} characters, more than the {chars - 1}" in str(error)
    path = write_zip(tmp_path / "epochs.npz", members_of(epochs=np.int64(checkpoint.MAX_EPOCHS + 1)))
    error = load_bounded(path, call=checkpoint.load_history)
    assert "checkpoint entry 'epochs' says 1,000,001 epochs, more than the 1,000,000" in str(error)
