"""The benchmark's baselines compute what the library computes, and the bench writes its table.

They run in the numpy and torch sessions (the baselines are NumPy/PyTorch programs and the bench
picks its own backends; the torch session is where the PyTorch twin is checked). No timing is
asserted anywhere (speed is the bench's output, not a test).
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


def test_quick_bench_writes_its_table(host_backends, tmp_path, capsys):
    path = tmp_path / "bench.json"
    # --torch-threads 1: on a busy shared machine torch's threads wait on each other for seconds.
    assert bench.main(["--quick", "--backends", "numpy", "--torch-threads", "1",
                       "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "correctness [OK]" in out and "tinycnn_xp numpy" in out
    result = json.loads(path.read_text())
    assert result["machine"]["cpu_count"] >= 1 and result["machine"]["numpy"] == np.__version__
    assert result["options"]["quick"] is True and result["correctness"]["ok"] is True
    rows = {(r["config"], r["impl"], r["backend"], r["dtype"]): r for r in result["rows"]}
    expected = {("fit", "tinycnn_xp", "numpy", "float64"), ("fit", "tinycnn_xp", "numpy", "float32"),
                ("fit", "loop", "numpy", "float64"), ("step", "tinycnn_xp", "numpy", "float32")}
    expected_ratios = {"fit_float64"}
    try:
        import torch
        expected |= {("fit", "torch_eager", "torch", "float64"), ("fit", "torch_eager", "torch", "float32"),
                     ("step", "torch_eager", "torch", "float32")}
        expected_ratios |= {"fit_float32", "step_float32"}  # the ratios against PyTorch eager
        assert result["machine"]["torch_threads"] == 1
        assert torch.get_num_threads() == result["machine"]["torch_default_threads"]  # restored
    except ImportError:
        pass
    assert set(rows) == expected
    for row in rows.values():
        assert row["median_s"] > 0 and len(row["samples_s"]) == 1
        assert np.isfinite(row["final_loss"])
    # Forward activations: conv + ReLU outputs (256, 16, 26, 26), pooled (256, 16, 13, 13), logits.
    step = rows[("step", "tinycnn_xp", "numpy", "float32")]
    assert step["activation_bytes"] == 4 * 256 * (2 * 16 * 26 * 26 + 16 * 13 * 13 + 10)
    assert step["traced_peak_bytes"] >= 256 * 16 * 26 * 26 * 4  # at least the conv output
    assert rows[("fit", "tinycnn_xp", "numpy", "float64")]["speedup_vs_loop"] > 0
    assert set(result["ratios"]) >= expected_ratios
    assert result["ratios"]["fit_float64"]["loop_over_numpy"] == rows[
        ("fit", "tinycnn_xp", "numpy", "float64")]["speedup_vs_loop"]


def test_rss_peak_of_a_step_is_measured_in_a_child(host_backends):
    case = bench.Case("step", "tinycnn_xp", "numpy", "float32")
    rss = bench._rss_peak(case, bench.Options())
    assert rss["note"] in ("VmHWM reset", "ru_maxrss"), rss
    # the conv and ReLU outputs (11 MiB each) are alive at once: the peak cannot be below one
    assert rss["bytes"] >= 256 * 16 * 26 * 26 * 4


def test_bad_arguments_are_refused(host_backends, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--backends", "numpy,tensorflow"])
    assert "--backends" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
