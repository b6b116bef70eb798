"""Inputs are data: a torch tensor that autograd tracks (``requires_grad=True``) never makes the
parameters require grad or gain a ``grad_fn``, whatever entry it comes through; nor does the
caller's tensor change. (Before, every step chained onto the last one's graph and memory grew by
about 115 MB per 50 epochs; ``python -m benchmarks.autograd_memory`` measures it.) torch only.
"""

import numpy as np
import pytest

import tinycnn_xp as tc
from tinycnn_xp.losses import softmax, softmax_cross_entropy


@pytest.fixture
def torch(backend):
    if backend.NAME != "torch":
        pytest.skip("autograd tracking is torch's")
    import torch
    return torch


@pytest.fixture(scope="module")
def data():
    return tc.make_dataset_bundle(train_per_class=4, val_per_class=2)[:4]


def tracked(torch, put, host, dtype_name):
    return put(host, dtype_name).clone().requires_grad_(True)


def assert_untracked(model):
    for name, layer, attr in model.parameters():
        for what, array in (("param", getattr(layer, attr)), ("velocity", layer.velocity[attr]),
                            ("gradient", getattr(layer, "d_" + attr))):
            tracked = getattr(array, "requires_grad", False) or getattr(array, "grad_fn", None)
            assert not tracked, (what, name)


def test_fit_on_tracked_inputs_leaves_the_parameters_plain(torch, put, data, dtype_name):
    x_train, y_train, x_val, y_val = data
    x, xv = tracked(torch, put, x_train, dtype_name), tracked(torch, put, x_val, dtype_name)
    model, reference = tc.TinyCNN(seed=0), tc.TinyCNN(seed=0)
    history = model.fit(x, put(y_train), xv, put(y_val), epochs=3, momentum=0.9, batch_size=8,
                        verbose=False)
    expected = reference.fit(put(x_train, dtype_name), put(y_train), put(x_val, dtype_name),
                             put(y_val), epochs=3, momentum=0.9, batch_size=8, verbose=False)
    assert_untracked(model)
    assert history["train_loss"] == expected["train_loss"]  # the same numbers, just untracked
    assert x.requires_grad and x.grad is None and x.grad_fn is None  # the caller's tensor as it was


def test_every_entry_takes_tracked_tensors_as_data(torch, put, data, dtype_name):
    x_train, y_train = data[0][:6], data[1][:6]
    x, y = tracked(torch, put, x_train, dtype_name), put(y_train)
    model = tc.TinyCNN(seed=0)
    outputs = [model.forward(x), model.predict(x)]
    model.evaluate(x, y)
    loss, probabilities = model.loss_and_grad(x, y)
    outputs += [loss, probabilities]
    d_logits = tracked(torch, put, np.ones((6, 3)) / 6, dtype_name)
    outputs.append(model.backward(d_logits))
    model.step(0.1, 0.5)
    layer = tc.Dense(4, 2, seed=0)
    outputs.append(layer.forward(tracked(torch, put, np.ones((2, 4)), dtype_name)))
    outputs.append(layer.backward(tracked(torch, put, np.ones((2, 2)), dtype_name)))
    logits = tracked(torch, put, np.ones((6, 3)), dtype_name)
    outputs += [softmax(logits), *softmax_cross_entropy(logits, y)]
    tc.learning_rate_sweep(model, x, y, x, y, [0.1], epochs=1, verbose=False)
    assert_untracked(model)
    assert not layer.weights.requires_grad and layer.d_weights.grad_fn is None
    for output in outputs:
        assert not output.requires_grad and output.grad_fn is None


def test_tracked_state_and_gradient_checks(torch, put, data):
    model = tc.TinyCNN(seed=0)
    state = {group: {name: tracked(torch, put, np.asarray(array), "float64")
                     for name, array in arrays.items()} for group, arrays in model.state().items()}
    model.load_state(state)
    assert_untracked(model)
    model.to(torch, dtype="float64")
    model.load_state(state)
    assert_untracked(model)
    x, y = tracked(torch, put, data[0][:3], "float64"), put(data[1][:3])
    errors = tc.check_gradients(model, x, y)
    assert max(errors.values()) < 1e-6
    grad = tc.numerical_gradient(model, x, y, x)
    assert not grad.requires_grad and tuple(grad.shape) == tuple(x.shape)
    assert_untracked(model)
