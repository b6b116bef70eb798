"""``train --resume``: what a checkpoint may say about the run it continues, checked first.

The file's ``meta`` (the settings its run was trained with) only fills in the options the user
did not type, and only these: ``dataset``, ``model``, ``dtype``, ``seed``, ``lr``, ``batch_size``
and ``momentum``. Nothing else in it is read (an ``out`` folder, say): where to write comes from
the command line alone. The optimizer (its settings, schedule, steps and state) is the
checkpoint's own, as ``Sequential.load`` gives it back; typed optimizer flags change it
(``optimizers``). A value of the wrong type or range, a history that does not fit, a model
that cannot take the dataset's images: one line naming the file and the entry, before any training.
"""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import checkpoint
from .._checks import FLOAT_DTYPES
from .._xp import dtype_name
from ..history import History
from ..models import Sequential
from ..presets import PRESETS
from . import optimizers
from .common import DATASETS, UsageProblem, checkpoint_call

__all__ = ["RESUMABLE", "settings", "load", "saved_model", "check_same_data", "check_fits"]


def _integer(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low  # JSON: int


def _real(v: Any) -> bool:
    """A finite number (an integer too large for a float is not: JSON integers are unbounded)."""
    if not isinstance(v, numbers.Real) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


#: The settings a checkpoint may give (when the option is not typed): a check and what it expects.
RESUMABLE: dict[str, tuple[Callable[[Any], bool], str]] = {
    "dataset": (lambda v: isinstance(v, str) and v in DATASETS, f"one of {', '.join(DATASETS)}"),
    "model": (lambda v: isinstance(v, str) and v in (*PRESETS, "checkpoint"),
              f"one of {', '.join(sorted(PRESETS))} (or checkpoint)"),
    "dtype": (lambda v: isinstance(v, str) and v in FLOAT_DTYPES, f"one of {', '.join(FLOAT_DTYPES)}"),
    "seed": (_integer(0), "an integer >= 0"),
    "lr": (lambda v: _real(v) and v > 0, "a positive number"),
    "batch_size": (_integer(1), "an integer >= 1"),
    "momentum": (lambda v: _real(v) and 0 <= v < 1, "a number in [0, 1)"),
    "epochs": (_integer(0), "an integer >= 0"),  # checked, never used: --epochs is the new total
}


def settings(path: str, meta: dict) -> dict[str, Any]:
    """The training settings ``meta`` gives, each checked; ``UsageProblem`` naming the entry."""
    found = {}
    for key, (good, expected) in RESUMABLE.items():
        if key in meta:
            if not good(meta[key]):
                raise UsageProblem(f"{path}: meta entry {key!r} is {meta[key]!r:.60}, not {expected}")
            found[key] = meta[key]
    found.pop("epochs", None)
    return found


def load(args: argparse.Namespace) -> tuple[dict[str, Any], Sequential, History | None,
                                           np.random.Generator | None, dict[str, Any]]:
    """The checked settings, the model (on the host), the history of ``args.resume``, its
    shuffle generator where the checkpoint keeps its state (``None``: the shuffles are drawn
    again), and its meta."""
    path = args.resume
    meta = checkpoint_call(checkpoint.load_meta, path)
    saved = settings(path, meta)
    own = isinstance(meta.get("data"), dict) and meta["data"].get("source") == "data"
    if own and not args.data:  # a file never says what to read
        raise UsageProblem(f"{path} was trained on your own data: pass --data PATH again (the same "
                           "images; the checkpoint keeps their fingerprint)")
    if args.data and "dataset" in saved:
        raise UsageProblem(f"{path} was trained on the {saved['dataset']} dataset, not on --data; "
                           "leave out --data to resume it")
    if args.model and saved.get("model", args.model) != args.model:
        raise UsageProblem(f"{path} holds a {saved['model']!r} model, not {args.model!r}; "
                           "leave out --model to resume it")
    if not args.model and "model" not in saved:  # saved from Python, not by this command
        saved["model"] = "checkpoint"
    model, dtype = saved_model(path)
    if model.optimizer is not None:  # the checkpoint's optimizer goes on, unless another is typed
        theirs = optimizers.name_of(model.optimizer)
        if args.optimizer in (None, theirs):
            saved["optimizer"] = theirs
        else:  # a new optimizer: its own defaults, not the rate and momentum of the one it replaces
            saved.pop("lr", None)
            saved.pop("momentum", None)
    history = checkpoint_call(checkpoint.load_history, path)
    saved.setdefault("dtype", dtype)
    return saved, model, history, shuffles(path, meta), meta


def saved_model(path: str) -> tuple[Sequential, str]:
    """The model of the checkpoint at ``path``, on the host, and its saved dtype's name."""
    model = checkpoint_call(Sequential.load, path)
    _, layer, attr = model.parameters()[0]
    return model, dtype_name(getattr(layer, attr).dtype)


def check_same_data(path: str, meta: dict, record: dict) -> None:
    """The data to resume on is the data the checkpoint was trained on (by their fingerprints,
    where the checkpoint keeps one: 0.2's do not)."""
    kept = meta.get("data", {}).get("fingerprint") if isinstance(meta.get("data"), dict) else None
    if kept is not None and kept != record["fingerprint"]:
        raise UsageProblem(f"{path} was trained on other data (fingerprint {str(kept)[:12]}, these "
                           f"images give {record['fingerprint'][:12]}); resume it on the same "
                           "images, or start a new run")


def shuffles(path: str, meta: dict) -> np.random.Generator | None:
    """The generator whose state the checkpoint's meta keeps (``shuffles``), checked, or None."""
    if "shuffles" not in meta:
        return None
    state = meta["shuffles"]
    bits: Any = np.random.PCG64()
    try:
        if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
            raise ValueError("not the state of a PCG64 generator")
        bits.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise UsageProblem(f"{path}: meta entry 'shuffles' is not a shuffle generator's state "
                           f"({type(exc).__name__}: {str(exc)[:80]})") from None
    return np.random.Generator(bits)


def check_fits(path: str, model: Sequential, images: tuple[int, ...], dataset: str,
               classes: int) -> None:  # dataset: what the images are, in words
    """The resumed model takes the dataset's images and has one output per class."""
    try:
        model.output_shape((1, *images[1:]), "the images")
    except ValueError as exc:
        raise UsageProblem(f"{path}: the model cannot take the {dataset} images ({exc})") from None
    if model.num_classes != classes:
        raise UsageProblem(f"{path} holds a model for {model.num_classes} classes, but "
                           f"{dataset} has {classes}")
