"""``tinycnn-xp sweep``: a grid of learning rates x momenta x seeds (Exercise 24.2 and beyond), run
serially, on joblib's worker processes (``--jobs``) or on a Dask cluster (``--scheduler``), and its
table, JSON and figure.

The grid is every combination of ``--optimizers``, ``--schedules``, ``--lrs`` (default: the
chapter's rates; for another ``--optimizer``, a decade around its own rate; with ``--optimizers``,
each optimizer's own rate), ``--momentums``, ``--weight-decays`` and ``--seeds`` (no such axis
unless given; ``--optimizer``, ``--schedule``, ``--momentum``, ``--weight-decay`` and ``--seed``
fix one value for every run instead). Progress advances as
each run finishes, wherever it ran. A rate that diverges is a result, shown in the table, not a
failure. Ctrl-C ends the sweep: the runs already finished
are printed and written, and the status is ``EXIT_INTERRUPTED``.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ..history import without_snapshots
from ..presets import make_model
from ..sweep import SweepRecord, sweep
from . import cluster, datasets, journal, optimizers
from .common import (
    EXIT_INTERRUPTED,
    EXIT_NOT_WRITTEN,
    EXIT_OK,
    EXIT_RUNS_FAILED,
    MAX_RUNS,
    SHUFFLE_SEED,
    UsageProblem,
    fill_defaults,
    have_matplotlib,
    library_warnings_as_results,
    resolve_backend,
    say,
    sweep_table,
)
from .files import RunFiles, list_files, prepare_out
from .progress import RunProgress
from .writes import write_figure, write_json, write_text

__all__ = ["run", "grid_of", "TABLE", "RECORDS", "FIGURE"]

#: the files a sweep writes into its run folder.
TABLE, RECORDS, FIGURE = "sweep.txt", "sweep.json", "sweep.png"


def grid_of(args: argparse.Namespace) -> dict[str, list[Any]]:
    """The grid the flags ask for (see the module's docstring); no value twice."""
    grid = optimizers.axes(args)  # --optimizers, --schedules, then --lrs (see there)
    if args.momentums:
        grid["momentum"] = list(args.momentums)
    if args.weight_decays:
        grid["weight_decay"] = list(args.weight_decays)
    if args.seeds is not None:
        grid["seed"] = list(args.seeds)
    flags = {"optimizer": "--optimizers", "schedule": "--schedules", "lr": "--lrs",
             "momentum": "--momentums", "weight_decay": "--weight-decays", "seed": "--seeds"}
    for key, values in grid.items():
        seen: set = set()
        for value in values:  # linear: a set of the values so far
            if value in seen:
                raise UsageProblem(f"{flags[key]} holds {_text(value)} twice; pass distinct values")
            seen.add(value)
    runs = _size(grid)
    if runs > MAX_RUNS:
        raise UsageProblem(f"the grid has {runs:,} runs ({' x '.join(str(len(v)) for v in grid.values())}); "
                           f"a sweep runs at most {MAX_RUNS:,}")
    return grid


def run(args: argparse.Namespace) -> int:
    fill_defaults(args)  # --seed's default too: the initial weights when no seed is swept
    grid = grid_of(args)
    fit_kwargs: dict[str, Any] = {"epochs": args.epochs, "batch_size": args.batch_size,
                                  "seed": SHUFFLE_SEED}
    if "momentum" not in grid:
        fit_kwargs["momentum"] = args.momentum
    if "seed" in grid:  # each run's seed seeds its shuffles too
        del fit_kwargs["seed"]
    chosen = _optimizer(args, grid, fit_kwargs)
    cluster.check_extras(args)
    backend = resolve_backend(args.backend, args.device, args.dtype)
    found = datasets.load(args, args.dtype)
    x_train, y_train, x_val, y_val, names = found[:5]
    args.dataset = found.label  # in the header, the folder's name and the settings
    try:
        model = make_model(args.model, seed=args.seed, num_classes=len(names),
                           input_shape=tuple(x_train.shape[1:]))
    except ValueError as exc:
        raise UsageProblem(f"--model {args.model}: {exc}") from None
    total = _size(grid)
    # What makes two runs comparable: a journal of other settings is not resumed.
    same = {"data": found.record["fingerprint"], "model": args.model, "dtype": args.dtype,
            **{key: value for key, value in fit_kwargs.items() if key != "seed"},
            **({"seed": args.seed} if "seed" not in grid else {}), **chosen}
    kept = journal.read(args.resume, same) if args.resume else []
    with cluster.workers(args, total) as where:  # connects to --scheduler, or says why not
        out = prepare_out(args.out or args.resume,
                          f"sweep-{datasets.name_of(args.dataset)}-{args.model}")
        files = RunFiles("sweep", out, figures=not args.no_figures)
        log = journal.Journal(files, same, [r for r in kept if not r["history"].get("interrupted")])
        data = [backend.put(x_train, args.dtype), backend.put(y_train), backend.put(x_val, args.dtype),
                backend.put(y_val)]
        header = _header(args, grid)
        print(f"backend {backend.name}   device {backend.device}   dtype {args.dtype}")
        print(header)
        print(f"grid: {'; '.join(f'{key} ' + ', '.join(_text(v) for v in vs) for key, vs in grid.items())}"
              f": {total} run{'s' if total > 1 else ''} {where}"
              + (f"; {len(kept)} finished before, in {args.resume}" if args.resume else ""))
        try:
            records = _run(model, data, grid, fit_kwargs, args, kept, log.append)
        finally:
            log.close()
    table = sweep_table(list(grid), records)
    # A run Ctrl-C cut short is kept, marked 'interrupted' (its whole epochs), and not finished.
    finished = sum(not record["history"].get("interrupted") for record in records)
    if records:
        print()
        for line in table:
            print(line)
        settings = {"dataset": args.dataset, "model": args.model, "backend": backend.name,
                    "device": str(backend.device), "dtype": args.dtype, "epochs": args.epochs,
                    "batch_size": args.batch_size, "grid": grid, "runs": total,
                    "finished": finished}
        if "momentum" not in grid and args.momentum is not None:
            settings["momentum"] = args.momentum
        settings.update(chosen)
        if "seed" not in grid:  # else each run's seed seeds both
            settings.update(seed=args.seed, shuffle_seed=SHUFFLE_SEED)
        _write(files, records, settings, [header, "", *table], len(names))
        list_files(out, files.files)
    if cluster.LOST["why"]:
        say("sweep", f"the Dask cluster at {args.scheduler} failed ({cluster.LOST['why']}): "
                     f"{finished} of {total} runs finished, kept in the table and the files above; "
                     f"resume with  tinycnn-xp sweep --resume {out} and the same flags")
        return EXIT_RUNS_FAILED
    if finished < total:
        cut = len(records) - finished
        done = (f"{finished} of {total} runs finished, kept in the table and the files above"
                + (" (with the run it cut short, marked interrupted)" if cut else "")
                if records else f"none of the {total} runs had finished; nothing was written")
        say("sweep", f"interrupted: {done}")
        return EXIT_INTERRUPTED
    failed = sum(bool(record.get("failed")) for record in records)
    if failed:
        say("sweep", f"{failed} of {total} runs failed (their worker died twice); the others are "
                     f"in the table; resume with  tinycnn-xp sweep --resume {out} and the same flags")
        return EXIT_RUNS_FAILED
    # A rate that diverges is a result of the sweep (the table says so), not a failure.
    return EXIT_NOT_WRITTEN if files.failed else EXIT_OK


def _run(model: Any, data: list, grid: dict[str, list[Any]], fit_kwargs: dict[str, Any],
         args: argparse.Namespace, kept: list, record: Any) -> list[SweepRecord]:
    """``sweep`` with progress and ``record(run)`` as each run finishes, the ``kept`` runs not
    run again; the runs finished (all of them unless interrupted). The library's warnings of a
    run are results, said by the table."""
    progress = RunProgress(_size(grid), quiet=args.quiet)
    n_jobs = None if args.scheduler is not None else args.jobs  # None: joblib's Dask backend

    ended: list[SweepRecord] = []  # what finished, should the cluster fail mid-sweep

    def finished(run: SweepRecord, done: int, total: int) -> None:
        ended.append(run)
        record(run)
        progress(run, done, total)
    try:
        with library_warnings_as_results():  # said below in this command's words, with the status
            return sweep(model, data[0], data[1], data[2], data[3], grid=grid, n_jobs=n_jobs,
                         on_run=finished, done=kept, **fit_kwargs)
    except (TypeError, ValueError) as exc:  # what fit refuses of these data and settings
        raise UsageProblem(str(exc)) from None
    except Exception as exc:
        if args.scheduler is None or not cluster.failed(exc):
            raise
        # The scheduler went away (killed, restarted): the runs that finished are the sweep's.
        runs = {json.dumps(r["config"], sort_keys=True): r for r in [*kept, *ended]}
        return [runs[key] for key in sorted(runs, key=lambda k: _order(grid, json.loads(k)))]
    finally:
        progress.close()


def _optimizer(args: argparse.Namespace, grid: dict[str, list[Any]],
               fit_kwargs: dict[str, Any]) -> dict[str, Any]:
    """With ``--optimizer``, ``--weight-decay(s)`` or ``--schedule``: every run's optimizer in
    ``fit_kwargs`` (copied per run with its rate, momentum and weight decay; ``sweep``), and the
    settings that say it (for the journal and the records); else nothing (the chapter's SGD)."""
    if "optimizer" in grid or "schedule" in grid:  # each run's, from the grid
        return optimizers.swept(args, grid, fit_kwargs)
    if args.optimizer in (None, "sgd") and args.weight_decay is None and not args.weight_decays \
            and not args.schedule:
        return {}
    if "momentum" in grid and args.optimizer in ("adam", "adamw"):
        raise UsageProblem(f"--momentums: --optimizer {args.optimizer} has no momentum")
    args.lr = grid["lr"][0]  # each run's own: the grid's
    base = optimizers.build(args)
    fit_kwargs.pop("momentum", None)
    fit_kwargs["optimizer"] = base
    found = optimizers.settings_of(base)
    return {key: value for key, value in found.items() if key not in grid and key != "lr"}


def _order(grid: dict[str, list[Any]], config: dict[str, Any]) -> tuple:
    """Where ``config`` stands in the grid's order (the last key varying fastest)."""
    return tuple(values.index(config[key]) if config.get(key) in values else len(values)
                 for key, values in grid.items())


def _size(grid: dict[str, list[Any]]) -> int:
    return math.prod(len(values) for values in grid.values())


def _header(args: argparse.Namespace, grid: dict[str, list[Any]]) -> str:
    fixed = [f"{args.epochs} epochs per run", f"batch size {args.batch_size}"]
    if args.optimizer not in (None, "sgd"):
        fixed.insert(0, f"optimizer {args.optimizer}")
    if "momentum" not in grid and args.momentum is not None:
        fixed.append(f"momentum {args.momentum:g}")
    if "weight_decay" not in grid and args.weight_decay:
        fixed.append(f"weight decay {args.weight_decay:g}")
    if args.schedule:
        fixed.append(f"schedule {args.schedule}")
    fixed.append("each seed seeds a run's weights and shuffles" if "seed" in grid
                 else f"initial weights of seed {args.seed}")
    return f"sweep: model {args.model} on {args.dataset}, {', '.join(fixed)}"


def _write(files: RunFiles, records: list[SweepRecord], settings: dict, table: list[str],
           num_classes: int) -> None:
    """The table, the records as JSON (no kernel snapshots) and (with matplotlib) the figure."""
    out = files.out
    files.write("table", out / TABLE, lambda target: write_text(target, "\n".join(table) + "\n"))
    record = {"settings": settings,
              "records": [{"config": r["config"],
                           "history": without_snapshots(r["history"])}
                          for r in records]}
    files.write("records", out / RECORDS, lambda target: write_json(target, record))
    if files.figures and have_matplotlib():
        from .. import plots
        # key "sweep": listed as a figure, like train's
        files.write("sweep", out / FIGURE, lambda target: write_figure(
            target, lambda: plots.sweep_figure(records, num_classes)))


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
