"""``train``'s files while it trains: ``model.npz`` kept as the latest complete checkpoint (when an
epoch ends and the cadence says so, on any stop, at the end), ``best.npz`` with ``--keep-best``,
and ``history.csv``, a row per epoch as it ends.

A checkpoint is always of a whole epoch: the model's parameters and velocities, the history up
to that epoch and the shuffle generator's state after it, so that ``--resume`` from any of them
trains on exactly as the run would have. Every write is atomic (``checkpoint.save``).
"""

from __future__ import annotations

import copy
import csv
import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import checkpoint
from ..history import METRICS, History
from .files import RunFiles
from .writes import AppendedFile

__all__ = ["Checkpoints", "HistoryRows", "HISTORY_CSV", "COLUMNS"]

HISTORY_CSV = "history.csv"
#: the columns of ``history.csv``: the epoch, its four metrics, the learning rate, its seconds.
COLUMNS = ("epoch", *METRICS, "lr", "seconds")


class Checkpoints:
    """Writes ``model.npz`` (and ``best.npz``) of the run as epochs end. ``cadence`` is
    ``(epochs, None)`` or ``(None, seconds)``: write when that many have passed since the last
    write (or the start). A write that fails is said once; the final one has the fallbacks."""

    def __init__(self, files: RunFiles, model: Any, history: History, meta: dict,
                 cadence: tuple[int | None, float | None], keep_best: bool,
                 shuffles: np.random.Generator) -> None:
        self.files, self.model, self.history, self.meta = files, model, history, meta
        self.every_epochs, self.every_seconds = cadence
        self.shuffles, self.keep_best = shuffles, keep_best
        self.state = shuffles.bit_generator.state  # before the first epoch of this run
        self.path, self.best_path = files.out / "model.npz", files.out / "best.npz"
        self.last_write, self.epochs_since = time.monotonic(), 0
        self.writes, self.write_seconds, self.failed = 0, 0.0, False
        #: (val loss, epochs, params, velocities, shuffle state, buffers, optimizer)
        self.best: tuple | None = None
        self.best_written: int | None = None
        self.written_epochs: int | None = None

    def _meta(self, state: dict | None = None) -> dict:
        return {**self.meta, "shuffles": state or self.state}

    def epoch_ended(self, epoch: int, metrics: dict) -> None:
        """``fit``'s callback, after the epoch is in the history."""
        # The generator after this whole epoch's permutation: an epoch cut short later draws
        # its own, which resuming must draw again.
        self.state = self.shuffles.bit_generator.state
        if self.keep_best and (self.best is None or metrics["val_loss"] < self.best[0]):
            # The arrays are never changed in place (updates rebind): keeping them is free.
            self.best = (metrics["val_loss"], len(self.history["train_loss"]), self.model.params(),
                         self.model.velocities(), self.state, self.model.buffers(),
                         _optimizer_now(self.model))
        self.epochs_since += 1
        due = (self.epochs_since >= self.every_epochs if self.every_epochs is not None
               else time.monotonic() - self.last_write >= (self.every_seconds or 0.0))
        if due:
            self._write_latest()

    def _write_latest(self) -> None:
        start = time.perf_counter()
        try:
            checkpoint.save(self.model, self.path, self.history, meta=self._meta())
            self._write_best()
        except (OSError, ValueError) as exc:
            if not self.failed:  # once; the checkpoint at the end tries the fallbacks
                self.files._report(f"cannot write {getattr(exc, 'filename', None) or self.path}: "
                                   f"{getattr(exc, 'strerror', None) or exc}; the run goes on")
            self.failed = True
        else:
            self.writes += 1
            self.written_epochs = len(self.history["train_loss"])
        self.write_seconds += time.perf_counter() - start
        self.last_write, self.epochs_since = time.monotonic(), 0

    def _write_best(self) -> None:
        if self.best is None or self.best_written == self.best[1]:
            return
        _, epochs, params, velocities, state, buffers, optimizer = self.best
        best = copy.deepcopy(self.model)
        best.bind(params, velocities, buffers=buffers)
        best.optimizer = optimizer
        history: Any = {key: self.history[key][:epochs] for key in METRICS}  # type: ignore[literal-required]
        if "lr" in self.history:
            history["lr"] = self.history["lr"][:epochs]
        history["kernel_snapshots"] = {e: k for e, k in self.history["kernel_snapshots"].items()
                                       if e < epochs}
        checkpoint.save(best, self.best_path, history, meta=self._meta(state))
        self.best_written = epochs
        self.files.files["best"] = self.best_path

    def final(self) -> Path | None:
        """The checkpoint after training stopped, however it stopped (with the fallbacks)."""
        start = time.perf_counter()
        saved = self.files.save_checkpoint(self.model, self.history, self._meta())
        if saved is not None:
            self.writes += 1
        if self.keep_best:
            try:
                self._write_best()
            except (OSError, ValueError) as exc:
                self.files.failed.append("best")
                self.files._report(f"cannot write {self.best_path}: "
                                   f"{getattr(exc, 'strerror', None) or exc}")
        self.write_seconds += time.perf_counter() - start
        return saved

    def cost(self, training_seconds: float) -> str:
        """What the checkpoints cost, in one line."""
        each = self.write_seconds / max(self.writes, 1) * 1e3
        share = self.write_seconds / max(training_seconds + self.write_seconds, 1e-9)
        return (f"checkpoints: {self.writes} written, {each:.1f} ms each, {share:.1%} of the "
                "training time")


def _optimizer_now(model: Any) -> Any:
    """The model's optimizer as it is now (its step count and state arrays: never changed in
    place, so a shallow copy keeps them), for ``best.npz``."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return None
    now = copy.copy(optimizer)
    now.state = None if optimizer.state is None else {
        slot: dict(arrays) for slot, arrays in optimizer.state.items()}
    return now


class HistoryRows:
    """``history.csv``: rewritten (atomically) with the epochs ``history`` already holds, then a
    row appended and flushed as each epoch ends. A resumed run keeps the rows of its epochs from
    the file it continues (their times), so that no epoch is repeated or lost."""

    def __init__(self, files: RunFiles, path: Path, history: History, lr: float) -> None:
        self.lr, self.history = lr, history  # the epoch's rate: the history's (a schedule's)
        done = len(history["train_loss"])
        rows = _rows_of(path, done)
        if rows is None:  # no usable file: the rows from the history, without their times
            rates = history.get("lr") or []
            rows = [[str(epoch), *(repr(history[key][epoch]) for key in METRICS),  # type: ignore[literal-required]
                     repr(rates[epoch]) if epoch < len(rates) else "", ""] for epoch in range(done)]
        self.file = AppendedFile(files, path, "history table", _csv([COLUMNS, *rows]))
        self.start = time.perf_counter()

    def append(self, epoch: int, metrics: dict) -> None:
        now = time.perf_counter()
        rates = self.history.get("lr")
        lr = rates[-1] if rates and len(rates) == len(self.history["train_loss"]) else self.lr
        self.file.write(_csv([[epoch, *(repr(metrics[key]) for key in METRICS), repr(lr),
                               f"{now - self.start:.4f}"]]))
        self.start = now

    def close(self) -> None:
        self.file.close()


def _csv(rows: list) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue()


def _rows_of(path: Path, epochs: int) -> list[list[str]] | None:
    """The first ``epochs`` rows of an existing ``history.csv``, if it has them all."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    if not rows or tuple(rows[0]) != COLUMNS:
        return None
    body = rows[1:epochs + 1]
    if len(body) < epochs or any(len(row) != len(COLUMNS) or row[0] != str(i)
                                 for i, row in enumerate(body)):
        return None
    return body
