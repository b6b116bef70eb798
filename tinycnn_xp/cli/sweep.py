"""``tinycnn-xp sweep``: the learning-rate sweep of Exercise 24.2, its table, JSON and figure."""

from __future__ import annotations

import argparse

from ..presets import make_model
from ..sweep import DEFAULT_LRS
from .common import (
    EXIT_INTERRUPTED,
    EXIT_NOT_WRITTEN,
    EXIT_OK,
    fill_defaults,
    have_matplotlib,
    load_dataset,
    resolve_backend,
    run_sweep,
    say,
)
from .files import RunFiles, list_files, prepare_out, write_sweep

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    fill_defaults(args)
    lrs = args.lrs or list(DEFAULT_LRS)
    backend = resolve_backend(args.backend, args.device, args.dtype)
    x_train, y_train, x_val, y_val, names = load_dataset(args.dataset)
    model = make_model(args.model, seed=args.seed, num_classes=len(names))
    out = prepare_out(args.out, f"sweep-{args.dataset}-{args.model}")
    data = [backend.put(x_train, args.dtype), backend.put(y_train), backend.put(x_val, args.dtype),
            backend.put(y_val)]
    print(f"backend {backend.name}   device {backend.device}   dtype {args.dtype}")
    print(f"learning-rate sweep: model {args.model} on {args.dataset}, {args.epochs} epochs each, "
          f"batch size {args.batch_size}, momentum {args.momentum}, "
          f"rates {', '.join(f'{lr:g}' for lr in lrs)}")
    histories = run_sweep(model, data, lrs, args.epochs, args.batch_size, args.momentum, args.quiet)
    files = RunFiles("sweep", out)
    write_sweep(files, histories, len(names), figure=have_matplotlib())
    list_files(out, files.files)
    if any(history.get("interrupted") for history in histories.values()):
        say("sweep", "interrupted; the rates done so far are in the table and the files above")
        return EXIT_INTERRUPTED
    # A rate that diverges is a result of the sweep (the table says so), not a failure.
    return EXIT_NOT_WRITTEN if files.failed else EXIT_OK
