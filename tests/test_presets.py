"""A preset given images of another size says which size it takes, at every entry and on every
backend, before any layer complains about its own shapes (TinyCNN's layers even fit 9x9 images:
they are refused all the same). Each preset's own size is the chapter's 1x8x8, or MNIST's 1x28x28
for the LeNets."""

import numpy as np
import pytest

import tinycnn_xp as tc

SIZES = [(1, 10, 10), (1, 9, 9), (1, 16, 16), (3, 8, 8), (1, 8, 9)]
CLASS = {"tiny": "TinyCNN", "deep": "Sequential", "vgg": "Sequential", "lenet": "Sequential",
         "lenet_bn": "Sequential"}
OWN = {"tiny": (1, 8, 8), "deep": (1, 8, 8), "vgg": (1, 8, 8), "lenet": (1, 28, 28),
       "lenet_bn": (1, 28, 28)}


@pytest.mark.parametrize("preset", sorted(tc.PRESETS))
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_images_of_another_size_are_refused_naming_the_size_the_preset_takes(put, preset, size):
    model = tc.make_model(preset, seed=0)
    x = put(np.zeros((2, *size)))
    y = put(np.array([0, 1]))
    own = ", ".join(map(str, OWN[preset]))
    expected = f"{CLASS[preset]} takes images of shape (batch, {own}), got shape {(2, *size)}"
    for name, call in [("x", lambda: model.predict(x)), ("x", lambda: model.forward(x)),
                       ("x", lambda: model.evaluate(x, y)), ("x", lambda: model.loss_and_grad(x, y)),
                       ("x_train", lambda: model.fit(x, y, x, y, epochs=1, verbose=False))]:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == f"{name}: {expected}"
    assert model.placement is None  # refused before anything was placed


def test_the_preset_still_takes_its_own_size():
    """The presets' structure, on NumPy in every session (a LeNet's first forward on JAX would
    compile each of its primitives, and this checks shapes, not a backend)."""
    assert set(OWN) == set(tc.PRESETS)
    for preset in tc.PRESETS:
        model = tc.make_model(preset, seed=0)
        assert model.input_shape == OWN[preset]
        assert tuple(model.forward(np.zeros((2, *OWN[preset]))).shape) == (2, 3)


@pytest.mark.parametrize("preset, parameters", [("lenet", 61_706), ("lenet_bn", 62_158)])
def test_the_lenets_take_28x28_digits_and_give_ten_scores(preset, parameters):
    from tinycnn_xp.presets import PRESETS
    model = PRESETS[preset](seed=3)  # the builders' own default: 10 classes, 1x28x28
    assert model.parameter_count == parameters and model.num_classes == 10
    x = np.random.default_rng(0).random((4, 1, 28, 28))  # NumPy: the structure, not a backend
    assert tuple(model.forward(x).shape) == (4, 10)
    assert tuple(model.predict(x).shape) == (4,)
    # Sized for other images, as the other presets are: the first Dense takes what is left.
    small = tc.make_model(preset, seed=3, num_classes=4, input_shape=(3, 16, 16))
    assert tuple(small.forward(np.zeros((2, 3, 16, 16))).shape) == (2, 4)
    with pytest.raises(ValueError, match="needs images of at least 12x12"):
        tc.make_model(preset, input_shape=(1, 11, 11))
    # The seed draws the weights (and, in lenet_bn, the dropout masks' seeds).
    again, other = PRESETS[preset](seed=3), PRESETS[preset](seed=4)
    first = lambda m: tc.to_numpy(m.parameters()[0][1].weights)  # placed or still on the host
    np.testing.assert_array_equal(first(again), first(model))
    assert not np.array_equal(first(other), first(model))


def test_lenet_bn_normalizes_after_each_convolution_and_drops_before_the_last_two_dense():
    names = [type(layer).__name__ for layer in tc.make_model("lenet_bn").layers]
    assert names == ["Conv2D", "BatchNorm2D", "ReLU", "MaxPool2D", "Conv2D", "BatchNorm2D", "ReLU",
                     "MaxPool2D", "Flatten", "Dense", "BatchNorm1D", "ReLU", "Dropout", "Dense",
                     "BatchNorm1D", "ReLU", "Dropout", "Dense"]
    plain = [type(layer).__name__ for layer in tc.make_model("lenet").layers]
    assert plain == [name for name in names if name not in ("BatchNorm2D", "BatchNorm1D", "Dropout")]
