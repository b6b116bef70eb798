"""What the commands share: usage problems and exit statuses, the library's warnings in the
command's voice, backends, datasets, defaults, flag types, and the learning-rate sweep that both
``train`` and ``sweep`` run."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from .._backends import Backend, BackendUnavailable, resolve
from ..data import CLASS_NAMES, make_dataset_bundle
from ..history import History
from ..models import Sequential
from ..optim import BY_NAME, SGD
from ..sweep import SweepInterrupted, learning_rate_sweep
from ..training import TrainingDiverged, TrainingInterrupted
from .progress import Progress

DATASETS = ("lines", "lines4", "digits", "mnist")
FIGURES = {"curves": "loss_accuracy.png", "filters": "filter_evolution.png",
           "confusion": "confusion_matrix.png", "sweep": "lr_sweep.png"}
#: ``train``'s learning-rate sweep runs at most this many epochs per rate (``--sweep-epochs``).
SWEEP_EPOCHS = 80
SHUFFLE_SEED = 0  # fit's shuffling seed, the chapter's; --seed only draws the initial weights

#: ``(epochs, lr, batch_size, momentum)`` used when not given: the chapter's on the line patterns;
#: on the digits and MNIST, values tuned per preset (README, "Real data"), for SGD.
_LINES_DEFAULTS = (80, 0.12, 18, 0.0)
_DIGITS_DEFAULTS = {"tiny": (300, 0.1, 32, 0.0), "deep": (100, 0.05, 32, 0.5), "vgg": (15, 0.02, 32, 0.9)}
_DIGITS_FALLBACK = (30, 0.02, 32, 0.9)
_MNIST_DEFAULTS = {"lenet": (10, 0.02, 32, 0.9), "lenet_bn": (10, 0.02, 32, 0.9)}
_MNIST_FALLBACK = (10, 0.02, 32, 0.9)
#: ``(lr, momentum)`` when not given for ``--optimizer`` rmsprop, adam and adamw: the optimizer's
#: own defaults (Adam has no momentum); SGD's are the dataset's above.
OPTIMIZER_DEFAULTS: dict[str, tuple[float, float | None]] = {
    name: (cls().lr, getattr(cls(), "momentum", None))  # type: ignore[call-arg]  # not SGD: a default lr
    for name, cls in BY_NAME.items() if cls is not SGD}


#: Exit statuses of ``tinycnn-xp`` (``tinycnn-xp --help`` lists them).
EXIT_OK = 0
EXIT_GRADIENT_OFF = 1   # gradcheck: a relative error reached the threshold
EXIT_USAGE = 2          # something to fix (flag, backend, checkpoint, --out, scheduler): nothing ran
EXIT_DIVERGED = 3       # train: the run diverged (the checkpoint holds its last finite epoch)
EXIT_NOT_WRITTEN = 4    # a file of the run could not be written (the checkpoint went elsewhere)
EXIT_RUNS_FAILED = 5    # sweep: runs failed (a worker died twice, the cluster failed); the rest kept
EXIT_INTERRUPTED = 130  # Ctrl-C (what was finished is saved, and the command says where)
EXIT_TERMINATED = 143   # SIGTERM (kill, docker stop, systemd, SLURM), handled like Ctrl-C
EXIT_STATUSES = {EXIT_OK: "done", EXIT_GRADIENT_OFF: "gradcheck: a gradient is off",
                 EXIT_USAGE: "a problem to fix first (flag, backend, checkpoint, --out, scheduler); "
                             "nothing ran",
                 EXIT_DIVERGED: "train: the run diverged; its checkpoint holds the last finite epoch",
                 EXIT_NOT_WRITTEN: "a file could not be written (the checkpoint went elsewhere, "
                                   "as printed)",
                 EXIT_RUNS_FAILED: "sweep: some runs failed (a worker died twice, or the Dask "
                                   "cluster failed); the others are kept",
                 EXIT_INTERRUPTED: "interrupted (Ctrl-C); what was finished is saved",
                 EXIT_TERMINATED: "terminated (SIGTERM), handled like Ctrl-C"}


class UsageProblem(Exception):
    """Something the user can fix: printed as one line, exit status 2, no traceback."""


def say(command: str, line: str) -> None:
    """One line on stderr in the command's voice: ``tinycnn-xp train: ...``."""
    print(f"tinycnn-xp {command}: {line}", file=sys.stderr, flush=True)


def one_line_warnings(command: str) -> Any:
    """A ``warnings.showwarning`` that prints ``tinycnn-xp COMMAND: warning: ...`` (the first line
    of the message; no file names or source lines)."""
    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        text = str(message).strip().splitlines()
        say(command, f"warning: {text[0] if text else category.__name__}")
    return show


@contextlib.contextmanager
def library_warnings_as_results() -> Iterator[None]:
    """Training's own warnings (``TrainingDiverged``, ``TrainingInterrupted``,
    ``SweepInterrupted``) are left to the history, which the command reports in its own words;
    other warnings still reach ``warnings.showwarning``."""
    with warnings.catch_warnings():
        for category in (TrainingDiverged, TrainingInterrupted, SweepInterrupted):
            warnings.simplefilter("ignore", category)
        yield


# -- backends, data, defaults --------------------------------------------------------------------
def resolve_backend(name: str, device: str | None, dtype: str | None = "float64") -> Backend:
    """The backend for ``--backend``/``--device`` that can hold ``dtype``; ``UsageProblem`` if not.

    ``dtype=None`` means float64 with no ``--dtype`` flag to offer instead (``gradcheck``).
    """
    try:
        backend = resolve(name, device)
    except BackendUnavailable as exc:
        raise UsageProblem(str(exc)) from None
    if backend.name == "jax" and dtype in ("float64", None):
        import jax  # the library never changes JAX's settings: JAX reads JAX_ENABLE_X64 at import
        if not jax.config.read("jax_enable_x64"):
            instead = ", or pass --dtype float32" if dtype else " (gradcheck runs in float64)"
            raise UsageProblem(f"float64 on JAX needs JAX_ENABLE_X64=1 in the environment{instead}")
    return backend


def load_dataset(name: str) -> tuple[Any, Any, Any, Any, tuple[str, ...]]:
    """Host arrays ``(x_train, y_train, x_val, y_val, class_names)`` for ``--dataset``."""
    if name == "lines":
        return make_dataset_bundle()
    if name == "lines4":  # Exercise 24.5: the three line classes and a dot
        return make_dataset_bundle(class_names=(*CLASS_NAMES, "dot"))
    if name == "digits":
        from ..digits import load_digits_split
        try:
            return load_digits_split()
        except ImportError as exc:
            raise UsageProblem(str(exc)) from None
    if name == "mnist":
        from ..mnist import load_mnist
        try:
            return load_mnist()
        except ImportError as exc:
            raise UsageProblem(str(exc)) from None
    raise UsageProblem(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def default_settings(dataset: str, model: str) -> tuple[int, float, int, float]:
    if dataset == "digits":
        return _DIGITS_DEFAULTS.get(model, _DIGITS_FALLBACK)
    if dataset == "mnist":
        return _MNIST_DEFAULTS.get(model, _MNIST_FALLBACK)
    return _LINES_DEFAULTS


def fill_defaults(args: argparse.Namespace, saved: dict | None = None) -> None:
    """Options left unset take the checkpoint's settings (``saved``, already checked and limited to
    the training settings a file may give: never where to write), else the defaults."""
    for key, value in (saved or {}).items():
        if getattr(args, key, "absent") is None:
            setattr(args, key, value)
    own = bool(getattr(args, "data", None))  # --data: float32 and the digits' tuned values
    args.dataset = None if own else (args.dataset or "lines")
    args.model = args.model or "tiny"
    args.seed = 42 if args.seed is None else args.seed
    if getattr(args, "dtype", "absent") is None:
        args.dtype = "float32" if own else "float64"
    values: tuple[Any, ...] = default_settings("digits" if own else args.dataset, args.model)
    rate = OPTIMIZER_DEFAULTS.get(getattr(args, "optimizer", None) or "sgd")
    if rate is not None:  # another optimizer than SGD: its own rate and momentum
        values = (values[0], rate[0], values[2], rate[1])
    for key, value in zip(("epochs", "lr", "batch_size", "momentum"), values):
        if getattr(args, key, "absent") is None:
            setattr(args, key, value)


def checkpoint_call(function: Callable, *args: Any, **kwargs: Any) -> Any:
    """A checkpoint-reading call whose file problems become one-line usage problems."""
    try:
        return function(*args, **kwargs)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageProblem(str(exc)) from None


# -- figures --------------------------------------------------------------------------------------
def have_matplotlib(quiet: bool = False) -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if not quiet:
            print('figures skipped: matplotlib is not installed (pip install "tinycnn-xp[plot]")')
        return False
    return True


# -- the learning-rate sweep ---------------------------------------------------------------------
def run_sweep(model: Sequential, data: list, lrs: list[float], epochs: int, batch_size: int,
              momentum: float | None, quiet: bool, lines: bool = True,
              optimizer: Any = None) -> dict[float, History]:
    """``learning_rate_sweep`` with progress, then a table of each rate's final loss and accuracy
    (of SGD with ``momentum``, or of copies of ``optimizer`` at each rate)."""
    # A bar over all rates on a terminal; otherwise (with ``lines``) fit's lines, naming each rate.
    progress = Progress(len(lrs) * epochs, quiet=quiet, desc="sweep", lines=False)
    verbose = lines and not quiet and progress.bar is None
    calls = iter(range(len(lrs) * epochs))
    x_train, y_train, x_val, y_val = data
    how = {"momentum": momentum} if optimizer is None else {"optimizer": optimizer}
    with library_warnings_as_results():  # the table below says which rates diverged
        try:
            histories = learning_rate_sweep(model, x_train, y_train, x_val, y_val, lrs, epochs=epochs,
                                            batch_size=batch_size, seed=SHUFFLE_SEED, **how,
                                            verbose=verbose,
                                            callback=lambda _, m: progress(next(calls), m))
        except (TypeError, ValueError) as exc:
            raise UsageProblem(f"sweep: {exc}") from None
        finally:
            progress.close()
    print()
    for line in sweep_table(["lr"], [{"config": {"lr": lr}, "history": history}
                                     for lr, history in histories.items()]):
        print(line)
    return histories


def sweep_table(keys: list[str], records: list[Any]) -> list[str]:
    """A sweep's table, one line per run: the swept values (``keys``), the final training loss and
    validation accuracy, and how a run ended early (``diverged at epoch 3``, ``interrupted``)."""
    cells = [[_cell(record["config"][key]) for key in keys] for record in records]
    widths = [max(8, len(key), *(len(row[i]) for row in cells)) for i, key in enumerate(keys)]
    lines = ["  ".join([*(f"{key:>{width}s}" for key, width in zip(keys, widths)),
                        f"{'train loss':>10s}", f"{'val acc':>7s}"])]
    for row, record in zip(cells, records):
        history = record["history"]
        loss = f"{history['train_loss'][-1]:.4f}" if history["train_loss"] else "-"
        acc = f"{history['val_acc'][-1]:.1%}" if history["val_acc"] else "-"
        note = f"  diverged at epoch {history['diverged_epoch']}" if "diverged_epoch" in history else ""
        note += "  interrupted" if history.get("interrupted") else ""
        note += "  failed: its worker died twice" if record.get("failed") else ""
        lines.append("  ".join([*(f"{cell:>{width}s}" for cell, width in zip(row, widths)),
                                f"{loss:>10s}", f"{acc:>7s}"]) + note)
    return lines


def _cell(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


#: The largest values the size flags take (``--help`` says them): each is checked before anything
#: runs, so a typo is one line, not a run that cannot end or a raw MemoryError.
MAX_EPOCHS = 1_000_000
MAX_BATCH = 2**31 - 1
MAX_SAMPLES = 10_000    # gradcheck's random images (each entry of each parameter: 2 passes over them)
MAX_CLASSES = 1_000
MAX_RUNS = 10_000       # a sweep's grid: the product of its value lists
