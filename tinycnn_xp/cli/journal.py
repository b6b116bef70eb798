"""``sweep``'s journal, ``runs.jsonl`` in its folder: one JSON line per finished run (its
configuration, its history without the filter snapshots, and the sweep's settings), appended and
synced to disk as the run finishes, so that a kill loses at most the runs that were running.
``sweep --resume DIR`` reads it back and runs only what is missing; a last line cut short by a
kill is dropped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..history import without_snapshots
from .common import UsageProblem
from .files import RunFiles
from .writes import AppendedFile

__all__ = ["JOURNAL", "Journal", "read"]

JOURNAL = "runs.jsonl"


def _line(settings: dict, record: Any) -> str:
    entry = {"settings": settings, "config": record["config"],
             "history": without_snapshots(record["history"])}
    if record.get("failed"):
        entry["failed"] = record["failed"]
    return json.dumps(entry) + "\n"


class Journal:
    """The journal of the sweep writing into ``files.out``: rewritten (atomically) with the
    ``kept`` records of the sweep it resumes, then a line appended, on disk, as each run ends."""

    def __init__(self, files: RunFiles, settings: dict, kept: list[Any]) -> None:
        self.files, self.settings = files, settings
        self.file: AppendedFile | None = None
        if kept:
            self._open(kept)

    def _open(self, kept: list[Any]) -> AppendedFile:  # not before there is a run to keep
        self.file = AppendedFile(self.files, self.files.out / JOURNAL, "journal",
                                 "".join(_line(self.settings, record) for record in kept), sync=True)
        return self.file

    def append(self, record: Any) -> None:
        (self.file or self._open([])).write(_line(self.settings, record))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def read(folder: str, settings: dict) -> list[dict[str, Any]]:
    """The records of ``folder``'s journal, each checked to be a run of a sweep with these
    ``settings``; ``UsageProblem`` naming the file and the line if not."""
    path = Path(folder) / JOURNAL
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UsageProblem(f"{folder}: no {JOURNAL} to resume (the journal a sweep writes as its "
                           "runs finish)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    records = []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if not line.endswith("\n"):
            break  # the line a kill cut short: that run is run again
        try:
            entry = json.loads(line)
        except ValueError:
            raise UsageProblem(f"{path}: line {number} is not JSON") from None
        if not (isinstance(entry, dict) and isinstance(entry.get("config"), dict)
                and isinstance(entry.get("history"), dict)):
            raise UsageProblem(f"{path}: line {number} is not a run's record")
        theirs = entry.get("settings")
        if theirs != settings:
            differ = next((key for key in settings if not isinstance(theirs, dict)
                           or theirs.get(key) != settings[key]), "settings")
            raise UsageProblem(f"{path}: line {number} is a run of another sweep ({differ} "
                               f"{theirs.get(differ) if isinstance(theirs, dict) else theirs!r:.40}, "
                               f"not {settings.get(differ)!r:.40}); resume it with the same flags")
        records.append({key: entry[key] for key in ("config", "history", "failed") if key in entry})
    return records
