"""Command line: ``tinycnn-xp train | gradcheck | sweep`` (``python -m tinycnn_xp`` too).

``train`` trains a preset on the line patterns (the chapter's run by default) or the 8x8 digits on
the chosen backend, shows progress, prints a summary, and writes the figures, a checkpoint and the
history into a run folder. ``--resume`` continues a checkpoint's run exactly where it stopped.
Problems the user can fix (a backend that cannot run here, a missing extra, a bad checkpoint) end
with one line on stderr and exit status 2; ``gradcheck`` exits 1 when a gradient is off.

Modules: ``main`` (the parser), ``common`` (what the commands share), ``progress``, and one per
command: ``train``, ``sweep``, ``gradcheck``.
"""

from .common import FIGURES, UsageProblem
from .main import build_parser, main

__all__ = ["FIGURES", "UsageProblem", "build_parser", "main"]
