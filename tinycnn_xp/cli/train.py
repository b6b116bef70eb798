"""``tinycnn-xp train``: train a preset, report, and write figures, a checkpoint and the history.

Everything that can be checked is checked before training: the flags, the backend, the
checkpoint to resume (``resume``), the output folder (``files``). The library's warnings become
one line each in the command's voice; a run that diverges exits with ``EXIT_DIVERGED``, one
stopped by Ctrl-C with ``EXIT_INTERRUPTED`` once its checkpoint is written.
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from .._xp import to_numpy
from ..history import History, new_history, without_snapshots
from ..models import Sequential
from ..presets import make_model
from . import datasets, optimizers, resume
from .board import Board
from .checkpoints import HISTORY_CSV, Checkpoints, HistoryRows
from .common import (
    EXIT_DIVERGED,
    EXIT_INTERRUPTED,
    EXIT_NOT_WRITTEN,
    EXIT_OK,
    FIGURES,
    SHUFFLE_SEED,
    SWEEP_EPOCHS,
    UsageProblem,
    fill_defaults,
    have_matplotlib,
    library_warnings_as_results,
    resolve_backend,
    run_sweep,
    say,
)
from .files import RunFiles, list_files, prepare_out, write_sweep
from .progress import Progress
from .signals import TERMINATED
from .writes import write_figure, write_json

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    saved: dict = {}
    meta: dict = {}
    model: Sequential | None = None
    previous = shuffled = None
    typed = optimizers.typed(args)  # before the defaults: a resumed optimizer changes only these
    if args.resume:
        saved, model, previous, shuffled, meta = resume.load(args)
    fill_defaults(args, saved)
    backend = resolve_backend(args.backend, args.device, args.dtype)
    data = datasets.load(args, args.dtype)
    names = data.names
    if model is not None:
        resume.check_fits(args.resume, model, data.x_train.shape, data.label, len(names))
        resume.check_same_data(args.resume, meta, data.record)
        try:
            model.to(backend.xp, backend.device, args.dtype)
        except ValueError as exc:
            raise UsageProblem(f"{args.resume}: {exc}") from None
    else:
        try:
            model = make_model(args.model, seed=args.seed, num_classes=len(names),
                               input_shape=tuple(data.x_train.shape[1:]))
        except ValueError as exc:  # a preset too deep for these images
            raise UsageProblem(f"--model {args.model}: {exc}") from None
    optimizer = optimizers.for_run(args, typed, model.optimizer)
    done = len(previous["train_loss"]) if previous else 0
    if args.epochs <= done:
        raise UsageProblem(f"{args.resume} has trained {done} epochs already; pass --epochs N with "
                           f"N > {done} (the total number of epochs)")
    board = Board(args.tensorboard, done, args.lr) if args.tensorboard else None
    label = datasets.name_of(args.data) if args.data else args.dataset
    out = prepare_out(args.out, f"{label}-{args.model}")
    arrays = [backend.put(data.x_train, args.dtype), backend.put(data.y_train),
              backend.put(data.x_val, args.dtype), backend.put(data.y_val)]

    print(f"backend {backend.name}   device {backend.device}   dtype {args.dtype}")
    print(f"model {args.model}: {model!r}, {model.parameter_count} parameters")
    print(f"data {data.label}: {len(data.y_train)} training and {len(data.y_val)} validation "
          f"images of {'x'.join(map(str, data.x_train.shape[1:]))}, {len(names)} classes")
    resumed = f", resuming {args.resume} after epoch {done - 1}" if done else ""
    print(f"training {args.epochs} epochs: {optimizers.describe(optimizer)}, batch size "
          f"{args.batch_size}{resumed}")
    sweep_epochs = args.sweep_epochs
    if sweep_epochs is None:  # on MNIST the sweep would take five times the run: asked for only
        sweep_epochs = 0 if args.dataset == "mnist" else min(args.epochs, SWEEP_EPOCHS)
    initial = copy.deepcopy(model) if sweep_epochs else None  # the sweep's starting point
    progress = Progress(args.epochs, done, args.quiet)
    # The shuffles go on where the resumed run's stopped: its generator's state, after its last
    # whole epoch (a checkpoint of 0.2.0 has none: its shuffles are drawn again).
    shuffles = shuffled or np.random.default_rng(SHUFFLE_SEED)
    if shuffled is None:
        for _ in range(done):
            shuffles.permutation(len(data.y_train))
    settings = {**{key: getattr(args, key) for key in ("dataset", "model", "dtype", "seed")},
                **optimizers.settings_of(optimizer), "batch_size": args.batch_size, "epochs": args.epochs}
    if args.data:
        del settings["dataset"]  # what to read is typed again, never taken from the file
    files = RunFiles("train", out, figures=not args.no_figures)
    history = previous if previous is not None else new_history()  # fit continues it
    keeper = Checkpoints(files, model, history, {**settings, "data": data.record},
                         args.checkpoint_every, args.keep_best, shuffles)
    rows = HistoryRows(files, out / HISTORY_CSV, history, args.lr)

    def after_epoch(epoch: int, metrics: dict) -> None:
        progress(epoch, metrics)
        rows.append(epoch, metrics)
        if board is not None:
            board.epoch_ended(epoch, metrics, model)
        keeper.epoch_ended(epoch, metrics)
    start = time.perf_counter()
    try:
        with library_warnings_as_results():  # said below, in this command's words
            model.fit(arrays[0], arrays[1], arrays[2], arrays[3], epochs=args.epochs,
                      batch_size=args.batch_size, seed=shuffles, optimizer=optimizer,
                      verbose=False, initial_epoch=done, callback=after_epoch, history=history)
    finally:
        progress.close()
        rows.close()
        if board is not None:
            board.close()
    seconds = time.perf_counter() - start
    saved_to = keeper.final()
    try:
        counts = _confusion(model, arrays, len(names))
        _report(history, counts, names, len(history["train_loss"]) - done, seconds)
        print(keeper.cost(seconds))
        _write_run(files, history, counts, names, {**settings, "data": data.label})
        if history.get("interrupted"):
            again = f" --data {args.data}" if args.data else ""
            hint = (f"; continue with  tinycnn-xp train --resume {saved_to} --epochs {args.epochs}"
                    f"{again}" if saved_to else "")
            list_files(out, files.files)
            stopped = "terminated (SIGTERM)" if TERMINATED["by"] else "interrupted"
            say("train", f"{stopped} after epoch {len(history['train_loss']) - 1}{hint}")
            return EXIT_INTERRUPTED
        if initial is not None:
            # The chapter's SGD as fit(lr=, momentum=) runs it; other optimizers: copies of the run's
            plain, rates = optimizers.plain(optimizer), optimizers.sweep_rates(args.optimizer, args.lr)
            print(f"\nlearning-rate sweep from the same starting point: {sweep_epochs} epochs at each "
                  f"of the rates {', '.join(f'{lr:g}' for lr in rates)} (--sweep-epochs 0 skips it)")
            histories = run_sweep(initial, arrays, rates, sweep_epochs, args.batch_size,
                                  args.momentum, args.quiet, lines=False,
                                  optimizer=None if plain else optimizer)
            # matplotlib's absence was reported with the run's figures: not a second time
            write_sweep(files, histories, len(names), figure=have_matplotlib(quiet=True))
            if any(h.get("interrupted") for h in histories.values()):
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        list_files(out, files.files)
        stopped = "terminated (SIGTERM)" if TERMINATED["by"] else "interrupted"
        say("train", stopped + (f"; the trained model is saved: {saved_to}" if saved_to else ""))
        return EXIT_INTERRUPTED
    list_files(out, files.files)
    if files.failed:
        return EXIT_NOT_WRITTEN
    if "diverged_epoch" in history:
        say("train", f"diverged at epoch {history['diverged_epoch']} (the loss or the weights "
                     "stopped being finite); the checkpoint holds the last finite epoch; try a "
                     "smaller --lr")
        return EXIT_DIVERGED
    return EXIT_OK


def _report(history: History, counts: np.ndarray, names: tuple, trained: int, seconds: float) -> None:
    print(f"\ntrained {trained} epochs in {seconds:.2f} s")
    if history["train_loss"]:  # counts too: 341/359 is 95.0% rounded, and below 95%
        print(f"final train accuracy {history['train_acc'][-1]:.1%}   val accuracy "
              f"{history['val_acc'][-1]:.1%} ({np.trace(counts)}/{counts.sum()})   "
              f"val loss {history['val_loss'][-1]:.4f}")
    print("per-class validation accuracy:")
    for i, name in enumerate(names):
        total = counts[i].sum()
        print(f"  {name:>12s}: {counts[i, i]:3d}/{total:<3d} = {counts[i, i] / max(total, 1):.1%}")


def _confusion(model: Sequential, data: list, num_classes: int) -> np.ndarray:
    """Validation confusion counts on the host (one transfer of the predictions)."""
    from ..plots import confusion_counts  # plain NumPy: matplotlib is imported only to draw
    return confusion_counts(to_numpy(data[3]), to_numpy(model.predict(data[2])), num_classes)


def _run_title(settings: dict) -> str:
    momentum = f", momentum {settings['momentum']:g}" if "momentum" in settings else ""
    optimizer = "" if settings["optimizer"] == "sgd" else f"{settings['optimizer']}, "
    return (f"{settings['model']} on {settings['data']}: {settings['epochs']} epochs, {optimizer}lr "
            f"{settings['lr']:g}, batch size {settings['batch_size']}{momentum}, {settings['dtype']}")


def _write_run(files: RunFiles, history: History, counts: np.ndarray, names: tuple,
               settings: dict) -> None:
    """History JSON and (with matplotlib) three figures, into ``files`` (the checkpoint is there)."""
    out = files.out
    record: dict = without_snapshots(history)
    record["kernel_snapshots"] = {str(e): np.asarray(k).tolist()
                                  for e, k in history["kernel_snapshots"].items()}
    record["settings"] = settings
    files.write("history", out / "history.json", lambda target: write_json(target, record))
    if not (files.figures and have_matplotlib()):
        return
    from .. import plots
    if history["train_loss"]:
        files.write("curves", out / FIGURES["curves"], lambda target: write_figure(
            target, lambda: plots.training_curves(history, len(names), title=_run_title(settings))))
    if history["kernel_snapshots"]:
        files.write("filters", out / FIGURES["filters"], lambda target: write_figure(
            target, lambda: plots.filter_evolution(history)))
    files.write("confusion", out / FIGURES["confusion"], lambda target: write_figure(
        target, lambda: plots.confusion_figure(counts, names)))
