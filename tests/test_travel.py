"""Models that travel: a pickled or deep-copied model comes back like a loaded one (host NumPy
arrays, no placement, no caches) and is placed again by its first input, on every backend."""

import copy
import pickle

import numpy as np
import pytest
from array_api_compat import device

import tinycnn_xp as tc
from helpers import param_state

ROUND_TRIPS = {"pickle": lambda model: pickle.loads(pickle.dumps(model)),
               "deepcopy": copy.deepcopy}


@pytest.fixture(scope="module")
def host_data():
    return tc.make_dataset_bundle(train_per_class=10, val_per_class=5)[:4]


def placed_data(put, host_data, dtype_name):
    return [put(a, dtype_name if i % 2 == 0 else None) for i, a in enumerate(host_data)]


def trained(put, host_data, dtype_name):
    """A deep_cnn placed on the backend, with velocities and every cache filled."""
    model = tc.deep_cnn(seed=3)
    data = placed_data(put, host_data, dtype_name)
    model.fit(*data, epochs=1, momentum=0.5, verbose=False)
    model.loss_and_grad(data[0][:4, ...], data[1][:4])  # caches of a training step
    return model, data


@pytest.mark.parametrize("trip", list(ROUND_TRIPS))
def test_the_copy_is_an_unplaced_host_model(backend, put, host, host_data, dtype_name, trip):
    model, _ = trained(put, host_data, dtype_name)
    before = param_state(model)
    clone = ROUND_TRIPS[trip](model)
    assert type(clone) is type(model) and clone.names == model.names
    assert clone.config() == model.config()
    assert clone.placement is None and all(layer.placement is None for layer in clone.layers)
    for name, layer, attr in clone.parameters():
        for array in (getattr(layer, attr), getattr(layer, "d_" + attr), layer.velocity[attr]):
            assert type(array) is np.ndarray and array.dtype == np.dtype(dtype_name), name
    grads = {name: host(getattr(layer, "d_" + attr)) for name, layer, attr in model.parameters()}
    for name, layer, attr in clone.parameters():
        np.testing.assert_array_equal(getattr(layer, "d_" + attr), grads[name], err_msg=name)
    for key, value in param_state(clone).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    for layer in clone.layers:  # per-call caches stay behind
        assert layer.last_input is None and layer._prepared == {} and layer._saved is None
    # the original is untouched: still placed, same arrays
    assert model.placement is not None and model.layers[0].last_input is not None
    assert clone._programs == {} and clone._pass is None
    for key, value in param_state(model).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


@pytest.mark.parametrize("trip", list(ROUND_TRIPS))
def test_the_copy_is_placed_again_by_its_first_input_and_trains_the_same(
        backend, put, host_data, dtype_name, trip):
    model, data = trained(put, host_data, dtype_name)
    clone = ROUND_TRIPS[trip](model)
    clone_history = clone.fit(*data, epochs=2, momentum=0.5, seed=5, verbose=False)
    assert clone.placement == model.placement
    for _, layer, attr in clone.parameters():
        assert device(getattr(layer, attr)) == backend.device()
    history = model.fit(*data, epochs=2, momentum=0.5, seed=5, verbose=False)
    for key in tc.METRICS:  # same state, same device, same steps
        assert clone_history[key] == history[key], key
    for key, value in param_state(clone).items():
        np.testing.assert_array_equal(value, param_state(model)[key], err_msg=key)


def test_a_copy_can_be_placed_at_once_with_to(backend, xp, put, host_data):
    model, data = trained(put, host_data, "float64")
    clone = pickle.loads(pickle.dumps(model)).to(xp, backend.device(), "float64")
    assert clone.placement == model.placement
    np.testing.assert_array_equal(backend.to_numpy(clone.predict(data[2])),
                                  backend.to_numpy(model.predict(data[2])))


def test_a_copy_keeps_the_attribute_aliases_of_a_tinycnn(put, host_data):
    model = tc.TinyCNN(seed=1)
    model.forward(put(host_data[0][:2]))
    clone = pickle.loads(pickle.dumps(model))
    assert clone.conv is clone.layers[0] and clone.dense is clone.layers[-1]
    assert clone.pool is clone.layers[2] and isinstance(clone.pool, tc.MaxPool2D)


def test_an_unplaced_copy_shares_no_array_with_the_original():
    model = tc.TinyCNN(seed=1)
    clone = copy.deepcopy(model)
    clone.conv.weights[...] = 0.0
    clone.conv.velocity["weights"][...] = 1.0
    assert np.all(model.conv.weights != 0.0) and np.all(model.conv.velocity["weights"] == 0.0)


def test_copy_copy_stays_shallow(put, host_data):
    model = tc.TinyCNN(seed=1)
    model.forward(put(host_data[0][:2]))
    shallow = copy.copy(model)
    assert shallow.layers is model.layers and shallow.placement is model.placement
    layer = copy.copy(model.conv)
    assert layer.weights is model.conv.weights and layer.placement is model.conv.placement


def test_reset_parameters_draws_what_the_constructors_draw(put, host_data):
    for build in (tc.TinyCNN, tc.deep_cnn, tc.vgg_cnn):
        model = build(seed=11)
        model.forward(put(host_data[0][:2]))  # placed: the fresh weights are placed too
        assert model.reset_parameters(4) is model
        fresh = build(seed=4)
        for key, value in param_state(fresh).items():
            np.testing.assert_array_equal(param_state(model)[key], value, err_msg=key)
        assert all(device(getattr(layer, attr)) == device(put(host_data[0][:1]))
                   for _, layer, attr in model.parameters())
    with pytest.raises(ValueError, match="seed"):
        tc.TinyCNN().reset_parameters(-1)
