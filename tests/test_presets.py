"""A preset given images of another size says which size it takes, at every entry and on every
backend, before any layer complains about its own shapes (TinyCNN's layers even fit 9x9 images:
they are refused all the same)."""

import numpy as np
import pytest

import tinycnn_xp as tc

SIZES = [(1, 10, 10), (1, 9, 9), (1, 16, 16), (3, 8, 8), (1, 8, 9)]
CLASS = {"tiny": "TinyCNN", "deep": "Sequential", "vgg": "Sequential"}


@pytest.mark.parametrize("preset", sorted(tc.PRESETS))
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_images_of_another_size_are_refused_naming_the_size_the_preset_takes(put, preset, size):
    model = tc.make_model(preset, seed=0)
    x = put(np.zeros((2, *size)))
    y = put(np.array([0, 1]))
    expected = (f"{CLASS[preset]} takes images of shape (batch, 1, 8, 8), got shape "
                f"{(2, *size)}")
    for name, call in [("x", lambda: model.predict(x)), ("x", lambda: model.forward(x)),
                       ("x", lambda: model.evaluate(x, y)), ("x", lambda: model.loss_and_grad(x, y)),
                       ("x_train", lambda: model.fit(x, y, x, y, epochs=1, verbose=False))]:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == f"{name}: {expected}"
    assert model.placement is None  # refused before anything was placed


def test_the_preset_still_takes_its_own_size(put):
    for preset in tc.PRESETS:
        model = tc.make_model(preset, seed=0)
        assert tuple(model.forward(put(np.zeros((2, 1, 8, 8)))).shape) == (2, 3)
