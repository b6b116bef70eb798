"""Every Python block of README.md and of the docs' Markdown pages runs.

The blocks of one file run in order, once, in one namespace and one temporary folder, as a reader
would type them (whatever they write stays there). Two markers, an HTML comment on the line
before a block:

- ``<!-- needs: torch -->`` (or ``jax``, ``cupy``): the block runs in that backend's session
  (``tests(torch)``, ...), after the file's plain blocks; the other sessions report it skipped.
- ``<!-- skip: REASON -->``: it needs what no session has (a Dask scheduler, a run folder named
  by a placeholder): reported as skipped with that reason, never run.

Plain blocks run in the numpy session, and in a backend's session when the file has a block that
needs that backend.
"""

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!--\s*(?P<marker>skip|needs):\s*(?P<value>.*?)\s*-->\s*\n)?"
                   r"```python\n(?P<code>.*?)```", re.S)

# One worker runs them all, in order (``--dist loadgroup``): a file's blocks share a namespace.
pytestmark = pytest.mark.xdist_group("docs-examples")


def blocks(path: Path) -> list[tuple[int, str, str | None, str | None]]:
    """``(line, code, marker, value)`` of every Python block of ``path`` (no marker: None)."""
    text = path.read_text(encoding="utf-8")
    return [(text[:m.start("code")].count("\n") + 1, m.group("code"), m.group("marker"),
             m.group("value")) for m in BLOCK.finditer(text)]


class _File:
    """One file's blocks run in order, once, in one namespace and one folder: a block's test runs
    the blocks before it that have not run yet (on any worker, in any order), then itself."""

    def __init__(self, path: Path, folder: Path) -> None:
        self.path, self.folder = path, folder
        self.namespace: dict = {"__name__": "__docs__"}
        self.outcome: dict[int, BaseException | None] = {}  # block index -> error or None

    def run_through(self, index: int, session: str, monkeypatch) -> BaseException | None:
        monkeypatch.chdir(self.folder)
        for k, (line, code, marker, value) in enumerate(blocks(self.path)[:index + 1]):
            if k in self.outcome or reason_not_to_run(self.path, marker, value, session):
                continue
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(code, f"{self.path.name}:{line}", "exec"), self.namespace)
                self.outcome[k] = None
            except Exception as exc:  # reported by that block's own test
                self.outcome[k] = exc
        return self.outcome[index]


FILES_RUN: dict[Path, _File] = {}  # a plain dict, not a fixture: it outlives a module's tests


def reason_not_to_run(path: Path, marker: str | None, value: str | None, session: str) -> str | None:
    """Why this session leaves the block out (None: it runs)."""
    if marker == "skip":
        return value
    if marker == "needs":
        return None if value == session else f"needs {value}: runs in the tests({value}) session"
    needed = {v for _, _, m, v in blocks(path) if m == "needs"}
    if session == "numpy" or session in needed:
        return None
    return "runs in the numpy session"


@pytest.mark.parametrize("path, index", [pytest.param(path, index, id=f"{path.relative_to(ROOT)}:{line}")
                                         for path in FILES
                                         for index, (line, *_) in enumerate(blocks(path))])
def test_the_example_runs(backend, tmp_path_factory, monkeypatch, path, index):
    line, _, marker, value = blocks(path)[index]
    reason = reason_not_to_run(path, marker, value, backend.NAME)
    if reason is not None:
        pytest.skip(f"{path.name}:{line}: {reason}")
    if path not in FILES_RUN:
        FILES_RUN[path] = _File(path, tmp_path_factory.mktemp(path.stem))
    error = FILES_RUN[path].run_through(index, backend.NAME, monkeypatch)
    if error is not None:
        raise error


def test_the_extractor_finds_the_blocks_and_markers():
    """A broken pattern would silently run nothing."""
    found = blocks(ROOT / "README.md")
    assert len(found) >= 5
    assert all(code.strip() for _, code, _, _ in found)
    assert {"needs", "skip"} <= {marker for _, _, marker, _ in found}
    assert reason_not_to_run(ROOT / "README.md", "needs", "jax", "numpy") is not None
    assert reason_not_to_run(ROOT / "README.md", "needs", "jax", "jax") is None
