"""Benchmarks of tinycnn_xp (run from the repository root: ``python -m benchmarks.bench``); not part of the installed package."""
