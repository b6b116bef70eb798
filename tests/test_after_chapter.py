"""After the chapter: optimizers, schedules, batch normalization, dropout, train/eval modes.

On every backend: gradient checks of stacks with the new layers, masks and histories equal to
NumPy's, modes, bad arguments. In the torch session: each optimizer, schedule and batch
normalization against PyTorch's own, in float64. On NumPy: resuming is bitwise exact.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import backends
import tinycnn_xp as tc
from helpers import param_state
from tinycnn_xp import optim, schedules
from tinycnn_xp._xp import to_numpy
from tinycnn_xp.layers import (
    AvgPool2D,
    BatchNorm1D,
    BatchNorm2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    ReLU,
)


@pytest.fixture(scope="module")
def lines():
    return tc.make_dataset_bundle(train_per_class=10, val_per_class=5)[:4]


def placed(put, arrays):
    return [put(a) for a in arrays]


def bn_stack(seed=3, p=0.25):
    """Conv -> BN2D -> ReLU -> pool -> Dropout -> Dense -> BN1D -> ReLU -> Dropout -> Dense."""
    return tc.Sequential([Conv2D(1, 3, 3), BatchNorm2D(3), ReLU(), MaxPool2D(2), Flatten(),
                          Dropout(p, seed=5), Dense(27, 8), BatchNorm1D(8), ReLU(),
                          Dropout(p, seed=6), Dense(8, 3)], seed=seed)


# -- gradient checks ---------------------------------------------------------------------------
STACKS = {
    "conv bn relu": lambda: tc.Sequential([Conv2D(1, 2, 3), BatchNorm2D(2), ReLU(), Flatten(),
                                           Dense(72, 3)], seed=1),
    # (after a ReLU, batch normalization maps every zero to one value: a max pool would then see
    # ties, where a finite difference steps over a kink; an average pool has none)
    "relu then bn": lambda: tc.Sequential([Conv2D(1, 2, 3, padding=1), ReLU(), BatchNorm2D(2),
                                           AvgPool2D(2), Flatten(), Dense(32, 3)], seed=2),
    "dense bn dropout": lambda: tc.Sequential([Flatten(), Dense(64, 6), BatchNorm1D(6), ReLU(),
                                               Dropout(0.4, seed=3), Dense(6, 3)], seed=3),
    "everything": bn_stack,
}


@pytest.mark.parametrize("stack", list(STACKS))
def test_gradient_checks_pass_with_the_new_layers(put, lines, stack):
    model = STACKS[stack]()
    rng = np.random.default_rng(1)
    for layer in model.layers:  # away from gamma = 1, beta = 0 (set on the host, placed below),
        if isinstance(layer, (Conv2D, Dense)):  # and biases off zero: a window of zeros would
            layer.bias = rng.normal(0.0, 0.1, layer.bias.shape)  # put its ReLU on the kink
        if isinstance(layer, (BatchNorm2D, BatchNorm1D)):
            layer.gamma = rng.normal(1.0, 0.3, layer.channels)
            layer.beta = rng.normal(0.0, 0.3, layer.channels)
            layer.running_mean = rng.normal(0.0, 0.3, layer.channels)
    x, y = put(lines[0][:7]), put(lines[1][:7])
    model.loss_and_grad(x, y)
    grads = {name: to_numpy(getattr(layer, "d_" + attr)) for name, layer, attr in model.parameters()}
    before = {name: to_numpy(getattr(layer, attr)) for name, layer, attr in model.buffer_slots()}
    drawn = [layer.rng.bit_generator.state for layer in model.layers if isinstance(layer, Dropout)]
    errors = tc.check_gradients(model, x, y)
    vanishing = tc.gradcheck.zero_by_construction(model)
    for name, error in errors.items():
        if name in vanishing:
            # A bias just before batch normalization has no effect on the loss: its gradient is
            # zero (the mean takes it away), and a relative error of two zeros means nothing.
            assert np.max(np.abs(grads[name])) < 1e-12, name
            continue
        assert error < 1e-5, (name, error)
    if stack == "conv bn relu":
        assert vanishing == {"conv2d0.bias"}
    # A check writes nothing back: running statistics and generators are as they were.
    for name, layer, attr in model.buffer_slots():
        np.testing.assert_array_equal(to_numpy(getattr(layer, attr)), before[name])
    assert drawn == [layer.rng.bit_generator.state for layer in model.layers
                     if isinstance(layer, Dropout)]


@st.composite
def stacks(draw):
    """A random stack of convolutions with batch normalization (before or after the ReLU),
    pools, dropout and dense layers with batch normalization; its input shape and classes."""
    size, channels = draw(st.integers(6, 9)), draw(st.integers(1, 2))
    layers, current, first = [], size, channels
    for _ in range(draw(st.integers(1, 2))):
        order = draw(st.sampled_from(["bn relu", "relu bn", "bn", "relu"]))
        # (a filter of one weight before batch normalization is scale-free: only eps keeps its
        # gradient from zero, and central differences of that are rounding)
        kernel = draw(st.integers(2 if channels == 1 and order.startswith("bn") else 1, 3))
        padding = draw(st.integers(0, 1))
        out = current + 2 * padding - kernel + 1
        filters = draw(st.integers(1, 3))
        layers.append(Conv2D(channels, filters, kernel, padding=padding))
        for kind in order.split():
            layers.append(BatchNorm2D(filters) if kind == "bn" else ReLU())
        if out >= 2 and draw(st.booleans()):
            # After a ReLU, batch normalization maps every zero to one value: a max pool would
            # see ties there, where a finite difference steps over a kink.
            pool = AvgPool2D if order == "relu bn" else draw(st.sampled_from([MaxPool2D, AvgPool2D]))
            layers.append(pool(2))
            out //= 2
        channels, current = filters, out
    layers.append(Flatten())
    features = channels * current * current
    if draw(st.booleans()):
        layers.append(Dropout(draw(st.sampled_from([0.2, 0.5])), seed=draw(st.integers(0, 9))))
    if features > 1 and draw(st.booleans()):
        hidden = draw(st.integers(2, 5))
        layers += [Dense(features, hidden), BatchNorm1D(hidden), ReLU()]
        if draw(st.booleans()):
            layers.append(Dropout(0.3, seed=1))
        features = hidden
    classes = draw(st.integers(2, 4))
    layers.append(Dense(features, classes))
    return layers, (first, size, size), classes, draw(st.integers(0, 2**31))


#: examples per backend: NumPy's take milliseconds; JAX compiles each new architecture, and
#: array-api-strict, which runs on three Pythons, checks every call (seconds each)
EXAMPLES = {"numpy": 20, "torch": 10, "array_api_strict": 5, "jax": 4}.get(backends.selected.NAME, 5)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=stacks())
def test_gradient_checks_pass_on_random_stacks_with_the_new_layers(put, case):
    """Every parameter and the input within the chapter's 1e-5 (typically ~1e-10), in training
    mode; a bias just before batch normalization has a zero gradient instead."""
    layers, shape, classes, seed = case
    rng = np.random.default_rng(seed)
    model = tc.Sequential(layers, seed=seed % 1000)
    for layer in model.layers:  # random biases, gamma and beta: off the ReLUs' kinks and defaults
        if isinstance(layer, (Conv2D, Dense)):
            layer.bias = rng.normal(0.0, 0.5, size=layer.bias.shape)
        if isinstance(layer, (BatchNorm2D, BatchNorm1D)):
            layer.gamma = rng.normal(1.0, 0.3, layer.channels)
            layer.beta = rng.normal(0.0, 0.5, layer.channels)
    x, y = put(rng.normal(size=(6, *shape))), put(rng.integers(0, classes, size=6))
    errors = tc.check_gradients(model, x, y)
    vanishing = tc.gradcheck.zero_by_construction(model)
    model.loss_and_grad(x, y)
    for name in vanishing:
        layer_name, attr = name.split(".")
        layer = model.layers[model.names.index(layer_name)]
        assert np.max(np.abs(to_numpy(getattr(layer, "d_" + attr)))) < 1e-12, name
    bad = {name: err for name, err in errors.items() if name not in vanishing and not err < 1e-5}
    assert not bad, f"{layers}: {bad}"


# -- dropout -------------------------------------------------------------------------------------
def test_dropout_keeps_one_minus_p_and_is_the_identity_in_evaluation(put):
    layer = Dropout(0.3, seed=1)
    mask = layer.epoch_mask(200, 500, epoch=0, index=0)
    n = mask.size
    assert abs(mask.mean() - 0.7) < 5 * math.sqrt(0.7 * 0.3 / n)
    assert not np.array_equal(mask, layer.epoch_mask(200, 500, epoch=1, index=0))
    x = put(np.random.default_rng(0).normal(size=(4, 3, 5, 5)))
    layer.training = False
    np.testing.assert_array_equal(to_numpy(layer.forward(x)), to_numpy(x))
    layer.training = True
    y = to_numpy(layer.forward(x))
    # The mask is the host's, drawn sample by sample from the layer's own generator.
    expected_mask = Dropout(0.3, seed=1).draw_mask(75, 4).T.reshape(4, 3, 5, 5)
    np.testing.assert_array_equal(y, to_numpy(x) * expected_mask.astype(float) * (1 / 0.7))
    d = to_numpy(layer.backward(put(np.ones((4, 3, 5, 5)))))
    np.testing.assert_array_equal(d, expected_mask * (1 / 0.7))


def test_histories_with_the_new_layers_match_numpys(put, lines):
    """Same seeds, same masks: the history on this backend equals NumPy's within 1e-9."""
    def run(data):
        return bn_stack().fit(*data, epochs=3, batch_size=9, verbose=False,
                              optimizer=tc.Adam(0.01, schedule=schedules.Cosine(3)))
    here, reference = run(placed(put, lines)), run(lines)
    for key in (*tc.METRICS, "lr"):
        np.testing.assert_allclose(here[key], reference[key], rtol=0, atol=1e-9, err_msg=key)


# -- modes ---------------------------------------------------------------------------------------
def test_evaluation_mode_uses_the_running_statistics(put, lines):
    model = bn_stack(p=0.5)
    x_train, y_train, x_val, y_val = placed(put, lines)
    model.fit(x_train, y_train, x_val, y_val, epochs=2, verbose=False, optimizer=tc.Adam(0.01))
    assert model.training  # fit leaves the mode as it was
    train_out = to_numpy(model.forward(x_val))
    model.eval()
    first, second = to_numpy(model.forward(x_val)), to_numpy(model.forward(x_val))
    np.testing.assert_array_equal(first, second)  # no dropout, no batch statistics
    assert not np.allclose(first, train_out)
    # predict runs in evaluation mode whatever the model's mode.
    model.train()
    np.testing.assert_array_equal(to_numpy(model.predict(x_val)), first.argmax(axis=1))
    assert model.evaluate(x_val, y_val) == pytest.approx(float(np.mean(first.argmax(1) == to_numpy(y_val))))


def test_a_batch_of_one_value_per_channel_is_refused_naming_batch_size(put, lines):
    model = tc.Sequential([Flatten(), Dense(64, 4), BatchNorm1D(4), Dense(4, 3)], seed=0)
    data = placed(put, lines)  # 30 training images: batches of 29 leave one of 1
    state = param_state(model)
    with pytest.raises(ValueError, match=r"batch_size.*drop_last=True"):
        model.fit(*data, epochs=1, batch_size=29, verbose=False)
    assert model.placement is None and model.optimizer is None
    for name, value in param_state(model).items():
        np.testing.assert_array_equal(value, state[name])
    history = model.fit(*data, epochs=1, batch_size=29, verbose=False, drop_last=True)
    assert len(history["train_loss"]) == 1


# -- optimizers in fit, state, checkpoints --------------------------------------------------------
def test_optimizer_with_lr_or_momentum_is_an_error(lines):
    model = tc.TinyCNN()
    with pytest.raises(ValueError, match="optimizer= or lr="):
        model.fit(*lines, epochs=1, lr=0.1, optimizer=tc.Adam())
    with pytest.raises(ValueError, match="momentum="):
        model.fit(*lines, epochs=1, momentum=0.9, optimizer=tc.SGD(0.1))
    with pytest.raises(TypeError, match="optimizer must be"):
        model.fit(*lines, epochs=1, optimizer="adam")
    assert model.placement is None and model.optimizer is None


def test_a_model_continues_with_its_optimizer(lines):
    straight = bn_stack()
    whole = straight.fit(*lines, epochs=4, verbose=False,
                         optimizer=tc.AdamW(0.01, schedule=schedules.StepDecay(2, 0.5)))
    model = bn_stack()
    first = model.fit(*lines, epochs=2, verbose=False,
                      optimizer=tc.AdamW(0.01, schedule=schedules.StepDecay(2, 0.5)))
    optimizer = model.optimizer
    rest = model.fit(*lines, epochs=4, initial_epoch=2, history=first, verbose=False)
    assert model.optimizer is optimizer and optimizer.steps == straight.optimizer.steps
    assert rest["lr"] == whole["lr"] == [0.01, 0.01, 0.005, 0.005]
    for key in tc.METRICS:
        assert rest[key] == whole[key], key
    for name, value in param_state(model).items():
        np.testing.assert_array_equal(value, param_state(straight)[name], err_msg=name)


def test_resuming_from_a_checkpoint_is_bitwise_exact(backend, lines, tmp_path):
    """Adam, batch normalization, dropout and a cosine schedule, cut after epoch 2 and resumed
    from the file: the same history and weights as the run never stopped (on NumPy, bitwise)."""
    if backend.NAME != "numpy":
        pytest.skip(f"bitwise resumption is checked on NumPy; this is {backend.NAME}")
    make = lambda: tc.Adam(0.02, weight_decay=1e-4, schedule=schedules.Cosine(5, floor=1e-3))
    straight = bn_stack()
    whole = straight.fit(*lines, epochs=5, batch_size=7, verbose=False, optimizer=make())
    model = bn_stack()
    first = model.fit(*lines, epochs=2, batch_size=7, verbose=False, optimizer=make())
    path = model.save(tmp_path / "cut.npz", first)
    loaded = tc.Sequential.load(path)
    assert isinstance(loaded.optimizer, tc.Adam) and loaded.optimizer.steps == model.optimizer.steps
    assert loaded.optimizer.schedule == schedules.Cosine(5, floor=1e-3)
    history = tc.checkpoint.load_history(path)
    rest = loaded.fit(*lines, epochs=5, batch_size=7, initial_epoch=2, history=history,
                      verbose=False)
    for key in (*tc.METRICS, "lr"):
        assert rest[key] == whole[key], key
    for name, value in param_state(loaded).items():
        np.testing.assert_array_equal(value, param_state(straight)[name], err_msg=name)
    for (name, a, attr), (_, b, _) in zip(loaded.buffer_slots(), straight.buffer_slots()):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=name)


def test_a_callable_schedule_is_not_stored_and_says_so(lines, tmp_path):
    model = tc.TinyCNN()
    history = model.fit(*lines, epochs=2, verbose=False,
                        optimizer=tc.SGD(0.1, schedule=lambda epoch: 0.1 / (1 + epoch)))
    assert history["lr"] == [0.1, 0.05]
    with pytest.warns(UserWarning, match="cannot hold"):
        path = model.save(tmp_path / "m.npz", history)
    loaded = tc.Sequential.load(path)
    with pytest.raises(ValueError, match=r"schedule.*pass optimizer="):
        loaded.fit(*lines, epochs=3, initial_epoch=2, verbose=False)


def test_format_1_checkpoints_still_load():
    from pathlib import Path
    folder = Path(__file__).parent / "checkpoints"
    files = sorted(folder.glob("*.npz"))
    assert files
    for path in files:
        model = tc.Sequential.load(path)
        assert model.optimizer is None or isinstance(model.optimizer, optim.Optimizer)


# -- bad arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize("build, match", [
    (lambda: Dropout(1.0), "p must be in"), (lambda: Dropout(-0.1), "p must be in"),
    (lambda: BatchNorm2D(3, eps=-1e-5), "eps must be"),
    (lambda: BatchNorm1D(3, momentum=1.5), "momentum must be"),
    (lambda: tc.Adam(betas=(1.0, 0.9)), r"betas\[0\]"), (lambda: tc.Adam(betas=(0.9, -0.1)), r"betas\[1\]"),
    (lambda: tc.Adam(eps=-1.0), "eps"), (lambda: tc.AdamW(weight_decay=-0.1), "weight_decay"),
    (lambda: tc.SGD(0.1, weight_decay=-1.0), "weight_decay"),
    (lambda: tc.SGD(0.1, nesterov=True), "nesterov"), (lambda: tc.RMSprop(alpha=1.0), "alpha"),
    (lambda: tc.SGD(-0.1), "lr"), (lambda: schedules.Cosine(0), "period"),
    (lambda: schedules.Cosine(5, floor=-1.0), "floor"), (lambda: schedules.StepDecay(2, 0.0), "factor"),
    (lambda: schedules.parse_schedule("linear", 10), "--schedule"),
    (lambda: schedules.parse_schedule("step:ten:0.5", 10), "--schedule"),
])
def test_bad_arguments_name_themselves(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("rate", [-0.1, float("nan"), float("inf")])
def test_a_schedule_giving_a_bad_rate_is_refused_before_training(lines, rate):
    model = tc.TinyCNN()
    state = param_state(model)
    schedule = lambda epoch: 0.1 if epoch < 2 else rate
    with pytest.raises(ValueError, match="schedule: the rate of epoch 2"):
        model.fit(*lines, epochs=3, verbose=False, optimizer=tc.SGD(0.1, schedule=schedule))
    for name, value in param_state(model).items():
        np.testing.assert_array_equal(value, state[name])


def test_parse_schedule_forms():
    assert schedules.parse_schedule("constant", 10) == schedules.Constant()
    assert schedules.parse_schedule("cosine", 12) == schedules.Cosine(12)
    assert schedules.parse_schedule("cosine:8:0.001", 12) == schedules.Cosine(8, 0.001)
    assert schedules.parse_schedule("step:10:0.5", 12) == schedules.StepDecay(10, 0.5)


# -- against PyTorch (torch session) --------------------------------------------------------------
@pytest.fixture
def torch_only(backend):
    if backend.NAME != "torch":
        pytest.skip(f"compared with torch.optim and torch.nn in the torch session; this is {backend.NAME}")
    import torch
    return torch


OPTIMIZERS = {
    "sgd": (lambda: tc.SGD(0.1), lambda t, p: t.optim.SGD(p, lr=0.1)),
    "sgd momentum decay": (lambda: tc.SGD(0.1, momentum=0.9, weight_decay=0.01),
                           lambda t, p: t.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
    "nesterov": (lambda: tc.SGD(0.05, momentum=0.8, nesterov=True),
                 lambda t, p: t.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    "rmsprop": (lambda: tc.RMSprop(0.01), lambda t, p: t.optim.RMSprop(p, lr=0.01)),
    "rmsprop momentum decay": (lambda: tc.RMSprop(0.005, momentum=0.7, weight_decay=0.02),
                               lambda t, p: t.optim.RMSprop(p, lr=0.005, momentum=0.7,
                                                            weight_decay=0.02)),
    "adam": (lambda: tc.Adam(0.01), lambda t, p: t.optim.Adam(p, lr=0.01)),
    "adam decay": (lambda: tc.Adam(0.01, betas=(0.8, 0.99), weight_decay=0.05),
                   lambda t, p: t.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), weight_decay=0.05)),
    "adamw": (lambda: tc.AdamW(0.01), lambda t, p: t.optim.AdamW(p, lr=0.01)),
    "adamw decay": (lambda: tc.AdamW(0.02, weight_decay=0.1),
                    lambda t, p: t.optim.AdamW(p, lr=0.02, weight_decay=0.1)),
}
SCHEDULES = {
    "constant": (lambda: None, None),
    "step": (lambda: schedules.StepDecay(10, 0.5),
             lambda t, o: t.optim.lr_scheduler.StepLR(o, step_size=10, gamma=0.5)),
    "cosine": (lambda: schedules.Cosine(20, floor=1e-3),
               lambda t, o: t.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=1e-3)),
}


def _torch_twin(torch, model):
    """The weights of a ``Flatten -> Dense`` model as torch leaves (``W`` as ``nn.Linear`` keeps it)."""
    dense = model.layers[1]
    w = torch.tensor(to_numpy(dense.weights).T.copy(), requires_grad=True)
    b = torch.tensor(to_numpy(dense.bias).copy(), requires_grad=True)
    return w, b


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("which", list(OPTIMIZERS))
def test_each_optimizer_matches_torch_optim(torch_only, put, lines, which, schedule):
    """50 full-batch steps in float64, each at its epoch's rate: parameters within 1e-10."""
    torch = torch_only
    if schedule != "constant" and which not in ("sgd momentum decay", "adam"):
        pytest.skip("schedules are checked with two optimizers")
    ours, theirs = OPTIMIZERS[which]
    ours_schedule, their_schedule = SCHEDULES[schedule]
    model = tc.Sequential([Flatten(), Dense(64, 3)], seed=4)
    optimizer = ours()
    if ours_schedule() is not None:
        optimizer.schedule = ours_schedule()
    w, b = _torch_twin(torch, model)
    reference = theirs(torch, [w, b])
    scheduler = their_schedule(torch, reference) if their_schedule else None
    x, y = put(lines[0]), put(lines[1])
    xt, yt = torch.tensor(lines[0]).flatten(1), torch.tensor(lines[1])
    for epoch in range(50):
        model.loss_and_grad(x, y)
        optimizer.step(model, epoch)
        reference.zero_grad()
        torch.nn.functional.cross_entropy(xt @ w.T + b, yt).backward()
        reference.step()
        if scheduler is not None:
            scheduler.step()
    dense = model.layers[1]
    np.testing.assert_allclose(to_numpy(dense.weights), w.detach().numpy().T, rtol=0, atol=1e-10)
    np.testing.assert_allclose(to_numpy(dense.bias), b.detach().numpy(), rtol=0, atol=1e-10)
    assert model.optimizer is optimizer and optimizer.steps == 50


@pytest.mark.parametrize("kind", ["2d", "1d"])
def test_batch_norm_matches_torch(torch_only, put, kind):
    torch = torch_only
    rng = np.random.default_rng(0)
    shape = (6, 3, 5, 4) if kind == "2d" else (8, 3)
    ours = (BatchNorm2D if kind == "2d" else BatchNorm1D)(3, eps=1e-4, momentum=0.2)
    theirs = (torch.nn.BatchNorm2d if kind == "2d" else torch.nn.BatchNorm1d)(
        3, eps=1e-4, momentum=0.2).double()
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    ours.gamma, ours.beta = gamma, beta
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(gamma))
        theirs.bias.copy_(torch.tensor(beta))
    for mode in ("train", "train", "train", "eval"):
        ours.training = mode == "train"
        theirs.train(mode == "train")
        x = rng.normal(2.0, 3.0, size=shape)
        dy = rng.normal(size=shape)
        xt = torch.tensor(x, requires_grad=True)
        theirs.zero_grad()
        yt = theirs(xt)
        yt.backward(torch.tensor(dy))
        y = ours.forward(put(x))
        dx = ours.backward(put(dy))
        def close(a, b, what, mode=mode):
            np.testing.assert_allclose(to_numpy(a), b.detach().numpy(), rtol=0, atol=1e-10,
                                       err_msg=f"{mode} {what}")
        close(y, yt, "output")
        close(dx, xt.grad, "input gradient")
        close(ours.d_gamma, theirs.weight.grad, "d_gamma")
        close(ours.d_beta, theirs.bias.grad, "d_beta")
        close(ours.running_mean, theirs.running_mean, "running_mean")
        close(ours.running_var, theirs.running_var, "running_var")


def test_a_copy_carries_the_buffers_the_optimizer_and_the_mode(put, lines):
    """``copy.deepcopy`` (and pickling, which sweeps use) keeps the running statistics, the
    optimizer with its state and step count, and the mode: the copy trains on exactly alike."""
    import copy
    data = placed(put, lines)
    model = bn_stack()
    first = model.fit(*data, epochs=2, batch_size=9, verbose=False, optimizer=tc.Adam(0.01))
    twin = copy.deepcopy(model)
    assert twin.optimizer is not model.optimizer and twin.optimizer.steps == model.optimizer.steps
    for (name, a, attr), (_, b, _) in zip(model.buffer_slots(), twin.buffer_slots()):
        np.testing.assert_array_equal(to_numpy(getattr(a, attr)), getattr(b, attr), err_msg=name)
    model.eval()
    assert not copy.deepcopy(model).training and not copy.deepcopy(model).layers[1].training
    model.train()
    histories = [m.fit(*data, epochs=4, batch_size=9, initial_epoch=2, verbose=False,
                       history={k: list(v) if isinstance(v, list) else dict(v)
                                for k, v in first.items()})
                 for m in (model, twin)]
    for key in tc.METRICS:
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=0, atol=1e-12)


def test_the_optimizer_state_counts_against_the_cap_and_is_checked_before_reading(lines, tmp_path):
    model = bn_stack()
    model.fit(*lines, epochs=1, verbose=False, optimizer=tc.Adam(0.01))
    path = model.save(tmp_path / "adam.npz")
    count = model.parameter_count
    # The parameters fit under the cap; with Adam's two moments (2 x count) they do not.
    with pytest.raises(ValueError, match="values of optimizer state, more than the cap"):
        tc.Sequential.load(path, max_parameters=2 * count)
    assert tc.Sequential.load(path, max_parameters=3 * count).optimizer.steps == model.optimizer.steps
    # A buffer or a moment of the wrong shape is refused by name, from its header.
    with np.load(path) as stored:
        arrays = dict(stored)
    for key in ("buffer/batchnorm2d1.running_mean", "optimizer/exp_avg/dense6.weights"):
        bad = {**arrays, key: np.zeros(5)}  # neither (3,) nor (27, 8)
        np.savez(tmp_path / "bad.npz", **bad)
        with pytest.raises(ValueError, match=key.replace(".", r"\.") + " has shape"):
            tc.Sequential.load(tmp_path / "bad.npz")
    # An optimizer entry that names no optimizer is refused too.
    entry = np.array('{"config": {"class": "Lion"}, "steps": 1}')
    np.savez(tmp_path / "bad.npz", **{**arrays, "optimizer": entry})
    with pytest.raises(ValueError, match="checkpoint entry 'optimizer'"):
        tc.Sequential.load(tmp_path / "bad.npz")
