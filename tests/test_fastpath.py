"""``fastpath``: the fused training step against the layers' own (the general path), on every
backend; which stacks it takes; and what a step costs in array calls."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backends
import tinycnn_xp as tc
from helpers import param_state
from tinycnn_xp import fastpath, paths, training

# On JAX every new architecture compiles (seconds each): a tenth of the random stacks there.
SCALE = 0.1 if backends.selected.NAME == "jax" else 1.0


@pytest.fixture(scope="module")
def data():
    return tc.make_dataset_bundle(train_per_class=9, val_per_class=5)  # 27 and 15 images


def both_paths(put, build, host_data, **fit_kwargs):
    """The same fit on the fast path and on the general path: (history, model) for each."""
    dtype = fit_kwargs.pop("dtype", None)
    placed = [put(a, dtype if a.ndim > 1 else None) for a in host_data]
    runs = []
    for fast in (True, False):
        model = build()
        history = training.fit(model, *placed, verbose=False, fast=fast, **fit_kwargs)
        runs.append((history, model))
    return runs


def assert_same_runs(runs, rtol=1e-11, atol=1e-13):
    (fast_history, fast_model), (general_history, general_model) = runs
    for key in tc.METRICS:
        np.testing.assert_allclose(fast_history[key], general_history[key], rtol=rtol, atol=atol,
                                   err_msg=key)
    fast_state, general_state = param_state(fast_model), param_state(general_model)
    for key, value in general_state.items():
        np.testing.assert_allclose(fast_state[key], value, rtol=rtol, atol=atol, err_msg=key)


PRESETS = {"tiny": lambda: tc.TinyCNN(seed=42), "deep": lambda: tc.deep_cnn(seed=3),
           "vgg": lambda: tc.vgg_cnn(seed=5)}


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_fast_path_equals_general_path_on_the_presets(put, data, preset, momentum):
    # batch 8 of 27 images: a ragged last batch of 3
    runs = both_paths(put, PRESETS[preset], data[:4], epochs=3, lr=0.05, batch_size=8,
                      momentum=momentum)
    assert_same_runs(runs)
    fast_model = runs[0][1]
    general_model = runs[1][1]
    for (_, fast_layer, attr), (_, general_layer, _) in zip(fast_model.parameters(),
                                                          general_model.parameters()):
        np.testing.assert_allclose(tc.to_numpy(getattr(fast_layer, "d_" + attr)),
                                   tc.to_numpy(getattr(general_layer, "d_" + attr)),
                                   rtol=1e-9, atol=1e-13, err_msg=attr)  # the last step's


@pytest.mark.float32
def test_fast_path_in_float32(put, data):
    runs = both_paths(put, PRESETS["tiny"], data[:4], epochs=3, batch_size=8, dtype="float32")
    assert_same_runs(runs, rtol=2e-4, atol=1e-5)
    assert str(runs[0][1].conv.weights.dtype).endswith("float32")


def test_the_chapter_fit_takes_the_fast_path(backend, put, monkeypatch):
    taken = []
    original = training._path

    def spy(*args):
        path = original(*args)
        taken.append(type(path))
        return path
    monkeypatch.setattr(training, "_path", spy)
    tc.TinyCNN().fit(*(put(a) for a in tc.make_dataset_bundle(3, 2)[:4]), epochs=1,
                     verbose=False)
    assert taken == [paths.CompiledPath if backend.NAME == "jax" else paths.FastPath]


@st.composite
def stack_and_size(draw):
    size = draw(st.integers(6, 10))
    layers, channels, current = [], 1, size
    for _ in range(draw(st.integers(1, 2))):
        kernel, stride, padding = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(
            st.integers(0, 1))
        out = (current + 2 * padding - kernel) // stride + 1
        if out < 1:
            break
        filters = draw(st.integers(1, 3))
        layers.append(tc.Conv2D(channels, filters, kernel, stride=stride, padding=padding))
        relu_first = draw(st.booleans())
        if relu_first:
            layers.append(tc.ReLU())
        pool = draw(st.integers(1, 3))
        if pool <= out and draw(st.booleans()):
            layers.append(tc.MaxPool2D(pool))
            out //= pool
            if not relu_first and draw(st.booleans()):
                layers.append(tc.ReLU())
        channels, current = filters, out
    features = channels * current * current
    layers.append(tc.Flatten())
    if draw(st.booleans()):
        hidden = draw(st.integers(2, 5))
        layers += [tc.Dense(features, hidden), tc.ReLU()]
        features = hidden
    classes = draw(st.integers(2, 4))
    layers.append(tc.Dense(features, classes))
    return layers, size, classes, draw(st.sampled_from([0.0, 0.5]))


@settings(max_examples=int(40 * SCALE), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=stack_and_size())
def test_random_stacks_agree_on_both_paths(put, case):
    layers, size, classes, momentum = case
    rng = np.random.default_rng(size)
    x = rng.normal(size=(13, 1, size, size))
    y = np.arange(13) % classes
    xv, yv = rng.normal(size=(5, 1, size, size)), np.arange(5) % classes
    specs = [(type(layer), layer.config()) for layer in layers]

    def build():
        return tc.Sequential([cls(**config) for cls, config in specs], seed=7)
    model = build()
    model.forward(put(x[:1]))
    assert fastpath.plan(model, (1, size, size), model.placement) is not None, specs
    runs = both_paths(put, build, (x, y, xv, yv), epochs=2, lr=0.05, batch_size=5,
                      momentum=momentum)
    assert_same_runs(runs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layers", [
    [tc.Conv2D(1, 2, 3), tc.AvgPool2D(2), tc.Flatten(), tc.Dense(18, 3)],
    [tc.Conv2D(1, 2, 3), tc.MaxPool2D(2, stride=1), tc.Flatten(), tc.Dense(50, 3)],
    [tc.MaxPool2D(2), tc.Conv2D(1, 2, 3), tc.Flatten(), tc.Dense(8, 3)],
    [tc.Conv2D(1, 2, 3), tc.ReLU(), tc.ReLU(), tc.Flatten(), tc.Dense(72, 3)],
    [tc.Flatten(), tc.Dense(64, 3), tc.ReLU()],
], ids=["avg pool", "overlapping pool", "pool first", "two ReLUs", "ReLU last"])
def test_other_stacks_train_on_the_general_path(put, data, layers):
    model = tc.Sequential(layers, seed=1)
    model.forward(put(data[0][:1]))
    assert fastpath.plan(model, (1, 8, 8), model.placement) is None
    history = model.fit(*(put(a) for a in data[:4]), epochs=2, verbose=False)
    assert len(history["val_acc"]) == 2


def test_no_recompile_for_a_new_model_of_the_same_architecture(backend, put, data):
    if backend.NAME != "jax":
        pytest.skip(f"compiled steps are JAX's; this is {backend.NAME}")
    placed = [put(a) for a in data[:4]]
    tc.TinyCNN(seed=1).fit(*placed, epochs=1, verbose=False, batch_size=8)
    compiled = dict(paths._COMPILED)
    traces = {key: fn._cache_size() for key, fn in compiled.items()}
    tc.TinyCNN(seed=2).fit(*placed, epochs=2, verbose=False, batch_size=8, lr=0.3)
    assert dict(paths._COMPILED) == compiled  # the same compiled functions ...
    assert {key: fn._cache_size() for key, fn in compiled.items()} == traces  # ... not retraced


#: Array calls per step of the chapter's TinyCNN (batch 18), counted by ``benchmarks/calls.py``.
#: A change that adds calls to a step shows here (so does one that saves some: update the pin).
PINNED_CALLS = {
    "fast path": {"function": 19, "operator": 30, "indexing": 21, "view": 4},
    "fast path, momentum": {"function": 19, "operator": 42, "indexing": 21, "view": 4},
    "general path": {"function": 33, "operator": 35, "indexing": 11, "view": 2},
}


@pytest.mark.parametrize("case", list(PINNED_CALLS))
def test_array_calls_per_step_are_pinned(backend, case):
    if backend.NAME != "array_api_strict":
        pytest.skip(f"counts array-api-strict's calls; runs in its session (this is {backend.NAME})")
    from benchmarks.calls import per_step
    counts = per_step(lambda: tc.TinyCNN(seed=42), fast=case.startswith("fast"),
                      momentum=0.9 if "momentum" in case else 0.0)
    assert {kind: counts[kind] for kind in PINNED_CALLS[case]} == PINNED_CALLS[case]


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_repeat_step_is_fits_step(put, data, momentum):
    """``training.repeat_step``, what the benchmark times, takes the steps ``fit`` takes."""
    x, y = put(data[0][:9]), put(data[1][:9])
    states = []
    for fast in (True, False):
        model = tc.TinyCNN(seed=8)
        step = training.repeat_step(model, x, y, 0.1, momentum, fast=fast)
        for _ in range(3):
            step()
        step.bind()
        states.append(param_state(model))
    for key, value in states[1].items():
        np.testing.assert_allclose(states[0][key], value, rtol=1e-12, atol=1e-15, err_msg=key)
    # ... and a one-batch fit of three epochs (no shuffle changes a single batch) agrees
    reference = tc.TinyCNN(seed=8)
    training.fit(reference, x, y, x, y, epochs=3, lr=0.1, batch_size=9, momentum=momentum,
                 verbose=False, fast=False)
    for key, value in param_state(reference).items():
        np.testing.assert_allclose(states[0][key], value, rtol=1e-12, atol=1e-15, err_msg=key)
