"""The benchmark's baselines compute what the library computes, and the bench writes its table.

They run in the numpy and torch sessions (the baselines are NumPy/PyTorch programs and the bench
picks its own backends; the torch session is where the PyTorch twin is checked). No timing is
asserted anywhere (speed is the bench's output, not a test).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import benchmarks.bench as bench
import tinycnn_xp as tc
from benchmarks.chapter_loops import LoopCNN

ROOT = Path(__file__).resolve().parent.parent
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
    # --torch-threads 1: the library's torch backend (not benchmarked here); PyTorch eager's rows
    # run with 1 and with 2 threads whatever it says.
    assert bench.main(["--quick", "--backends", "numpy", "--torch-threads", "1",
                       "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "correctness [OK]" in out and "tinycnn_xp numpy" in out
    assert "tinycnn_xp numpy (general path)" in out.split("correctness")[1]  # checked too
    result = json.loads(path.read_text())
    assert result["machine"]["cpu_count"] >= 1 and result["machine"]["numpy"] == np.__version__
    assert result["options"]["quick"] is True and result["correctness"]["ok"] is True
    rows = {(r["config"], r["impl"], r["backend"], r["dtype"], r["variant"]): r
            for r in result["rows"]}
    expected = {("fit", "tinycnn_xp", "numpy", "float64", ""),
                ("fit", "tinycnn_xp", "numpy", "float32", ""),
                ("fit", "tinycnn_xp", "numpy", "float64", "general"),
                ("fit", "loop", "numpy", "float64", ""),
                ("step", "tinycnn_xp", "numpy", "float32", ""),
                ("step", "tinycnn_xp", "numpy", "float32", "general")}
    expected_ratios = {"fit_float64", "step_float32"}  # step: the general path against the fast
    try:
        import torch
        for threads in ("1 thread", "2 threads"):
            expected |= {("fit", "torch_eager", "torch", "float64", threads),
                         ("fit", "torch_eager", "torch", "float32", threads),
                         ("step", "torch_eager", "torch", "float32", threads)}
        expected_ratios |= {"fit_float32"}  # the ratios against PyTorch eager
        assert result["machine"]["torch_threads"] == 1
        assert torch.get_num_threads() == result["machine"]["torch_default_threads"]  # restored
        assert "torch eager (cpu, 1 thread)" in out and "torch eager (cpu, 2 threads)" in out
    except ImportError:
        torch = None
    assert set(rows) == expected
    for row in rows.values():
        assert row["median_s"] > 0 and len(row["samples_s"]) == 1
        assert np.isfinite(row["final_loss"])
    # Forward activations: conv + ReLU outputs (256, 16, 26, 26), pooled (256, 16, 13, 13), logits.
    for variant in ("", "general"):
        step = rows[("step", "tinycnn_xp", "numpy", "float32", variant)]
        assert step["activation_bytes"] == 4 * 256 * (2 * 16 * 26 * 26 + 16 * 13 * 13 + 10)
        assert step["traced_peak_bytes"] >= 256 * 16 * 26 * 26 * 4  # at least the conv output
    # Both paths compute the same step: the same batch loss after the same number of steps.
    np.testing.assert_allclose(rows[("step", "tinycnn_xp", "numpy", "float32", "")]["final_loss"],
                               rows[("step", "tinycnn_xp", "numpy", "float32", "general")][
                                   "final_loss"], rtol=1e-5)
    fit = rows[("fit", "tinycnn_xp", "numpy", "float64", "")]
    general = rows[("fit", "tinycnn_xp", "numpy", "float64", "general")]
    assert fit["speedup_vs_loop"] > 0 and general["speedup_vs_loop"] > 0
    assert set(result["ratios"]) >= expected_ratios
    assert result["ratios"]["fit_float64"]["loop_over_numpy"] == fit["speedup_vs_loop"]
    assert result["ratios"]["fit_float64"]["numpy_general_over_numpy"] == pytest.approx(
        general["median_s"] / fit["median_s"])
    assert result["correctness"]["diffs"][general["label"]]["abs_diff"] <= 1e-8
    if torch is not None:  # "vs eager": against eager with 2 threads; 1 thread in the ratios
        for config, dtype in (("fit", "float64"), ("fit", "float32"), ("step", "float32")):
            row = rows[(config, "tinycnn_xp", "numpy", dtype, "")]
            two, one = (rows[(config, "torch_eager", "torch", dtype, threads)]["median_s"]
                        for threads in ("2 threads", "1 thread"))
            assert row["speedup_vs_torch_eager"] == pytest.approx(two / row["median_s"])
            assert result["ratios"][f"{config}_{dtype}"]["torch_eager_1thread_over_numpy"] == (
                pytest.approx(one / row["median_s"]))
        assert "torch eager 2 threads" in out and "torch eager 1 thread" in out  # the summary
    # Array calls per training step of the chapter model, on array-api-strict.
    calls = result["calls_per_step"]
    try:
        import array_api_strict  # noqa: F401
    except ImportError:
        assert "array_api_strict is not installed" in calls["note"]
    else:
        assert set(calls) == {"fast", "general"} and "array calls per training step" in out
        for counts in calls.values():
            assert counts["calls"] == counts["function"] + counts["operator"] > 0


def test_quick_bench_has_the_compiled_jax_rows(host_backends, tmp_path):
    """JAX: the first fit (compile included) and the second, float64 checked against NumPy; in a
    child process, since the benchmark turns JAX's float64 on, process-wide."""
    pytest.importorskip("jax", reason="jax is not installed: no compiled rows")
    path = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench", "--quick", "--backends",
                           "numpy,jax", "--json", str(path)], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "jax_enable_x64" in done.stdout and "first fit: " in done.stdout
    result = json.loads(path.read_text())
    rows = {(r["config"], r["backend"], r["dtype"], r["variant"]): r
            for r in result["rows"] if r["impl"] == "tinycnn_xp"}
    labels = {"tinycnn_xp jax (compiled, 1st fit)", "tinycnn_xp jax (compiled, 2nd fit)",
              "tinycnn_xp jax (compiled)"}
    assert {row["label"] for row in rows.values() if row["backend"] == "jax"} == labels
    for dtype in ("float64", "float32"):
        first, second = rows[("fit", "jax", dtype, "first fit")], rows[("fit", "jax", dtype, "")]
        assert len(first["samples_s"]) == 1 and first["rss_peak_bytes"] is None
        numpy_loss = rows[("fit", "numpy", dtype, "")]["final_loss"]
        assert first["final_loss"] == pytest.approx(numpy_loss, abs=1e-9 if dtype == "float64"
                                                    else 1e-5)
        assert second["final_loss"] == pytest.approx(numpy_loss, abs=1e-9 if dtype == "float64"
                                                     else 1e-5)
        assert result["ratios"][f"fit_{dtype}"]["jax_over_numpy"] > 0
        assert result["ratios"][f"fit_{dtype}"]["jax_first_fit_over_numpy"] > 0
    assert result["correctness"]["ok"] is True
    assert {"tinycnn_xp jax (compiled, 1st fit)", "tinycnn_xp jax (compiled, 2nd fit)"} <= set(
        result["correctness"]["diffs"])
    step = rows[("step", "jax", "float32", "")]
    assert step["final_loss"] == pytest.approx(
        rows[("step", "numpy", "float32", "")]["final_loss"], rel=1e-5)


def test_eager_threads_are_set_per_case_and_restored(host_backends):
    torch = pytest.importorskip("torch", reason="torch is not installed: no PyTorch baseline")
    before = torch.get_num_threads()
    for threads in bench.EAGER_THREADS:
        case = bench.Case("step", "torch_eager", "torch", "float32", threads=threads)
        with bench._threads(case):
            assert torch.get_num_threads() == threads
        assert torch.get_num_threads() == before
    assert [bench.Case("fit", "torch_eager", "torch", "float64", threads=t).name
            for t in (1, 2)] == ["torch_eager_1thread", "torch_eager"]


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
