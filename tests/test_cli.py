"""The command line, driven as a learner drives it: ``python -m tinycnn_xp ...`` in a subprocess.

The subprocess tests train on NumPy whatever ``--backend`` the suite runs with (the CLI's own
backend switch is tested by the one-line errors below), so they run once, in the numpy session.
"""

import json
import subprocess
import sys
import types
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


def run(args, cwd, prelude=""):
    """``python -m tinycnn_xp *args`` (after ``prelude`` Python code, e.g. to hide a module)."""
    if prelude:
        code = f"import sys\n{prelude}\nfrom tinycnn_xp.cli import main\nsys.exit(main(sys.argv[1:]))"
        command = [sys.executable, "-c", code, *args]
    else:
        command = [sys.executable, "-m", "tinycnn_xp", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


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

    model = checkpoint.load(out / "model.npz")
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
DEVICES = {"numpy": "cpu", "array_api_strict": "device1", "torch": "cpu", "cupy": "0"}


def test_train_on_the_selected_backend(backend, tmp_path):
    """The one subprocess run per backend: the CLI trains there, and its checkpoint loads on NumPy."""
    result = run(["train", "--backend", backend.NAME, "--device", DEVICES[backend.NAME], "--epochs", "2",
                  "--momentum", "0.5", "--dtype", "float32", "--quiet", "--out", "run"], tmp_path,
                 prelude="sys.modules['matplotlib'] = None")  # figures: tested above, once
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backend {backend.NAME}   device ")
    model = checkpoint.load(tmp_path / "run" / "model.npz")
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
    common = ["--momentum", "0.9", "--batch-size", "30", "--quiet", "--dataset", "lines4"]
    whole = run(["train", "--epochs", "4", "--out", "whole", *common], tmp_path)
    first = run(["train", "--epochs", "2", "--out", "first", *common], tmp_path)
    # The resumed run takes dataset, momentum, batch size, ... from the checkpoint.
    second = run(["train", "--resume", "first/model.npz", "--epochs", "4", "--out", "second",
                  "--quiet"], tmp_path)
    for result in (whole, first, second):
        assert result.returncode == 0, result.stderr
    expected = checkpoint.load_history(tmp_path / "whole" / "model.npz")
    resumed = checkpoint.load_history(tmp_path / "second" / "model.npz")
    for key in METRICS:
        assert resumed[key] == expected[key], key
    assert sorted(resumed["kernel_snapshots"]) == sorted(expected["kernel_snapshots"])
    a = checkpoint.load(tmp_path / "whole" / "model.npz")
    b = checkpoint.load(tmp_path / "second" / "model.npz")
    for (name, layer_a, attr), (_, layer_b, _) in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(getattr(layer_b, attr), getattr(layer_a, attr), err_msg=name)
        np.testing.assert_array_equal(layer_b.velocity[attr], layer_a.velocity[attr], err_msg=name)


@pytest.mark.parametrize("args, words", [
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--backend", "jax"], "--backend"),
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


@pytest.mark.parametrize("args, prelude, words", [
    (["train", "--backend", "cupy"], "sys.modules['cupy'] = None", "pip install"),
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
    record = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert sorted(record) == ["0.05", "0.5"] and len(record["0.5"]["train_loss"]) == 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert _png_size(tmp_path / "sweep" / "lr_sweep.png")[0] > 300


# -- in-process: delegation and the digits loader ------------------------------------------------
def test_bench_delegates_its_arguments(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # were the real bench to run, its JSON lands here
    seen = []
    fake = types.ModuleType("tinycnn_xp.bench")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "tinycnn_xp.bench", fake)
    assert cli.main(["bench", "--quick", "--json", "x.json"]) == 0
    assert seen == [["--quick", "--json", "x.json"]]


def test_bench_missing_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tinycnn_xp.bench", None)
    assert cli.main(["bench"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bench" in err[0]


def test_digits_split_is_fixed_stratified_and_scaled():
    pytest.importorskip("sklearn")
    from tinycnn_xp.digits import DIGIT_NAMES, load_digits_split
    x_train, y_train, x_val, y_val, names = load_digits_split()
    assert names == DIGIT_NAMES and len(names) == 10
    assert x_train.shape == (1438, 1, 8, 8) and x_val.shape == (359, 1, 8, 8)
    assert x_train.dtype == np.float64 and y_train.dtype == np.int64
    assert 0.0 == x_train.min() and x_train.max() == 1.0
    val_share = np.bincount(y_val, minlength=10) / np.bincount(np.concatenate([y_train, y_val]))
    assert np.all(np.abs(val_share - 0.2) < 0.02)  # stratified: every digit gives 20% to validation
    again = load_digits_split()
    np.testing.assert_array_equal(again[2], x_val)  # the same split every time
