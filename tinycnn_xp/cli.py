"""Command line: ``tinycnn-xp train | gradcheck | sweep | bench`` (``python -m tinycnn_xp`` too).

``train`` trains a preset on the line patterns (the chapter's run by default) or the 8x8 digits on
the chosen backend, shows progress, prints a summary, and writes the figures, a checkpoint and the
history into a run folder. ``--resume`` continues a checkpoint's run exactly where it stopped.
Problems the user can fix (a backend that cannot run here, a missing extra, a bad checkpoint) end
with one line on stderr and exit status 2; ``gradcheck`` exits 1 when a gradient is off.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import shutil
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from . import _checks, checkpoint
from .data import CLASS_NAMES, make_dataset_bundle
from .models import SNAPSHOT_EPOCHS, Sequential
from .presets import PRESETS, make_model
from .sweep import DEFAULT_LRS, learning_rate_sweep
from ._xp import to_numpy

BACKENDS = ("numpy", "array_api_strict", "torch", "cupy")
DATASETS = ("lines", "lines4", "digits")
METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")
FIGURES = {"curves": "loss_accuracy.png", "filters": "filter_evolution.png",
           "confusion": "confusion_matrix.png", "sweep": "lr_sweep.png"}
#: ``train``'s learning-rate sweep runs at most this many epochs per rate (``--sweep-epochs``).
_SWEEP_EPOCHS = 80

#: ``(epochs, lr, batch_size, momentum)`` used when not given: the chapter's on the line patterns;
#: on the digits, values tuned per preset (README, "Real data").
_LINES_DEFAULTS = (80, 0.12, 18, 0.0)
_DIGITS_DEFAULTS = {"tiny": (300, 0.1, 32, 0.0), "deep": (100, 0.05, 32, 0.5), "vgg": (15, 0.02, 32, 0.9)}
_DIGITS_FALLBACK = (30, 0.02, 32, 0.9)
_SHUFFLE_SEED = 0  # fit's shuffling seed, the chapter's; --seed only draws the initial weights


class UsageProblem(Exception):
    """Something the user can fix: printed as one line, exit status 2, no traceback."""


# -- backends and data ---------------------------------------------------------------------------
class Backend(NamedTuple):
    name: str
    xp: Any
    device: Any

    def put(self, host: np.ndarray, dtype: str | None = None) -> Any:
        """A host array placed on this backend's device (cast to ``dtype`` on the host first)."""
        host = np.ascontiguousarray(host if dtype is None else host.astype(dtype))
        if self.name == "numpy":
            return host
        return self.xp.asarray(host, device=self.device)


def resolve_backend(name: str, device: str | None) -> Backend:
    """The namespace and device for ``--backend``/``--device``; ``UsageProblem`` if it cannot run."""
    if name == "numpy":
        if device not in (None, "cpu"):
            raise UsageProblem(f"the numpy backend runs on the CPU only (--device cpu), got --device {device}")
        return Backend(name, np, "cpu")
    if name == "array_api_strict":
        try:
            import array_api_strict as xp
        except ImportError:
            raise UsageProblem("backend array_api_strict is not installed: pip install array-api-strict") from None
        try:
            return Backend(name, xp, xp.Device(device or "CPU_DEVICE"))
        except ValueError:
            names = ", ".join(str(d).split("'")[1] for d in xp.__array_namespace_info__().devices())
            raise UsageProblem(f"array_api_strict has no device {device!r}; its devices: {names}") from None
    if name == "torch":
        try:
            import torch
            import array_api_compat.torch as xp
        except ImportError:
            raise UsageProblem("backend torch is not installed: pip install torch") from None
        try:
            dev = torch.device(device or "cpu")
            torch.zeros(1, device=dev)  # fails here, not mid-training, if the device is absent
        except (RuntimeError, AssertionError) as exc:
            raise UsageProblem(f"torch cannot use device {device!r}: {str(exc).splitlines()[0]}") from None
        return Backend(name, xp, dev)
    if name == "cupy":
        try:
            import cupy
            import array_api_compat.cupy as xp
        except ImportError:
            raise UsageProblem('backend cupy is not installed: pip install "tinycnn-xp[cupy]" '
                               "(needs an NVIDIA GPU with CUDA 12)") from None
        try:
            dev = cupy.cuda.Device(int(device or 0))
            with dev:
                (cupy.arange(3) + 1).sum().get()  # a kernel that runs proves driver, device, compiler
        except Exception as exc:  # CUDARuntimeError, CompileException, ValueError (bad --device)
            raise UsageProblem(f"cupy cannot run on GPU {device or 0}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else 'no details'}") from None
        return Backend(name, xp, dev)
    raise UsageProblem(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")


def load_dataset(name: str):
    """Host arrays ``(x_train, y_train, x_val, y_val, class_names)`` for ``--dataset``."""
    if name == "lines":
        return make_dataset_bundle()
    if name == "lines4":  # Exercise 24.5: the three line classes and a dot
        return make_dataset_bundle(class_names=CLASS_NAMES + ("dot",))
    if name == "digits":
        from .digits import load_digits_split
        try:
            return load_digits_split()
        except ImportError as exc:
            raise UsageProblem(str(exc)) from None
    raise UsageProblem(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def default_settings(dataset: str, model: str) -> tuple[int, float, int, float]:
    if dataset == "digits":
        return _DIGITS_DEFAULTS.get(model, _DIGITS_FALLBACK)
    return _LINES_DEFAULTS


def _new_run_dir(kind: str) -> Path:
    base = Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{kind}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _prepare_out(out: str | None, kind: str) -> Path:
    path = Path(out) if out else _new_run_dir(kind)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageProblem(f"cannot create the output folder {path}: {exc.strerror or exc}") from None
    return path


# -- progress ------------------------------------------------------------------------------------
class Progress:
    """``fit``'s ``callback``: a tqdm bar on a terminal, otherwise a plain line every few epochs."""

    def __init__(self, total: int, initial: int = 0, quiet: bool = False, desc: str = "training",
                 lines: bool = True):
        self.total, self.start = total, time.perf_counter()
        self.quiet = quiet or not lines
        # A line every 1, 2, 5, 10, 20, 50, ... epochs: about ten lines in all.
        self.every = next(step for step in (m * 10 ** e for e in range(9) for m in (1, 2, 5))
                          if step * 10 >= total)
        self.initial = initial
        self.bar = None
        if not quiet and sys.stdout.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # the plain lines below do the job
                tqdm = None
            if tqdm is not None:
                # The terminal's width, or 80 where it reports none (tqdm would draw nothing).
                self.bar = tqdm(total=total, initial=initial, desc=desc, unit="epoch", file=sys.stdout,
                                ncols=shutil.get_terminal_size().columns, leave=True)

    def __call__(self, epoch: int, metrics: dict) -> None:
        text = (f"loss {metrics['train_loss']:.4f}  train {metrics['train_acc']:.1%}  "
                f"val {metrics['val_acc']:.1%}")
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif not self.quiet and (epoch == self.initial or (epoch + 1) % self.every == 0
                                 or epoch == self.total - 1):
            print(f"epoch {epoch + 1:4d}/{self.total}  {text}  ({time.perf_counter() - self.start:.1f} s)",
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- train ---------------------------------------------------------------------------------------
def _fill_defaults(args: argparse.Namespace, saved: dict | None = None) -> None:
    """Options left unset take the checkpoint's settings (``saved``), else the defaults."""
    for key, value in (saved or {}).items():
        if getattr(args, key, "absent") is None:
            setattr(args, key, value)
    args.dataset = args.dataset or "lines"
    args.model = args.model or "tiny"
    args.seed = 42 if args.seed is None else args.seed
    if getattr(args, "dtype", "absent") is None:
        args.dtype = "float64"
    for key, value in zip(("epochs", "lr", "batch_size", "momentum"),
                          default_settings(args.dataset, args.model)):
        if getattr(args, key, "absent") is None:
            setattr(args, key, value)


def _train(args: argparse.Namespace) -> int:
    saved = {}
    if args.resume:
        saved = _checkpoint_call(checkpoint.load_meta, args.resume)
        if args.model and saved.get("model", args.model) != args.model:
            raise UsageProblem(f"{args.resume} holds a {saved['model']!r} model, not {args.model!r}; "
                               "leave out --model to resume it")
        saved.pop("epochs", None)  # --epochs is the new total, never the old one
        if not args.model and not saved.get("model"):  # saved from Python, not by this command
            args.model = "checkpoint"
    _fill_defaults(args, saved)
    backend = resolve_backend(args.backend, args.device)
    x_train, y_train, x_val, y_val, names = load_dataset(args.dataset)
    previous = None
    if args.resume:
        model = _checkpoint_call(checkpoint.load, args.resume, xp=backend.xp, device=backend.device,
                                 dtype=args.dtype)
        previous = _checkpoint_call(checkpoint.load_history, args.resume)
        if model.num_classes != len(names):
            raise UsageProblem(f"{args.resume} holds a model for {model.num_classes} classes, but "
                               f"dataset {args.dataset} has {len(names)}")
    else:
        model = make_model(args.model, seed=args.seed, num_classes=len(names))
    done = len(previous["train_loss"]) if previous else 0
    if args.epochs <= done:
        raise UsageProblem(f"{args.resume} has trained {done} epochs already; pass --epochs N with "
                           f"N > {done} (the total number of epochs)")
    out = _prepare_out(args.out, f"{args.dataset}-{args.model}")
    data = [backend.put(x_train, args.dtype), backend.put(y_train), backend.put(x_val, args.dtype),
            backend.put(y_val)]

    print(f"backend {backend.name}   device {backend.device}   dtype {args.dtype}")
    print(f"model {args.model}: {model!r}, {model.parameter_count} parameters")
    print(f"data {args.dataset}: {len(y_train)} training and {len(y_val)} validation images, "
          f"{len(names)} classes")
    resumed = f", resuming {args.resume} after epoch {done - 1}" if done else ""
    print(f"training {args.epochs} epochs: lr {args.lr}, batch size {args.batch_size}, "
          f"momentum {args.momentum}{resumed}")
    sweep_epochs = min(args.epochs, _SWEEP_EPOCHS) if args.sweep_epochs is None else args.sweep_epochs
    initial = copy.deepcopy(model) if sweep_epochs else None  # the sweep's starting point
    progress = Progress(args.epochs, done, args.quiet)
    start = time.perf_counter()
    try:
        history = model.fit(*data, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                             seed=_SHUFFLE_SEED, momentum=args.momentum, verbose=False,
                             initial_epoch=done, callback=progress)
    finally:
        progress.close()
    seconds = time.perf_counter() - start
    if previous:
        history = _merge(previous, history)

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
    elif sweep_epochs:
        print(f"\nlearning-rate sweep from the same starting point: {sweep_epochs} epochs at each "
              f"of the rates {', '.join(f'{lr:g}' for lr in DEFAULT_LRS)} (--sweep-epochs 0 skips it)")
        histories = _run_sweep(initial, data, list(DEFAULT_LRS), sweep_epochs, args.batch_size,
                               args.momentum, args.quiet, lines=False)
        # matplotlib's absence was reported with the run's figures: not a second time
        files.update(_write_sweep(out, histories, len(names), figure=_have_matplotlib(quiet=True)))
    if "diverged_epoch" in history:
        print(f"diverged at epoch {history['diverged_epoch']} (the loss stopped being finite): "
              "try a smaller --lr")
    _list_files(out, files)
    return 0


def _list_files(out: Path, files: dict[str, Path]) -> None:
    """The run folder and its files, the figures last."""
    print(f"\nrun folder: {out}")
    for key, path in sorted(files.items(), key=lambda item: item[0] in FIGURES):
        print(f"  {'figure' if key in FIGURES else key:<10s} {path}")


def _checkpoint_call(function: Callable, *args: Any, **kwargs: Any) -> Any:
    """A checkpoint function whose file problems become one-line usage problems."""
    try:
        return function(*args, **kwargs)
    except (ValueError, FileNotFoundError) as exc:
        raise UsageProblem(str(exc)) from None


def _merge(previous: dict, new: dict) -> dict:
    """One history for a run trained in two pieces, as if it had been trained in one."""
    merged = {key: previous[key] + new[key] for key in METRICS}
    # Keep the chapter's snapshot epochs of the first piece (not its own 'last epoch').
    snapshots = {e: k for e, k in previous["kernel_snapshots"].items() if e in SNAPSHOT_EPOCHS}
    merged["kernel_snapshots"] = dict(sorted({**snapshots, **new["kernel_snapshots"]}.items()))
    for key in ("diverged_epoch", "interrupted", "interrupted_steps"):
        if key in new:
            merged[key] = new[key]
    return merged


def _report(history: dict, counts: np.ndarray, names: tuple, trained: int, seconds: float) -> None:
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
    from .plots import confusion_counts  # plain NumPy: matplotlib is imported only to draw
    return confusion_counts(to_numpy(data[3]), to_numpy(model.predict(data[2])), num_classes)


def _have_matplotlib(quiet: bool = False) -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        if not quiet:
            print('figures skipped: matplotlib is not installed (pip install "tinycnn-xp[plot]")')
        return False
    return True


def _run_title(settings: dict) -> str:
    return (f"{settings['model']} on {settings['dataset']}: {settings['epochs']} epochs, lr "
            f"{settings['lr']:g}, batch size {settings['batch_size']}, momentum {settings['momentum']:g}, "
            f"{settings['dtype']}")


def _write_run(out: Path, model: Sequential, history: dict, counts: np.ndarray, names: tuple,
               settings: dict) -> dict[str, Path]:
    """Checkpoint, history JSON and (with matplotlib) three figures; returns their paths."""
    files = {"checkpoint": checkpoint.save(model, out / "model.npz", history, meta=settings),
             "history": out / "history.json"}
    record = {key: value for key, value in history.items() if key != "kernel_snapshots"}
    record["kernel_snapshots"] = {str(e): np.asarray(k).tolist()
                                  for e, k in history["kernel_snapshots"].items()}
    record["settings"] = settings
    files["history"].write_text(json.dumps(record, indent=1))
    if not _have_matplotlib():
        return files
    from . import plots
    if history["train_loss"]:
        files["curves"] = plots.training_curves(history, out / FIGURES["curves"], len(names),
                                                title=_run_title(settings))
    if history["kernel_snapshots"]:
        files["filters"] = plots.filter_evolution(history, out / FIGURES["filters"])
    files["confusion"] = plots.confusion_figure(counts, names, out / FIGURES["confusion"])
    return files


# -- gradcheck -----------------------------------------------------------------------------------
def _gradcheck(args: argparse.Namespace) -> int:
    from .gradcheck import check_gradients
    backend = resolve_backend(args.backend, args.device)
    model = make_model(args.model or "tiny", seed=args.seed, num_classes=args.classes)
    # The chapter's check: N(0, 1) images. Real images have exact zeros, and a window of zeros
    # puts a ReLU exactly on its kink, where a finite difference is not a derivative.
    rng = np.random.default_rng(123)
    x = backend.put(rng.normal(0.0, 1.0, size=(args.samples, 1, 8, 8)))  # float64: needed here
    y = backend.put(np.arange(args.samples, dtype=np.int64) % args.classes)
    print(f"gradient check: model {args.model or 'tiny'} (seed {args.seed}, {args.classes} classes), "
          f"{args.samples} random images, backend {backend.name} on {backend.device}, float64, "
          f"epsilon {args.epsilon:g}")
    errors = check_gradients(model, x, y, epsilon=args.epsilon)
    shapes = {name: tuple(getattr(layer, attr).shape) for name, layer, attr in model.parameters()}
    shapes["input"] = tuple(x.shape)
    width = max(len(name) for name in errors)
    print(f"{'array':<{width}}  {'shape':<14s}  relative error")
    failed = 0
    for name, error in errors.items():
        ok = error < args.threshold
        failed += not ok
        print(f"{name:<{width}}  {str(shapes[name]):<14s}  {error:.2e}  {'ok' if ok else 'FAIL'}")
    print(f"{len(errors) - failed} of {len(errors)} below the threshold {args.threshold:g}")
    return 1 if failed else 0


# -- sweep ---------------------------------------------------------------------------------------
def _sweep(args: argparse.Namespace) -> int:
    _fill_defaults(args)
    lrs = args.lrs or list(DEFAULT_LRS)
    backend = resolve_backend(args.backend, args.device)
    x_train, y_train, x_val, y_val, names = load_dataset(args.dataset)
    model = make_model(args.model, seed=args.seed, num_classes=len(names))
    out = _prepare_out(args.out, f"sweep-{args.dataset}-{args.model}")
    data = [backend.put(x_train, args.dtype), backend.put(y_train), backend.put(x_val, args.dtype),
            backend.put(y_val)]
    print(f"backend {backend.name}   device {backend.device}   dtype {args.dtype}")
    print(f"learning-rate sweep: model {args.model} on {args.dataset}, {args.epochs} epochs each, "
          f"batch size {args.batch_size}, momentum {args.momentum}, rates {', '.join(f'{lr:g}' for lr in lrs)}")
    histories = _run_sweep(model, data, lrs, args.epochs, args.batch_size, args.momentum, args.quiet)
    _list_files(out, _write_sweep(out, histories, len(names), figure=_have_matplotlib()))
    return 0


def _run_sweep(model: Sequential, data: list, lrs: list[float], epochs: int, batch_size: int,
               momentum: float, quiet: bool, lines: bool = True) -> dict[float, dict]:
    """``learning_rate_sweep`` with progress, then a table of each rate's final loss and accuracy."""
    # A bar over all rates on a terminal; otherwise (with ``lines``) fit's lines, naming each rate.
    progress = Progress(len(lrs) * epochs, quiet=quiet, desc="sweep", lines=False)
    verbose = lines and not quiet and progress.bar is None
    calls = iter(range(len(lrs) * epochs))
    with warnings.catch_warnings():  # fit warns about diverged rates; the table below says it
        warnings.filterwarnings("ignore", "training diverged", RuntimeWarning)
        try:
            histories = learning_rate_sweep(model, *data, lrs, epochs=epochs, batch_size=batch_size,
                                            seed=_SHUFFLE_SEED, momentum=momentum, verbose=verbose,
                                            callback=lambda _, m: progress(next(calls), m))
        except (TypeError, ValueError) as exc:
            raise UsageProblem(f"sweep: {exc}") from None
        finally:
            progress.close()
    print(f"\n{'lr':>8s}  {'train loss':>10s}  {'val acc':>7s}")
    for lr, history in histories.items():
        loss = f"{history['train_loss'][-1]:.4f}" if history["train_loss"] else "-"
        acc = f"{history['val_acc'][-1]:.1%}" if history["val_acc"] else "-"
        note = f"  diverged at epoch {history['diverged_epoch']}" if "diverged_epoch" in history else ""
        note += "  interrupted" if history.get("interrupted") else ""
        print(f"{lr:>8g}  {loss:>10s}  {acc:>7s}{note}")
    return histories


def _write_sweep(out: Path, histories: dict[float, dict], num_classes: int,
                 figure: bool) -> dict[str, Path]:
    """``sweep.json`` and (if ``figure``: matplotlib is there) the sweep figure; their paths."""
    files = {"sweeps": out / "sweep.json"}
    record = {str(lr): {k: v for k, v in h.items() if k != "kernel_snapshots"} for lr, h in histories.items()}
    files["sweeps"].write_text(json.dumps(record, indent=1))
    if figure:
        from . import plots
        files["sweep"] = plots.lr_sweep_figure(histories, out / FIGURES["sweep"],
                                                  num_classes=num_classes)
    return files


# -- bench ---------------------------------------------------------------------------------------
def _bench(argv: list[str]) -> int:
    try:
        bench = importlib.import_module(f"{__package__}.bench")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.bench":
            raise
        print("tinycnn-xp bench: the benchmark (tinycnn_xp/bench.py) is not part of this installation",
              file=sys.stderr)
        return 2
    return bench.main(argv) or 0


# -- parser --------------------------------------------------------------------------------------
def _flag(convert: Callable[[str], Any], check: Callable[[Any, str], Any],
          expected: str) -> Callable[[str], Any]:
    """An argparse ``type`` that converts the text, then applies the library's own check."""
    def parse(text: str) -> Any:
        try:
            return check(convert(text), "value")
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    parse.__name__ = expected
    return parse


def _int_at_least(low: int) -> Callable[[str], int]:
    def at_least(value: int, name: str) -> int:
        if value < low:
            raise ValueError(name)
        return value
    return _flag(int, at_least, f"an integer >= {low}")


_positive_float = _flag(float, _checks.learning_rate, "a positive number")
_momentum = _flag(float, _checks.momentum, "a number in [0, 1)")


def _add_placement(parser: argparse.ArgumentParser, dtype: bool = True) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default="numpy",
                        help="array library to train on (default: numpy)")
    parser.add_argument("--device", help="device of that library: cpu, cuda:0, CPU_DEVICE, device1, 0, ... "
                                         "(default: its CPU, or GPU 0 for cupy)")
    if dtype:
        parser.add_argument("--dtype", choices=("float32", "float64"),
                            help="floating dtype of data and weights (default: float64)")


def _add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=sorted(PRESETS), help="model preset (default: tiny, the chapter's TinyCNN)")
    parser.add_argument("--dataset", choices=DATASETS,
                        help="lines: the chapter's 3 line patterns (default); lines4: plus a dot "
                             "(Exercise 24.5); digits: scikit-learn's 8x8 handwritten digits")
    parser.add_argument("--seed", type=_int_at_least(0), help="seed of the initial weights (default: 42)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinycnn-xp", description="Train the chapter's CNN and see it learn, check its "
        "gradients, sweep learning rates, or benchmark it, on NumPy, array-api-strict, torch or CuPy.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a model and write its figures and checkpoint",
                           description="Train a model preset, then write figures, a checkpoint "
                                       "and the history into a run folder. Unset training options "
                                       "take the chapter's values on the line patterns and tuned "
                                       "values on the digits; with --resume, the checkpoint's.")
    _add_placement(train)
    _add_model(train)
    train.add_argument("--epochs", type=_int_at_least(1), help="total number of epochs (with --resume too)")
    train.add_argument("--lr", type=_positive_float, help="learning rate")
    train.add_argument("--batch-size", type=_int_at_least(1), help="mini-batch size")
    train.add_argument("--momentum", type=_momentum, help="momentum in [0, 1) (0: plain SGD)")
    train.add_argument("--out", metavar="DIR", help="run folder (default: a new folder under runs/)")
    train.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this .npz")
    train.add_argument("--sweep-epochs", type=_int_at_least(0), metavar="N",
                       help="epochs per rate of the learning-rate sweep run after training, from "
                            f"the same starting point (default: the run's epochs, at most {_SWEEP_EPOCHS}; 0: no sweep)")
    train.add_argument("--quiet", action="store_true", help="no progress while training")

    grad = sub.add_parser("gradcheck", help="compare backprop with finite differences (float64)",
                          description="Finite-difference gradient check of every parameter and the "
                                      "input on random N(0, 1) images, like the chapter's; exit "
                                      "status 1 if any relative error reaches the threshold.")
    _add_placement(grad, dtype=False)
    grad.add_argument("--model", choices=sorted(PRESETS), help="model preset (default: tiny)")
    grad.add_argument("--seed", type=_int_at_least(0), default=99,
                      help="seed of the weights (default: 99, the chapter's check)")
    grad.add_argument("--classes", type=_int_at_least(2), default=3, help="number of classes (default: 3)")
    grad.add_argument("--samples", type=_int_at_least(1), default=4, help="images in the checked batch (default: 4)")
    grad.add_argument("--epsilon", type=_positive_float, default=1e-5, help="finite-difference step (default: 1e-5)")
    grad.add_argument("--threshold", type=_positive_float, default=1e-7, help="largest relative error accepted (default: 1e-7)")

    sweep = sub.add_parser("sweep", help="learning-rate sweep (Exercise 24.2) and its figure")
    _add_placement(sweep)
    _add_model(sweep)
    sweep.add_argument("--lrs", type=_positive_float, nargs="+", metavar="LR",
                       help="learning rates (default: 0.01 0.05 0.12 0.5 1.0)")
    sweep.add_argument("--epochs", type=_int_at_least(1), help="epochs per rate")
    sweep.add_argument("--batch-size", type=_int_at_least(1), help="mini-batch size")
    sweep.add_argument("--momentum", type=_momentum, help="momentum in [0, 1)")
    sweep.add_argument("--out", metavar="DIR", help="output folder (default: a new folder under runs/)")
    sweep.add_argument("--quiet", action="store_true", help="no progress while training")

    sub.add_parser("bench", help="benchmarks (options: tinycnn-xp bench --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the benchmark parses its own options
        return _bench(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return {"train": _train, "gradcheck": _gradcheck, "sweep": _sweep}[args.command](args)
    except UsageProblem as problem:
        print(f"tinycnn-xp {args.command}: {problem}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a command that stopped reading (``| head``)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 1


if __name__ == "__main__":
    sys.exit(main())
