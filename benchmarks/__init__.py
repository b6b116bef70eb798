"""Benchmarks of tinycnn_xp, run from the repository root (not part of the installed package)."""
