"""SIGTERM (``kill PID``; what ``docker stop``, systemd, SLURM and Kubernetes send) handled like
Ctrl-C: it is passed to whatever handles SIGINT at that moment (``fit``'s flag, checked after each
step, or Python's ``KeyboardInterrupt``), and the command's exit status becomes 143 instead of
130. The command line does this, never the library: a model installs no handler but ``fit``'s."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["TERMINATED", "sigterm_as_interrupt"]

TERMINATED: dict[str, str | None] = {"by": None}  # "SIGTERM" once one arrived (the exit status)


def _on_sigterm(signum: int, frame: Any) -> None:
    TERMINATED["by"] = "SIGTERM"
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)  # fit's flag, or default_int_handler's KeyboardInterrupt
    else:  # SIGINT ignored (a background job): a termination still ends the command
        raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block (main thread only), SIGTERM acts as SIGINT does at that moment."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    TERMINATED["by"] = None
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
