"""Training that goes wrong: divergence, Ctrl-C, and host round trips inside the training loop.

- Divergence: a huge learning rate overflows the parameters; ``fit`` finishes that epoch, warns
  with the epoch and the learning rate, and keeps the parameters (and velocities) of the last
  epoch that ended finite: exactly those of a run told to stop there.
- Interruption: SIGINT sent to our own process in the middle of ``fit`` returns control with the
  model at its last completed step (compared with a model trained by hand for that many steps)
  and the history of the epochs that completed.
- GPU hygiene (array-api-strict and JAX): every conversion of a device array to a host value,
  NumPy calls on it included, is counted; the count must not grow with the steps per epoch.
"""

import os
import signal
import warnings

import numpy as np
import pytest

import tinycnn_xp as tc
from helpers import param_state
from tinycnn_xp import training
from tinycnn_xp._xp import to_numpy

METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")


@pytest.fixture(scope="module")
def small_data():
    """30 training and 15 validation images of the chapter's patterns (host NumPy)."""
    return tc.make_dataset_bundle(train_per_class=10, val_per_class=5)[:4]


def placed(put, data):
    return [put(a) for a in data]


def assert_same_parameters(actual, expected):
    assert actual.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def count_steps(model, monkeypatch, then=None):
    """Count the steps ``fit`` takes: it binds each step's parameters, velocities and gradients
    to the layers (``model.bind``; compiled or not). ``then(count)`` runs after each step."""
    calls = []
    bind = model.bind

    def counted(params, velocities=None, grads=None, buffers=None):
        bind(params, velocities, grads, buffers)
        if grads is not None:  # a step (restoring after a divergence binds no gradients)
            calls.append(1)
            if then is not None:
                then(len(calls))
    monkeypatch.setattr(model, "bind", counted)
    return calls


# -- divergence ----------------------------------------------------------------------------------

#: lr, batch size, momentum: with 1e153.875, momentum 0.9 and 3 batches per epoch the parameters
#: overflow after a few epochs (the conv bias at epoch 2, the losses at epoch 3); with 1e200 the
#: first step overflows. Near 1e154 the parameters are ~1e154 and their products overflow 1e308.
DIVERGING = {"later epoch": (10.0 ** 153.875, 10, 0.9), "first epoch": (1e200, 10, 0.0)}


OVERFLOW_WARNINGS = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                                               "ignore:invalid value encountered:RuntimeWarning")


@OVERFLOW_WARNINGS
@pytest.mark.parametrize("case", list(DIVERGING))
def test_divergence_keeps_the_last_finite_epoch(put, small_data, case, monkeypatch):
    lr, batch_size, momentum = DIVERGING[case]
    data = placed(put, small_data)
    model = tc.TinyCNN(seed=0)
    steps = count_steps(model, monkeypatch)
    with pytest.warns(RuntimeWarning, match="diverged") as record:
        history = training.fit(model, *data, epochs=10, lr=lr, batch_size=batch_size,
                               momentum=momentum, verbose=False)
    bad = history["diverged_epoch"]
    assert (bad >= 1) if case == "later epoch" else (bad == 0)
    assert len(steps) == (bad + 1) * 3  # it finished the epoch that diverged, then stopped
    message = next(str(w.message) for w in record if "diverged" in str(w.message))
    assert f"epoch {bad}" in message and f"lr={lr}" in message

    # The run that was told to stop before that epoch: same parameters, velocities and history.
    reference = tc.TinyCNN(seed=0)
    expected = training.fit(reference, *data, epochs=bad, lr=lr, batch_size=batch_size,
                             momentum=momentum, verbose=False)
    assert_same_parameters(param_state(model), param_state(reference))
    for key in METRICS:
        assert len(history[key]) == bad
        assert history[key] == expected[key]
    assert "diverged_epoch" not in expected and "interrupted" not in history
    assert np.isfinite(to_numpy(model.forward(data[2]))).all()  # the model is usable as it is



@OVERFLOW_WARNINGS
@pytest.mark.parametrize("case", [
    "later epoch", "first epoch"])
def test_divergence_leaves_finite_parameters(put, small_data, case):
    """What the model keeps after a divergence is finite: parameters and velocities."""
    lr, batch_size, momentum = DIVERGING[case]
    model = tc.TinyCNN(seed=0)
    with pytest.warns(RuntimeWarning, match="diverged"):
        history = training.fit(model, *placed(put, small_data), epochs=10, lr=lr,
                               batch_size=batch_size, momentum=momentum, verbose=False)
    assert "diverged_epoch" in history
    bad = {key for key, value in param_state(model).items() if not np.isfinite(value).all()}
    assert not bad, f"non-finite after divergence at epoch {history['diverged_epoch']}: {bad}"


def test_no_divergence_without_a_huge_rate(put, small_data):
    """The same run with an ordinary learning rate: no warning, no ``diverged_epoch``."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = tc.TinyCNN(seed=0).fit(*placed(put, small_data), epochs=3, lr=0.12,
                                          batch_size=10, momentum=0.9, verbose=False)
    assert "diverged_epoch" not in history and len(history["train_loss"]) == 3


# -- interruption --------------------------------------------------------------------------------

class SigintReachedTheTest(Exception):
    """Raised by the test's own SIGINT handler: ``fit`` did not catch the signal."""


def _test_handler(signum, frame):
    raise SigintReachedTheTest("SIGINT was not handled by fit")


def trained_by_hand(put, data, steps, lr, batch_size, momentum, seed=0):
    """A fresh TinyCNN after exactly ``steps`` updates on fit's batches (same host shuffles)."""
    x_train, y_train = data[0], data[1]
    model = tc.TinyCNN(seed=0)
    rng = np.random.default_rng(seed)
    done = 0
    while done < steps:
        order = rng.permutation(len(y_train))
        for start in range(0, len(y_train), batch_size):
            batch = order[start:start + batch_size]
            model.loss_and_grad(put(x_train[batch]), put(y_train[batch]))
            model.step(lr, momentum)
            done += 1
            if done == steps:
                break
    return model


@pytest.fixture
def own_sigint_handler():
    """A SIGINT handler that fails the test (instead of stopping pytest) if fit lets one through."""
    previous = signal.signal(signal.SIGINT, _test_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("when", ["in the middle of epoch 1", "on the last step of epoch 1",
                                  "after epoch 1 (from a callback)"])
def test_interrupt_returns_the_last_whole_epoch(backend, put, small_data, own_sigint_handler,
                                                   when, monkeypatch):
    lr, batch_size, momentum = 0.12, 6, 0.5  # 30 images: 5 steps per epoch
    data = placed(put, small_data)
    model = tc.TinyCNN(seed=0)
    callback = then = None
    if not when.startswith("after"):
        # the 7th step (the 2nd of epoch 1), or the 10th (the last of epoch 1), has just completed
        at = 7 if when.startswith("in the middle") else 10

        def then(count):
            if count == at:
                os.kill(os.getpid(), signal.SIGINT)
        expected_steps, expected_epochs = at, 1 if at == 7 else 2  # a whole epoch keeps its metrics
    else:
        def callback(epoch, metrics):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)
        expected_steps, expected_epochs = 10, 2  # epoch 2 never starts
    steps = count_steps(model, monkeypatch, then)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        history = training.fit(model, *data, epochs=6, lr=lr, batch_size=batch_size,
                               momentum=momentum, verbose=False, callback=callback)
    assert signal.getsignal(signal.SIGINT) is _test_handler  # fit put our handler back
    assert history["interrupted"] is True
    assert len(steps) == expected_steps
    assert "interrupted_steps" not in history
    # The model is put back to the end of the last whole epoch: the cut epoch's steps are undone.
    expected_steps = 5 * expected_epochs

    # A hand loop (loss_and_grad, step) runs the same pure functions: the same arrays (on JAX,
    # where fit's step is compiled and XLA may order a sum otherwise, to rounding).
    reference = trained_by_hand(put, small_data, expected_steps, lr, batch_size, momentum)
    if backend.NAME == "jax":
        for key, value in param_state(reference).items():
            np.testing.assert_allclose(param_state(model)[key], value, rtol=1e-12, atol=1e-15,
                                       err_msg=key)
    else:
        assert_same_parameters(param_state(model), param_state(reference))

    # The history holds exactly the epochs that completed, as an uninterrupted run has them.
    full = training.fit(tc.TinyCNN(seed=0), *data, epochs=expected_epochs, lr=lr,
                        batch_size=batch_size, momentum=momentum, verbose=False)
    for key in METRICS:
        assert history[key] == full[key]


def test_an_interrupted_run_resumes_exactly_with_its_generator(put, small_data, own_sigint_handler,
                                                              monkeypatch):
    """Cut in the middle of epoch 1, then continued with the same Generator and the history: the
    run equals one never stopped (the cut epoch's steps and its permutation are given back)."""
    data = placed(put, small_data)
    straight_model = tc.TinyCNN(seed=0)
    straight = straight_model.fit(*data, epochs=4, batch_size=6, momentum=0.5, verbose=False)
    model, rng = tc.TinyCNN(seed=0), np.random.default_rng(0)
    count_steps(model, monkeypatch, lambda count: count == 7 and os.kill(os.getpid(), signal.SIGINT))
    with pytest.warns(RuntimeWarning, match="interrupted"):
        history = model.fit(*data, epochs=4, batch_size=6, momentum=0.5, seed=rng, verbose=False)
    assert len(history["train_loss"]) == 1
    monkeypatch.undo()
    model.fit(*data, epochs=4, batch_size=6, momentum=0.5, seed=rng, verbose=False,
              initial_epoch=1, history=history)
    for key in METRICS:
        assert history[key] == straight[key], key
    assert_same_parameters(param_state(model), param_state(straight_model))


def test_a_second_interrupt_is_not_swallowed(put, small_data, own_sigint_handler):
    """Ctrl-C twice (e.g. while a slow callback runs) raises KeyboardInterrupt out of fit."""
    data = placed(put, small_data)

    def callback(epoch, metrics):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        tc.TinyCNN(seed=0).fit(*data, epochs=3, lr=0.12, batch_size=6, verbose=False,
                               callback=callback)
    assert signal.getsignal(signal.SIGINT) is _test_handler  # fit put our handler back


# -- GPU hygiene: no host round trip per step ------------------------------------------------------

#: Methods of an array-api-strict array that hand its values to the host (or need them there).
HOST_METHODS = ("__float__", "__int__", "__bool__", "__index__", "__complex__", "__array__",
                "__dlpack__", "__iter__", "__repr__", "__str__", "__format__", "tolist", "item")
#: Functions whose output shape depends on the values: a device sync on a GPU.
VALUE_SHAPED = ("nonzero", "unique_all", "unique_counts", "unique_inverse", "unique_values")


class HostCounter:
    """Counts host conversions of array-api-strict or JAX arrays while installed (``monkeypatch``)."""

    def __init__(self, monkeypatch, backend_name):
        self.counts: dict[str, int] = {}
        if backend_name == "jax":
            import jax.numpy as xs
            array_type, is_device_array = type(xs.asarray(0.0)), None
        else:
            import array_api_strict as xs
            array_type = type(xs.asarray(0.0))
            cpu = xs.Device("CPU_DEVICE")
            is_device_array = lambda self, device, **k: device == cpu

        def counting(name, original, when=lambda *a, **k: True):
            def wrapper(*args, **kwargs):
                if when(*args, **kwargs):
                    self.counts[name] = self.counts.get(name, 0) + 1
                return original(*args, **kwargs)
            return wrapper

        # Every NumPy call on one of these arrays goes through ``__array__``: counted too.
        for name in HOST_METHODS:
            if hasattr(array_type, name):
                monkeypatch.setattr(array_type, name, counting(name, getattr(array_type, name)))
        if is_device_array is not None:
            monkeypatch.setattr(array_type, "to_device", counting(
                "to_device(CPU)", array_type.to_device, is_device_array))
        monkeypatch.setattr(array_type, "__getitem__", counting(
            "boolean mask", array_type.__getitem__,
            lambda self, key: any(isinstance(k, array_type) and k.dtype == xs.bool
                                  for k in (key if isinstance(key, tuple) else (key,)))))
        for name in VALUE_SHAPED:
            if hasattr(xs, name):
                monkeypatch.setattr(xs, name, counting(name, getattr(xs, name)))
        # Host -> device copies (the per-epoch permutation): not a sync, but a transfer.
        monkeypatch.setattr(xs, "asarray", counting(
            "asarray(host)", xs.asarray, lambda obj, *a, **k: not isinstance(obj, array_type)))

    def total(self) -> int:
        return sum(self.counts.values())


def hygiene_run(monkeypatch, data, batch_size, epochs, per_step_sync=False,
                backend="array_api_strict"):
    model = tc.TinyCNN(seed=0)
    model.forward(data[0])  # placement and index maps outside the counted region
    training.fit(model, *data, epochs=1, verbose=False)  # compiled steps too (JAX)

    def sync():  # what a careless per-step NaN check would do
        xp = model.placement.xp
        if not bool(xp.all(xp.isfinite(model.dense.bias))):
            raise FloatingPointError("dense.bias")
    with monkeypatch.context() as patch:
        if per_step_sync:
            count_steps(model, patch, then=lambda count: sync())
        counter = HostCounter(patch, backend)
        history = training.fit(model, *data, epochs=epochs, batch_size=batch_size, verbose=False)
    assert len(history["train_loss"]) == epochs
    return counter.counts


@pytest.fixture
def counted_backend(backend):
    if backend.NAME not in ("array_api_strict", "jax"):
        pytest.skip(f"counts host conversions of array-api-strict and JAX arrays; the "
                    f"{backend.NAME} backend has no device to leave (run with --backend "
                    f"array_api_strict or jax)")
    return backend.NAME


def test_host_round_trips_do_not_grow_with_steps(counted_backend, monkeypatch, put, small_data):
    data = placed(put, small_data)
    run = lambda **kw: hygiene_run(monkeypatch, data, backend=counted_backend, **kw)
    one_step = run(batch_size=30, epochs=3)    # 1 step per epoch
    ten_steps = run(batch_size=3, epochs=3)    # 10 steps per epoch
    assert one_step == ten_steps, (one_step, ten_steps)
    assert sum(one_step.values()) > 0  # the counter is live: the per-epoch metrics come to the host
    six_epochs = run(batch_size=30, epochs=6)
    assert sum(six_epochs.values()) > sum(one_step.values())  # ... once per epoch


def test_host_counter_catches_a_per_step_sync(counted_backend, monkeypatch, put, small_data):
    """The check above can fail: one ``bool(...)`` per step makes the count grow with the steps."""
    data = placed(put, small_data)
    one_step = hygiene_run(monkeypatch, data, 30, 3, per_step_sync=True, backend=counted_backend)
    ten_steps = hygiene_run(monkeypatch, data, 3, 3, per_step_sync=True, backend=counted_backend)
    assert ten_steps["__bool__"] - one_step["__bool__"] == 3 * (10 - 1)
