"""The parser of ``tinycnn-xp`` and ``main``, which runs one command and speaks for it: usage
problems, warnings and Ctrl-C become one line on stderr each, and the exit status says how it
ended (``EXIT_STATUSES``, listed by ``tinycnn-xp --help``)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import warnings

from .._backends import NAMES
from ..presets import PRESETS
from . import evaluate, gradcheck, optimizers, predict, sweep, train
from .common import (
    DATASETS,
    EXIT_INTERRUPTED,
    EXIT_STATUSES,
    EXIT_TERMINATED,
    EXIT_USAGE,
    MAX_BATCH,
    MAX_CLASSES,
    MAX_EPOCHS,
    MAX_SAMPLES,
    SWEEP_EPOCHS,
    UsageProblem,
    one_line_warnings,
    say,
)
from .files import release_folders
from .flags import (
    cadence_flag,
    fraction_flag,
    image_size_flag,
    int_at_least,
    jobs_flag,
    momentum_flag,
    positive_float,
)
from .signals import TERMINATED, sigterm_as_interrupt

__all__ = ["build_parser", "main"]

COMMANDS = {module.__name__.rpartition(".")[2]: module.run
            for module in (train, gradcheck, sweep, predict, evaluate)}


def _add_placement(parser: argparse.ArgumentParser, dtype: bool = True) -> None:
    parser.add_argument("--backend", choices=NAMES, default="numpy",
                        help="array library to train on (default: numpy)")
    parser.add_argument("--device", help="device of that library: cpu, cuda:0, CPU_DEVICE, device1, 0, ... "
                                         "(default: its CPU, or GPU 0 for cupy)")
    if dtype:
        parser.add_argument("--dtype", choices=("float32", "float64"),
                            help="floating dtype of data and weights (default: float64; on JAX "
                                 "float64 needs JAX_ENABLE_X64=1)")


def _add_model(parser: argparse.ArgumentParser, seed: bool = True) -> None:
    parser.add_argument("--model", choices=sorted(PRESETS),
                        help="model preset, sized for the images (default: tiny, the chapter's "
                             "TinyCNN on 8x8 images)")
    _add_data(parser)
    if seed:
        parser.add_argument("--seed", type=int_at_least(0), help="seed of the initial weights (default: 42)")


def _add_data(parser: argparse.ArgumentParser, dataset: bool = True) -> None:
    which = parser.add_mutually_exclusive_group()
    if dataset:
        which.add_argument("--dataset", choices=DATASETS,
                           help="lines: the chapter's 3 line patterns (default); lines4: plus a "
                                "dot (Exercise 24.5); digits: scikit-learn's 8x8 handwritten digits; "
                                "mnist: 5,000 28x28 MNIST digits (the mnist extra)")
    which.add_argument("--data", metavar="PATH",
                       help="your own images: a .npz (x_train, y_train[, x_val, y_val] or x, y; "
                            "optionally class_names) or a folder with one folder of PNG/JPEG "
                            "images per class (README, \"Your own data\"); float32 unless --dtype")
    parser.add_argument("--val-fraction", type=fraction_flag, default=0.2, metavar="F",
                        help="with --data: the share of each class held out for validation when "
                             "the data has no x_val (default: 0.2)")
    parser.add_argument("--data-seed", type=int_at_least(0), default=0, metavar="SEED",
                        help="with --data: seed of that split (default: 0)")
    parser.add_argument("--image-size", type=image_size_flag, metavar="HxW",
                        help="with a folder: resize every image to this (default: the first "
                             "image's size, if at most 64x64)")


def _add_no_figures(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-figures", action="store_true", help="write no figures (files only)")


EPILOG = "exit status:\n" + "\n".join(f"  {code:<4d} {meaning}" for code, meaning in EXIT_STATUSES.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinycnn-xp", description="Train the chapter's CNN and see it learn, check its "
        "gradients, or sweep learning rates, momenta and seeds, on NumPy, array-api-strict, torch, "
        "JAX or CuPy.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # --data is not --dataset; --help ends with the exit statuses (gradcheck says its own)
    command = functools.partial(sub.add_parser, allow_abbrev=False, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)

    train = command("train", help="train a model and write its figures and checkpoint",
                           description="Train a model preset, then write figures, a checkpoint "
                                       "and the history into a run folder. Unset training options "
                                       "take the chapter's values on the line patterns and tuned "
                                       "values on the digits; with --resume, the checkpoint's "
                                       "(never where to write: that is --out's alone).")
    _add_placement(train)
    _add_model(train)
    train.add_argument("--epochs", type=int_at_least(1, MAX_EPOCHS),
                       help=f"total number of epochs (with --resume too; at most {MAX_EPOCHS:,})")
    train.add_argument("--lr", type=positive_float, help="learning rate")
    train.add_argument("--batch-size", type=int_at_least(1, MAX_BATCH),
                       help="mini-batch size (a batch larger than the data is the whole data)")
    train.add_argument("--momentum", type=momentum_flag, help="momentum in [0, 1) (0: plain SGD)")
    optimizers.add_flags(train)
    train.add_argument("--out", metavar="DIR", help="run folder (default: a new folder under runs/)")
    train.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this .npz")
    train.add_argument("--sweep-epochs", type=int_at_least(0, MAX_EPOCHS), metavar="N",
                       help="epochs per rate of the learning-rate sweep run after training, from "
                            f"the same starting point (default: the run's epochs, at most {SWEEP_EPOCHS}; "
                            "on mnist 0; 0: no sweep)")
    train.add_argument("--checkpoint-every", type=cadence_flag, default=(None, 10.0), metavar="N|Ts",
                       help="write model.npz when an epoch ends N epochs (5) or T seconds (30s) "
                            "after the last write (default: 10s), on any stop and at the end")
    train.add_argument("--keep-best", action="store_true", help="also keep best.npz (lowest val loss)")
    train.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard scalars and the "
                       "first layer's filters here, per epoch (the tensorboard extra)")
    train.add_argument("--quiet", action="store_true", help="no progress while training")
    _add_no_figures(train)

    grad = command("gradcheck", help="compare backprop with finite differences (float64)",
                          description="Finite-difference gradient check of every parameter and the "
                                      "input on random N(0, 1) images, like the chapter's; exit "
                                      "status 1 if any relative error reaches the threshold.",
                          epilog=None, formatter_class=argparse.HelpFormatter)
    _add_placement(grad, dtype=False)
    grad.add_argument("--model", choices=sorted(PRESETS), help="model preset (default: tiny)")
    grad.add_argument("--seed", type=int_at_least(0), default=99,
                      help="seed of the weights (default: 99, the chapter's check)")
    grad.add_argument("--classes", type=int_at_least(2, MAX_CLASSES),
                      help=f"number of classes (default: 3, or those of --data; at most {MAX_CLASSES:,})")
    _add_data(grad, dataset=False)
    grad.add_argument("--samples", type=int_at_least(1, MAX_SAMPLES),
                      help="images in the checked batch (default: 4; 8 with batch normalization)")
    grad.add_argument("--epsilon", type=positive_float, default=1e-5,
                      help="finite-difference step (default: 1e-5)")
    grad.add_argument("--threshold", type=positive_float, default=1e-7,
                      help="largest relative error accepted (default: 1e-7)")

    sweep = command("sweep", help="sweep learning rates, momenta, weight decays and seeds (Exercise 24.2), "
                                         "on every core or a Dask cluster",
                           description="Train a copy of one model per configuration of a grid: every "
                                       "combination of --lrs, --momentums, --weight-decays and "
                                       "--seeds (the last varying fastest). Writes a table "
                                       "(sweep.txt, also printed), the records as JSON (sweep.json) "
                                       "and a figure (sweep.png) into a run folder. A rate that "
                                       "diverges is a result, shown in the table; Ctrl-C keeps the "
                                       "runs already finished.")
    _add_placement(sweep)
    _add_model(sweep, seed=False)
    sweep.add_argument("--lrs", type=positive_float, nargs="+", metavar="LR",
                       help="learning rates to sweep (default: the chapter's 0.01 0.05 0.12 0.5 "
                            "1.0; for another --optimizer 0.1, 0.3, 1, 3 and 10 times its own rate)")
    momenta = sweep.add_mutually_exclusive_group()
    momenta.add_argument("--momentum", type=momentum_flag,
                         help="momentum in [0, 1) of every run (default: 0 on the line patterns)")
    momenta.add_argument("--momentums", type=momentum_flag, nargs="+", metavar="BETA",
                         help="momenta to sweep, each in [0, 1)")
    seeds = sweep.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int_at_least(0),
                       help="seed of every run's initial weights (default: 42; the shuffles use 0)")
    seeds.add_argument("--seeds", type=int_at_least(0), nargs="+", metavar="SEED",
                       help="seeds to sweep: each seeds a run's initial weights and its shuffles")
    optimizers.add_flags(sweep, sweep=True)
    sweep.add_argument("--epochs", type=int_at_least(1, MAX_EPOCHS),
                       help=f"epochs per run (at most {MAX_EPOCHS:,})")
    sweep.add_argument("--batch-size", type=int_at_least(1, MAX_BATCH), help="mini-batch size")
    where = sweep.add_mutually_exclusive_group()
    where.add_argument("--jobs", type=jobs_flag, metavar="N",
                       help="worker processes (joblib): 1 runs serially in this process (default), "
                            "-1 uses every core")
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run on the Dask cluster of this scheduler, one run per worker at a time "
                            "(workers need tinycnn_xp installed)")
    sweep.add_argument("--out", metavar="DIR", help="output folder (default: a new folder under "
                                                    "runs/, or --resume's)")
    sweep.add_argument("--resume", metavar="DIR", help="continue this folder's sweep: the runs "
                                                       "in its runs.jsonl are kept (same flags)")
    sweep.add_argument("--quiet", action="store_true", help="no progress")
    _add_no_figures(sweep)

    predict = command("predict", help="classify images with a trained model",
                      description="Classify image files, folders of them (and their subfolders) "
                                  "or .npz files with x, made as the training images were: one "
                                  "line per image: its path (or file.npz[i]), class, probability.")
    predict.add_argument("checkpoint", metavar="MODEL", help="a checkpoint (.npz) that train wrote")
    predict.add_argument("inputs", metavar="INPUT", nargs="+",
                         help="image files (PNG, JPEG), folders of them, or .npz files with x")
    predict.add_argument("--format", choices=("text", "csv", "json"), default="text",
                         help="text: aligned columns (default); csv; json: a list of objects")
    _add_placement(predict, dtype=False)

    evaluate = command("evaluate", help="measure a trained model on labelled images",
                       description="Accuracy, per class, and the confusion matrix on the validation "
                                   "part of a train/validation .npz or a built-in dataset, else the "
                                   "whole set (a folder's classes matched to the model's by name).")
    evaluate.add_argument("checkpoint", metavar="MODEL", help="a checkpoint (.npz) that train wrote")
    _add_data(evaluate)
    evaluate.add_argument("--out", metavar="DIR", help="write the confusion-matrix figure and "
                                                       "evaluation.json here")
    _add_no_figures(evaluate)
    _add_placement(evaluate, dtype=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``tinycnn-xp`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    previous = warnings.showwarning
    warnings.showwarning = one_line_warnings(args.command)
    try:
        with sigterm_as_interrupt():
            status = COMMANDS[args.command](args)
    except UsageProblem as problem:
        say(args.command, str(problem))
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C outside training (imports, data, figures, ...)
        say(args.command, "terminated" if TERMINATED["by"] else "interrupted")
        status = EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into a command that stopped reading (``| head``)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 1
    finally:
        warnings.showwarning = previous
        release_folders()
    return EXIT_TERMINATED if status == EXIT_INTERRUPTED and TERMINATED["by"] else status
