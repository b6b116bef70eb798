"""Progress of a training run: a tqdm bar on a terminal, otherwise a plain line every few epochs."""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any

__all__ = ["Progress"]


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
        self.bar: Any = None
        if not quiet and sys.stdout.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # the plain lines below do the job
                return
            # The terminal's size, or 80x24 where it reports 0 (tqdm would draw nothing: with
            # 0 rows it takes the bar's line to be off screen).
            size = shutil.get_terminal_size()
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="epoch", file=sys.stdout,
                            ncols=size.columns, nrows=size.lines, leave=True)

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
