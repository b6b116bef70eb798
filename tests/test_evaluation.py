"""``evaluation``: predictions, loss and accuracy in chunks equal the whole-batch numbers."""

import numpy as np
import pytest

import tinycnn_xp as tc
from tinycnn_xp import training
from tinycnn_xp.evaluation import TrainAndValidation, chunks, correct_count, totals_of


@pytest.fixture(scope="module")
def data():
    return tc.make_dataset_bundle(train_per_class=12, val_per_class=11)  # 36 and 33 images


@pytest.fixture
def trained(put, data):
    model = tc.TinyCNN(seed=4)
    model.fit(*(put(a) for a in data[:4]), epochs=3, verbose=False)
    return model


def test_chunks_cover_the_range_once():
    assert list(chunks(10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(chunks(8, 4)) == [(0, 4), (4, 8)]
    assert list(chunks(3, 100)) == [(0, 3)]


@pytest.mark.parametrize("size", [1, 5, 32, 33, 1000])  # 33 = 6 x 5 + 3: a smaller last chunk
def test_chunked_equals_whole(backend, put, host, data, trained, size):
    x_val, y_val = put(data[2]), put(data[3])
    xp = trained.placement.xp
    whole_logits = trained.forward(x_val)
    whole_loss, _, _ = tc.softmax_cross_entropy(whole_logits, y_val)
    whole_pred = host(xp.argmax(whole_logits, axis=1))
    np.testing.assert_array_equal(host(trained.predict(x_val, eval_batch_size=size)), whole_pred)
    accuracy = float(np.mean(whole_pred == data[3]))
    assert trained.evaluate(x_val, y_val, eval_batch_size=size) == accuracy
    logits_of = training.logits_of(trained, tuple(x_val.shape[1:]))
    correct = correct_count(logits_of, x_val, y_val, size, xp)
    n = x_val.shape[0]
    assert float(host(correct)) / n == accuracy
    # the epoch's metrics: training hits, validation loss and hits, in chunks or joint
    x_train, y_train = put(data[0]), put(data[1])
    totals = totals_of(trained.program(tuple(x_val.shape[1:])).logits, xp)
    params = trained.params()
    train_hits, val_loss, val_hits = TrainAndValidation(x_train, y_train, x_val, y_val, size, xp).totals(
        lambda x, y, marks: totals(params, x, y, marks))
    assert float(host(val_hits)) / n == accuracy
    assert float(host(train_hits)) / x_train.shape[0] == trained.evaluate(x_train, y_train)
    np.testing.assert_allclose(float(host(val_loss)) / n, float(host(whole_loss)), rtol=1e-12, atol=0)


@pytest.mark.parametrize("size", [7, 36])
def test_fit_history_does_not_depend_on_the_chunk_size(put, data, size):
    placed = [put(a) for a in data[:4]]
    reference = tc.TinyCNN(seed=6).fit(*placed, epochs=4, verbose=False, eval_batch_size=10_000)
    chunked = tc.TinyCNN(seed=6).fit(*placed, epochs=4, verbose=False, eval_batch_size=size)
    for key in tc.METRICS:
        np.testing.assert_allclose(chunked[key], reference[key], rtol=1e-12, atol=1e-15, err_msg=key)


def test_inference_keeps_no_backward_caches(put, data, trained):
    for layer in trained.layers:  # what the last training step left
        layer.last_input = None
    trained._pass = None
    x_val = put(data[2])
    trained.predict(x_val, eval_batch_size=8)
    trained.evaluate(x_val, put(data[3]))
    assert all(layer.last_input is None and layer._saved is None for layer in trained.layers)
    assert trained.pool.last_mask is None and trained._pass is None


def test_the_default_chunk_holds_a_fixed_number_of_input_values():
    from tinycnn_xp.evaluation import DEFAULT_EVAL_VALUES, eval_batch_size
    assert eval_batch_size(None, (1, 28, 28)) == 256
    assert eval_batch_size(None, (1, 8, 8)) == DEFAULT_EVAL_VALUES // 64  # the chapter's: one chunk
    assert eval_batch_size(None, (3, 512, 512)) == 1
    assert eval_batch_size(7, (3, 512, 512)) == 7


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-3, ValueError), (2.5, TypeError),
                                        (True, TypeError)])
def test_eval_batch_size_is_checked(put, data, trained, bad, error):
    with pytest.raises(error, match="eval_batch_size"):
        trained.predict(put(data[2]), eval_batch_size=bad)
    with pytest.raises(error, match="eval_batch_size"):
        tc.TinyCNN().fit(*(put(a) for a in data[:4]), epochs=1, eval_batch_size=bad, verbose=False)
