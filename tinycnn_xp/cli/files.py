"""Where the commands write: run folders checked before any training, and writes that never lose
a finished run.

``--out`` is created and proven writable (a file is created in it and removed) before the data is
even loaded. If writing still fails at the end (a full disk, a folder made read-only meanwhile),
the checkpoint goes to a fallback, the current directory or else the temporary directory, and the
command says where and exits with ``EXIT_NOT_WRITTEN``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import checkpoint
from ..history import History
from .common import FIGURES, UsageProblem

__all__ = ["prepare_out", "list_files", "RunFiles", "write_sweep", "write_json", "write_text"]


def _new_run_dir(kind: str) -> Path:
    base = Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{kind}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def prepare_out(out: str | None, kind: str) -> Path:
    """The run folder ``--out`` (default: a new one under ``runs/``), created and proven writable:
    ``UsageProblem`` (one line, before any training) if it cannot be."""
    path = Path(out) if out else _new_run_dir(kind)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".tinycnn-xp-probe-{os.getpid()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise UsageProblem(f"cannot write into the output folder {path}: "
                           f"{exc.strerror or exc}") from None
    return path


def list_files(out: Path, files: dict[str, Path]) -> None:
    """The run folder and its files, the figures last."""
    print(f"\nrun folder: {out}")
    for key, path in sorted(files.items(), key=lambda item: item[0] in FIGURES):
        print(f"  {'figure' if key in FIGURES else key:<10s} {path}")


class RunFiles:
    """The files of one run: each write that fails is reported in one line, and the rest go on."""

    def __init__(self, command: str, out: Path) -> None:
        self.command, self.out = command, out
        self.files: dict[str, Path] = {}
        self.failed: list[str] = []

    def _report(self, line: str) -> None:
        print(f"tinycnn-xp {self.command}: {line}", file=sys.stderr, flush=True)

    def write(self, key: str, write: Callable[[], Any]) -> None:
        """``write()`` (which returns the path written), or one line saying why not."""
        try:
            self.files[key] = Path(write())
        except OSError as exc:
            self.failed.append(key)
            where = exc.filename or self.out
            self._report(f"cannot write {where}: {exc.strerror or exc}")

    def save_checkpoint(self, model: Any, history: Any, meta: dict) -> Path | None:
        """The checkpoint in the run folder, else in the fallbacks; ``None`` if nowhere. Any error
        sends it to a fallback; one about what the file would hold (a history it cannot store)
        saves the model with as much of the history as it can store."""
        target = self.out / "model.npz"
        try:
            self.files["checkpoint"] = checkpoint.save(model, target, history, meta=meta)
            return self.files["checkpoint"]
        except Exception as exc:  # any error: a finished model is never lost
            self.failed.append("checkpoint")
            problem = f"cannot write {target}: {getattr(exc, 'strerror', None) or exc}"
        keep = [history, _without_snapshots(history), None]
        for folder in (Path.cwd(), Path(tempfile.gettempdir())):
            path = _unused(folder / f"tinycnn-xp-{self.out.name}-model.npz")
            for kept in keep:
                try:
                    self.files["checkpoint"] = checkpoint.save(model, path, kept, meta=meta)
                except OSError:
                    break  # this folder cannot be written: the next one
                except ValueError:
                    continue  # the history cannot be stored: less of it
                lost = "" if kept is history else (" without the history's filter snapshots"
                                                   if kept is not None else " without its history")
                self._report(f"{problem}; the model was saved to {path}{lost} instead")
                return path
        self._report(f"{problem}; nor could it be saved to the current or the temporary "
                     "directory: the model is lost")
        return None


def _without_snapshots(history: Any) -> Any:
    return None if history is None else {k: v for k, v in history.items() if k != "kernel_snapshots"}


def _unused(path: Path) -> Path:
    """``path``, or ``name-2.npz``, ``name-3.npz``, ... if it exists: a fallback never overwrites."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def write_sweep(files: RunFiles, histories: dict[float, History], num_classes: int,
                figure: bool) -> None:
    """``sweep.json`` and (if ``figure``: matplotlib is there) the sweep figure, into ``files``."""
    path = files.out / "sweep.json"
    record = {str(lr): {k: v for k, v in h.items() if k != "kernel_snapshots"} for lr, h in histories.items()}
    files.write("sweeps", lambda: write_json(path, record))
    if figure:
        from .. import plots
        files.write("sweep", lambda: plots.save_figure(
            plots.lr_sweep_figure(histories, num_classes=num_classes), files.out / FIGURES["sweep"]))


def write_json(path: Any, record: Any) -> Any:
    """``record`` as indented JSON at ``path``; returns ``path``."""
    path.write_text(json.dumps(record, indent=1))
    return path


def write_text(path: Any, text: str) -> Any:
    """``text`` at ``path``; returns ``path``."""
    path.write_text(text)
    return path
