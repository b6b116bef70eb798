"""A structure-aware fuzzer for checkpoints (hypothesis, derandomized and bounded).

It starts from real checkpoints (TinyCNN with history, snapshots and meta; a float32 Sequential;
a Sequential without convolutions) and mutates them as an attacker would: members dropped,
duplicated, renamed or added; fields of the JSON entries (architecture, history, meta) replaced
with huge, negative, mistyped or nested values; ``.npy`` headers declaring other shapes, dtypes
and orders; zip directories lying about sizes and checksums; bytes flipped; text entries swapped.

Every outcome must be one of two: a model holding exactly what the file declares (its config is
the architecture entry, its arrays the stored ones, its history and meta the stored ones), or a
``ValueError`` naming the file; never another exception, and always within bounded time and
traced memory. And ``save`` writes what ``load`` reads: random architectures, histories and metas
round-trip exactly.
"""

import json
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import tinycnn_xp as tc
from benchmarks.crafted_checkpoints import Member, npy, npy_header, write_zip
from tinycnn_xp import checkpoint

METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")
FUZZ = settings(derandomize=True, database=None, max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
PEAK_BYTES = 32 << 20   # traced memory while loading any mutant (the bases hold < 100 KB)
SECONDS = 5.0


def _bases(folder):
    """Real checkpoints, as lists of ``(member name, bytes)``."""
    x, y, xv, yv, _ = tc.make_dataset_bundle(train_per_class=3, val_per_class=2)
    tiny = tc.TinyCNN(seed=0)
    history = tiny.fit(x, y, xv, yv, epochs=2, momentum=0.5, verbose=False)
    paths = [checkpoint.save(tiny, folder / "tiny.npz", history,
                             meta={"model": "tiny", "lr": 0.12, "note": [1, {"a": None}]})]
    seq = tc.Sequential([tc.Conv2D(1, 2, 3, stride=2, padding=1), tc.ReLU(), tc.AvgPool2D(2),
                         tc.Flatten(), tc.Dense(8, 3)], seed=1, input_shape=(1, 8, 8))
    history = seq.fit(x.astype("float32"), y, xv.astype("float32"), yv, epochs=1, verbose=False)
    paths.append(checkpoint.save(seq, folder / "seq32.npz", history))
    dense = tc.Sequential([tc.Flatten(), tc.Dense(64, 5), tc.ReLU(), tc.Dense(5, 3)], seed=2)
    paths.append(checkpoint.save(dense, folder / "dense.npz"))
    bases = []
    for path in paths:
        with zipfile.ZipFile(path) as archive:
            bases.append([(info.filename, archive.read(info)) for info in archive.infolist()])
    return bases


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return _bases(tmp_path_factory.mktemp("bases"))


# -- mutations -----------------------------------------------------------------------------------
WEIRD_VALUES = st.sampled_from([10**12, 10**400, 10**7, -1, 0, 2**63, 1.5, float("inf"), float("nan"), True,
                                None, "", "x" * 300, "../../etc", [], [1, 2], {}, {"a": 1},
                                [[[[[]]]]], "TinyCNN", "Dense", 3, 27, 8, [1, 8, 8]])
NAMES = st.sampled_from(["format.npy", "dtype.npy", "epochs.npy", "history.npy", "meta.npy",
                         "architecture.npy", "param/conv.weights.npy", "velocity/conv.bias.npy",
                         "param/dense.weights.npy", "snapshot/0.npy", "snapshot/7.npy",
                         "snapshot/-1.npy", "snapshot/01.npy", "param/.npy", "param/x.npy",
                         "junk.npy", "format", "param/../../x.npy", "a/b/c.npy", "ünïcode.npy"])
DESCRS = st.sampled_from(["<f8", "<f4", "<f2", ">f8", "|u1", "<i8", "<i4", "|b1", "<c16", "<U5",
                          "<U100000", "|O", "|V8", "<M8[s]"])
SHAPES = st.lists(st.sampled_from([0, 1, 2, 3, 27, 10**6, 2**40]), max_size=4).map(tuple)
ARRAYS = st.sampled_from([np.zeros((3, 1, 3, 3)), np.zeros(3), np.ones((27, 3), np.float32),
                          np.array(0), np.array(5), np.array(-2), np.array("float64"),
                          np.array("float16"), np.array("tinycnn_xp-checkpoint/1"),
                          np.array("tinycnn_xp-checkpoint/2"), np.array("{}"), np.array(""),
                          np.array("[1]"), np.full(3, np.nan), np.arange(6.0).reshape(2, 3),
                          np.zeros((2, 2), dtype=">f8"), np.array([1, 2], dtype=np.uint64)])


def _json_paths(value, prefix=()):
    """Every path into a JSON value (dict keys and list indices)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _json_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_paths(item, (*prefix, index))


def _mutate_json(data, text):
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return text
    paths = list(_json_paths(value))
    path = data.draw(st.sampled_from(paths))
    how = data.draw(st.sampled_from(["replace", "delete", "add"]))
    if not path:
        return json.dumps(data.draw(WEIRD_VALUES)) if how == "replace" else text
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if how == "delete":
        del parent[last]
    elif how == "add" and isinstance(parent, dict):
        parent[data.draw(st.sampled_from(["out", "extra", "epochs", "seed", "model"]))] = \
            data.draw(WEIRD_VALUES)
    else:
        parent[last] = data.draw(WEIRD_VALUES)
    return json.dumps(value)


def _npy_text(member_bytes):
    try:
        array = np.load(__import__("io").BytesIO(member_bytes), allow_pickle=False)
        return str(array) if array.dtype.kind == "U" and array.shape == () else None
    except Exception:
        return None


def mutate(data, base):
    """A list of ``Member`` made from ``base`` by a few drawn mutations."""
    members = [Member(name, content) for name, content in base]
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        kind = data.draw(st.sampled_from(["drop", "duplicate", "rename", "add", "json", "header",
                                          "lie", "flip", "text", "stored", "zeros"]))
        i = data.draw(st.integers(0, len(members) - 1)) if members else 0
        if not members:
            kind = "add"
        if kind == "drop":
            members.pop(i)
        elif kind == "duplicate":
            members.append(members[i])
        elif kind == "rename":
            members[i] = members[i]._replace(name=data.draw(NAMES))
        elif kind == "add":
            members.append(Member(data.draw(NAMES), npy(data.draw(ARRAYS))))
        elif kind == "json":
            jsons = [j for j, m in enumerate(members) if m.name in
                     ("architecture.npy", "history.npy", "meta.npy")]
            if jsons:
                j = data.draw(st.sampled_from(jsons))
                text = _npy_text(members[j].data)
                if text is not None:
                    members[j] = members[j]._replace(data=npy(np.array(_mutate_json(data, text))))
        elif kind == "header":
            body = members[i].data[len(npy_header((), "<f8")):]
            if data.draw(st.booleans()):  # keep the data: the sizes disagree
                data_bytes = body
            else:  # make the data fit the header, up to 1 MiB
                shape, descr = data.draw(SHAPES), data.draw(DESCRS)
                size = int(np.prod(shape)) * max(1, np.dtype(descr).itemsize) if descr not in ("|O",) else 8
                data_bytes = bytes(size) if size <= 1 << 20 else body
                members[i] = members[i]._replace(data=npy_header(shape, descr, data.draw(st.booleans()))
                                                 + data_bytes)
                continue
            members[i] = members[i]._replace(
                data=npy_header(data.draw(SHAPES), data.draw(DESCRS), data.draw(st.booleans())) + data_bytes)
        elif kind == "lie":
            if data.draw(st.booleans()):
                members[i] = members[i]._replace(file_size=data.draw(st.sampled_from(
                    [0, 1, len(members[i].data) - 1, len(members[i].data) + 1, 2**31])))
            else:
                members[i] = members[i]._replace(crc=zlib.crc32(members[i].data) ^ 1)
        elif kind == "flip" and members[i].data:
            raw = bytearray(members[i].data)
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] ^= data.draw(st.integers(1, 255))
            members[i] = members[i]._replace(data=bytes(raw))
        elif kind == "text":
            name = data.draw(st.sampled_from(["format.npy", "dtype.npy", "epochs.npy", "meta.npy",
                                              "history.npy", "architecture.npy"]))
            members = [m for m in members if m.name != name]
            members.append(Member(name, npy(data.draw(ARRAYS))))
        elif kind == "stored":
            members[i] = members[i]._replace(stored=not members[i].stored)
        elif kind == "zeros":  # a member that inflates to far more than it declares
            members[i] = members[i]._replace(zeros=data.draw(st.sampled_from([1 << 10, 1 << 22])),
                                             file_size=len(members[i].data))
    return members


# -- the property --------------------------------------------------------------------------------
def _bounded(call):
    """``call()``'s result or its exception, checked for time and traced memory."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        return call(), None
    except Exception as exc:  # judged by the caller
        return None, exc
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert elapsed < SECONDS, f"{elapsed:.1f} s"
        assert peak < PEAK_BYTES, f"{peak / 2**20:.1f} MiB traced"


def _stored(path):
    """What the file declares, read independently of the library (NumPy's own reader)."""
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _check_outcome(path, result, error):
    if error is not None:
        assert isinstance(error, ValueError), f"{type(error).__name__}: {error}"
        assert str(path) in str(error)
        event(" ".join(str(error).replace(str(path), "").split()[1:4]))  # --hypothesis-show-statistics
        return False
    event("loaded")
    return True


def _assert_holds_what_the_file_declares(path, model):
    stored = _stored(path)
    assert model.config() == json.loads(str(stored["architecture"]))
    for name, layer, attr in model.parameters():
        for group, array in (("param", getattr(layer, attr)), ("velocity", layer.velocity[attr])):
            expected = stored[f"{group}/{name}"]
            assert array.dtype == expected.dtype.newbyteorder("=")
            np.testing.assert_array_equal(array, expected)
    params = {key for key in stored if key.startswith(("param/", "velocity/"))}
    assert len(params) == 2 * len(model.parameters())


def _assert_history_is_the_files(path, history):
    stored = _stored(path)
    if not str(stored["history"]):
        assert history is None
        return
    record = json.loads(str(stored["history"]))
    snapshots = history.pop("kernel_snapshots")
    assert history == record
    assert sorted(snapshots) == sorted(int(k.split("/")[1]) for k in stored if k.startswith("snapshot/"))
    for epoch, kernels in snapshots.items():
        np.testing.assert_array_equal(kernels, stored[f"snapshot/{epoch}"])


@FUZZ
@given(data=st.data())
def test_a_mutated_checkpoint_loads_as_declared_or_is_refused_by_name(bases, tmp_path, data):
    base = bases[data.draw(st.integers(0, len(bases) - 1), label="base")]
    path = write_zip(tmp_path / "mutant.npz", mutate(data, base))

    model, error = _bounded(lambda: tc.Sequential.load(path))
    if _check_outcome(path, model, error):
        _assert_holds_what_the_file_declares(path, model)
    history, error = _bounded(lambda: checkpoint.load_history(path))
    if _check_outcome(path, history, error):
        _assert_history_is_the_files(path, history)
    meta, error = _bounded(lambda: checkpoint.load_meta(path))
    if _check_outcome(path, meta, error):
        assert meta == json.loads(str(_stored(path)["meta"]))


def test_the_unmutated_bases_load(bases, tmp_path):
    for i, base in enumerate(bases):
        path = write_zip(tmp_path / f"base{i}.npz", [Member(n, b) for n, b in base])
        _assert_holds_what_the_file_declares(path, tc.Sequential.load(path))
        _assert_history_is_the_files(path, checkpoint.load_history(path))


# -- save writes what load reads -----------------------------------------------------------------
@st.composite
def models(draw):
    """A small random Sequential for 1x8x8 images (convolutions, pools, dense layers)."""
    layers, channels, size = [], 1, 8
    for _ in range(draw(st.integers(0, 2))):
        out, k = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        padding = draw(st.integers(0, 1))
        layers += [tc.Conv2D(channels, out, k, padding=padding), tc.ReLU()]
        channels, size = out, size + 2 * padding - k + 1
        if size >= 2 and draw(st.booleans()):
            layers.append(draw(st.sampled_from([tc.MaxPool2D, tc.AvgPool2D]))(2))
            size //= 2
    features = channels * size * size
    layers.append(tc.Flatten())
    if draw(st.booleans()):
        hidden = draw(st.integers(1, 6))
        layers += [tc.Dense(features, hidden), tc.ReLU()]
        features = hidden
    layers.append(tc.Dense(features, draw(st.integers(1, 5))))
    return tc.Sequential(layers, seed=draw(st.integers(0, 10)), input_shape=(1, 8, 8))


finite = st.floats(0.0, 1e6, allow_nan=False, allow_infinity=False)
fraction = st.floats(0.0, 1.0, allow_nan=False)
scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | finite | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)
metas = st.dictionaries(st.text(max_size=10), json_values, max_size=4)


@FUZZ
@given(model=models(), epochs=st.integers(0, 5), meta=metas, data=st.data(), float32=st.booleans())
def test_save_writes_what_load_reads(tmp_path, model, epochs, meta, data, float32):
    if float32:
        model.to(np, dtype="float32")
    history = {key: data.draw(st.lists(fraction if "acc" in key else finite, min_size=epochs,
                                       max_size=epochs)) for key in METRICS}
    for key in data.draw(st.lists(st.sampled_from(["diverged_epoch", "stopped_epoch",
                                                   "interrupted_steps"]), max_size=2, unique=True)):
        history[key] = data.draw(st.integers(0, 100))
    convs = [layer for layer in model.layers if isinstance(layer, tc.Conv2D)]
    history["kernel_snapshots"] = ({e: np.asarray(convs[0].weights) for e in
                                    data.draw(st.sets(st.integers(0, 50), max_size=3))} if convs else {})
    path = checkpoint.save(model, tmp_path / "model.npz", history, meta=meta)
    loaded = tc.Sequential.load(path)
    assert loaded.config() == model.config()
    for (name, a, attr), (_, b, _) in zip(model.parameters(), loaded.parameters()):
        np.testing.assert_array_equal(getattr(b, attr), np.asarray(getattr(a, attr)), err_msg=name)
    saved = checkpoint.load_history(path)
    snapshots = saved.pop("kernel_snapshots")
    expected = {k: v for k, v in history.items() if k != "kernel_snapshots"}
    assert saved == expected
    assert sorted(snapshots) == sorted(history["kernel_snapshots"])
    assert checkpoint.load_meta(path) == json.loads(json.dumps(meta))
