"""The benchmark's baselines compute what the library computes, and the bench writes its table.

They run in the numpy and torch sessions (the baselines are NumPy/PyTorch programs and the bench
picks its own backends). No timing is asserted anywhere (speed is the bench's output, not a test).
"""

import json

import numpy as np
import pytest

import benchmarks.bench as bench
import tinycnn_xp as tc
from benchmarks.chapter_loops import LoopCNN

METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")


@pytest.fixture
def host_backends(backend):
    if backend.NAME not in ("numpy", "torch"):
        pytest.skip(f"the benchmark's baselines run on NumPy/PyTorch, not on {backend.NAME}")


@pytest.fixture(scope="module")
def two_epochs():
    """The library's chapter fit, 2 epochs, NumPy float64: the model (before) and the history."""
    data = tc.make_dataset_bundle()[:4]
    start = tc.TinyCNN(seed=42)
    model = tc.TinyCNN(seed=42)
    return data, start, model, model.fit(*data, epochs=2, verbose=False)


def test_loop_reference_matches_library(host_backends, two_epochs):
    data, start, model, history = two_epochs
    loop = LoopCNN.from_model(start)
    loop_history = loop.fit(*data, epochs=2, lr=0.12, batch_size=18, seed=0)
    for key in METRICS:
        assert len(loop_history[key]) == 2
        np.testing.assert_allclose(loop_history[key], history[key], rtol=0, atol=1e-10, err_msg=key)
    for layer in ("conv", "dense"):
        for attr in ("weights", "bias"):
            np.testing.assert_allclose(getattr(getattr(loop, layer), attr),
                                       getattr(getattr(model, layer), attr), rtol=0, atol=1e-10)
    assert sorted(loop_history["kernel_snapshots"]) == sorted(history["kernel_snapshots"])


def test_torch_reference_matches_library(host_backends, two_epochs):
    pytest.importorskip("torch", reason="torch is not installed: no PyTorch baseline to check")
    from benchmarks import torch_eager as eager
    data, start, _, history = two_epochs
    net = eager.twin(start, "float64")
    eager_history = eager.fit(net, *(eager.tensor(a) for a in data), epochs=2)
    for key in METRICS:
        np.testing.assert_allclose(eager_history[key], history[key], rtol=0, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("name", ["lenet", "vgg", "uncovered"])
def test_torch_twins_of_the_workloads_train_alike(host_backends, name):
    """One epoch of each workload's PyTorch twin and of fit: the same losses (float32)."""
    pytest.importorskip("torch", reason="torch is not installed: no PyTorch baseline to check")
    from benchmarks import torch_eager as eager
    work = bench.WORKLOADS[name]
    x, y, x_val, y_val = work.data()
    data = [x[:300], y[:300], x_val[:100], y_val[:100]]
    model = work.build()
    net = eager.twin(model, "float32")
    theirs = eager.fit(net, *(eager.tensor(a) for a in data), epochs=1, lr=work.lr,
                       batch_size=work.batch_size)
    ours = model.fit(*data, epochs=1, lr=work.lr, batch_size=work.batch_size, verbose=False)
    for key in METRICS:
        np.testing.assert_allclose(theirs[key], ours[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_quick_bench_writes_its_table(host_backends, tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert bench.main(["--quick", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "limits: float32 matmul" in out
    for line in ("step28: one step, float32", "chapter: one 2-epoch fit, float64", "numpy fit",
                 "numpy hand", "chapter loops (numpy)"):
        assert line in out, line
    result = json.loads(path.read_text())
    assert result["rates"]["matmul_flops"] > 0 and result["rates"]["copy_bytes"] > 0
    assert {"chapter/numpy fit", "chapter/numpy hand", "step28/numpy fit", "step28/numpy hand",
            "chapter/chapter loops (numpy)"} <= set(result["samples"])
    assert all(len(v) == 1 and v[0] > 0 for v in result["samples"].values())
    # the fit entry and the hand loop of the chapter compute the same run: the same final loss
    fit, loops = (bench.RESULTS[bench.Case("chapter", impl, "numpy")] for impl in ("fit", "loops"))
    assert fit == pytest.approx(loops, abs=1e-10)


def test_workload_sizes_are_counted(host_backends):
    flops, moved = bench.work_of("step28")
    # conv 16 x 9 taps x 676 positions, dense 2704 x 10; three products each but the first's dx
    per_image = 2 * (16 * 9 * 676 * 2 + 2704 * 10 * 3)
    assert flops == 256 * per_image and moved > 0

