"""Where ``tinycnn-xp`` writes: ``--out`` is proven writable before training, and a finished run
is never lost (the checkpoint goes to the current directory, else the temporary directory, and the
command says where). Failures are injected in the subprocess (the tests run as root, for whom a
read-only folder is writable). NumPy subprocesses: numpy session only."""

import os

import pytest

import tinycnn_xp as tc
from helpers import one_line, run_cli
from tinycnn_xp import checkpoint

QUICK = ["--epochs", "2", "--quiet", "--sweep-epochs", "0"]
NO_FIGURES = "sys.modules['matplotlib'] = None"


def refusing(function, inside, error="errno.EACCES, 'Permission denied'"):
    """A prelude making ``os.<function>`` fail for paths under the folders ``inside``."""
    return f"""{NO_FIGURES}
import errno, os
_real = os.{function}
def _refuse(first, *args, **kwargs):
    target = os.path.abspath(str(args[0] if {function!r} == 'replace' else first))
    if any(target.startswith(os.path.abspath(folder).rstrip(os.sep) + os.sep) for folder in {inside!r}):
        raise OSError({error}, target)
    return _real(first, *args, **kwargs)
os.{function} = _refuse"""


@pytest.fixture
def numpy_only(backend):
    if backend.NAME != "numpy":
        pytest.skip("CLI subprocess tests run in the numpy session only (they train on NumPy)")


def test_an_unwritable_out_folder_is_one_line_before_training(numpy_only, tmp_path):
    result = run_cli(["train", "--out", "run", *QUICK], tmp_path, refusing("open", ["run"]))
    assert result.returncode == 2
    assert one_line(result) == ("tinycnn-xp train: cannot write into the output folder run: "
                                "Permission denied")
    assert "training" not in result.stdout and not list((tmp_path / "run").iterdir())


def test_an_out_path_that_is_a_file_is_one_line(numpy_only, tmp_path):
    (tmp_path / "taken").write_text("x")
    result = run_cli(["sweep", "--out", "taken", "--epochs", "1", "--quiet"], tmp_path, NO_FIGURES)
    assert result.returncode == 2
    assert "cannot write into the output folder taken" in one_line(result)


def test_a_failed_final_write_goes_to_the_current_directory(numpy_only, tmp_path):
    """The folder passes the check, then refuses the checkpoint (a full disk, say)."""
    prelude = refusing("replace", ["run"], "errno.ENOSPC, 'No space left on device'")
    result = run_cli(["train", "--out", "run", *QUICK], tmp_path, prelude)
    assert result.returncode == 4
    fallback = tmp_path / "tinycnn-xp-run-model.npz"
    # One line per file, each naming it; every write is atomic, so none is left half written.
    lines = lines_of(result)
    run = lambda name: os.path.join("run", name)
    assert lines == [f"tinycnn-xp train: cannot write {run('history.csv')}: No space left on device; "
                     "the run goes on",
                     f"tinycnn-xp train: cannot write {run('model.npz')}: No space left on device; "
                     f"the model was saved to {fallback} instead",
                     f"tinycnn-xp train: cannot write {run('history.json')}: No space left on device; "
                     f"written to {tmp_path / 'tinycnn-xp-run-history.json'} instead"]
    model = tc.Sequential.load(fallback)
    assert len(checkpoint.load_history(fallback)["train_loss"]) == 2
    assert type(model) is tc.TinyCNN
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".tinycnn-xp.lock"]
    assert f"checkpoint {fallback}" in result.stdout


def lines_of(result):
    """The lines on stderr, with no traceback or warning among them."""
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()


def test_then_the_temporary_directory_and_never_over_a_file(numpy_only, tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    (temporary / "tinycnn-xp-run-model.npz").write_text("someone else's")
    prelude = refusing("replace", ["run", str(tmp_path / "cwd")])
    (tmp_path / "cwd").mkdir()
    result = run_cli(["train", "--out", "run", *QUICK], tmp_path / "cwd", prelude,
                     env={**os.environ, "TMPDIR": str(temporary)})
    assert result.returncode == 4
    fallback = temporary / "tinycnn-xp-run-model-2.npz"
    assert any(line.endswith(f"the model was saved to {fallback} instead") for line in lines_of(result))
    assert tc.Sequential.load(fallback).parameter_count == 114
    assert (temporary / "tinycnn-xp-run-model.npz").read_text() == "someone else's"


def test_when_nothing_can_be_written_it_says_so(numpy_only, tmp_path):
    prelude = refusing("replace", ["/"])
    result = run_cli(["train", "--out", "run", *QUICK], tmp_path, prelude)
    assert result.returncode == 4
    assert sum("the model is lost" in line for line in lines_of(result)) == 1
