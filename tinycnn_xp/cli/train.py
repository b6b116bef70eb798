"""``tinycnn-xp train``: train a preset, report, and write figures, a checkpoint and the history."""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np

from .. import checkpoint
from .._xp import to_numpy
from ..history import History, merge_histories
from ..models import Sequential
from ..presets import make_model
from ..sweep import DEFAULT_LRS
from .common import (
    FIGURES,
    SHUFFLE_SEED,
    SWEEP_EPOCHS,
    UsageProblem,
    checkpoint_call,
    fill_defaults,
    have_matplotlib,
    list_files,
    load_dataset,
    prepare_out,
    resolve_backend,
    run_sweep,
    write_sweep,
)
from .progress import Progress

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    saved = {}
    if args.resume:
        saved = checkpoint_call(checkpoint.load_meta, args.resume)
        if args.model and saved.get("model", args.model) != args.model:
            raise UsageProblem(f"{args.resume} holds a {saved['model']!r} model, not {args.model!r}; "
                               "leave out --model to resume it")
        saved.pop("epochs", None)  # --epochs is the new total, never the old one
        if not args.model and not saved.get("model"):  # saved from Python, not by this command
            args.model = "checkpoint"
    fill_defaults(args, saved)
    backend = resolve_backend(args.backend, args.device, args.dtype)
    x_train, y_train, x_val, y_val, names = load_dataset(args.dataset)
    previous = None
    if args.resume:
        model = checkpoint_call(Sequential.load, args.resume, xp=backend.xp, device=backend.device,
                                dtype=args.dtype)
        previous = checkpoint_call(checkpoint.load_history, args.resume)
        if model.num_classes != len(names):
            raise UsageProblem(f"{args.resume} holds a model for {model.num_classes} classes, but "
                               f"dataset {args.dataset} has {len(names)}")
    else:
        model = make_model(args.model, seed=args.seed, num_classes=len(names))
    done = len(previous["train_loss"]) if previous else 0
    if args.epochs <= done:
        raise UsageProblem(f"{args.resume} has trained {done} epochs already; pass --epochs N with "
                           f"N > {done} (the total number of epochs)")
    out = prepare_out(args.out, f"{args.dataset}-{args.model}")
    data = [backend.put(x_train, args.dtype), backend.put(y_train), backend.put(x_val, args.dtype),
            backend.put(y_val)]

    print(f"backend {backend.name}   device {backend.device}   dtype {args.dtype}")
    print(f"model {args.model}: {model!r}, {model.parameter_count} parameters")
    print(f"data {args.dataset}: {len(y_train)} training and {len(y_val)} validation images, "
          f"{len(names)} classes")
    resumed = f", resuming {args.resume} after epoch {done - 1}" if done else ""
    print(f"training {args.epochs} epochs: lr {args.lr}, batch size {args.batch_size}, "
          f"momentum {args.momentum}{resumed}")
    sweep_epochs = min(args.epochs, SWEEP_EPOCHS) if args.sweep_epochs is None else args.sweep_epochs
    initial = copy.deepcopy(model) if sweep_epochs else None  # the sweep's starting point
    progress = Progress(args.epochs, done, args.quiet)
    start = time.perf_counter()
    try:
        history = model.fit(*data, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                            seed=SHUFFLE_SEED, momentum=args.momentum, verbose=False,
                            initial_epoch=done, callback=progress)
    finally:
        progress.close()
    seconds = time.perf_counter() - start
    if previous:
        history = merge_histories(previous, history)

    counts = _confusion(model, data, len(names))
    _report(history, counts, names, len(history["train_loss"]) - done, seconds)
    settings = {key: getattr(args, key) for key in ("dataset", "model", "dtype", "seed", "lr",
                                                     "batch_size", "momentum", "epochs")}
    files = _write_run(out, model, history, counts, names, settings)
    if history.get("interrupted"):
        steps = history.get("interrupted_steps", 0)
        exact = (f"; the checkpoint holds {steps} steps of epoch {len(history['train_loss'])}, "
                 "which the resumed run trains again from the start" if steps else "")
        print(f"interrupted: continue with  tinycnn-xp train --resume {files['checkpoint']} "
              f"--epochs {args.epochs}{exact}")
    elif initial is not None:
        print(f"\nlearning-rate sweep from the same starting point: {sweep_epochs} epochs at each "
              f"of the rates {', '.join(f'{lr:g}' for lr in DEFAULT_LRS)} (--sweep-epochs 0 skips it)")
        histories = run_sweep(initial, data, list(DEFAULT_LRS), sweep_epochs, args.batch_size,
                              args.momentum, args.quiet, lines=False)
        # matplotlib's absence was reported with the run's figures: not a second time
        files.update(write_sweep(out, histories, len(names), figure=have_matplotlib(quiet=True)))
    if "diverged_epoch" in history:
        print(f"diverged at epoch {history['diverged_epoch']} (the loss stopped being finite): "
              "try a smaller --lr")
    list_files(out, files)
    return 0


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
    return (f"{settings['model']} on {settings['dataset']}: {settings['epochs']} epochs, lr "
            f"{settings['lr']:g}, batch size {settings['batch_size']}, momentum {settings['momentum']:g}, "
            f"{settings['dtype']}")


def _write_run(out: Path, model: Sequential, history: History, counts: np.ndarray, names: tuple,
               settings: dict) -> dict[str, Path]:
    """Checkpoint, history JSON and (with matplotlib) three figures; returns their paths."""
    files = {"checkpoint": checkpoint.save(model, out / "model.npz", history, meta=settings),
             "history": out / "history.json"}
    record: dict = {key: value for key, value in history.items() if key != "kernel_snapshots"}
    record["kernel_snapshots"] = {str(e): np.asarray(k).tolist()
                                  for e, k in history["kernel_snapshots"].items()}
    record["settings"] = settings
    files["history"].write_text(json.dumps(record, indent=1))
    if not have_matplotlib():
        return files
    from .. import plots
    if history["train_loss"]:
        files["curves"] = plots.save_figure(plots.training_curves(history, len(names),
                                                                  title=_run_title(settings)),
                                            out / FIGURES["curves"])
    if history["kernel_snapshots"]:
        files["filters"] = plots.save_figure(plots.filter_evolution(history), out / FIGURES["filters"])
    files["confusion"] = plots.save_figure(plots.confusion_figure(counts, names),
                                           out / FIGURES["confusion"])
    return files
