"""What ``fit`` returns: the per-epoch metrics and the first convolution's filter snapshots.

``METRICS`` names the four per-epoch lists in the chapter's order; training, checkpoints, the
command line and the figures all read them from here.
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np

__all__ = ["METRICS", "SNAPSHOT_EPOCHS", "History", "merge_histories", "without_snapshots"]

#: the per-epoch metrics of a history, each a list of Python floats (one per epoch).
METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")

#: epochs at whose start ``fit`` keeps a host copy of the first convolution's filters (the
#: chapter's choice; the last epoch is added per run).
SNAPSHOT_EPOCHS = (0, 1, 5, 15, 40)


class History(TypedDict, total=False):
    """``fit``'s return value. The four metrics and ``kernel_snapshots`` are always there.

    ``train_loss`` is the mean of the epoch's batch losses; ``val_loss``, ``train_acc`` and
    ``val_acc`` are measured after the epoch's last step. ``kernel_snapshots`` maps an epoch to a
    host NumPy copy of the first convolution's weights at that epoch's start. The optional keys
    ``lr`` (from 0.4) is each epoch's learning rate. The optional keys
    say how training ended early: ``diverged_epoch`` (a loss or parameter stopped being finite;
    the parameters were restored), ``stopped_epoch`` (the callback asked to stop after it),
    ``interrupted`` (Ctrl-C; the model was put back to the end of the last whole epoch) and
    ``interrupted_steps`` (only in 0.2 checkpoints: the steps of the cut epoch its model kept).
    """

    train_loss: list[float]
    val_loss: list[float]
    train_acc: list[float]
    val_acc: list[float]
    kernel_snapshots: dict[int, np.ndarray]
    lr: list[float]
    diverged_epoch: int
    stopped_epoch: int
    interrupted: bool
    interrupted_steps: int


def new_history() -> History:
    return {"train_loss": [], "val_loss": [], "train_acc": [], "val_acc": [],
            "kernel_snapshots": {}}


def without_snapshots(history: Any) -> dict[str, Any]:
    """``history`` without its ``kernel_snapshots`` (what JSON files of a run keep)."""
    return {key: value for key, value in history.items() if key != "kernel_snapshots"}


def merge_histories(previous: History, new: History) -> History:
    """One history for a run trained in two pieces (``initial_epoch``), as if trained in one."""
    before: Any = previous  # keys from METRICS: str, not literals, for the type checker
    after: Any = new
    merged: Any = {key: before[key] + after[key] for key in METRICS}
    # Keep the chapter's snapshot epochs of the first piece (not its own 'last epoch').
    snapshots = {e: k for e, k in previous["kernel_snapshots"].items() if e in SNAPSHOT_EPOCHS}
    merged["kernel_snapshots"] = dict(sorted({**snapshots, **new["kernel_snapshots"]}.items()))
    if "lr" in before and "lr" in after:
        merged["lr"] = before["lr"] + after["lr"]
    for key in ("diverged_epoch", "stopped_epoch", "interrupted", "interrupted_steps"):
        if key in after:
            merged[key] = after[key]
    return merged
