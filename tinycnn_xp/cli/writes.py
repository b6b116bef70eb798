"""How the commands write a file: atomically (a temporary file in the same folder, flushed to
disk, renamed over the old one, the folder synced), so that a kill or a full disk leaves the old
file or the new one, never half of one; and files that grow a line at a time as a run goes."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .. import checkpoint

__all__ = ["atomic_write", "AppendedFile", "write_json", "write_text", "write_figure"]


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """``write(temporary)`` into a new file next to ``path``, flushed to disk, then renamed over
    ``path`` in one step, the folder synced: a kill or a full disk leaves the old file or the
    new one, never half of one. Returns ``path``; errors name ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid():x}-{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    checkpoint.sync_directory(path.parent)
    return path


class Reporting(Protocol):
    """Where a run's files are listed and their failures said (``files.RunFiles``)."""

    files: dict[str, Path]
    failed: list[str]

    def _report(self, line: str) -> None: ...


class AppendedFile:
    """A file of a run that grows a line at a time as the run goes (``history.csv``,
    ``runs.jsonl``): first written whole (atomically) with ``text``, then appended, each line
    flushed (and with ``sync``, on disk). A write that fails is said once, as ``files``' failure
    ``key``, and the run goes on without the file."""

    def __init__(self, files: Reporting, path: Path, key: str, text: str, sync: bool = False) -> None:
        self.files, self.path, self.key, self.sync = files, path, key, sync
        self.handle: Any = None
        try:
            atomic_write(path, lambda tmp: tmp.write_text(text))
            self.handle = open(path, "a", newline="")  # noqa: SIM115 (open while the run goes)
        except OSError as exc:
            self._failed(exc)
        else:
            files.files[key] = path

    def _failed(self, exc: OSError) -> None:
        self.close()
        self.files.failed.append(self.key)
        self.files._report(f"cannot write {self.path}: {exc.strerror or exc}; the run goes on")

    def write(self, line: str) -> None:
        if self.handle is None:
            return
        try:
            self.handle.write(line)
            self.handle.flush()
            if self.sync:
                os.fsync(self.handle.fileno())
        except OSError as exc:
            self._failed(exc)

    def close(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            with contextlib.suppress(OSError):
                handle.close()


def write_json(path: Any, record: Any) -> Any:
    """``record`` as indented JSON at ``path``, atomically; returns ``path``."""
    text = json.dumps(record, indent=1)
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text))


def write_text(path: Any, text: str) -> Any:
    """``text`` at ``path``, atomically; returns ``path``."""
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text))


def write_figure(path: Path, figure: Callable[[], Any]) -> Path:
    """The figure ``figure()`` draws, as a PNG at ``path``, atomically."""
    from .. import plots
    return atomic_write(path, lambda tmp: plots.save_figure(figure(), tmp))
