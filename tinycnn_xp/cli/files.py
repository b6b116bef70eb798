"""Where the commands write: run folders checked before any training, and writes that never lose
a finished run.

``--out`` is created and proven writable (a file is created in it and removed) before the data is
even loaded. If writing still fails at the end (a full disk, a folder made read-only meanwhile),
the checkpoint goes to a fallback, the current directory or else the temporary directory, and the
command says where and exits with ``EXIT_NOT_WRITTEN``.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import checkpoint
from ..history import History, without_snapshots
from .common import FIGURES, UsageProblem
from .writes import write_figure, write_json

__all__ = ["prepare_out", "release_folders", "list_files", "RunFiles", "write_sweep"]


def _new_run_dir(kind: str) -> Path:
    base = Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{kind}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def prepare_out(out: str | None, kind: str) -> Path:
    """The run folder ``--out`` (default: a new one under ``runs/``), created, proven writable and
    locked for this process (``release_folders`` unlocks), its stale temporary files removed:
    ``UsageProblem`` (one line, before any training) if it cannot be, or if another run holds it."""
    path = Path(out) if out else _new_run_dir(kind)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".tinycnn-xp-probe-{os.getpid()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise UsageProblem(f"cannot write into the output folder {path}: "
                           f"{exc.strerror or exc}") from None
    _lock(path)
    for stale in path.iterdir():  # left by a process killed mid-write: under the lock, no one's
        if _TEMPORARY.match(stale.name):
            stale.unlink(missing_ok=True)
    return path


LOCK = ".tinycnn-xp.lock"
_HELD: dict[Path, int] = {}
#: temporary names of atomic writes: ``.model.npz.<hex>.tmp`` (checkpoint),
#: ``.<name>.<pid>-<hex>.tmp<suffix>`` (``atomic_write``).
_TEMPORARY = re.compile(r"^\.(model|best|history|sweep|evaluation|loss_accuracy|filter_evolution|"
                        r"confusion_matrix|lr_sweep)\.\w+\.[0-9a-f]+(-[0-9a-f]+)?\.tmp(\.\w+)?$")


def _lock(path: Path) -> None:
    """An exclusive lock on ``path/.tinycnn-xp.lock`` for as long as this process holds it (the
    kernel drops it when the process ends, however it ends: a killed run leaves no stale lock)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return
    key = path.resolve()
    if key in _HELD:
        raise UsageProblem(f"the output folder {path} is in use by this process already")
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise UsageProblem(f"the output folder {path} is in use by another tinycnn-xp run "
                           f"(process {holder}); wait for it to end, or pass another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _HELD[key] = fd


def release_folders() -> None:
    """Unlock every run folder this process locked (``main`` does, as a command ends)."""
    while _HELD:
        os.close(_HELD.popitem()[1])


def list_files(out: Path, files: dict[str, Path]) -> None:
    """The run folder and its files, the figures last."""
    print(f"\nrun folder: {out}")
    for key, path in sorted(files.items(), key=lambda item: item[0] in FIGURES):
        print(f"  {'figure' if key in FIGURES else key:<10s} {path}")


class RunFiles:
    """The files of one run: each write that fails is reported in one line, and the rest go on."""

    def __init__(self, command: str, out: Path, figures: bool = True) -> None:
        self.command, self.out = command, out
        self.figures = figures  # False: --no-figures
        self.files: dict[str, Path] = {}
        self.failed: list[str] = []

    def _report(self, line: str) -> None:
        print(f"tinycnn-xp {self.command}: {line}", file=sys.stderr, flush=True)

    def write(self, key: str, path: Path, write: Callable[[Path], Any]) -> None:
        """``write(path)``; if it fails, one line saying why, and the file written to the
        fallbacks the checkpoint has (the current, then the temporary directory) instead."""
        try:
            write(path)
            self.files[key] = path
            return
        except OSError as exc:
            self.failed.append(key)
            problem = f"cannot write {exc.filename or path}: {exc.strerror or exc}"
        for folder in (Path.cwd(), Path(tempfile.gettempdir())):
            target = _unused(folder / f"tinycnn-xp-{self.out.name}-{path.name}")
            try:
                write(target)
            except OSError:
                continue
            self.files[key] = target
            self._report(f"{problem}; written to {target} instead")
            return
        self._report(f"{problem}; nor could it be written to the current or the temporary directory")

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
        keep = [history, None if history is None else without_snapshots(history), None]
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
    record = {str(lr): without_snapshots(h) for lr, h in histories.items()}
    files.write("sweeps", path, lambda target: write_json(target, record))
    if figure and files.figures:
        from .. import plots
        files.write("sweep", files.out / FIGURES["sweep"], lambda target: write_figure(
            target, lambda: plots.lr_sweep_figure(histories, num_classes=num_classes)))
