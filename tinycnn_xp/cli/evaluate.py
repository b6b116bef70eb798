"""``tinycnn-xp evaluate MODEL --data PATH | --dataset NAME``: a trained model's accuracy,
per-class accuracy and confusion matrix on labelled images (``--out``: the figure and
``evaluation.json``)."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from .. import checkpoint
from .._backends import Backend
from .._xp import to_numpy
from ..datafiles import Preprocessing, load_labelled
from ..models import Sequential
from .common import (
    EXIT_NOT_WRITTEN,
    EXIT_OK,
    FIGURES,
    UsageProblem,
    checkpoint_call,
    have_matplotlib,
    load_dataset,
    resolve_backend,
)
from .datasets import preprocessing_of
from .files import RunFiles, list_files, prepare_out
from .resume import saved_model
from .writes import write_figure, write_json

__all__ = ["run", "load_model"]


def load_model(args: argparse.Namespace) -> tuple[Sequential, Preprocessing, Backend, str]:
    """The checkpoint's model on ``--backend``/``--device`` in its own dtype, and how its
    training images were made; ``UsageProblem`` naming the file if it is not one to use."""
    path = args.checkpoint
    meta = checkpoint_call(checkpoint.load_meta, path)
    model, dtype = saved_model(path)
    preprocessing = preprocessing_of(path, meta, model)
    try:
        model.output_shape((1, preprocessing.channels, *preprocessing.image_size), "the images")
    except ValueError as exc:
        raise UsageProblem(f"{path}: its model cannot take the images its meta describes ({exc})") from None
    if model.num_classes != len(preprocessing.class_names):
        raise UsageProblem(f"{path}: its model has {model.num_classes} outputs, but its meta names "
                           f"{len(preprocessing.class_names)} classes")
    backend = resolve_backend(args.backend, args.device, dtype)
    try:
        model.to(backend.xp, backend.device, dtype)
    except ValueError as exc:
        raise UsageProblem(f"{path}: {exc}") from None
    return model, preprocessing, backend, dtype


def run(args: argparse.Namespace) -> int:
    model, preprocessing, backend, dtype = load_model(args)
    names = preprocessing.class_names
    if args.data:
        try:
            x, y, which = load_labelled(args.data, preprocessing, dtype)
        except (ValueError, ImportError) as exc:
            raise UsageProblem(str(exc)) from None
    else:
        dataset = args.dataset or "lines"
        _, _, x, y, dataset_names = load_dataset(dataset)
        if tuple(dataset_names) != tuple(names):
            raise UsageProblem(f"{args.checkpoint} was trained on the classes {', '.join(names)}, "
                               f"not on those of {dataset} ({', '.join(dataset_names)})")
        which = f"the {len(y)} validation images of {dataset}"
    out = prepare_out(args.out, "evaluate") if args.out else None
    predicted = to_numpy(model.predict(backend.put(x, dtype)))
    from ..plots import confusion_counts  # plain NumPy: matplotlib is imported only to draw
    counts = confusion_counts(np.asarray(y), predicted, len(names))
    accuracy = float(np.trace(counts)) / max(int(counts.sum()), 1)
    print(f"model {args.checkpoint} on {which}: backend {backend.name}, {dtype}")
    print(f"accuracy {accuracy:.1%} ({np.trace(counts)}/{counts.sum()})")
    print("per-class accuracy:")
    per_class: dict[str, Any] = {}
    for i, name in enumerate(names):
        total = int(counts[i].sum())
        per_class[name] = counts[i, i] / total if total else None
        shown = f"{counts[i, i] / total:.1%}" if total else "no images"
        print(f"  {name:>12s}: {counts[i, i]:4d}/{total:<4d} = {shown}")
    if out is None:
        return EXIT_OK
    files = RunFiles("evaluate", out, figures=not args.no_figures)
    record = {"model": str(args.checkpoint), "data": which, "accuracy": accuracy,
              "per_class": per_class, "confusion": counts.tolist(), "class_names": list(names)}
    files.write("evaluation", out / "evaluation.json", lambda target: write_json(target, record))
    if files.figures and have_matplotlib():
        from .. import plots
        files.write("confusion", out / FIGURES["confusion"], lambda target: write_figure(
            target, lambda: plots.confusion_figure(counts, names)))
    list_files(out, files.files)
    return EXIT_NOT_WRITTEN if files.failed else EXIT_OK
