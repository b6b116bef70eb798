"""Command line: ``tinycnn-xp train | gradcheck | sweep | predict | evaluate`` (``python -m
tinycnn_xp`` too).

``train`` trains a preset on the line patterns (the chapter's run by default), the 8x8 digits or
MNIST's 28x28 ones on the chosen backend, with SGD, RMSprop, Adam or AdamW, shows progress,
prints a summary, and writes the figures, a checkpoint and the history into a run folder.
``--resume`` continues a checkpoint's run exactly where it stopped. ``sweep`` trains a grid of
learning rates x momenta x weight decays x seeds, serially, on ``--jobs`` worker processes or on
a Dask cluster (``--scheduler``), and writes its table, JSON and figure.
``--data PATH`` trains on your own images; ``predict`` classifies new ones and ``evaluate``
measures a model on labelled ones. ``train`` checkpoints as epochs end, and SIGTERM is Ctrl-C.
Problems the user can fix (a backend that cannot run here, a missing extra, a bad checkpoint, an
output folder that cannot be written, a scheduler that cannot be reached) end with one line on
stderr and exit status 2, before any training; ``gradcheck`` exits 1 when a gradient is off; a
diverged ``train`` run exits 3, one whose files could not all be written 4 (its checkpoint goes
to the current or the temporary directory), and Ctrl-C, at any moment, 130 with one line (see
``common.EXIT_STATUSES``); a sweep's finished runs are kept.

This module imports nothing until ``main`` runs, so that Ctrl-C while NumPy, torch or JAX are
being imported is one line too. Modules: ``parser`` (the parser and the dispatch), ``common``
(what the commands share), ``flags`` (flag types), ``optimizers`` (``--optimizer``,
``--weight-decay``, ``--schedule``), ``datasets`` (built-in or own data), ``files``
(run folders: locks, atomic writes, fallbacks), ``checkpoints`` (the checkpoints and
``history.csv`` while training), ``resume`` (checking a checkpoint to continue), ``signals``
(SIGTERM), ``progress``, and one per command: ``train``, ``sweep``, ``gradcheck``, ``predict``,
``evaluate``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__all__ = ["FIGURES", "UsageProblem", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """The console entry ``tinycnn-xp``: runs ``parser.main(argv)``, importing it only now.

    Ctrl-C during those imports (NumPy, the library, ...) is one line and exit status 130."""
    try:
        return _submodule("parser").main(argv)
    except KeyboardInterrupt:
        print("tinycnn-xp: interrupted", file=sys.stderr)
        return 130


def _submodule(name: str) -> Any:
    return importlib.import_module(f"{__name__}.{name}")


def __getattr__(name: str) -> Any:
    """``FIGURES``, ``UsageProblem`` and ``build_parser``, imported when first asked for."""
    if name in ("FIGURES", "UsageProblem"):
        return getattr(_submodule("common"), name)
    if name == "build_parser":
        return _submodule("parser").build_parser
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
