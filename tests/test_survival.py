"""Training that survives being stopped: SIGTERM handled like Ctrl-C and resumed exactly,
``kill -9`` never leaving a broken ``model.npz``, one run per folder, no stale temporary files,
``history.csv`` one row per epoch across a resume, ``--keep-best``, and ``fit(history=)``.

The command-line tests run ``tinycnn-xp`` on NumPy (subprocesses where a signal is sent): the
numpy session only.
"""

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tinycnn_xp as tc
from helpers import param_state
from tinycnn_xp import checkpoint, training
from tinycnn_xp.cli import main
from tinycnn_xp.history import METRICS

QUICK = ["--quiet", "--sweep-epochs", "0", "--no-figures"]
POSIX = pytest.mark.skipif(os.name != "posix", reason="signals to a child process")


@pytest.fixture
def numpy_only(backend):
    if backend.NAME != "numpy":
        pytest.skip("the command line trains on NumPy here: the numpy session only")


def start(args, cwd):
    return subprocess.Popen([sys.executable, "-u", "-m", "tinycnn_xp", "train", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epoch(child, text="epoch "):
    for line in child.stdout:
        if line.startswith(text):
            return line
    raise AssertionError("the run ended before " + text)


def same_run(a, b):
    """Two checkpoints hold the same history and the same weights and velocities, bitwise."""
    history_a, history_b = checkpoint.load_history(a), checkpoint.load_history(b)
    for key in METRICS:
        assert history_a[key] == history_b[key], key
    assert history_a["kernel_snapshots"].keys() == history_b["kernel_snapshots"].keys()
    for epoch, kernels in history_a["kernel_snapshots"].items():
        np.testing.assert_array_equal(kernels, history_b["kernel_snapshots"][epoch])
    model_a, model_b = tc.Sequential.load(a), tc.Sequential.load(b)
    for key, value in param_state(model_a).items():
        np.testing.assert_array_equal(value, param_state(model_b)[key], err_msg=key)
    for (_, la, attr), (_, lb, _) in zip(model_a.parameters(), model_b.parameters()):
        np.testing.assert_array_equal(la.velocity[attr], lb.velocity[attr])


# -- SIGTERM ---------------------------------------------------------------------------------------
@POSIX
@pytest.mark.slow
def test_sigterm_checkpoints_and_the_resumed_run_equals_one_never_stopped(numpy_only, tmp_path,
                                                                        monkeypatch):
    epochs = ["--epochs", "1000", "--momentum", "0.5"]  # momentum: the velocities are kept too
    assert main(["train", *epochs, "--out", str(tmp_path / "straight"), *QUICK]) == 0

    child = start([*epochs, "--out", "cut", "--sweep-epochs", "0"], tmp_path)
    try:
        wait_for_epoch(child)  # after epoch 0, then a line every 100 epochs
        wait_for_epoch(child)  # well inside the run: the cut is mid-epoch and mid-run
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 143, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinycnn-xp train: terminated (SIGTERM) after "
                                                   "epoch "), stderr
    assert f"continue with  tinycnn-xp train --resume {os.path.join('cut', 'model.npz')} " \
           "--epochs 1000" in lines[0]
    done = len(checkpoint.load_history(tmp_path / "cut" / "model.npz")["train_loss"])
    assert 0 < done < 1000
    assert sorted(p.name for p in (tmp_path / "cut").iterdir() if p.name.endswith(".tmp")) == []

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume", "cut/model.npz", "--epochs", "1000", "--out", "cut",
                 *QUICK]) == 0
    same_run(tmp_path / "straight" / "model.npz", tmp_path / "cut" / "model.npz")
    rows = list(csv.reader((tmp_path / "cut" / "history.csv").read_text().splitlines()))
    assert [int(row[0]) for row in rows[1:]] == list(range(1000))  # none repeated, none lost


# -- kill -9 ---------------------------------------------------------------------------------------
@POSIX
@pytest.mark.slow
def test_kill_9_never_leaves_a_broken_checkpoint(numpy_only, tmp_path):
    """20 kills at random moments after the first checkpoint, with one written after every epoch
    (so that many kills land inside a write): model.npz is always whole, and resumes."""
    rng = np.random.default_rng(20)
    loaded = mid_write = 0
    for k in range(20):
        out = tmp_path / f"run{k}"
        child = start(["--epochs", "100000", "--checkpoint-every", "1", "--out", str(out),
                       *QUICK], tmp_path)
        try:
            wait_for_epoch(child, "training ")
            deadline = time.monotonic() + 60
            while not (out / "model.npz").exists() and time.monotonic() < deadline:
                time.sleep(0.005)  # the first checkpoint: from here on one is written per epoch
            time.sleep(rng.uniform(0.0, 0.3))
            child.send_signal(signal.SIGKILL)
            child.communicate(timeout=60)
        finally:
            child.kill()
        path = out / "model.npz"
        mid_write += any(p.name.startswith(".model.npz.") for p in out.iterdir())
        if path.exists():
            model = tc.Sequential.load(path)  # raises if it were truncated
            assert checkpoint.load_history(path) is not None
            assert model.parameter_count == tc.TinyCNN().parameter_count
            loaded += 1
    print(f"kill -9: 20 kills, {mid_write} during a checkpoint's write, {loaded} checkpoints loaded")
    assert loaded == 20 and mid_write >= 1
    # What a kill left behind (a temporary file, the lock) never stops the next run.
    out = next(tmp_path / f"run{k}" for k in range(20) if (tmp_path / f"run{k}" / "model.npz").exists())
    done = len(checkpoint.load_history(out / "model.npz")["train_loss"])
    assert main(["train", "--resume", str(out / "model.npz"), "--epochs", str(done + 2),
                 "--out", str(out), *QUICK]) == 0
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


# -- one run per folder ----------------------------------------------------------------------------
@POSIX
def test_a_folder_in_use_is_refused_and_a_killed_holder_leaves_no_lock(numpy_only, tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom tinycnn_xp.cli.files import prepare_out\n"
        f"prepare_out({str(tmp_path / 'run')!r}, 'x')\nprint('locked', flush=True)\ntime.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", "--epochs", "1", "--out", str(tmp_path / "run"), *QUICK]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"tinycnn-xp train: the output folder {tmp_path / 'run'} is in use by another "
                       f"tinycnn-xp run (process {holder.pid}); wait for it to end, or pass another --out")
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".tinycnn-xp.lock"]
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "run"), *QUICK]) == 0


def test_stale_temporary_files_are_removed_and_others_kept(numpy_only, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    stale = [".model.npz.0a1b2c3d4e5f.tmp", ".history.json.1f2a-0badcafe.tmp.json",
             ".loss_accuracy.png.2b-01234567.tmp.png"]
    kept = ["notes.tmp", ".mine.0a1b.tmp", "model.npz.bak"]
    for name in stale + kept:
        (run / name).write_bytes(b"x")
    assert main(["train", "--epochs", "1", "--out", str(run), *QUICK]) == 0
    names = {p.name for p in run.iterdir()}
    assert not names & set(stale) and set(kept) <= names


# -- history.csv and best.npz --------------------------------------------------------------------
def test_history_csv_has_one_row_per_epoch_across_a_resume(numpy_only, tmp_path):
    out = str(tmp_path / "run")
    assert main(["train", "--epochs", "5", "--out", out, *QUICK]) == 0
    with open(tmp_path / "run" / "history.csv", "a") as handle:  # a row a kill left after the checkpoint
        handle.write("5,1,1,0,0,0.12,0.01\n")
    assert main(["train", "--resume", f"{out}/model.npz", "--epochs", "9", "--out", out, *QUICK]) == 0
    rows = list(csv.DictReader((tmp_path / "run" / "history.csv").read_text().splitlines()))
    history = checkpoint.load_history(tmp_path / "run" / "model.npz")
    assert [int(row["epoch"]) for row in rows] == list(range(9))
    assert [float(row["val_acc"]) for row in rows] == history["val_acc"]
    assert all(float(row["seconds"]) > 0 and float(row["lr"]) == 0.12 for row in rows)


def test_keep_best_keeps_the_epoch_of_lowest_validation_loss(numpy_only, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "30", "--lr", "1.5", "--keep-best", "--out", str(out),
                 *QUICK]) in (0, 3)
    full = checkpoint.load_history(out / "model.npz")
    best = checkpoint.load_history(out / "best.npz")
    epochs = len(best["val_loss"])
    assert best["val_loss"][-1] == min(full["val_loss"]) and best["val_loss"] == full["val_loss"][:epochs]
    assert checkpoint.load_meta(out / "best.npz")["shuffles"]["bit_generator"] == "PCG64"


def test_checkpoint_cadence_flag(numpy_only, tmp_path, capsys):
    assert main(["train", "--epochs", "6", "--checkpoint-every", "2", "--out", str(tmp_path / "a"),
                 *QUICK]) == 0
    assert "checkpoints: 4 written" in capsys.readouterr().out  # after epochs 1, 3, 5 and at the end
    for bad in ("0", "-3s", "soon", "1.5"):
        with pytest.raises(SystemExit):
            main(["train", f"--checkpoint-every={bad}"])
        assert "expected a number of epochs (say 5) or of seconds (say 30s)" in capsys.readouterr().err


# -- fit(history=) ---------------------------------------------------------------------------------
def test_fit_continues_a_history_in_place(put):
    data = [put(a) for a in tc.make_dataset_bundle(train_per_class=10, val_per_class=5)[:4]]
    straight = training.fit(tc.TinyCNN(seed=0), *data, epochs=6, batch_size=6, verbose=False)
    model = tc.TinyCNN(seed=0)
    rng = np.random.default_rng(0)
    seen = []
    history = model.fit(*data, epochs=3, batch_size=6, seed=rng, verbose=False)
    returned = model.fit(*data, epochs=6, batch_size=6, seed=rng, verbose=False, initial_epoch=3,
                         history=history,
                         callback=lambda epoch, m: seen.append(len(history["train_loss"])))
    assert returned is history and seen == [4, 5, 6]  # each epoch is in it before the callback
    for key in METRICS:
        assert history[key] == straight[key]
    assert history["kernel_snapshots"].keys() == straight["kernel_snapshots"].keys()
    with pytest.raises(ValueError, match=r"history must hold the initial_epoch=2 epochs it "
                                         r"continues, got lists of \[6\] epochs"):
        model.fit(*data, epochs=8, initial_epoch=2, history=history, verbose=False)
    with pytest.raises(TypeError, match="history must be a history fit returned"):
        model.fit(*data, epochs=8, initial_epoch=6, history={"train_loss": []}, verbose=False)
    assert len(history["train_loss"]) == 6  # the refused calls changed nothing


# -- TensorBoard -------------------------------------------------------------------------------------
def test_tensorboard_events_read_back_one_per_epoch_after_a_resume(numpy_only, tmp_path):
    pytest.importorskip("tensorboardX", reason="train --tensorboard needs the tensorboard extra")
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                      reason="tensorboard's reader checks the events")
    board, out = str(tmp_path / "tb"), str(tmp_path / "run")
    assert main(["train", "--epochs", "6", "--tensorboard", board, "--out", out, *QUICK]) == 0
    # A run killed after its checkpoint wrote two more epochs than the checkpoint holds.
    from tensorboardX import SummaryWriter
    with SummaryWriter(logdir=board, filename_suffix=".stray") as stray:
        for epoch in (6, 7):
            stray.add_scalar("val_acc", -1.0, epoch)
    model = checkpoint.load_history(tmp_path / "run" / "model.npz")
    assert len(model["val_acc"]) == 6
    time.sleep(1.1)  # the resumed run's event file is named by a later second, as it would be
    assert main(["train", "--resume", f"{out}/model.npz", "--epochs", "10", "--tensorboard", board,
                 "--out", out, *QUICK]) == 0
    events = accumulator.EventAccumulator(board, size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    history = checkpoint.load_history(tmp_path / "run" / "model.npz")
    for key in METRICS:
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == list(range(10)), key
        np.testing.assert_allclose([s.value for s in scalars], history[key], rtol=1e-6)
    assert [s.value for s in events.Scalars("lr")] == pytest.approx([0.12] * 10)
    images = events.Images("filters")
    assert images and images[-1].step == 9 and images[-1].width > 0


# -- a full disk ---------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 160 KiB tmpfs (root only: skipped with the reason elsewhere)."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def fill(disk, leave):
    """Fill ``disk`` up to ``leave`` bytes free."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(disk / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))


def test_a_full_disk_costs_no_valid_file(numpy_only, small_disk, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the fallback for the checkpoint (not on the small disk)
    run = small_disk / "run"
    assert main(["train", "--epochs", "3", "--out", str(run), *QUICK]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if not p.name.startswith(".")}
    assert {"model.npz", "history.json", "history.csv"} <= before.keys()
    fill(small_disk, leave=4096)
    capsys.readouterr()
    # Resumed on a full disk, with figures: nothing it had is replaced by half a file.
    status = main(["train", "--resume", str(run / "model.npz"), "--epochs", "6", "--out", str(run),
                   "--quiet", "--sweep-epochs", "0"])
    err = capsys.readouterr().err
    assert status == 4 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert all(line.startswith("tinycnn-xp train: cannot write ") for line in lines), lines
    assert any(f"cannot write {run / 'model.npz'}: No space left on device; the model was saved to "
               in line for line in lines)
    fallback = next(tmp_path.glob("tinycnn-xp-run-model*.npz"))
    assert len(checkpoint.load_history(fallback)["train_loss"]) == 6
    for path in run.iterdir():
        if path.name.startswith(".") or path.name == "filler":
            continue
        assert path.stat().st_size > 0, path
        if path.name == "model.npz":
            assert len(checkpoint.load_history(path)["train_loss"]) == 3  # the old one, whole
        elif path.suffix == ".json":
            import json
            json.loads(path.read_text())
        elif path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in run.iterdir() if ".tmp" in p.name]  # no temporary file left behind
