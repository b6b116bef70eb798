"""``tinycnn-xp sweep``: the grid from the flags, serially, on ``--jobs`` worker processes and on a
Dask cluster (``--scheduler``) with the serial results; its table, JSON and figure; progress as
each run finishes; divergence as a result; Ctrl-C keeping the finished runs; one-line problems.

The parser tests run in every session; the subprocess tests train on NumPy, so they run once, in
the numpy session (like ``test_cli.py``'s).
"""

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

import tinycnn_xp as tc
from helpers import local_cluster, one_line, read_terminal, run_cli
from tinycnn_xp.cli import build_parser
from tinycnn_xp.cli.common import UsageProblem
from tinycnn_xp.cli.sweep import grid_of
from tinycnn_xp.presets import make_model
from tinycnn_xp.sweep import DEFAULT_LRS

NO_FIGURES = "sys.modules['matplotlib'] = None"
GRID_FLAGS = ["--lrs", "0.05", "0.5", "--momentums", "0", "0.9"]
SMALL = ["--epochs", "3", "--quiet"]


@pytest.fixture
def numpy_only(backend):
    if backend.NAME != "numpy":
        pytest.skip("CLI subprocess tests run in the numpy session only (they train on NumPy)")


def parse(*flags):
    return build_parser().parse_args(["sweep", *flags])


def records_of(folder):
    return json.loads((folder / "sweep.json").read_text())


def progress_lines(stdout):
    """The lines ``run 3/12  lr=0.05: ...`` of a sweep's output."""
    return [line for line in stdout.splitlines() if re.match(r"run \d+/\d+  ", line)]


def have(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# -- the grid from the flags (in process) -----------------------------------------------------------
@pytest.mark.parametrize("flags, grid", [
    ([], {"lr": list(DEFAULT_LRS)}),
    (["--lrs", "0.1", "0.2"], {"lr": [0.1, 0.2]}),
    (["--momentum", "0.5"], {"lr": list(DEFAULT_LRS)}),  # one momentum for every run: no axis
    (["--seeds", "3"], {"lr": list(DEFAULT_LRS), "seed": [3]}),
    (["--seeds", "2", "0", "--lrs", "0.1", "--momentums", "0.9", "0"],
     {"lr": [0.1], "momentum": [0.9, 0.0], "seed": [2, 0]}),  # always lr, momentum, seed
])
def test_the_grid_from_the_flags(flags, grid):
    assert grid_of(parse(*flags)) == grid
    assert list(grid_of(parse(*flags))) == list(grid)


@pytest.mark.parametrize("flags, words", [
    (["--lrs", "0.1", "0.2", "0.1"], "--lrs holds 0.1 twice"),
    (["--momentums", "0.9", "0.9"], "--momentums holds 0.9 twice"),
    (["--seeds", "1", "1"], "--seeds holds 1 twice"),
])
def test_a_value_given_twice_is_a_usage_problem(flags, words):
    with pytest.raises(UsageProblem, match=words):
        grid_of(parse(*flags))


@pytest.mark.parametrize("flags, words", [
    (["--momentum", "0.5", "--momentums", "0", "0.9"], "not allowed with argument --momentum"),
    (["--seed", "1", "--seeds", "1", "2"], "not allowed with argument --seed"),
    (["--jobs", "2", "--scheduler", "tcp://127.0.0.1:8786"], "not allowed with argument --jobs"),
    (["--jobs", "0"], "--jobs: expected an integer >= 1, or -1 (every core)"),
    (["--jobs", "-2"], "--jobs: expected an integer >= 1, or -1 (every core)"),
    (["--momentums", "1.0"], "--momentums: expected a number in [0, 1)"),
    (["--seeds", "-1"], "--seeds: expected an integer >= 0"),
])
def test_flags_that_cannot_go_together_or_are_out_of_range(capsys, flags, words):
    with pytest.raises(SystemExit) as stop:
        parse(*flags)
    assert stop.value.code == 2
    assert words in capsys.readouterr().err.strip().splitlines()[-1]


def test_jobs_takes_minus_one_for_every_core():
    assert parse("--jobs", "-1").jobs == -1 and parse().jobs is None and parse().scheduler is None


# -- what it runs and writes (subprocesses, numpy session) -----------------------------------------
def test_each_run_is_the_model_trained_with_its_configuration(numpy_only, tmp_path):
    """A swept seed seeds the run's weights and shuffles; without one, --seed (42) draws the
    weights and the shuffles use 0, as in ``train``."""
    seeded = run_cli(["sweep", "--lrs", "0.05", "0.5", "--seeds", "1", "7", "--momentum", "0.5",
                      "--out", "seeded", *SMALL], tmp_path, NO_FIGURES)
    fixed = run_cli(["sweep", "--lrs", "0.05", "--momentums", "0", "0.9", "--out", "fixed", *SMALL],
                    tmp_path, NO_FIGURES)
    assert seeded.returncode == 0 and fixed.returncode == 0, seeded.stderr + fixed.stderr
    data = tc.make_dataset_bundle()[:4]
    seeded_records = records_of(tmp_path / "seeded")["records"]
    assert [r["config"] for r in seeded_records] == [
        {"lr": lr, "seed": seed} for lr, seed in itertools.product([0.05, 0.5], [1, 7])]
    for record in seeded_records:
        lr, seed = record["config"]["lr"], record["config"]["seed"]
        alone = make_model("tiny", seed=seed, num_classes=3).fit(
            *data, epochs=3, lr=lr, batch_size=18, momentum=0.5, seed=seed, verbose=False)
        for key in tc.METRICS:
            assert record["history"][key] == alone[key], (record["config"], key)
    for record in records_of(tmp_path / "fixed")["records"]:
        alone = make_model("tiny", seed=42, num_classes=3).fit(
            *data, epochs=3, batch_size=18, seed=0, verbose=False, **record["config"])
        assert record["history"]["train_loss"] == alone["train_loss"], record["config"]


def test_jobs_2_gives_the_serial_results_and_writes_table_json_and_figure(numpy_only, tmp_path):
    serial = run_cli(["sweep", *GRID_FLAGS, "--epochs", "3", "--out", "serial"], tmp_path)
    parallel = run_cli(["sweep", *GRID_FLAGS, *SMALL, "--jobs", "2", "--out", "parallel"], tmp_path)
    assert serial.returncode == 0 and parallel.returncode == 0, serial.stderr + parallel.stderr
    assert serial.stderr == "" and parallel.stderr == ""
    assert "4 runs one after the other in this process" in serial.stdout
    assert "4 runs on 2 worker processes" in parallel.stdout
    # Bitwise: JSON keeps every float exactly.
    assert records_of(tmp_path / "parallel") == records_of(tmp_path / "serial")
    table_of = lambda folder: (tmp_path / folder / "sweep.txt").read_text()
    assert table_of("parallel") == table_of("serial")

    out = tmp_path / "serial"
    saved = records_of(out)
    assert saved["settings"] == {
        "dataset": "lines", "model": "tiny", "backend": "numpy", "device": "cpu", "dtype": "float64",
        "epochs": 3, "batch_size": 18, "grid": {"lr": [0.05, 0.5], "momentum": [0.0, 0.9]},
        "runs": 4, "finished": 4, "seed": 42, "shuffle_seed": 0}
    assert [r["config"] for r in saved["records"]] == [
        {"lr": lr, "momentum": beta} for lr, beta in itertools.product([0.05, 0.5], [0.0, 0.9])]
    for record in saved["records"]:
        assert sorted(record["history"]) == sorted([*tc.METRICS, "lr"])  # no kernel snapshots
        assert all(len(record["history"][key]) == 3 for key in tc.METRICS)
    # The table: printed, and in sweep.txt under the sweep's settings.
    table = (out / "sweep.txt").read_text().splitlines()
    assert table[0] == ("sweep: model tiny on lines, 3 epochs per run, batch size 18, initial "
                        "weights of seed 42")
    assert table[2] == f"{'lr':>8s}  {'momentum':>8s}  {'train loss':>10s}  {'val acc':>7s}"
    assert len(table) == 7
    for line, record in zip(table[3:], saved["records"]):
        history = record["history"]
        assert line == (f"{record['config']['lr']:>8g}  {record['config']['momentum']:>8g}  "
                        f"{history['train_loss'][-1]:>10.4f}  {history['val_acc'][-1]:>7.1%}")
        assert line in serial.stdout
    # Progress: one line per finished run, in the order they finish (here: grid order).
    runs = progress_lines(serial.stdout)
    assert [line.split()[1] for line in runs] == ["1/4", "2/4", "3/4", "4/4"]
    assert runs[0].startswith("run 1/4  lr=0.05  momentum=0: train loss ") and "val acc" in runs[0]
    assert progress_lines(parallel.stdout) == []  # --quiet
    # The files, listed at the end.
    assert serial.stdout.strip().splitlines()[-3:] == [
        f"  table      {os.path.join('serial', 'sweep.txt')}",
        f"  records    {os.path.join('serial', 'sweep.json')}",
        f"  figure     {os.path.join('serial', 'sweep.png')}"]
    if have("matplotlib"):
        png = (out / "sweep.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") > 600
    else:
        assert "figures skipped: matplotlib is not installed" in serial.stdout


@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]])
def test_a_rate_that_diverges_is_in_the_table_and_exits_0(numpy_only, tmp_path, jobs):
    """Its warnings (``fit``'s, NumPy's overflow), from a worker too, are the table's to say."""
    result = run_cli(["sweep", "--lrs", "0.1", "1e200", "--seeds", "0", "1", *SMALL, *jobs,
                      "--out", "s"], tmp_path, NO_FIGURES)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    diverged = [line for line in result.stdout.splitlines() if "diverged" in line]
    assert diverged and all(line.startswith(f"{'1e+200':>8s}") for line in diverged)
    assert f"{'1e+200':>8s}  {'0':>8s}  {'-':>10s}  {'-':>7s}  diverged at epoch 0" in diverged
    records = records_of(tmp_path / "s")["records"]
    assert len(records) == 4 and records[2]["history"]["diverged_epoch"] == 0


def test_progress_bar_of_runs_in_a_terminal(numpy_only, tmp_path):
    pytest.importorskip("tqdm")
    if sys.platform not in ("linux", "darwin"):
        pytest.skip("a pseudo-terminal")
    import pty
    master, child_side = pty.openpty()
    child = subprocess.Popen([sys.executable, "-m", "tinycnn_xp", "sweep", "--lrs", "0.1", "0.2", "0.3",
                              "--epochs", "2", "--out", "run"], cwd=tmp_path,
                             stdin=child_side, stdout=child_side, stderr=child_side)
    os.close(child_side)
    text = read_terminal(master)
    assert child.wait(timeout=60) == 0
    assert "sweep: 100%" in text and "3/3" in text
    assert "run 1/3" not in text  # the bar, not the plain lines


def test_a_file_that_cannot_be_written_is_one_line_and_exit_4(numpy_only, tmp_path):
    prelude = f"""{NO_FIGURES}
import errno, pathlib
_real = pathlib.Path.write_text
def _full(self, *args, **kwargs):
    if self.name.startswith(".sweep.json."):  # the temporary file of its atomic write
        raise OSError(errno.ENOSPC, "No space left on device", str(self))
    return _real(self, *args, **kwargs)
pathlib.Path.write_text = _full"""
    result = run_cli(["sweep", "--lrs", "0.1", *SMALL, "--out", "s"], tmp_path, prelude)
    assert result.returncode == 4
    assert one_line(result) == (f"tinycnn-xp sweep: cannot write {os.path.join('s', 'sweep.json')}: "
                                f"No space left on device; written to {tmp_path / 'tinycnn-xp-s-sweep.json'} "
                                "instead")
    assert (tmp_path / "s" / "sweep.txt").is_file() and not (tmp_path / "s" / "sweep.json").exists()
    assert json.loads((tmp_path / "tinycnn-xp-s-sweep.json").read_text())["records"]


# -- Ctrl-C ----------------------------------------------------------------------------------------
@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
@pytest.mark.parametrize("jobs", [[], ["--jobs", "2"]])
def test_ctrl_c_keeps_the_runs_already_finished(numpy_only, tmp_path, jobs):
    lrs = [f"{0.01 * (k + 1):g}" for k in range(12)]
    command = [sys.executable, "-u", "-m", "tinycnn_xp", "sweep", "--lrs", *lrs, "--epochs", "300",
               "--out", "s", *jobs]
    child = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        for line in child.stdout:
            if line.startswith("run 1/12"):
                break
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 130, stderr
    line = one_line(subprocess.CompletedProcess(command, 130, stdout, stderr))
    saved = records_of(tmp_path / "s")
    cut = [r for r in saved["records"] if r["history"].get("interrupted")]
    kept = len(saved["records"]) - len(cut)
    assert len(cut) <= (2 if jobs else 1)  # the runs Ctrl-C cut short, one per worker
    assert 1 <= kept < 12 and saved["settings"]["finished"] == kept and saved["settings"]["runs"] == 12
    assert line == (f"tinycnn-xp sweep: interrupted: {kept} of 12 runs finished, kept in the table "
                    "and the files above" + (" (with the run it cut short, marked interrupted)"
                                             if cut else ""))
    table = (tmp_path / "s" / "sweep.txt").read_text().splitlines()
    assert len(table) == 3 + kept + len(cut)
    for record in saved["records"]:
        if record in cut:  # its whole epochs, marked in the table
            assert len(record["history"]["train_loss"]) < 300
            assert any(row.endswith("interrupted") for row in table)
            continue
        assert len(record["history"]["train_loss"]) == 300
        assert f"{record['config']['lr']:>8g}  {record['history']['train_loss'][-1]:>10.4f}" in stdout
    if have("matplotlib"):
        assert (tmp_path / "s" / "sweep.png").is_file()


def test_ctrl_c_before_the_first_run_finished_writes_nothing(numpy_only, tmp_path):
    prelude = ("import tinycnn_xp.sweep as sweep\n"
               "def _ctrl_c(*args, **kwargs):\n    raise KeyboardInterrupt\n"
               "sweep._train = _ctrl_c")
    result = run_cli(["sweep", "--out", "s", *SMALL], tmp_path, prelude)
    assert result.returncode == 130
    assert one_line(result) == ("tinycnn-xp sweep: interrupted: none of the 5 runs had finished; "
                                "nothing was written")
    assert [p.name for p in (tmp_path / "s").iterdir()] == [".tinycnn-xp.lock"]  # the folder's lock
    assert "train loss" not in result.stdout


# -- on a Dask cluster -----------------------------------------------------------------------------
def test_scheduler_runs_on_a_dask_cluster_with_the_serial_results(numpy_only, tmp_path):
    distributed = pytest.importorskip("distributed",
                                      reason='needs dask[distributed]: pip install ".[parallel]"')
    serial = run_cli(["sweep", *GRID_FLAGS, *SMALL, "--out", "serial"], tmp_path, NO_FIGURES)
    assert serial.returncode == 0, serial.stderr
    with local_cluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, \
            distributed.Client(cluster) as client:
        on_dask = run_cli(["sweep", *GRID_FLAGS, "--epochs", "3", "--scheduler",
                           cluster.scheduler_address, "--out", "dask"], tmp_path, NO_FIGURES)
        # The runs went to the workers: four tasks executed there, one per configuration.
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert on_dask.returncode == 0, on_dask.stderr
    assert on_dask.stderr == ""
    assert f"4 runs on the Dask cluster at {cluster.scheduler_address} (2 workers)" in on_dask.stdout
    assert [line.split()[1] for line in progress_lines(on_dask.stdout)] == ["1/4", "2/4", "3/4", "4/4"]
    assert sum(executed.values()) == 4, executed
    assert records_of(tmp_path / "dask") == records_of(tmp_path / "serial")


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("address, words", [
    ("unreachable", "Timed out trying to connect"),
    ("nonsense", "missing port number"),
    ("http://127.0.0.1:8786", "unknown address scheme"),
])
def test_a_bad_scheduler_is_one_line_before_anything_runs(numpy_only, tmp_path, address, words):
    pytest.importorskip("distributed", reason='needs dask[distributed]: pip install ".[parallel]"')
    if address == "unreachable":
        address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}
    result = run_cli(["sweep", "--scheduler", address, "--out", "s", *SMALL], tmp_path, env=env)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(f"tinycnn-xp sweep: cannot connect to the Dask scheduler at {address}: ")
    assert words in line
    assert result.stdout == f"connecting to the Dask scheduler at {address}\n"
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("flags, hidden, words", [
    (["--scheduler", "tcp://127.0.0.1:8786"], "distributed", "--scheduler needs joblib and dask.distributed"),
    (["--jobs", "2"], "joblib", "--jobs 2 needs joblib"),
])
def test_a_missing_extra_is_one_line(numpy_only, tmp_path, flags, hidden, words):
    result = run_cli(["sweep", *flags, "--out", "s", *SMALL], tmp_path, f"sys.modules[{hidden!r}] = None")
    assert result.returncode == 2
    assert one_line(result) == f'tinycnn-xp sweep: {words}: pip install "tinycnn-xp[parallel]"'
    assert not (tmp_path / "s").exists()


def test_jobs_1_and_minus_1(numpy_only, tmp_path):
    one = run_cli(["sweep", "--lrs", "0.1", "0.2", "--epochs", "1", "--jobs", "1", "--out", "one"],
                  tmp_path, NO_FIGURES)
    every = run_cli(["sweep", "--lrs", "0.1", "0.2", "--epochs", "1", "--jobs", "-1", "--out", "all"],
                    tmp_path, NO_FIGURES)
    assert one.returncode == 0 and every.returncode == 0, one.stderr + every.stderr
    assert "2 runs one after the other in this process" in one.stdout
    import joblib
    cores = joblib.effective_n_jobs(-1)
    if cores == 2:
        assert "2 runs on 2 worker processes (every core)" in every.stdout
    elif cores > 2:  # at most one worker per run
        assert "2 runs on 2 worker processes\n" in every.stdout
    else:
        assert "2 runs one after the other in this process" in every.stdout
    np.testing.assert_equal(records_of(tmp_path / "all")["records"], records_of(tmp_path / "one")["records"])
