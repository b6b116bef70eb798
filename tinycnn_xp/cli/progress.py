"""Progress: a tqdm bar on a terminal, otherwise plain lines. ``Progress`` follows a training run
epoch by epoch (``fit``'s ``callback``); ``RunProgress`` follows a sweep run by run (``sweep``'s
``on_run``), advancing as each run finishes, wherever it ran."""

from __future__ import annotations

import math
import shutil
import sys
import time
from typing import Any

__all__ = ["Progress", "RunProgress"]


def _bar(total: int, initial: int, desc: str, unit: str) -> Any:
    """A tqdm bar on stdout if it is a terminal and tqdm is installed, else ``None``."""
    if not sys.stdout.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # the plain lines do the job
        return None
    # The terminal's size, or 80x24 where it reports 0 (tqdm would draw nothing: with 0 rows it
    # takes the bar's line to be off screen).
    size = shutil.get_terminal_size()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stdout,
                ncols=size.columns, nrows=size.lines, leave=True)


def _round_step(at_least: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least ``at_least``."""
    scale = 10 ** max(0, math.floor(math.log10(max(at_least, 1))))
    return next(m * scale for m in (1, 2, 5, 10) if m * scale >= at_least)


class Progress:
    """``fit``'s ``callback``: a tqdm bar on a terminal, otherwise a plain line every few epochs."""

    def __init__(self, total: int, initial: int = 0, quiet: bool = False, desc: str = "training",
                 lines: bool = True):
        self.total, self.start = total, time.perf_counter()
        self.quiet = quiet or not lines
        # A line every 1, 2, 5, 10, 20, 50, ... epochs: about ten lines in all.
        self.every = _round_step(total / 10)
        self.initial = initial
        self.bar: Any = None if quiet else _bar(total, initial, desc, "epoch")

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


class RunProgress:
    """``sweep``'s ``on_run(record, done, total)``: a bar of runs on a terminal, otherwise one line
    per finished run, ``run 3/12  lr=0.05 momentum=0.9: train loss ...  val acc ...  (4.2 s)``."""

    def __init__(self, total: int, quiet: bool = False, desc: str = "sweep"):
        self.quiet, self.start = quiet, time.perf_counter()
        self.bar: Any = None if quiet else _bar(total, 0, desc, "run")

    def __call__(self, record: Any, done: int, total: int) -> None:
        from ..sweep import describe_run
        if self.bar is not None:
            self.bar.set_postfix_str(describe_run(record), refresh=False)
            self.bar.update(1)
        elif not self.quiet:
            print(f"run {done}/{total}  {describe_run(record)}  "
                  f"({time.perf_counter() - self.start:.1f} s)", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
