"""One implementation: a model's ``Program`` is its layers' pure functions in a row, on every
backend. The fusion against the unfused layers it joins, where it is chosen, the chapter's
stateful API against the pure functions, the training step's gradient against finite
differences on random stacks, a chapter-style layer in ``fit``, and (JAX) compiled against eager.
"""

import functools
import gc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backends
import tinycnn_xp as tc
from helpers import param_state
from tinycnn_xp import training
from tinycnn_xp.layers import Context, ConvReluMaxPool, to_rows
from tinycnn_xp.losses import one_hot_columns
from tinycnn_xp.models import _Single
from tinycnn_xp.optim import SGD

# On JAX every new architecture compiles its loss, and eager calls compile per new shape: a
# share of the random stacks (the backend's EXAMPLE_SCALE), and the hand loop on TinyCNN only.
ON_JAX = backends.selected.NAME == "jax"
SCALE = getattr(backends.selected, "EXAMPLE_SCALE", 1.0)
BOUNDED = settings(deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def close(actual, expected, rtol=1e-12):
    actual, expected = tc.to_numpy(actual), tc.to_numpy(expected)
    assert actual.shape == expected.shape
    scale = max(np.abs(expected).max(initial=0.0), 1e-300)
    assert np.abs(actual - expected).max(initial=0.0) <= rtol * scale


@pytest.fixture(scope="module")
def data():
    return tc.make_dataset_bundle(train_per_class=9, val_per_class=5)  # 27 and 15 images


# -- the fusion against the layers it joins -------------------------------------------------------
FUSED = [  # in_channels, out, kernel, stride, padding, pool, relu before / after, image size
    (1, 3, 3, 1, 0, 2, "before", (8, 8)),
    (2, 4, 3, 1, 1, 2, "after", (7, 9)),     # a pooled size that floors (7 -> 3)
    (3, 2, 2, 2, 0, 3, "both", (13, 11)),
    (1, 2, 3, 1, 0, 1, "none", (5, 6)),       # a 1x1 pool: the max of one element
    (2, 3, 1, 1, 2, 2, "before", (4, 4)),
]


def unfused(layers, shape):
    """Each layer as a stage of its own (what a Program runs where nothing is fused)."""
    return [_Single(layer, s) for layer, s in zip(layers, _shapes(layers, shape))]


def _shapes(layers, shape):
    shapes = []
    for layer in layers:
        shapes.append(tuple(shape))
        shape = layer.output_shape((1, *shape))[1:]
    return shapes


@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "ties"])
@pytest.mark.parametrize("case", FUSED, ids=str)
def test_the_fusion_equals_the_layers_it_joins(backend, put, case, ties):
    cin, cout, k, stride, padding, pool_size, relu, (h, w) = case
    rng = np.random.default_rng(cin * 10 + k)
    conv = tc.Conv2D(cin, cout, k, seed=1, stride=stride, padding=padding)
    conv.bias = rng.normal(size=cout)
    pool = tc.MaxPool2D(pool_size)
    layers = {"before": [conv, tc.ReLU(), pool], "after": [conv, pool, tc.ReLU()],
              "both": [conv, tc.ReLU(), pool, tc.ReLU()], "none": [conv, pool]}[relu]
    size = (3, cin, h, w)
    x = put(rng.integers(-1, 2, size=size).astype(float) if ties else rng.normal(size=size))
    for layer in layers:
        layer.to(*_place(x))
    place = conv.placement
    xp = place.xp
    rows = to_rows(x, xp)
    fused = ConvReluMaxPool(conv, pool, next((r for r in layers if isinstance(r, tc.ReLU)), None),
                            (cin, h, w), place)
    params = conv.params()
    ctx = Context(xp)
    y, saved = fused.apply(params, rows, ctx)
    singles = unfused(layers, (cin, h, w))
    z, kept = rows, []
    for stage, layer in zip(singles, layers):
        z, s = stage.apply(layer.params(), z, ctx)
        kept.append(s)
    close(y, z)
    dy = put(rng.normal(size=tuple(y.shape)))
    dx, grads = fused.vjp(params, saved, dy, ctx, True)
    g, unfused_grads = dy, None
    for stage, layer, s in reversed(list(zip(singles, layers, kept))):
        g, stage_grads = stage.vjp(layer.params(), s, g, ctx, True)
        if layer is conv:
            unfused_grads = stage_grads
    close(dx, g)
    for a, b in zip(grads, unfused_grads):
        close(a, b)
    assert fused.vjp(params, saved, dy, ctx, False)[0] is None


def _place(x):
    from array_api_compat import device

    from tinycnn_xp._xp import namespace_of
    return namespace_of(x), device(x), x.dtype


@pytest.mark.parametrize("layers,fused", [
    ([tc.Conv2D(1, 2, 3), tc.ReLU(), tc.MaxPool2D(2), tc.Flatten(), tc.Dense(18, 3)], [3, 1, 1]),
    ([tc.Conv2D(1, 2, 3), tc.MaxPool2D(2), tc.ReLU(), tc.Flatten(), tc.Dense(18, 3)], [3, 1, 1]),
    ([tc.Conv2D(1, 2, 3), tc.ReLU(), tc.MaxPool2D(2), tc.ReLU(), tc.Flatten(), tc.Dense(18, 3)],
     [4, 1, 1]),
    ([tc.Conv2D(1, 2, 3), tc.AvgPool2D(2), tc.Flatten(), tc.Dense(18, 3)], [1, 1, 1, 1]),
    ([tc.Conv2D(1, 2, 3), tc.MaxPool2D(2, stride=1), tc.Flatten(), tc.Dense(50, 3)], [1, 1, 1, 1]),
    ([tc.MaxPool2D(2), tc.Conv2D(1, 2, 3), tc.Flatten(), tc.Dense(8, 3)], [1, 1, 1, 1]),
    ([tc.Conv2D(1, 2, 3), tc.ReLU(), tc.Flatten(), tc.Dense(72, 3)], [1, 1, 1, 1]),
], ids=["conv relu pool", "conv pool relu", "conv relu pool relu", "avg pool",
        "overlapping pool", "pool first", "no pool"])
def test_the_fusion_is_chosen_where_the_layers_match(put, data, layers, fused):
    model = tc.Sequential(layers, seed=1)
    model.forward(put(data[0][:1]))
    program = model.program((1, 8, 8))
    assert [stage[2] for stage in program.stages] == fused
    history = model.fit(*(put(a) for a in data[:4]), epochs=2, verbose=False)
    assert len(history["val_acc"]) == 2


def test_a_subclass_is_never_fused(put, data):
    """A subclass may change the math: only the exact classes are joined."""
    class MyConv(tc.Conv2D):
        pass
    model = tc.Sequential([MyConv(1, 2, 3), tc.ReLU(), tc.MaxPool2D(2), tc.Flatten(),
                           tc.Dense(18, 3)])
    model.forward(put(data[0][:1]))
    assert [stage[2] for stage in model.program((1, 8, 8)).stages] == [1] * 5


# -- the chapter's stateful API is the pure functions ---------------------------------------------
def test_loss_and_grad_and_backward_are_the_training_steps_gradients(backend, put, data):
    model = tc.vgg_cnn(seed=2)
    x, y = put(data[0][:6]), put(data[1][:6])
    loss, probabilities = model.loss_and_grad(x, y)
    xp = model.placement.xp
    targets = one_hot_columns(y, 3, x.dtype, xp)
    grads, columns, _ = model.program((1, 8, 8)).gradients(model.params(), to_rows(x, xp), targets)
    # The same functions: bitwise, except on JAX, where loss_and_grad's pass is compiled (as fit's
    # step is) and XLA may order a sum otherwise than the eager pass.
    rtol = 1e-12 if ON_JAX else 0
    for (_, layer, attr), grad in zip(model.parameters(), grads):
        close(getattr(layer, "d_" + attr), grad, rtol=rtol)
    close(probabilities, columns.mT, rtol=rtol)
    # forward + backward(d_logits) binds the same gradients
    other = tc.vgg_cnn(seed=2)
    logits = other.forward(x)
    _, _, d_logits = tc.softmax_cross_entropy(logits, y)
    other.backward(d_logits, input_grad=False)
    for (_, a, attr), (_, b, _) in zip(model.parameters(), other.parameters()):
        close(getattr(b, "d_" + attr), getattr(a, "d_" + attr), rtol=1e-12)
    assert float(tc.to_numpy(loss)) > 0


def test_last_input_and_last_mask_describe_the_models_pass(backend, put, data):
    """After a model's (fused) pass each layer's attributes are what its own forward would keep."""
    model = tc.TinyCNN(seed=3)
    x = put(data[0][:5])
    model.loss_and_grad(x, put(data[1][:5]))
    chain, seen = x, []
    for layer in [tc.Conv2D(1, 3, 3, seed=3), tc.ReLU(), tc.MaxPool2D(2), tc.Flatten(),
                  tc.Dense(27, 3, seed=4)]:
        seen.append((chain, layer))
        chain = layer.forward(chain)
    for (expected, _), layer in zip(seen, model.layers):
        close(layer.last_input, expected)
    close(model.pool.last_mask, seen[2][1].last_mask, rtol=0)
    assert model.flatten.last_shape == (5, 3, 3, 3)
    # a layer's backward after the model's pass is its own backward on that input
    d = put(np.random.default_rng(0).normal(size=(5, 3)))
    close(model.dense.backward(d), seen[4][1].backward(d))


def test_fit_leaves_the_last_steps_gradient_and_batch(backend, put, data):
    model = tc.TinyCNN(seed=5)
    placed = [put(a) for a in data[:4]]
    model.fit(*placed, epochs=2, batch_size=10, verbose=False)  # 27 images: a last batch of 7
    batch = model.conv.last_input
    assert tuple(batch.shape) == (7, 1, 8, 8)
    # d_weights is that step's gradient, as computed (not rebuilt from the update)
    before = tc.TinyCNN(seed=5)
    before.fit(*placed, epochs=2, batch_size=10, verbose=False)
    grads = {name: tc.to_numpy(getattr(layer, "d_" + attr)) for name, layer, attr in model.parameters()}
    # recompute the last step from the batch and the parameters the step used: undo the update
    for _, layer, attr in before.parameters():
        setattr(layer, attr, getattr(layer, attr) + 0.12 * getattr(layer, "d_" + attr))
    labels = _labels_of(batch, placed)
    before.loss_and_grad(batch, labels)
    for name, layer, attr in before.parameters():
        np.testing.assert_allclose(tc.to_numpy(getattr(layer, "d_" + attr)), grads[name],
                                   rtol=1e-9, atol=1e-12, err_msg=name)


def _labels_of(batch, placed):
    """The labels of the training images in ``batch`` (found by value)."""
    x = tc.to_numpy(placed[0]).reshape(placed[0].shape[0], -1)
    rows = tc.to_numpy(batch).reshape(batch.shape[0], -1)
    index = [int(np.flatnonzero((x == row).all(axis=1))[0]) for row in rows]
    return placed[1][index] if backends.selected.NAME == "numpy" else _take(placed[1], index)


def _take(y, index):
    from array_api_compat import device

    from tinycnn_xp._xp import namespace_of
    xp = namespace_of(y)
    return xp.take(y, xp.asarray(np.array(index), device=device(y)), axis=0)


@pytest.mark.parametrize("build", [lambda: tc.TinyCNN(seed=6)] if ON_JAX else
                         [lambda: tc.TinyCNN(seed=6), lambda: tc.vgg_cnn(seed=6)])
def test_a_hand_loop_is_fits_training(backend, put, data, build):
    """loss_and_grad + step on fit's batches: the same arrays as fit, bit for bit (on JAX, where
    fit's step is compiled and XLA may order a sum otherwise, to rounding)."""
    placed = [put(a) for a in data[:4]]
    fitted = build()
    fitted.fit(*placed, epochs=2, lr=0.05, batch_size=8, momentum=0.5, verbose=False)
    by_hand = build()
    rng = np.random.default_rng(0)
    for _ in range(2):
        order = rng.permutation(27)
        for start in range(0, 27, 8):
            idx = order[start:start + 8]
            by_hand.loss_and_grad(put(data[0][idx]), put(data[1][idx]))
            by_hand.step(0.05, momentum=0.5)
    tolerance = {"rtol": 1e-12, "atol": 1e-15} if backend.NAME == "jax" else {"rtol": 0, "atol": 0}
    for key, value in param_state(by_hand).items():
        np.testing.assert_allclose(param_state(fitted)[key], value, **tolerance, err_msg=key)


# -- the training step's gradient on random stacks ------------------------------------------------
@st.composite
def stacks(draw):
    size = draw(st.integers(5, 9))
    layers, channels, current = [], draw(st.integers(1, 2)), size
    first = channels
    for _ in range(draw(st.integers(1, 2))):
        kernel, stride, padding = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 1))
        out = (current + 2 * padding - kernel) // stride + 1
        if out < 1:
            break
        filters = draw(st.integers(1, 3))
        layers.append(tc.Conv2D(channels, filters, kernel, stride=stride, padding=padding))
        if draw(st.booleans()):
            layers.append(tc.ReLU())
        pool = draw(st.integers(1, 3))
        if pool <= out and draw(st.booleans()):
            kind = draw(st.sampled_from([tc.MaxPool2D, tc.AvgPool2D]))
            pool_stride = draw(st.sampled_from([None, 1]))
            layers.append(kind(pool, pool_stride))
            out = (out - pool) // (pool_stride or pool) + 1
            if draw(st.booleans()):
                layers.append(tc.ReLU())
        channels, current = filters, out
    layers.append(tc.Flatten())
    features = channels * current * current
    if draw(st.booleans()):
        hidden = draw(st.integers(2, 4))
        layers += [tc.Dense(features, hidden), tc.ReLU()]
        features = hidden
    classes = draw(st.integers(2, 4))
    layers.append(tc.Dense(features, classes))
    return layers, (first, size, size), classes, draw(st.integers(0, 2**31))


@settings(BOUNDED, max_examples=int(40 * SCALE))
@given(case=stacks())
def test_the_training_steps_gradient_on_random_stacks(put, case):
    """``check_gradients`` checks ``Program.gradients``, what a training step applies: every
    parameter and the input, against central differences (the chapter's 1e-5; typically ~1e-9)."""
    layers, shape, classes, seed = case
    rng = np.random.default_rng(seed)
    model = tc.Sequential(layers, seed=seed % 1000)
    for layer in model.layers:  # random biases: no output sits exactly on a ReLU's kink
        if layer.param_names:
            layer.bias = rng.normal(0.0, 0.5, size=layer.bias.shape)
    x, y = put(rng.normal(size=(3, *shape))), put(rng.integers(0, classes, size=3))
    errors = tc.check_gradients(model, x, y)
    assert set(errors) == {name for name, _, _ in model.parameters()} | {"input"}
    bad = {name: err for name, err in errors.items() if not err < 1e-5}
    assert not bad, f"{layers}: {bad}"


# -- a chapter-style layer -----------------------------------------------------------------------
class Scale(tc.Layer):
    """Written as the chapter writes a layer: forward/backward in (batch, ...) and a parameter."""

    param_names = ("weights",)

    def __init__(self, features):
        super().__init__()
        self.weights = np.ones(features)
        self.d_weights = np.zeros(features)
        self.velocity = {"weights": np.zeros(features)}

    def to(self, xp, device=None, dtype=None):
        super().to(xp, device, dtype)
        from tinycnn_xp._xp import move
        place = self.placement
        self.weights = move(self.weights, place, place.dtype)
        self.d_weights = move(self.d_weights, place, place.dtype)
        self.velocity = {"weights": move(self.velocity["weights"], place, place.dtype)}
        return self

    def forward(self, x):
        self.x = x
        return x * self.weights

    def backward(self, d_output):
        xp = self.placement.xp
        self.d_weights = xp.sum(d_output * self.x, axis=0)
        return d_output * self.weights


def test_a_chapter_style_layer_trains_in_fit(backend, put, data):
    model = tc.Sequential([tc.Flatten(), Scale(64), tc.Dense(64, 3)], seed=0)
    placed = [put(a) for a in data[:4]]
    history = model.fit(*placed, epochs=3, lr=0.05, verbose=False)
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert not np.allclose(tc.to_numpy(model.layers[1].weights), 1.0)  # it was trained
    assert not model.program((1, 8, 8)).pure  # so never compiled
    x64, y = put(data[0][:3]), put(data[1][:3])
    errors = tc.check_gradients(model, x64, y)
    assert all(err < 1e-7 for err in errors.values()), errors


# -- JAX: compiled against eager, and the compile cache --------------------------------------------
@pytest.fixture
def jax_only(backend):
    if backend.NAME != "jax":
        pytest.skip(f"compiled steps are JAX's; this is {backend.NAME}")


@pytest.mark.parametrize("build", [lambda: tc.TinyCNN(seed=1), lambda: tc.vgg_cnn(seed=1)],
                         ids=["tiny", "vgg"])
def test_the_compiled_step_equals_the_eager_one(jax_only, put, data, build):
    import jax
    model = build()
    x, y = put(data[0][:9]), put(data[1][:9])
    model.forward(x)
    xp = model.placement.xp
    program = model.program((1, 8, 8))
    optimizer = SGD(0.1, momentum=0.9)
    args = (model.params(), optimizer.state_of(model), (), (), to_rows(x, xp),
            one_hot_columns(y, 3, x.dtype, xp), optimizer.hyper(0.1))
    step = functools.partial(program.train_step, optimizer.update)
    eager, compiled = step(*args), jax.jit(step)(*args)
    for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(compiled)):
        close(b, a, rtol=1e-12)


def test_no_recompile_for_a_new_model_or_another_training_set_size(jax_only, put, data):
    placed = [put(a) for a in data[:4]]
    training.clear_compiled()
    tc.TinyCNN(seed=1).fit(*placed, epochs=1, verbose=False, batch_size=9)  # 27 = 3 x 9
    compiled = dict(training._COMPILED)
    step = next(fn for key, fn in compiled.items() if key[0] == "step")
    traces = step._cache_size()
    tc.TinyCNN(seed=2).fit(*placed, epochs=2, verbose=False, batch_size=9, lr=0.3)
    smaller = [a[:18, ...] for a in placed[:2]] + placed[2:]  # another training-set size
    tc.TinyCNN(seed=3).fit(*smaller, epochs=1, verbose=False, batch_size=9)
    assert dict(training._COMPILED) == compiled  # the same compiled functions ...
    assert step._cache_size() == traces          # ... and the step not traced again


def test_the_compile_cache_is_bounded_and_can_be_cleared(jax_only, put, data, monkeypatch):
    monkeypatch.setattr(training, "MAX_COMPILED", 4)
    training.clear_compiled()
    placed = [put(a) for a in data[:4]]
    for classes in (3, 4, 5):
        y = [put(np.asarray(tc.to_numpy(a)) % classes) for a in (placed[1], placed[3])]
        tc.TinyCNN(seed=1, num_classes=classes).fit(placed[0], y[0], placed[2], y[1], epochs=1,
                                                   verbose=False)
        assert len(training._COMPILED) <= 4
    training.clear_compiled()
    gc.collect()
    assert training._COMPILED == {}
