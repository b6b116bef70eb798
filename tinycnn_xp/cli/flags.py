"""The command line's flag types: each converts the text and applies the library's own check,
so that a bad value is argparse's one line (``expected ..., got ...``), exit status 2."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from .. import _checks

__all__ = ["flag", "int_at_least", "positive_float", "jobs_flag", "momentum_flag", "fraction_flag",
           "cadence_flag", "image_size_flag"]


def flag(convert: Callable[[str], Any], check: Callable[[Any, str], Any],
         expected: str) -> Callable[[str], Any]:
    """An argparse ``type`` that converts the text, then applies the library's own check."""
    def parse(text: str) -> Any:
        try:
            return check(convert(text), "value")
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    parse.__name__ = expected
    return parse


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    def in_range(value: int, name: str) -> int:
        if value < low or (high is not None and value > high):
            raise ValueError(name)
        return value
    expected = f"an integer >= {low}" if high is None else f"an integer from {low} to {high:,}"
    return flag(int, in_range, expected)


def _workers(value: int, name: str) -> int:
    if value < 1 and value != -1:
        raise ValueError(name)
    return value


def _fraction(value: float, name: str) -> float:
    if not 0.0 < value < 1.0:
        raise ValueError(name)
    return value


def cadence_flag(text: str) -> tuple[int | None, float | None]:
    """``--checkpoint-every``: ``N`` epochs (``(N, None)``) or ``Ts`` seconds (``(None, T)``)."""
    try:
        if text.lower().endswith("s"):
            seconds = float(text[:-1])
            if math.isfinite(seconds) and seconds >= 0:
                return None, seconds
        elif int(text) >= 1:
            return int(text), None
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected a number of epochs (say 5) or of seconds (say "
                                     f"30s), got {text!r}")


positive_float = flag(float, _checks.learning_rate, "a positive number")
fraction_flag = flag(float, _fraction, "a number in (0, 1)")
jobs_flag = flag(int, _workers, "an integer >= 1, or -1 (every core)")
momentum_flag = flag(float, _checks.momentum, "a number in [0, 1)")


def image_size_flag(text: str) -> tuple[int, int]:
    """``--image-size``: ``HxW`` (``28x28``) or one number for a square."""
    parts = text.lower().split("x")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or not all(1 <= v <= 4096 for v in values):
        raise argparse.ArgumentTypeError(f"expected HxW (say 28x28), each from 1 to 4096, got {text!r}")
    return values[0], values[1]
