"""Learning-rate schedules: the rate of each epoch, as data (saved in checkpoints, resumed exactly).

A schedule maps ``(epoch, base rate)`` to the epoch's rate, with the definitions of
``torch.optim.lr_scheduler`` stepped once per epoch: ``Constant`` (the chapter's), ``StepDecay``
(``StepLR``) and ``Cosine`` (``CosineAnnealingLR``). ``config()`` is JSON and
``schedule_from_config`` rebuilds it. A Python callable ``epoch -> rate`` works as a schedule too
(``Callable``), but cannot be saved.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable as _CallableType
from typing import Any

from . import _checks

__all__ = ["Schedule", "Constant", "StepDecay", "Cosine", "Callable", "Unstored",
           "schedule_from_config", "parse_schedule", "as_schedule"]


class Schedule:
    """Base class: ``schedule.rate(epoch, lr)`` is the rate of ``epoch`` for base rate ``lr``."""

    kind = ""
    storable = True

    def rate(self, epoch: int, lr: float) -> float:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, **vars(self)}

    def checked_rate(self, epoch: int, lr: float) -> float:
        """``rate(epoch, lr)``, or ``ValueError`` naming ``schedule`` if it is not a finite
        number >= 0 (said before the epoch trains)."""
        value = self.rate(epoch, lr)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(float(value)) or float(value) < 0:
            raise ValueError(f"schedule: the rate of epoch {epoch} must be a finite number >= 0, "
                             f"{self!r} gave {value!r}")
        return float(value)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """The same rate every epoch."""

    kind = "constant"

    def rate(self, epoch: int, lr: float) -> float:
        return lr


class StepDecay(Schedule):
    """``lr * factor ** (epoch // every)``: the rate times ``factor`` every ``every`` epochs."""

    kind = "step"

    def __init__(self, every: int, factor: float = 0.1) -> None:
        self.every = _checks.positive_int(every, "every")
        self.factor = _checks.positive_number(factor, "factor")

    def rate(self, epoch: int, lr: float) -> float:
        return lr * self.factor ** (epoch // self.every)


class Cosine(Schedule):
    """``floor + (lr - floor) * (1 + cos(pi * epoch / period)) / 2``: from ``lr`` down to
    ``floor`` over ``period`` epochs (and back up over the next ``period``, like torch's)."""

    kind = "cosine"

    def __init__(self, period: int, floor: float = 0.0) -> None:
        self.period = _checks.positive_int(period, "period")
        self.floor = _checks.non_negative_number(floor, "floor")

    def rate(self, epoch: int, lr: float) -> float:
        return self.floor + (lr - self.floor) * (1 + math.cos(math.pi * epoch / self.period)) / 2


class Callable(Schedule):
    """A Python function ``epoch -> rate`` (the base rate is not used). It cannot be saved:
    ``save`` says so, and a resumed run needs it passed again."""

    kind = "callable"
    storable = False

    def __init__(self, function: _CallableType[[int], float]) -> None:
        if not callable(function):
            raise TypeError(f"schedule must be a Schedule or a callable epoch -> rate, got "
                            f"{type(function).__name__}")
        self.function = function

    def rate(self, epoch: int, lr: float) -> float:
        return self.function(epoch)

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "function": getattr(self.function, "__qualname__", "?")}


class Unstored(Schedule):
    """What a checkpoint gives back for a ``Callable`` schedule: its name, and a clear error
    when a rate is asked for (pass the optimizer, with its function, again)."""

    kind = "callable"
    storable = False

    def __init__(self, function: str = "?") -> None:
        self.function = str(function)

    def rate(self, epoch: int, lr: float) -> float:
        raise ValueError(f"schedule: this optimizer's schedule was the Python function "
                         f"{self.function}, which a checkpoint cannot hold; pass optimizer= with it "
                         f"again to continue")


_KINDS: dict[str, type[Schedule]] = {"constant": Constant, "step": StepDecay, "cosine": Cosine,
                                     "callable": Unstored}


def as_schedule(value: Any) -> Schedule:
    """``None`` (constant), a ``Schedule``, or a callable ``epoch -> rate``."""
    if value is None:
        return Constant()
    if isinstance(value, Schedule):
        return value
    return Callable(value)


def schedule_from_config(config: Any) -> Schedule:
    """The schedule ``config()`` describes (a ``Callable``'s comes back ``Unstored``);
    ``ValueError`` if it describes none."""
    if not isinstance(config, dict) or config.get("kind") not in _KINDS:
        raise ValueError(f"a schedule must be {{'kind': one of {sorted(_KINDS)}, ...}}, got "
                         f"{config!r:.200}")
    arguments = {key: value for key, value in config.items() if key != "kind"}
    try:
        return _KINDS[config["kind"]](**arguments)
    except TypeError as exc:
        raise ValueError(f"schedule {config!r:.200}: {exc}") from None


def parse_schedule(text: str, epochs: int) -> Schedule:
    """A schedule from the command line's form: ``constant``, ``cosine`` (over ``epochs``),
    ``cosine:PERIOD[:FLOOR]`` or ``step:EVERY:FACTOR``."""
    kind, *args = text.split(":")
    try:
        if kind == "constant" and not args:
            return Constant()
        if kind == "cosine" and len(args) <= 2:
            period = int(args[0]) if args else max(epochs, 1)
            return Cosine(period, float(args[1]) if len(args) > 1 else 0.0)
        if kind == "step" and len(args) == 2:
            return StepDecay(int(args[0]), float(args[1]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--schedule {text!r}: {exc}") from None
    raise ValueError(f"--schedule must be constant, cosine, cosine:PERIOD[:FLOOR] or "
                     f"step:EVERY:FACTOR, got {text!r}")
