"""The command line, driven as a learner drives it: ``python -m tinycnn_xp ...`` in a subprocess.

The subprocess tests train on NumPy whatever ``--backend`` the suite runs with (the CLI's own
backend switch is tested by the one-line errors below), so they run once, in the numpy session.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinycnn_xp as tc
from tinycnn_xp import checkpoint, cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")


@pytest.fixture
def numpy_only(backend):
    if backend.NAME != "numpy":
        pytest.skip("CLI subprocess tests run in the numpy session only (they train on NumPy)")


def run(args, cwd, prelude="", env=None):
    """``python -m tinycnn_xp *args`` (after ``prelude`` Python code, e.g. to hide a module)."""
    if prelude:
        code = f"import sys\n{prelude}\nfrom tinycnn_xp.cli import main\nsys.exit(main(sys.argv[1:]))"
        command = [sys.executable, "-c", code, *args]
    else:
        command = [sys.executable, "-m", "tinycnn_xp", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=env,
                          check=False)


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_train_writes_checkpoint_history_and_figures(numpy_only, tmp_path):
    result = run(["train", "--epochs", "3", "--out", "run"], tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "run"
    assert "backend numpy   device cpu   dtype float64" in result.stdout
    assert "per-class validation accuracy" in result.stdout

    model = tc.Sequential.load(out / "model.npz")
    history = checkpoint.load_history(out / "model.npz")
    assert type(model) is tc.TinyCNN and len(history["train_loss"]) == 3
    record = json.loads((out / "history.json").read_text())
    for key in METRICS:
        assert record[key] == history[key]
    assert record["settings"]["lr"] == 0.12 and record["settings"]["epochs"] == 3

    try:
        import matplotlib  # noqa: F401
    except ImportError:  # the CLI must still finish, say so, and keep the checkpoint
        assert "figures skipped: matplotlib is not installed" in result.stdout
        return
    for name in cli.FIGURES.values():
        width, height = _png_size(out / name)
        assert width > 300 and height > 300
    # The run ends by naming the four figures it wrote, the learning-rate sweep's among them.
    assert len(cli.FIGURES) == 4
    assert result.stdout.strip().splitlines()[-4:] == [
        f"  figure     {Path('run') / name}" for name in cli.FIGURES.values()]
    sweeps = json.loads((out / "sweep.json").read_text())
    assert list(sweeps) == ["0.01", "0.05", "0.12", "0.5", "1.0"]
    assert all(len(h["train_loss"]) == 3 for h in sweeps.values())  # --epochs 3: 3 per rate
    # The sweep trains copies of the initial model: the 0.12 run is the run itself.
    assert sweeps["0.12"]["train_loss"] == history["train_loss"]


#: ``--device`` for the suite's backend: array-api-strict on its non-default device, the GPU proxy.
DEVICES = {"numpy": "cpu", "array_api_strict": "device1", "torch": "cpu", "jax": "cpu", "cupy": "0"}


def test_train_on_the_selected_backend(backend, tmp_path):
    """The one subprocess run per backend: the CLI trains there, and its checkpoint loads on NumPy."""
    result = run(["train", "--backend", backend.NAME, "--device", DEVICES[backend.NAME], "--epochs", "2",
                  "--momentum", "0.5", "--dtype", "float32", "--quiet", "--out", "run"], tmp_path,
                 prelude="sys.modules['matplotlib'] = None")  # figures: tested above, once
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backend {backend.NAME}   device ")
    model = tc.Sequential.load(tmp_path / "run" / "model.npz")
    assert model.conv.weights.dtype == np.float32
    assert len(checkpoint.load_history(tmp_path / "run" / "model.npz")["val_acc"]) == 2


def test_figures_skipped_without_matplotlib(numpy_only, tmp_path):
    result = run(["train", "--epochs", "1", "--out", "run", "--quiet"], tmp_path,
                 prelude="sys.modules['matplotlib'] = None")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("figures skipped: matplotlib is not installed") == 1
    assert (tmp_path / "run" / "model.npz").is_file()
    assert (tmp_path / "run" / "sweep.json").is_file()
    assert not list((tmp_path / "run").glob("*.png"))


def test_sweep_epochs_zero_skips_the_sweep(numpy_only, tmp_path):
    result = run(["train", "--epochs", "1", "--sweep-epochs", "0", "--out", "run", "--quiet"],
                 tmp_path, prelude="sys.modules['matplotlib'] = None")
    assert result.returncode == 0, result.stderr
    assert "learning-rate sweep" not in result.stdout
    assert not (tmp_path / "run" / "sweep.json").exists()


def test_resume_continues_the_history_exactly(numpy_only, tmp_path):
    common = ["--momentum", "0.9", "--batch-size", "30", "--quiet", "--dataset", "lines4",
              "--no-figures", "--sweep-epochs", "0"]  # the figures: the test above
    whole = run(["train", "--epochs", "4", "--out", "whole", *common], tmp_path)
    first = run(["train", "--epochs", "2", "--out", "first", *common], tmp_path)
    # The resumed run takes dataset, momentum, batch size, ... from the checkpoint.
    second = run(["train", "--resume", "first/model.npz", "--epochs", "4", "--out", "second",
                  "--quiet", "--no-figures", "--sweep-epochs", "0"], tmp_path)
    for result in (whole, first, second):
        assert result.returncode == 0, result.stderr
    expected = checkpoint.load_history(tmp_path / "whole" / "model.npz")
    resumed = checkpoint.load_history(tmp_path / "second" / "model.npz")
    for key in METRICS:
        assert resumed[key] == expected[key], key
    assert sorted(resumed["kernel_snapshots"]) == sorted(expected["kernel_snapshots"])
    a = tc.Sequential.load(tmp_path / "whole" / "model.npz")
    b = tc.Sequential.load(tmp_path / "second" / "model.npz")
    for (name, layer_a, attr), (_, layer_b, _) in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(getattr(layer_b, attr), getattr(layer_a, attr), err_msg=name)
        np.testing.assert_array_equal(layer_b.velocity[attr], layer_a.velocity[attr], err_msg=name)


@pytest.mark.parametrize("args, words", [
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--backend", "mxnet"], "--backend"),
    (["train", "--epochs", "zero"], "--epochs"),
    (["train", "--momentum", "1.5"], "--momentum"),
    (["train", "--model", "huge"], "--model"),
    (["fly"], "invalid choice"),
])
def test_bad_flag_exits_with_argparse_message(numpy_only, tmp_path, args, words):
    result = run(args, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("tinycnn-xp") and "error:" in last and words in last


#: ``prelude``s for a machine with a CUDA driver, or without one, whatever this one has: the
#: resolver looks for the driver before it imports cupy.
_CUDA_DRIVER = """import ctypes
class _CDLL(ctypes.CDLL):
    def __init__(self, name, *args, **kwargs):
        if name == "libcuda.so.1":
            {found}
        super().__init__(name, *args, **kwargs)
ctypes.CDLL = _CDLL"""
WITH_CUDA_DRIVER = _CUDA_DRIVER.format(found="return")
WITHOUT_CUDA_DRIVER = _CUDA_DRIVER.format(found="raise OSError(name)")


@pytest.mark.parametrize("args, prelude, words", [
    (["train", "--backend", "cupy"], WITH_CUDA_DRIVER + "\nsys.modules['cupy'] = None", "pip install"),
    (["gradcheck", "--backend", "cupy"], WITHOUT_CUDA_DRIVER, "no CUDA driver"),
    (["train", "--backend", "torch"], "sys.modules['torch'] = None", "pip install torch"),
    (["train", "--backend", "array_api_strict", "--device", "gpu9"], "", "no device 'gpu9'"),
    (["train", "--backend", "numpy", "--device", "cuda"], "", "CPU only"),
    (["train", "--dataset", "digits"], "sys.modules['sklearn'] = None", "tinycnn-xp[digits]"),
    (["train", "--resume", "missing.npz"], "", "no checkpoint file"),
])
def test_unavailable_backend_or_input_gives_one_line(numpy_only, tmp_path, args, prelude, words):
    result = run(args, tmp_path, prelude)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()  # nothing written before the check


def test_corrupt_checkpoint_gives_one_line(numpy_only, tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 and then nothing")
    result = run(["train", "--resume", "bad.npz"], tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.npz" in lines[0] and "unreadable" in lines[0]


def test_gradcheck_prints_a_table_and_fails_above_threshold(numpy_only, tmp_path):
    ok = run(["gradcheck", "--samples", "2"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    for name in ("conv.weights", "conv.bias", "dense.weights", "dense.bias", "input"):
        assert name in ok.stdout
    assert "5 of 5 below the threshold" in ok.stdout
    strict = run(["gradcheck", "--samples", "2", "--threshold", "1e-300"], tmp_path)
    assert strict.returncode == 1 and "FAIL" in strict.stdout


def test_sweep_writes_its_table_and_figure(numpy_only, tmp_path):
    result = run(["sweep", "--epochs", "2", "--lrs", "0.05", "0.5", "--out", "sweep", "--quiet"], tmp_path)
    assert result.returncode == 0, result.stderr
    records = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["records"]
    assert [r["config"] for r in records] == [{"lr": 0.05}, {"lr": 0.5}]
    assert len(records[1]["history"]["train_loss"]) == 2
    assert (tmp_path / "sweep" / "sweep.txt").read_text().splitlines()[2].split() == [
        "lr", "train", "loss", "val", "acc"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert _png_size(tmp_path / "sweep" / "sweep.png")[0] > 300


def test_jax_is_offered_and_float64_needs_x64(numpy_only, tmp_path):
    """``--backend jax`` is a choice; JAX's float64 is the user's setting, never changed by the CLI."""
    assert cli.build_parser().parse_args(["train", "--backend", "jax"]).backend == "jax"
    env = {key: value for key, value in os.environ.items() if key != "JAX_ENABLE_X64"}
    results = [run(["train", "--backend", "jax", "--out", "run"], tmp_path, env=env),
               run(["gradcheck", "--backend", "jax"], tmp_path, env=env)]
    for result in results:
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        if importlib.util.find_spec("jax") is None:
            assert "pip install jax" in lines[0]
        else:
            assert "float64 on JAX needs JAX_ENABLE_X64=1 in the environment" in lines[0]
    if importlib.util.find_spec("jax") is not None:  # gradcheck has no --dtype to offer
        assert "--dtype float32" in results[0].stderr and "--dtype" not in results[1].stderr
    assert not (tmp_path / "run").exists()


# -- in-process: the parser and the digits loader ------------------------------------------------
def test_bench_is_no_longer_a_command(capsys):
    """The benchmarks moved out of the package (``benchmarks/``, ``nox -s bench``)."""
    with pytest.raises(SystemExit) as stop:
        cli.main(["bench"])
    assert stop.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err
    assert "benchmark" not in cli.build_parser().format_help().lower()


def test_digits_split_is_fixed_stratified_and_scaled():
    pytest.importorskip("sklearn")
    from tinycnn_xp.digits import DIGIT_NAMES, load_digits_split
    x_train, y_train, x_val, y_val, names = load_digits_split()
    assert names == DIGIT_NAMES and len(names) == 10
    assert x_train.shape == (1438, 1, 8, 8) and x_val.shape == (359, 1, 8, 8)
    assert x_train.dtype == np.float64 and y_train.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    val_share = np.bincount(y_val, minlength=10) / np.bincount(np.concatenate([y_train, y_val]))
    assert np.all(np.abs(val_share - 0.2) < 0.02)  # stratified: every digit gives 20% to validation
    again = load_digits_split()
    np.testing.assert_array_equal(again[2], x_val)  # the same split every time
