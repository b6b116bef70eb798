"""``--optimizer``, ``--weight-decay`` and ``--schedule`` of ``train`` and ``sweep``: the flags, the
optimizer they ask for, and what a resumed run continues with.

``--optimizer sgd`` (the default) is the chapter's SGD with ``--lr`` and ``--momentum``, as
before; ``rmsprop``, ``adam`` and ``adamw`` take their own default rate (and RMSprop its own
momentum, 0) when ``--lr`` is not typed. ``train --resume`` continues with the checkpoint's
optimizer, its schedule, step count and state; a typed flag changes that setting only (another
``--optimizer`` starts a new one, with its own defaults).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..optim import BY_NAME, SGD, Optimizer, optimizer_from_config
from ..schedules import Constant, Cosine, Schedule, StepDecay, parse_schedule
from ..sweep import DEFAULT_LRS
from .common import OPTIMIZER_DEFAULTS, UsageProblem
from .flags import flag

__all__ = ["NAMES", "add_flags", "schedule_flag", "weight_decay_flag", "typed", "name_of",
           "build", "for_run", "plain", "schedule_text", "describe", "settings_of", "sweep_rates"]

#: ``--optimizer``'s choices, and the class each names.
NAMES = {name: cls.__name__ for name, cls in BY_NAME.items()}
#: the flags that set the optimizer, as ``args`` holds them.
KEYS = ("optimizer", "lr", "momentum", "weight_decay", "schedule")
FORMS = "constant, cosine, cosine:PERIOD[:FLOOR] or step:EVERY:FACTOR"


def _weight_decay(value: float, name: str) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(name)
    return value


weight_decay_flag = flag(float, _weight_decay, "a number >= 0")


def schedule_flag(text: str) -> str:
    """``--schedule``: one of the forms of ``schedules.parse_schedule`` (checked now; built once
    the epochs are known, for ``cosine``'s period)."""
    try:
        parse_schedule(text, 1)
    except ValueError as exc:
        detail = str(exc).partition(": ")[2] if str(exc).startswith(f"--schedule {text!r}:") else ""
        raise argparse.ArgumentTypeError(f"expected {FORMS}, got {text!r}"
                                         + (f" ({detail})" if detail else "")) from None
    return text


def add_flags(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The three flags (for ``sweep``, each with its plural to sweep, ``--optimizers``,
    ``--weight-decays``, ``--schedules``, in a group with it)."""
    kinds = parser.add_mutually_exclusive_group() if sweep else parser
    if sweep:
        kinds.add_argument("--optimizers", choices=tuple(NAMES), nargs="+", metavar="NAME",
                           help="optimizers to sweep (sgd rmsprop adam adamw), each at its own "
                                "default rate unless --lrs")
    kinds.add_argument("--optimizer", choices=tuple(NAMES),
                        help="sgd: the chapter's, with --lr and --momentum (default); rmsprop, adam, "
                             "adamw: as PyTorch defines them, at their own default rate (0.01, 0.001, "
                             "0.001) unless --lr" + ("" if sweep else "; with --resume: the checkpoint's"))
    decay = parser.add_mutually_exclusive_group() if sweep else parser
    decay.add_argument("--weight-decay", type=weight_decay_flag, metavar="WD",
                       help="L2 weight decay (AdamW: decoupled; default 0, AdamW's 0.01)")
    if sweep:
        decay.add_argument("--weight-decays", type=weight_decay_flag, nargs="+", metavar="WD",
                           help="weight decays to sweep")
    forms = parser.add_mutually_exclusive_group() if sweep else parser
    forms.add_argument("--schedule", type=schedule_flag, metavar="FORM",
                       help="learning rate per epoch: constant (default), cosine (down to 0 over "
                            "--epochs, fixed then: a resumed run keeps it), cosine:PERIOD[:FLOOR], "
                            "step:EVERY:FACTOR")
    if sweep:
        forms.add_argument("--schedules", type=schedule_flag, nargs="+", metavar="FORM",
                           help="schedules to sweep")


def typed(args: argparse.Namespace) -> set[str]:
    """The optimizer flags the user typed (before any default fills them in)."""
    return {key for key in KEYS if getattr(args, key, None) is not None}


def name_of(optimizer: Optimizer) -> str:
    return next(name for name, cls in NAMES.items() if cls == type(optimizer).__name__)


def _schedule(args: argparse.Namespace) -> Schedule | None:
    try:
        return parse_schedule(args.schedule, args.epochs) if args.schedule else None
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None


def build(args: argparse.Namespace) -> Optimizer:
    """A new optimizer of ``args`` (their defaults filled in)."""
    name = args.optimizer or "sgd"
    if args.momentum is not None and name in ("adam", "adamw"):
        raise UsageProblem(f"--momentum is SGD's and RMSprop's: --optimizer {name} has none "
                           "(its betas are 0.9, 0.999)")
    config: dict[str, Any] = {"class": NAMES[name], "lr": args.lr}
    if args.momentum is not None:
        config["momentum"] = args.momentum
    if args.weight_decay is not None:
        config["weight_decay"] = args.weight_decay
    try:
        optimizer = optimizer_from_config(config)
    except (TypeError, ValueError) as exc:
        raise UsageProblem(f"--optimizer {name}: {exc}") from None
    optimizer.schedule = _schedule(args) or Constant()
    return optimizer


def for_run(args: argparse.Namespace, flags: set[str], held: Optimizer | None) -> Optimizer:
    """What ``train`` trains with: the resumed checkpoint's optimizer (``held``) as it is, or
    with the ``flags`` typed changed (its steps and state kept), or a new one of ``args``; and
    ``args`` then say what it is (for the output and the checkpoint's settings)."""
    if held is None or args.optimizer != name_of(held):
        optimizer = build(args)
    elif not flags - {"optimizer"}:
        optimizer = held
    else:
        if "momentum" in flags and not hasattr(held, "momentum"):
            raise UsageProblem(f"--momentum is SGD's and RMSprop's: the checkpoint's "
                               f"{type(held).__name__} has none")
        config = held.config()
        config.update({key: getattr(args, key) for key in ("lr", "momentum", "weight_decay")
                       if key in flags})
        try:
            optimizer = optimizer_from_config(config)
        except (TypeError, ValueError) as exc:
            raise UsageProblem(str(exc)) from None
        optimizer.schedule = (_schedule(args) if "schedule" in flags else None) or held.schedule
        optimizer.steps, optimizer.state = held.steps, held.state
    args.optimizer, args.lr = name_of(optimizer), optimizer.lr
    args.momentum = getattr(optimizer, "momentum", None)
    args.weight_decay = optimizer.weight_decay  # type: ignore[attr-defined]
    args.schedule = schedule_text(optimizer.schedule)
    return optimizer


def plain(optimizer: Optimizer) -> bool:
    """The chapter's SGD: what ``fit(lr=, momentum=)`` would build (no decay, no schedule)."""
    return (type(optimizer) is SGD and not optimizer.nesterov and optimizer.weight_decay == 0
            and optimizer.schedule.kind == "constant")


def schedule_text(schedule: Schedule) -> str:
    """A schedule in ``--schedule``'s words (``cosine:10:0``; ``callable``: a Python function)."""
    config = schedule.config()
    if isinstance(schedule, Cosine):
        return f"cosine:{config['period']}:{config['floor']:g}"
    if isinstance(schedule, StepDecay):
        return f"step:{config['every']}:{config['factor']:g}"
    return schedule.kind


def describe(optimizer: Optimizer) -> str:
    """``sgd, lr 0.12, momentum 0`` / ``adam, lr 0.001, weight decay 0.0001, schedule cosine:10:0``."""
    words = [name_of(optimizer), f"lr {optimizer.lr:g}"]
    if hasattr(optimizer, "momentum"):
        words.append(f"momentum {optimizer.momentum:g}")
    if optimizer.weight_decay:  # type: ignore[attr-defined]
        words.append(f"weight decay {optimizer.weight_decay:g}")  # type: ignore[attr-defined]
    if optimizer.schedule.kind != "constant":
        words.append(f"schedule {schedule_text(optimizer.schedule)}")
    return ", ".join(words)


def settings_of(optimizer: Optimizer) -> dict[str, Any]:
    """The run's settings of the optimizer, for the checkpoint's meta and ``history.json``:
    ``lr`` and ``momentum`` (where it has one) as ``--resume`` reads them, and the rest."""
    found: dict[str, Any] = {"optimizer": name_of(optimizer), "lr": optimizer.lr}
    if hasattr(optimizer, "momentum"):
        found["momentum"] = optimizer.momentum
    found["weight_decay"] = optimizer.weight_decay  # type: ignore[attr-defined]
    found["schedule"] = schedule_text(optimizer.schedule)
    return found


def axes(args: argparse.Namespace) -> dict[str, list[Any]]:
    """A sweep's first axes: ``optimizer`` (``--optimizers``), ``schedule`` (``--schedules``),
    then ``lr`` (``--lrs``; by default the chapter's rates, or a decade around another
    ``--optimizer``'s; none with ``--optimizers``: each at its own rate)."""
    grid: dict[str, list[Any]] = {}
    if getattr(args, "optimizers", None):
        grid["optimizer"] = list(args.optimizers)
    if getattr(args, "schedules", None):
        grid["schedule"] = list(args.schedules)
    if args.lrs or "optimizer" not in grid:
        grid["lr"] = list(args.lrs or sweep_rates(args.optimizer))
    return grid


def swept(args: argparse.Namespace, grid: dict[str, list[Any]],
          fit_kwargs: dict[str, Any]) -> dict[str, Any]:
    """With ``--optimizers`` or ``--schedules``: the settings every run shares go to
    ``fit_kwargs`` (``sweep`` builds each run's optimizer from the grid's names and forms); returns
    them, for the journal and the records."""
    names = grid.get("optimizer", [args.optimizer or "sgd"])
    fit_kwargs.pop("momentum", None)  # a momentum is SGD's and RMSprop's: typed, or swept
    if "momentum" in grid and any(name in ("adam", "adamw") for name in names):
        raise UsageProblem("--momentums: adam and adamw have no momentum")
    shared: dict[str, Any] = {}
    if "optimizer" not in grid:
        shared["optimizer"] = names[0]
    if args.weight_decay is not None:
        shared["weight_decay"] = args.weight_decay
    if args.schedule and "schedule" not in grid:
        shared["schedule"] = args.schedule
    fit_kwargs.update(shared)
    return shared


def sweep_rates(name: str | None, lr: float | None = None) -> list[float]:
    """The learning rates a sweep tries by default: the chapter's for SGD, else a decade around
    ``lr`` (default: the optimizer's own rate): 0.1x, 0.3x, 1x, 3x and 10x."""
    if (name or "sgd") == "sgd":
        return list(DEFAULT_LRS)
    lr = OPTIMIZER_DEFAULTS[name][0] if lr is None else lr  # type: ignore[index]
    return [float(f"{lr * factor:.6g}") for factor in (0.1, 0.3, 1.0, 3.0, 10.0)]
