"""What a checkpoint says never outranks what the user typed (``tinycnn-xp train --resume``).

Its ``meta`` gives defaults for the training settings the user left out, each checked; where to
write is never taken from it; a bad value, a bad history or a model that cannot take the data is
one line naming the file and the entry, before any training. Subprocesses, on NumPy: they run in
the numpy session only.
"""

import json

import numpy as np
import pytest

import tinycnn_xp as tc
from benchmarks.crafted_checkpoints import Member, npy, tiny_members, write_zip
from helpers import one_line, run_cli
from tinycnn_xp import checkpoint

METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")
QUICK = ["--quiet", "--sweep-epochs", "0", "--no-figures"]


@pytest.fixture
def numpy_only(backend):
    if backend.NAME != "numpy":
        pytest.skip("CLI subprocess tests run in the numpy session only (they train on NumPy)")


def saved(tmp_path, meta, epochs=1, name="saved.npz"):
    """A TinyCNN checkpoint of ``epochs`` epochs (history of 0.5s) with ``meta``."""
    history = {key: [0.5] * epochs for key in METRICS}
    return checkpoint.save(tc.TinyCNN(seed=0), tmp_path / name, history, meta=meta).name


@pytest.mark.parametrize("meta, words", [
    ({"batch_size": 32.0}, "meta entry 'batch_size' is 32.0, not an integer >= 1"),
    ({"batch_size": [32]}, "meta entry 'batch_size' is [32], not an integer >= 1"),
    ({"batch_size": True}, "meta entry 'batch_size' is True"),
    ({"lr": "0.1"}, "meta entry 'lr' is '0.1', not a positive number"),
    ({"lr": float("nan")}, "meta entry 'lr' is nan"),
    ({"lr": -1}, "meta entry 'lr' is -1"),
    ({"momentum": 10**400}, "meta entry 'momentum' is 1000000"),
    ({"momentum": 1.0}, "meta entry 'momentum' is 1.0, not a number in [0, 1)"),
    ({"seed": -3}, "meta entry 'seed' is -3, not an integer >= 0"),
    ({"dtype": "float16"}, "meta entry 'dtype' is 'float16', not one of float32, float64"),
    ({"dataset": "../../etc"}, "meta entry 'dataset' is '../../etc', not one of lines"),
    ({"model": {"preset": "tiny"}}, "meta entry 'model' is {'preset': 'tiny'}"),
    ({"epochs": "many"}, "meta entry 'epochs' is 'many'"),
])
def test_a_bad_meta_value_is_one_line_before_training(numpy_only, tmp_path, meta, words):
    path = saved(tmp_path, meta)
    result = run_cli(["train", "--resume", path, "--epochs", "3", *QUICK], tmp_path)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(f"tinycnn-xp train: {path}: ") and words in line
    assert "training" not in result.stdout and not (tmp_path / "runs").exists()


def test_where_to_write_is_never_taken_from_the_file(numpy_only, tmp_path):
    meta = {"out": "elsewhere", "resume": "x.npz", "device": "cuda", "backend": "torch",
            "sweep_epochs": 3, "quiet": False, "dataset": "lines", "lr": 0.05, "batch_size": 30}
    path = saved(tmp_path, meta)
    result = run_cli(["train", "--resume", path, "--epochs", "2", "--lr", "0.1", *QUICK], tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "elsewhere").exists()
    [run] = (tmp_path / "runs").iterdir()  # a new run folder, as without --out
    assert "backend numpy" in result.stdout
    settings = checkpoint.load_meta(run / "model.npz")
    # The typed --lr wins; the untyped batch size comes from the file.
    assert settings["lr"] == 0.1 and settings["batch_size"] == 30 and "out" not in settings
    assert "learning-rate sweep" not in result.stdout  # the file's sweep_epochs is not read


def test_a_python_checkpoint_resumes_in_its_own_dtype(numpy_only, tmp_path):
    x, y, xv, yv, _ = tc.make_dataset_bundle(train_per_class=4, val_per_class=2)
    model = tc.TinyCNN(seed=1)
    history = model.fit(x.astype("float32"), y, xv.astype("float32"), yv, epochs=1, verbose=False)
    model.save(tmp_path / "f32.npz", history, meta={"note": "from Python"})
    result = run_cli(["train", "--resume", "f32.npz", "--epochs", "2", "--out", "run", *QUICK], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "dtype float32" in result.stdout and "model checkpoint" in result.stdout
    assert tc.Sequential.load(tmp_path / "run" / "model.npz").conv.weights.dtype == np.float32


def test_a_bad_history_is_one_line_before_training(numpy_only, tmp_path):
    bad = {key: ["0.5"] if key == "train_loss" else [0.5] for key in METRICS}
    members = [m for m in tiny_members() if m.name not in ("history.npy", "epochs.npy")]
    members += [Member("history.npy", npy(np.array(json.dumps(bad)))),
                Member("epochs.npy", npy(np.array(1)))]
    write_zip(tmp_path / "strings.npz", members)
    result = run_cli(["train", "--resume", "strings.npz", "--epochs", "3", *QUICK], tmp_path)
    assert result.returncode == 2
    line = one_line(result)
    assert "strings.npz: the saved history's train_loss[0] is '0.5'" in line
    assert "training" not in result.stdout and not (tmp_path / "runs").exists()


def test_a_model_for_other_images_is_one_line_before_training(numpy_only, tmp_path):
    model = tc.Sequential([tc.Conv2D(1, 2, 3), tc.Flatten(), tc.Dense(2 * 8 * 8, 3)], seed=0,
                          input_shape=(1, 10, 10))
    model.save(tmp_path / "ten.npz")
    result = run_cli(["train", "--resume", "ten.npz", "--epochs", "3", *QUICK], tmp_path)
    assert result.returncode == 2
    line = one_line(result)
    assert "ten.npz: the model cannot take the lines images" in line
    assert "takes images of shape (batch, 1, 10, 10)" in line


def test_a_crafted_huge_checkpoint_is_one_line(numpy_only, tmp_path):
    write_zip(tmp_path / "huge.npz", tiny_members(10**12))
    result = run_cli(["train", "--resume", "huge.npz", "--epochs", "3", *QUICK], tmp_path)
    assert result.returncode == 2
    assert "huge.npz: the architecture declares 28,000,000,000,030 parameters" in one_line(result)
