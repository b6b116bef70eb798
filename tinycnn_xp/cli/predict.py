"""``tinycnn-xp predict MODEL INPUT...``: classify new images as the model's training images were
made (size, channels, scaling: the checkpoint's ``meta["data"]``), one line per image."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from .._xp import to_numpy
from ..datafiles import read_images
from .common import EXIT_OK, UsageProblem
from .evaluate import load_model

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    model, preprocessing, backend, dtype = load_model(args)
    try:
        images, paths = read_images(args.inputs, preprocessing, dtype)
    except (ValueError, ImportError) as exc:
        raise UsageProblem(str(exc)) from None
    probabilities = to_numpy(model.predict_proba(backend.put(images, dtype)))
    classes = probabilities.argmax(axis=1)
    names = preprocessing.class_names
    rows = [(path, names[k], float(p[k])) for path, k, p in zip(paths, classes, probabilities)]
    _print(rows, args.format)
    return EXIT_OK


def _print(rows: list[tuple[str, str, float]], form: str) -> None:
    if form == "json":
        print(json.dumps([{"input": path, "class": name, "probability": p} for path, name, p in rows],
                         indent=1))
    elif form == "csv":
        writer: Any = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(("input", "class", "probability"))
        writer.writerows((path, name, f"{p:.6f}") for path, name, p in rows)
    else:
        width = max(len(path) for path, _, _ in rows)
        classes = max(len(name) for _, name, _ in rows)
        for path, name, p in rows:
            print(f"{path:<{width}s}  {name:<{classes}s}  {p:.4f}")


