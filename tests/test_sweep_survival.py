"""Sweeps that survive: a killed worker costs its run, not the sweep; finished runs are on disk
(``runs.jsonl``) as they finish; SIGTERM keeps them and ends the workers; ``--resume DIR`` runs
only what is missing. NumPy, joblib's worker processes: the numpy session only."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tinycnn_xp as tc
from helpers import local_cluster
from tinycnn_xp.cli import main
from tinycnn_xp.sweep import sweep

pytestmark = pytest.mark.slow
POSIX = pytest.mark.skipif(os.name != "posix", reason="signals to processes")
RATES = ["0.01", "0.02", "0.03", "0.04", "0.05", "0.06"]


@pytest.fixture
def numpy_only(backend):
    if backend.NAME != "numpy":
        pytest.skip("sweeps on worker processes: the numpy session only")
    pytest.importorskip("joblib", reason="worker processes need joblib (the parallel extra)")


def workers_of(pid=None):
    import psutil
    return [p for p in psutil.Process(pid).children(recursive=True)
            if "LokyProcess" in " ".join(p.cmdline())]


class KillsItsWorker:
    """A ``fit`` callback that kills its own (worker) process at epoch 4: only a run of more
    than 4 epochs gets there."""

    def __init__(self):
        self.parent = os.getpid()  # pickled with the callback: the sweep's own process

    def __call__(self, epoch, metrics):
        if epoch == 4 and os.getpid() != self.parent:
            os.kill(os.getpid(), signal.SIGKILL)


@POSIX
def test_a_killed_worker_costs_its_run_not_the_sweep(numpy_only):
    pytest.importorskip("psutil", reason="finds the worker processes")
    data = tc.make_dataset_bundle()[:4]
    killed = []

    def kill_one(record, done, total):
        if not killed:
            victim = workers_of()[-1]
            victim.send_signal(signal.SIGKILL)
            killed.append(victim.pid)
    rates = [float(r) for r in RATES]
    records = sweep(tc.TinyCNN(seed=0), *data, grid={"lr": rates}, n_jobs=2, epochs=200,
                    on_run=kill_one)
    serial = sweep(tc.TinyCNN(seed=0), *data, grid={"lr": rates}, epochs=200)
    assert killed and [r["config"] for r in records] == [r["config"] for r in serial]
    assert not any("failed" in r for r in records)
    for mine, theirs in zip(records, serial):
        assert mine["history"]["train_loss"] == theirs["history"]["train_loss"]


@POSIX
def test_a_run_whose_worker_dies_twice_is_reported_failed(numpy_only):
    data = tc.make_dataset_bundle()[:4]
    records = sweep(tc.TinyCNN(seed=0), *data, grid={"epochs": [3, 6, 4]}, n_jobs=2, lr=0.1,
                    callback=KillsItsWorker())
    assert [r["config"]["epochs"] for r in records] == [3, 6, 4]
    assert "its worker died twice (TerminatedWorkerError" in records[1]["failed"]
    assert records[1]["history"]["train_loss"] == []
    assert [len(r["history"]["train_loss"]) for r in (records[0], records[2])] == [3, 4]
    assert "failed" not in records[0] and "failed" not in records[2]


def test_a_sweep_can_be_given_its_finished_runs(numpy_only):
    data = tc.make_dataset_bundle()[:4]
    first = sweep(tc.TinyCNN(seed=0), *data, grid={"lr": [0.05]}, epochs=3)
    seen = []
    records = sweep(tc.TinyCNN(seed=0), *data, grid={"lr": [0.05, 0.1]}, epochs=3, done=first,
                    on_run=lambda record, done, total: seen.append(record["config"]["lr"]))
    assert seen == [0.1] and records[0]["history"] == first[0]["history"]
    with pytest.raises(ValueError, match=r"done\[0\]: configuration \{'lr': 0.05\} is not one of"):
        sweep(tc.TinyCNN(seed=0), *data, grid={"lr": [0.1]}, epochs=3, done=first)


@POSIX
def test_sigterm_keeps_the_finished_runs_ends_the_workers_and_resume_completes(numpy_only, tmp_path,
                                                                             monkeypatch):
    pytest.importorskip("psutil", reason="finds the worker processes")
    flags = ["--lrs", *RATES, "--epochs", "200", "--quiet", "--no-figures"]
    child = subprocess.Popen([sys.executable, "-u", "-m", "tinycnn_xp", "sweep", *flags,
                              "--jobs", "2", "--out", "s"], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    journal = tmp_path / "s" / "runs.jsonl"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (journal.exists() and journal.read_text()):
            time.sleep(0.01)  # the first run is on disk
        workers = workers_of(child.pid)
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 143, stderr
    assert "tinycnn-xp sweep: interrupted: " in stderr and "Traceback" not in stderr
    time.sleep(0.5)
    assert workers and not [w for w in workers if w.is_running() and w.status() != "zombie"]
    lines = journal.read_text().splitlines()
    assert 1 <= len(lines) < 6
    finished = {json.loads(line)["config"]["lr"] for line in lines
                if not json.loads(line)["history"].get("interrupted")}

    monkeypatch.chdir(tmp_path)
    assert main(["sweep", *flags, "--resume", "s"]) == 0
    saved = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [r["config"]["lr"] for r in saved["records"]] == [float(r) for r in RATES]
    assert all(len(r["history"]["train_loss"]) == 200 for r in saved["records"])
    lines = (tmp_path / "s" / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 6  # the runs finished before, then the others: none twice
    assert finished <= {json.loads(line)["config"]["lr"] for line in lines}
    # the resumed sweep equals one never stopped
    assert main(["sweep", *flags, "--out", "whole"]) == 0
    whole = json.loads((tmp_path / "whole" / "sweep.json").read_text())
    assert [r["history"] for r in whole["records"]] == [r["history"] for r in saved["records"]]


def test_resume_drops_a_line_cut_short_and_refuses_another_sweeps_journal(numpy_only, tmp_path,
                                                                          monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    flags = ["--lrs", "0.05", "0.1", "--epochs", "3", "--quiet", "--no-figures"]
    assert main(["sweep", *flags, "--out", "s"]) == 0
    journal = tmp_path / "s" / "runs.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text(lines[0] + lines[1][:40])  # a kill in the middle of the second line
    capsys.readouterr()
    assert main(["sweep", *flags, "--resume", "s"]) == 0
    assert "1 finished before, in s" in capsys.readouterr().out
    assert len(journal.read_text().splitlines()) == 2
    assert main(["sweep", "--lrs", "0.05", "0.1", "--epochs", "4", "--quiet", "--resume", "s"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"tinycnn-xp sweep: {os.path.join('s', 'runs.jsonl')}: line 1 is a run of "
                   "another sweep (epochs 3, not 4); resume it with the same flags")
    assert main(["sweep", *flags, "--resume", "nowhere"]) == 2
    assert "nowhere: no runs.jsonl to resume" in capsys.readouterr().err
    assert np.isfinite(json.loads((tmp_path / "s" / "sweep.json").read_text())["records"][1]
                       ["history"]["train_loss"][-1])


# -- a Dask cluster that fails ---------------------------------------------------------------------
def dask_sweep(tmp_path, address, *flags):
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    return subprocess.Popen([sys.executable, "-u", "-m", "tinycnn_xp", "sweep", "--scheduler", address,
                             "--quiet", "--no-figures", "--out", "s", *flags], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_run_on_disk(tmp_path, child):
    journal = tmp_path / "s" / "runs.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None \
            and not (journal.exists() and journal.read_text()):
        time.sleep(0.05)
    assert journal.exists() and journal.read_text(), child.communicate()


def test_a_scheduler_without_workers_is_one_line(numpy_only, tmp_path):
    pytest.importorskip("distributed", reason="needs dask[distributed]")
    with local_cluster(n_workers=0) as cluster:
        start = time.monotonic()
        child = dask_sweep(tmp_path, cluster.scheduler_address, "--epochs", "2")
        _, stderr = child.communicate(timeout=120)
    assert child.returncode == 2, stderr
    assert stderr.strip() == (f"tinycnn-xp sweep: the Dask scheduler at {cluster.scheduler_address} "
                              f"has no worker (waited 2 s); start one with  dask worker "
                              f"{cluster.scheduler_address}")
    assert time.monotonic() - start < 60


#: epochs per run of the mid-sweep failures: the five runs after the first take far longer than
#: the 2-3 s the sweep needs to notice the failure (a run cut short used not to stop a sweep
#: that joblib ran here, and then 400 epochs once let it finish on a loaded machine)
EPOCHS = "500"


@pytest.mark.parametrize("how", ["the workers are gone", "the scheduler is gone"])
def test_a_cluster_that_fails_mid_sweep_ends_in_bounded_time_keeping_the_runs(numpy_only, tmp_path,
                                                                             how):
    distributed = pytest.importorskip("distributed", reason="needs dask[distributed]")
    cluster = local_cluster(n_workers=1, threads_per_worker=1, processes=True)
    address = cluster.scheduler_address
    try:
        child = dask_sweep(tmp_path, address, "--lrs", *RATES, "--epochs", EPOCHS)
        first_run_on_disk(tmp_path, child)
        start = time.monotonic()
        if how == "the workers are gone":
            with distributed.Client(address) as client:
                client.retire_workers(close_workers=True, remove=True)
                cluster.scale(0)
        else:
            cluster.close()
        _, stderr = child.communicate(timeout=120)
        elapsed = time.monotonic() - start
        print(f"{how}: the sweep ended {elapsed:.1f} s after")
    finally:
        child.kill()
        cluster.close()
    assert child.returncode == 5, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(f"tinycnn-xp sweep: the Dask cluster at {address} failed (")
    assert "runs finished, kept in the table and the files above; resume with" in lines[0]
    kept = json.loads((tmp_path / "s" / "sweep.json").read_text())["records"]
    assert kept and all(len(r["history"]["train_loss"]) == int(EPOCHS) for r in kept
                        if not r["history"].get("interrupted"))
    # A one-thread cluster makes joblib run the runs here, one after the other: the one cut
    # short is the last to start, as in a serial sweep.
    assert len(kept) < len(RATES) and sum(bool(r["history"].get("interrupted")) for r in kept) <= 1
    assert elapsed < 60
