"""``models``: placement and ``to``, configuration and state, and updates that rebind (never mutate)."""

import copy
import warnings

import numpy as np
import pytest
from array_api_compat import array_namespace, device

import tinycnn_xp as tc
from helpers import param_state
from tinycnn_xp._xp import NUMPY, namespace_of


@pytest.fixture(scope="module")
def data():
    return tc.make_dataset_bundle(train_per_class=10, val_per_class=5)


def test_placement_is_public_and_set_by_the_first_input(backend, xp, put, data):
    model = tc.TinyCNN(seed=0)
    assert model.placement is None and all(layer.placement is None for layer in model.layers)
    x = put(data[0][:2])
    model.forward(x)
    place = model.placement
    assert isinstance(place, tc.Placement)
    assert place.xp is namespace_of(x) and place.device == backend.device()
    # NumPy arrays get NumPy itself (it implements the standard; tinycnn_xp's module of it calls
    # a few functions the faster way), the rest their compat namespace
    assert place.xp is (NUMPY if backend.NAME == "numpy" else array_namespace(x))
    assert str(place.dtype).endswith("float64")
    assert all(layer.placement == place for layer in model.layers)


def test_to_moves_every_array_once_and_returns_the_model(backend, xp, put, host, data):
    model = tc.deep_cnn(seed=1)
    before = param_state(model)
    assert model.to(xp, backend.device(), "float64") is model
    for name, layer, attr in model.parameters():
        for array in (getattr(layer, attr), getattr(layer, "d_" + attr), layer.velocity[attr]):
            assert device(array) == backend.device(), name
    after = param_state(model)
    for key in before:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    # and back to the host, in float32: the same numbers, rounded once
    model.to(np, dtype="float32")
    assert model.placement.xp.__name__.endswith("numpy")
    assert model.layers[0].weights.dtype == np.float32
    np.testing.assert_array_equal(model.layers[0].weights, before["conv1.weights"].astype(np.float32))


def test_to_refuses_what_is_not_a_namespace_or_float_dtype():
    model = tc.TinyCNN()
    with pytest.raises(TypeError, match="xp must be an array namespace"):
        model.to("numpy")
    with pytest.raises(ValueError, match="dtype must be one of"):
        model.to(np, dtype="float16")
    with pytest.raises(ValueError, match="cannot make a float64 array"):
        model.to(np, device="gpu7")
    assert model.placement is None


@pytest.mark.parametrize("build", [lambda: tc.TinyCNN(seed=3, num_classes=4),
                                   lambda: tc.deep_cnn(seed=2), lambda: tc.vgg_cnn(seed=1)])
def test_config_rebuilds_the_architecture(build):
    model = build()
    rebuilt = tc.Sequential.from_config(model.config())
    assert type(rebuilt) is type(model)
    assert rebuilt.config() == model.config()
    assert rebuilt.names == model.names and repr(rebuilt) == repr(model)


def test_from_config_refuses_what_it_cannot_build():
    config = tc.TinyCNN().config()
    with pytest.raises(ValueError, match="unknown model class"):
        tc.Sequential.from_config({**config, "model": "ResNet"})
    with pytest.raises(ValueError, match="do not make a TinyCNN"):
        tc.Sequential.from_config({**config, "names": ["a", "b", "c", "d", "e"]})
    with pytest.raises(ValueError, match="cannot be rebuilt"):
        tc.Sequential.from_config({**config, "model": "Sequential",
                                   "layers": [{"class": "Softmax", "config": {}}]})


def test_state_and_load_state(backend, put, host, data):
    trained = tc.TinyCNN(seed=0)
    trained.fit(*(put(a) for a in data[:4]), epochs=2, momentum=0.9, verbose=False)
    fresh = tc.TinyCNN(seed=5)
    fresh.load_state({group: {k: host(a) for k, a in arrays.items()}
                      for group, arrays in trained.state().items()})
    assert fresh.placement is None  # host arrays, placed by the first input
    assert param_state(fresh).keys() == param_state(trained).keys()
    for key, value in param_state(trained).items():
        np.testing.assert_array_equal(param_state(fresh)[key], value, err_msg=key)
    bad = copy.deepcopy(trained.state())
    bad["param"]["dense.bias"] = put(np.zeros(4))
    with pytest.raises(ValueError, match=r"param/dense\.bias has shape \(4,\)"):
        fresh.load_state(bad)


def test_updates_rebind_and_never_change_the_old_arrays(backend, put, host, data):
    """What makes JAX work: state changes bind new arrays, the previous ones stay as they were."""
    model = tc.TinyCNN(seed=0)
    placed = [put(a) for a in data[:4]]
    model.forward(placed[0][:1, ...])
    old = {name: getattr(layer, attr) for name, layer, attr in model.parameters()}
    old_velocity = {name: layer.velocity[attr] for name, layer, attr in model.parameters()}
    copies = {name: host(array) for name, array in {**old, **{n + ".v": v for n, v in
                                                                old_velocity.items()}}.items()}
    model.fit(*placed, epochs=1, momentum=0.5, verbose=False)
    for name, layer, attr in model.parameters():
        assert getattr(layer, attr) is not old[name]
        assert layer.velocity[attr] is not old_velocity[name]
    for name, array in {**old, **{n + ".v": v for n, v in old_velocity.items()}}.items():
        np.testing.assert_array_equal(host(array), copies[name], err_msg=name)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_divergence_rebinds_the_saved_arrays(put, data):
    model = tc.TinyCNN(seed=0)
    placed = [put(a) for a in data[:4]]
    model.fit(*placed, epochs=1, verbose=False)
    before = {name: getattr(layer, attr) for name, layer, attr in model.parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        history = model.fit(*placed, epochs=3, lr=1e200, verbose=False)
    assert history["diverged_epoch"] == 0
    for name, layer, attr in model.parameters():
        assert getattr(layer, attr) is before[name]  # the very arrays of the last finite epoch


def test_numerical_gradient_rebinds_its_owner_and_puts_the_array_back(backend, put):
    model = tc.TinyCNN(seed=99)
    rng = np.random.default_rng(123)
    x, y = put(rng.normal(size=(4, 1, 8, 8))), put(np.array([0, 1, 2, 1]))
    model.loss_and_grad(x, y)
    weights = model.conv.weights
    grad = tc.numerical_gradient(model, x, y, model.conv.weights)
    assert model.conv.weights is weights  # the caller's array, not a copy
    assert tc.relative_error(model.conv.d_weights, grad) < 1e-7
    with pytest.raises(ValueError, match="not a copy"):
        tc.numerical_gradient(model, x, y, model.conv.weights + 0.0)


def test_backward_returns_the_input_gradient(backend, put):
    model = tc.TinyCNN(seed=1)
    x = put(np.random.default_rng(2).normal(size=(3, 1, 8, 8)))
    logits = model.forward(x)
    d_input = model.backward(logits * 0 + 1.0)
    assert tuple(d_input.shape) == (3, 1, 8, 8)
    assert model.backward(logits * 0 + 1.0, input_grad=False) is None


def test_check_keyword_is_deprecated_and_ignored(put, data):
    model = tc.TinyCNN()
    x, y = put(data[0][:2]), put(data[1][:2])
    with pytest.warns(DeprecationWarning, match=r"forward\(check=\) is deprecated"):
        logits = model.forward(x, check=False)
    with pytest.warns(DeprecationWarning, match="loss_and_grad"):
        model.loss_and_grad(x, y, check=True)
    with pytest.warns(DeprecationWarning, match="step"):
        model.step(0.1, check=False)
    with pytest.warns(DeprecationWarning, match="backward"):
        model.layers[-1].backward(logits, check=False)
    with pytest.raises(TypeError, match="unexpected keyword"):
        model.forward(x, fast=True)
    with pytest.raises(ValueError, match="x"):  # the checks still run
        with pytest.warns(DeprecationWarning):
            model.forward(put(data[0][:2, :, :5, :5]), check=False)
