"""The command line speaks in one voice: the library's warnings become its own one-line messages,
divergence has its exit status, Ctrl-C at any moment (the imports included) is one line, progress
shows in a terminal that reports 0 rows. NumPy subprocesses: numpy session only."""

import os
import signal
import subprocess
import sys
import time

import pytest

import tinycnn_xp as tc
from helpers import one_line, read_terminal, run_cli
from tinycnn_xp import checkpoint
from tinycnn_xp.cli import main as cli_main

QUICK = ["--quiet", "--sweep-epochs", "0", "--no-figures"]
NO_FIGURES = "sys.modules['matplotlib'] = None"
RAW = ("Warning", "Traceback", "overflow encountered", "warnings.warn", ".py:")


@pytest.fixture
def numpy_only(backend):
    if backend.NAME != "numpy":
        pytest.skip("CLI subprocess tests run in the numpy session only (they train on NumPy)")


def assert_no_raw_python(result):
    for text in (result.stdout, result.stderr):
        for raw in RAW:
            assert raw not in text, text


def test_a_diverged_run_exits_3_with_one_line(numpy_only, tmp_path):
    result = run_cli(["train", "--lr", "1e200", "--epochs", "3", "--out", "run", *QUICK], tmp_path,
                     NO_FIGURES)
    assert result.returncode == 3
    assert_no_raw_python(result)
    assert one_line(result) == ("tinycnn-xp train: diverged at epoch 0 (the loss or the weights "
                                "stopped being finite); the checkpoint holds the last finite "
                                "epoch; try a smaller --lr")
    history = checkpoint.load_history(tmp_path / "run" / "model.npz")
    assert history["diverged_epoch"] == 0 and history["train_loss"] == []
    assert tc.Sequential.load(tmp_path / "run" / "model.npz").parameter_count == 114


def test_a_rate_that_diverges_in_a_sweep_is_a_result_not_a_failure(numpy_only, tmp_path):
    result = run_cli(["sweep", "--lrs", "0.1", "1e200", "--epochs", "2", "--out", "s", "--quiet"],
                     tmp_path, NO_FIGURES)
    assert result.returncode == 0, result.stderr
    assert_no_raw_python(result)
    assert result.stderr == ""
    assert f"{'1e+200':>8s}  {'-':>10s}  {'-':>7s}  diverged at epoch 0" in result.stdout


def test_a_rate_of_trains_own_sweep_that_diverges_leaves_the_status_alone(numpy_only, tmp_path):
    prelude = f"{NO_FIGURES}\nimport tinycnn_xp.sweep as sweep\nsweep.DEFAULT_LRS = (0.1, 1e200)"
    result = run_cli(["train", "--epochs", "2", "--out", "run", "--quiet"], tmp_path, prelude)
    assert result.returncode == 0, result.stderr
    assert_no_raw_python(result)
    assert result.stderr == ""
    assert f"{'1e+200':>8s}  {'-':>10s}  {'-':>7s}  diverged at epoch 0" in result.stdout


def test_other_warnings_are_one_line_each(numpy_only, tmp_path):
    prelude = """import warnings
import tinycnn_xp.data as data
_real = data.make_dataset_bundle
def _warn(*args, **kwargs):
    warnings.warn("the patterns look odd today\\nsecond line", UserWarning)
    return _real(*args, **kwargs)
data.make_dataset_bundle = _warn"""
    result = run_cli(["train", "--epochs", "1", "--out", "run", *QUICK], tmp_path,
                     f"{NO_FIGURES}\n{prelude}")
    assert result.returncode == 0
    assert one_line(result) == "tinycnn-xp train: warning: the patterns look odd today"


# -- Ctrl-C --------------------------------------------------------------------------------------
def interrupt_at_import(module):
    """A prelude: Ctrl-C arrives while ``module`` is being imported."""
    return f"""class _CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            raise KeyboardInterrupt
sys.meta_path.insert(0, _CtrlC())"""


@pytest.mark.parametrize("module, args", [
    ("numpy", ["train"]),                                    # the console entry's first imports
    ("tinycnn_xp.cli.train", ["train"]),                     # the command's modules
    ("array_api_compat.torch", ["train", "--backend", "torch"]),  # a backend's library
    ("sklearn", ["train", "--dataset", "digits"]),           # the data
])
def test_ctrl_c_during_imports_is_one_line(numpy_only, tmp_path, module, args):
    result = run_cli([*args, "--out", "run", *QUICK], tmp_path, interrupt_at_import(module))
    assert result.returncode == 130
    assert one_line(result) in ("tinycnn-xp: interrupted", "tinycnn-xp train: interrupted")


def test_ctrl_c_while_writing_figures_keeps_the_checkpoint(numpy_only, tmp_path):
    result = run_cli(["train", "--epochs", "2", "--out", "run", "--quiet", "--sweep-epochs", "0"],
                     tmp_path, interrupt_at_import("tinycnn_xp.plots"))
    assert result.returncode == 130
    assert one_line(result) == ("tinycnn-xp train: interrupted; the trained model is saved: "
                                f"{os.path.join('run', 'model.npz')}")
    assert len(checkpoint.load_history(tmp_path / "run" / "model.npz")["train_loss"]) == 2


def test_the_console_entry_imports_nothing_until_it_runs():
    code = ("import sys; from tinycnn_xp.cli import main; "
            "print(sorted(m for m in ('numpy', 'tinycnn_xp.models', 'tinycnn_xp.cli.parser') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_cli_main_stays_the_function_after_its_module_is_imported(capsys):
    import tinycnn_xp.cli as cli
    assert cli.main is cli_main and callable(cli.build_parser)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert cli.main is cli_main
    assert "130  interrupted" in capsys.readouterr().out


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
def test_ctrl_c_during_training_saves_and_says_how_to_resume(numpy_only, tmp_path):
    command = [sys.executable, "-u", "-m", "tinycnn_xp", "train", "--epochs", "100000", "--out",
               "run", *QUICK]
    child = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        for line in child.stdout:
            if line.startswith("training 100000 epochs"):
                break
        time.sleep(1.0)
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 130, stderr
    result = subprocess.CompletedProcess(command, 130, stdout, stderr)
    line = one_line(result)
    done = len(checkpoint.load_history(tmp_path / "run" / "model.npz")["train_loss"])
    assert line.startswith(f"tinycnn-xp train: interrupted after epoch {done - 1}; continue with  "
                           f"tinycnn-xp train --resume {os.path.join('run', 'model.npz')} "
                           "--epochs 100000")


# -- progress ------------------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform not in ("linux", "darwin"), reason="a pseudo-terminal")
@pytest.mark.parametrize("rows, columns", [(0, 0), (0, 80), (24, 0), (24, 80)])
def test_progress_shows_in_a_terminal_of_any_reported_size(numpy_only, tmp_path, rows, columns):
    import fcntl
    import pty
    import struct
    import termios
    master, child_side = pty.openpty()
    fcntl.ioctl(child_side, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    child = subprocess.Popen([sys.executable, "-m", "tinycnn_xp", "train", "--epochs", "3",
                              "--sweep-epochs", "0", "--no-figures", "--out", "run"], cwd=tmp_path, env=env,
                             stdin=child_side, stdout=child_side, stderr=child_side)
    os.close(child_side)
    text = read_terminal(master)
    assert child.wait(timeout=60) == 0
    try:
        import tqdm  # noqa: F401
    except ImportError:
        assert "epoch    3/3" in text  # plain lines
    else:
        assert "training: 100%" in text and "3/3" in text
