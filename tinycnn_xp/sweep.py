"""Sweeps: one model trained once per configuration, serially or on joblib's workers.

``sweep`` runs a grid (learning rates x momenta x seeds x ...) and returns one record per
configuration; ``learning_rate_sweep`` is Exercise 24.2's shortcut, ``{lr: history}``. With
``n_jobs`` the runs go to joblib's processes, or to any joblib backend, Dask's included
(``with joblib.parallel_config(backend="dask"): sweep(...)``). Each run trains a copy of the model
on the data's library and device: a pickled model travels as host NumPy and is placed again by its
first input, and the data travels as host NumPy and is placed again on the same library and
device by the worker.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import itertools
import math
import numbers
import os
import pickle
import signal
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypedDict

import numpy as np
from array_api_compat import is_cupy_namespace, is_jax_namespace, is_numpy_array

from . import _checks
from ._xp import Placement, move, placement_of, to_numpy
from .history import METRICS, History, new_history
from .models import Sequential
from .optim import BY_NAME, SGD, Optimizer, optimizer_from_config
from .schedules import parse_schedule
from .training import DEFAULT_LR, TrainingInterrupted

__all__ = ["sweep", "learning_rate_sweep", "describe_run", "SweepRecord", "SweepInterrupted",
           "GRID_KEYS", "DEFAULT_LRS", "MAX_RUNS"]

Array = Any

#: the chapter's rates for Exercise 24.2.
DEFAULT_LRS = (0.01, 0.05, 0.12, 0.5, 1.0)

#: the most configurations a grid may have (checked before any is built).
MAX_RUNS = 100_000

#: the ``fit`` arguments a grid may sweep (``seed`` seeds the initial weights and the shuffles;
#: ``weight_decay`` is the optimizer's; ``optimizer`` names one, ``"sgd"``, ``"rmsprop"``,
#: ``"adam"`` or ``"adamw"``, and ``schedule`` is a form of ``schedules.parse_schedule``).
GRID_KEYS = ("optimizer", "schedule", "lr", "momentum", "weight_decay", "batch_size", "epochs",
             "seed")

def _optimizer_name(value: Any, name: str) -> str:
    if value not in BY_NAME:
        raise ValueError(f"{name} must be one of {sorted(BY_NAME)}, got {value!r}")
    return str(value)


def _schedule_form(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a schedule's form (cosine, step:10:0.5, ...), got {value!r}")
    parse_schedule(value, 1)  # ValueError naming --schedule and the forms
    return value


#: what an optimizer's settings may be changed by, per run (``_optimizer_of``).
_OPTIMIZER_KEYS = ("lr", "momentum", "weight_decay")

_GRID_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "optimizer": _optimizer_name, "schedule": _schedule_form,
    "lr": _checks.learning_rate, "momentum": _checks.momentum, "weight_decay": _checks.non_negative_number,
    "batch_size": _checks.positive_int, "epochs": _checks.non_negative_int,
    "seed": _checks.non_negative_int,
}

#: ``on_run(record, done, total)``: called in the calling process as each run finishes.
OnRun = Callable[["SweepRecord", int, int], Any]


class SweepInterrupted(RuntimeWarning):
    """A sweep stopped on Ctrl-C; the runs it finished (and the one cut short, marked
    ``history['interrupted']``) are returned."""


class SweepRecord(TypedDict, total=False):
    """One run of a sweep: its ``config`` (the grid's values, e.g. ``{"lr": 0.1, "seed": 0}``)
    and the ``history`` that ``fit`` returned for it; ``failed`` (why, in words) for a run whose
    worker died twice (its history is empty)."""

    config: dict[str, Any]
    history: History
    failed: str


def sweep(model: Sequential, x_train: Array, y_train: Array, x_val: Array, y_val: Array,
          grid: Mapping[str, Sequence[Any]], n_jobs: int | None = None, *,
          on_run: OnRun | None = None, verbose: bool = False,
          done: Sequence[SweepRecord] | None = None, **fit_kwargs: Any) -> list[SweepRecord]:
    """Train a copy of ``model`` once per configuration of ``grid``; one record per run.

    ``grid`` maps ``fit`` arguments among ``GRID_KEYS`` (``lr``, ``momentum``, ``weight_decay``,
    ``batch_size``, ``epochs``, ``seed``) to the values to try; the configurations are every combination, the
    last key varying fastest, and the records come back in that order: ``{"config": {"lr": 0.1,
    "seed": 0}, "history": ...}``. Each run trains a copy of ``model`` from its current state with
    ``fit(x_train, y_train, x_val, y_val, **fit_kwargs, **config)``; ``model`` itself is never
    trained. A ``seed`` in the grid seeds both the run's initial weights (as
    ``model.reset_parameters(seed)``, the constructors' ``seed=``) and its shuffles (``fit``'s
    ``seed``); without one, every run starts from ``model``'s weights and shuffles with
    ``fit_kwargs``' ``seed`` (default 0), so runs differ only in what the grid changes.

    An ``optimizer`` in ``fit_kwargs`` (``tinycnn_xp.optim``) trains every run with a fresh copy of
    it (no state, step 0), its ``lr``, ``momentum`` and ``weight_decay`` those of the run where
    the grid (or ``fit_kwargs``) gives them: ``sweep(model, ..., {"lr": [1e-3, 3e-3]},
    optimizer=Adam(schedule=Cosine(10)))``. A ``weight_decay`` without one is the chapter's SGD's
    (``SGD(lr, momentum, weight_decay=...)``). The grid may also name the optimizer and the
    schedule: ``{"optimizer": ["sgd", "adam"], "schedule": ["constant", "cosine"]}`` (each at its
    own default rate where no ``lr`` is given; ``cosine`` over the run's epochs). A setting the
    optimizer does not have (Adam's momentum) is a ``ValueError`` before any run.

    ``n_jobs``: ``None`` or 1 runs the configurations one after the other in this process; 2 or
    more, or -1 (every core), runs them on joblib's worker processes (``pip install
    "tinycnn-xp[parallel]"``), one run per worker at a time. ``None`` also follows an enclosing
    ``joblib.parallel_config``: ``with joblib.parallel_config(backend="dask"):`` sends the runs to
    a Dask cluster. The results are those of the serial run within 1e-12, and bitwise on NumPy
    when each worker's BLAS runs as many threads as this process (joblib gives a worker cores /
    n_jobs; a large matrix product split over another number of threads may round its last bit
    differently). Every run places
    its data and model on the library and device the data lives on here (CuPy data: the worker's
    GPU of the same number).

    ``on_run(record, done, total)`` is called here as each run finishes (in the order they
    finish), e.g. to advance a progress bar; ``verbose=True`` prints one line per finished run.
    ``fit`` itself runs quietly. Warnings of a run (a rate that diverged, say) are re-issued here.
    Ctrl-C ends the sweep cleanly: the runs already finished come back (in grid order), with a
    ``SweepInterrupted`` warning saying how many; a run that was cut short comes back too, marked
    (its history has ``interrupted``: it holds the whole epochs it trained).

    ``done``: records of runs already finished (say, read back from a sweep that was stopped):
    those whose ``config`` is one of the grid's are not run again and come back with the others
    (a record marked ``interrupted`` is run again).

    A worker process that dies (killed, out of memory) costs its run, not the sweep: joblib
    ends that pool, the runs that were running on it are tried again, each alone on a new pool,
    and the others go on on one; a run whose pool breaks again while it runs alone comes back
    with ``"failed"`` (why, in words) and an empty history. A Dask worker's death is retried by
    Dask itself (``distributed.scheduler.allowed-failures``); when Dask gives up, the runs that
    were running are tried the same way.

    ``fit_kwargs`` go to every ``fit`` (``epochs``, ``batch_size``, ``momentum``, ``callback``,
    ...). On workers, ``callback`` runs in the worker's process, so it must be picklable.
    """
    _check_model(model)
    checked = _grid(grid, fit_kwargs)
    size = math.prod(len(values) for values in checked.values())
    if size > MAX_RUNS:
        raise ValueError(f"grid has {size:,} configurations; a sweep runs at most {MAX_RUNS:,} "
                         f"(tinycnn_xp.sweep.MAX_RUNS)")
    runs = [dict(zip(checked, values)) for values in itertools.product(*checked.values())]
    _check_fit_kwargs(model, fit_kwargs)
    for config in runs:  # each run's optimizer can be built (cheap: no arrays)
        _optimizer_of({**fit_kwargs, **config})
    data = [x_train, y_train, x_val, y_val]
    _check_data(model, *data)
    finished_before = _done_of(done, runs)
    parallel = _parallel(n_jobs, len(runs) - len(finished_before))
    start = copy.deepcopy(model)  # host NumPy, unplaced: what every run starts from
    done_now: dict[int, SweepRecord] = dict(finished_before)

    def finished(index: int, history: History, failed: str | None = None) -> None:
        done_now[index] = {"config": runs[index], "history": history}
        if failed is not None:
            done_now[index]["failed"] = failed
        if verbose:
            print(f"run {len(done_now)}/{len(runs)}  {describe_run(done_now[index])}", flush=True)
        if on_run is not None:
            on_run(done_now[index], len(done_now), len(runs))

    interrupted = False
    try:
        if parallel is None:
            for index, config in enumerate(runs):
                if index in done_now:
                    continue
                with warnings.catch_warnings():  # the sweep says it was interrupted, below
                    warnings.simplefilter("ignore", TrainingInterrupted)
                    history = _train(copy.deepcopy(start), data, config, fit_kwargs)
                finished(index, history)
                if history.get("interrupted"):
                    interrupted = True
                    break
        else:
            interrupted = _run_on_pool(parallel, runs, done_now, start, _ship(data), fit_kwargs,
                                       finished)
    except KeyboardInterrupt:
        interrupted = True
    if interrupted:
        whole = sum(not record["history"].get("interrupted") for record in done_now.values())
        warnings.warn(f"sweep interrupted: {whole} of {len(runs)} runs finished and are returned "
                      f"(a run cut short is marked 'interrupted')", SweepInterrupted, stacklevel=2)
    return [done_now[index] for index in sorted(done_now)]


def _run_on_pool(parallel: Any, runs: list[dict[str, Any]], done: dict[int, SweepRecord],
                 start: Sequential, shipment: Any, fit_kwargs: dict[str, Any],
                 finished: Callable[..., None]) -> bool:
    """The runs not ``done`` on joblib's workers, a new pool after a worker dies (see
    ``sweep``); ``True`` if a run was cut short by Ctrl-C."""
    with tempfile.TemporaryDirectory(prefix="tinycnn-xp-sweep-") as marks:
        return _pool_rounds(parallel, runs, done, start, shipment, fit_kwargs, finished, marks)


def _pool_rounds(parallel: Any, runs: list[dict[str, Any]], done: dict[int, SweepRecord],
                 start: Sequential, shipment: Any, fit_kwargs: dict[str, Any],
                 finished: Callable[..., None], marks: str) -> bool:
    from joblib import delayed
    suspects: list[int] = []  # running when a pool broke: each is tried again alone
    jobs = getattr(parallel, "n_jobs", None)
    workers = jobs if isinstance(jobs, int) and jobs > 0 else 1
    while True:
        rest = [index for index in range(len(runs)) if index not in done and index not in suspects]
        alone = suspects[:1]  # a pool that breaks with one run on it names the run that broke it
        pending = alone or rest
        if not pending:
            return False
        for mark in os.listdir(marks):  # a mark says: started on the current pool
            os.unlink(os.path.join(marks, mark))
        results = parallel(delayed(_train_shipped)(index, start, shipment, runs[index], fit_kwargs,
                                                   os.getpid(), marks) for index in pending)
        try:
            for index, history, caught in results:
                for category, message in caught:
                    if not issubclass(category, TrainingInterrupted):
                        warnings.warn(message, category, stacklevel=4)
                finished(index, history)
                if history.get("interrupted"):  # Ctrl-C: no further run starts (joblib may run
                    return True                 # them here, one after the other, as serially)
            if alone:
                suspects.remove(alone[0])
                continue
            return False
        except Exception as exc:
            if not _worker_died(exc):
                raise
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        finally:  # stopped early: cancel the runs left (joblib's warning about them is ours)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=UserWarning, module="joblib")
                results.close()
        if alone:  # it broke the pool twice, the second time alone on it
            suspects.remove(alone[0])
            finished(alone[0], new_history(), failed=f"its worker died twice ({why})")
            continue
        # The runs that were running (marked as started, or, from workers that cannot reach this
        # machine's disk, the first unfinished ones) are tried again, each alone.
        unfinished = [i for i in pending if i not in done]
        running = [i for i in unfinished if os.path.exists(os.path.join(marks, str(i)))]
        suspects += running or unfinished[:workers]


def _worker_died(exc: BaseException) -> bool:
    """Whether ``exc`` says a worker process died: loky's ``TerminatedWorkerError`` (a
    ``BrokenExecutor``), or Dask's ``KilledWorker`` once Dask gave up on a run."""
    import concurrent.futures
    return isinstance(exc, concurrent.futures.BrokenExecutor) or type(exc).__name__ == "KilledWorker"


def _done_of(records: Any, runs: list[dict[str, Any]]) -> dict[int, SweepRecord]:
    """``{index in runs: record}`` of the finished runs ``records`` gives (``sweep``'s ``done``)."""
    if records is None:
        return {}
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise TypeError(f"done must be a list of sweep records, got {type(records).__name__}")
    found: dict[int, SweepRecord] = {}
    for k, record in enumerate(records):
        if not (isinstance(record, Mapping) and isinstance(record.get("config"), Mapping)
                and isinstance(record.get("history"), Mapping)
                and all(isinstance(record["history"].get(key), list) for key in METRICS)):
            raise TypeError(f"done[{k}] must be a sweep record ({{'config': ..., 'history': ...}})")
        config = dict(record["config"])
        if config not in runs:
            raise ValueError(f"done[{k}]: configuration {config} is not one of the grid's")
        if record["history"].get("interrupted") or record.get("failed"):
            continue  # run again
        found[runs.index(config)] = {"config": runs[runs.index(config)],
                                     "history": dict(record["history"])}  # type: ignore[typeddict-item]
    return found


def describe_run(record: SweepRecord) -> str:
    """One line for a finished run: its configuration, final metrics and how it ended."""
    config = "  ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                       for key, value in record["config"].items())
    history = record["history"]
    text = config or "run"
    if history["train_loss"]:
        text += (f": train loss {history['train_loss'][-1]:.4f}  val acc "
                 f"{history['val_acc'][-1]:.1%}")
    if "diverged_epoch" in history:
        text += f"  (diverged at epoch {history['diverged_epoch']})"
    if "failed" in record:
        text += f"  (failed: {record['failed']})"
    return text


def learning_rate_sweep(model: Sequential, x_train: Array, y_train: Array, x_val: Array,
                        y_val: Array, lrs: Iterable[float] = DEFAULT_LRS, n_jobs: int | None = None,
                        **fit_kwargs: Any) -> dict[float, History]:
    """Train a fresh copy of ``model`` at each rate in ``lrs``; return ``{lr: history}``.

    ``x_train``/``x_val`` are images ``(n, channels, height, width)`` and ``y_train``/``y_val``
    labels ``(n,)``, on any one array library and device, as for ``fit``.

    Every run starts from the same state, ``model``'s own (weights and velocities; ``model``
    itself is never trained: each run trains a copy, on the data's device), and calls
    ``copy.fit(x_train, y_train, x_val, y_val, lr=lr, **fit_kwargs)``, so with the same ``seed``
    every run sees the same batches. ``history`` is ``fit``'s (``train_loss``, ``val_loss``,
    ``train_acc``, ``val_acc``, ``kernel_snapshots``). ``n_jobs`` runs the rates in parallel
    (see ``sweep``, which this is with ``grid={"lr": lrs}``); the histories are the same.

    A run whose loss stops being finite does not stop the sweep: ``fit`` ends it at that epoch
    with a ``TrainingDiverged`` warning naming the rate and the epoch (passed through to the
    caller) and its history has ``'diverged_epoch'``; the other runs are unaffected. Keys are
    ``float(lr)``. Ctrl-C ends the whole sweep as it ends ``sweep``: the rates done so far come
    back, and the interrupted one, marked (its history says ``interrupted``). ``verbose`` prints
    one line per finished rate.
    """
    _check_model(model)
    rates = _rates(lrs)
    if "lr" in fit_kwargs:
        raise TypeError("learning_rate_sweep takes its learning rates from lrs, not lr")
    verbose = fit_kwargs.pop("verbose", True)
    records = sweep(model, x_train, y_train, x_val, y_val, {"lr": rates}, n_jobs,
                    verbose=verbose, **fit_kwargs)
    return {record["config"]["lr"]: record["history"] for record in records}


# -- checks ----------------------------------------------------------------------------------------
def _check_model(model: Any) -> None:
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a tinycnn_xp Sequential or TinyCNN, got {type(model).__name__}")


def _check_data(model: Sequential, x_train: Array, y_train: Array, x_val: Array, y_val: Array) -> None:
    """What ``fit`` checks first, here, before any copy: a copy forgets ``model``'s placement, so
    data elsewhere than a placed ``model`` must be refused now (and workers are spared bad data)."""
    _checks.train_and_validation(_checks.data(model, x_train, y_train, "x_train", "y_train"),
                                 _checks.data(model, x_val, y_val, "x_val", "y_val"))


def _check_fit_kwargs(model: Sequential, fit_kwargs: dict[str, Any]) -> None:
    allowed = set(inspect.signature(model.fit).parameters) - {"x_train", "y_train", "x_val", "y_val"}
    allowed |= {"weight_decay", "schedule"}  # the optimizer's (``_optimizer_of``)
    unknown = sorted(set(fit_kwargs) - allowed)
    if unknown:
        raise TypeError(f"fit got unexpected keyword arguments {unknown}")


def _grid(grid: Any, fit_kwargs: dict[str, Any]) -> dict[str, list[Any]]:
    """``grid`` checked: keys among ``GRID_KEYS`` (not also in ``fit_kwargs``), each with a
    non-empty sequence of distinct valid values."""
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a dict of fit arguments to the values to try, e.g. "
                        f"{{'lr': [0.05, 0.1]}}, got {type(grid).__name__}")
    checked: dict[str, list[Any]] = {}
    for key, values in grid.items():
        if key not in GRID_KEYS:
            raise ValueError(f"grid: {key!r} cannot be swept; choose from {list(GRID_KEYS)}")
        if key in fit_kwargs:
            raise TypeError(f"{key} is given both in grid and as a fit argument; pass it once")
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
            raise TypeError(f"grid[{key!r}] must be a sequence of values, got {values!r}")
        values = [_GRID_CHECKS[key](value, f"grid[{key!r}][{i}]") for i, value in enumerate(values)]
        if not values:
            raise ValueError(f"grid[{key!r}] must hold at least one value")
        if len(set(values)) != len(values):
            raise ValueError(f"grid[{key!r}] must hold distinct values, got {values}")
        checked[key] = values
    return checked


def _rates(lrs: Any) -> list[float]:
    """``lrs`` as a list of distinct positive finite floats; errors name ``lrs``."""
    if isinstance(lrs, (str, bytes, numbers.Number)) or not isinstance(lrs, Iterable):
        raise TypeError(f"lrs must be a sequence of learning rates, got {lrs!r} "
                        f"({type(lrs).__name__})")
    rates = [_checks.learning_rate(lr, f"lrs[{i}]") for i, lr in enumerate(lrs)]
    if not rates:
        raise ValueError("lrs must hold at least one learning rate, got an empty sequence")
    if len(set(rates)) != len(rates):
        raise ValueError(f"lrs must hold distinct learning rates, got {rates}")
    return rates


# -- running -------------------------------------------------------------------------------------
def _parallel(n_jobs: Any, runs: int) -> Any:
    """A ``joblib.Parallel`` for ``n_jobs`` (at most one worker per run), or ``None`` to run
    serially here: ``n_jobs`` 1, or ``None`` outside any ``joblib.parallel_config`` that says
    otherwise."""
    if n_jobs is not None:
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral):
            raise TypeError(f"n_jobs must be None or an integer, got {n_jobs!r}")
        if n_jobs == 0:
            raise ValueError("n_jobs must be None, 1 (serial), a number of workers, or -1 (every "
                             "core), got 0")
        if n_jobs == 1:
            return None
    try:
        import joblib
    except ImportError:
        if n_jobs is None:
            return None
        raise ImportError(f'n_jobs={n_jobs} needs joblib: pip install "tinycnn-xp[parallel]"') from None
    if n_jobs is not None:
        n_jobs = max(1, min(joblib.effective_n_jobs(int(n_jobs)), runs))
    parallel = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)
    return None if parallel.n_jobs == 1 else parallel


def _train(model: Sequential, data: list[Array], config: dict[str, Any],
           fit_kwargs: dict[str, Any]) -> History:
    """One run: ``model`` (a copy) re-seeded if ``config`` has a seed, then trained quietly."""
    if "seed" in config:
        model.reset_parameters(config["seed"])
    return model.fit(*data, **_optimizer_of({**fit_kwargs, **config, "verbose": False}))


def _optimizer_of(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``fit``'s arguments for one run: with an ``optimizer`` (or a ``weight_decay``), a fresh
    optimizer of that run's settings in place of ``lr``, ``momentum`` and ``weight_decay``."""
    if kwargs.get("optimizer") is None and "weight_decay" not in kwargs \
            and "schedule" not in kwargs:
        return kwargs
    kwargs = dict(kwargs)
    base = kwargs.pop("optimizer", None)
    schedule = kwargs.pop("schedule", None)
    settings = {key: kwargs.pop(key) for key in _OPTIMIZER_KEYS if key in kwargs}
    if base is None or base == "sgd":
        config = SGD(DEFAULT_LR).config()
    elif isinstance(base, str):  # a name in the grid: that optimizer with its own defaults
        cls: Any = BY_NAME[_optimizer_name(base, "optimizer")]  # RMSprop, Adam, AdamW: lr has a default
        config = cls().config()
    elif isinstance(base, Optimizer):
        config = base.config()
    else:
        raise TypeError(f"optimizer must be a tinycnn_xp.optim optimizer (SGD, RMSprop, Adam, "
                        f"AdamW) or its name, got {type(base).__name__}")
    for key in settings:
        if key not in config:
            raise ValueError(f"{key} cannot be set on {config['class']}: it has none")
    optimizer = optimizer_from_config({**config, **settings})
    if isinstance(base, Optimizer):
        optimizer.schedule = base.schedule  # a Python function's too (its config has only a name)
    if schedule is not None:
        optimizer.schedule = parse_schedule(schedule, kwargs.get("epochs", 80))
    kwargs["optimizer"] = optimizer
    return kwargs


class _Shipment(NamedTuple):
    """The data on its way to a worker: host NumPy arrays, and where to place them there."""

    arrays: list[np.ndarray]
    namespace: str | None  # the module to place them with (None: NumPy, used as they are)
    device: tuple          # ("jax", platform, id) | ("cupy", id) | ("pickled", device) | ("default",)


def _ship(data: list[Array]) -> _Shipment:
    if is_numpy_array(data[0]):
        return _Shipment(list(data), None, ("default",))
    place = placement_of(*data)
    if is_jax_namespace(place.xp):
        token: tuple = ("jax", place.device.platform, place.device.id)
    elif is_cupy_namespace(place.xp):
        token = ("cupy", place.device.id)
    else:
        try:
            token = ("pickled", pickle.loads(pickle.dumps(place.device)))
        except Exception:  # a device that cannot travel: the worker's default device
            token = ("default",)
    return _Shipment([to_numpy(array) for array in data], place.xp.__name__, token)


def _unship(shipment: _Shipment) -> list[Array]:
    """The data placed on the shipment's library and device, in this (worker) process."""
    if shipment.namespace is None:
        return shipment.arrays
    xp = importlib.import_module(shipment.namespace)
    kind, *where = shipment.device
    device: Any = None
    if kind == "jax":
        import jax
        # The caller's process had 64-bit JAX arrays, so float64 on: this worker mirrors it.
        if any(a.dtype.itemsize == 8 for a in shipment.arrays) and not jax.config.read("jax_enable_x64"):
            jax.config.update("jax_enable_x64", True)
        devices = jax.devices(where[0])
        device = next((d for d in devices if d.id == where[1]), devices[0])
    elif kind == "cupy":
        import cupy
        device = cupy.cuda.Device(where[0])
    elif kind == "pickled":
        device = where[0]
    place = Placement(xp, device, None)
    return [move(array, place) for array in shipment.arrays]


def _train_shipped(index: int, model: Sequential, shipment: _Shipment, config: dict[str, Any],
                   fit_kwargs: dict[str, Any], caller: int,
                   marks: str | None = None) -> tuple[int, History, list[tuple[type, str]]]:
    """A worker's run: ``(index, history, warnings as (category, message))``; it marks itself
    started in the folder ``marks`` where it can (a worker on this machine).

    In the caller's own process (joblib's threading backend, a Dask cluster of threads) the
    warnings are issued where they arise: recording them there is not thread-safe.
    """
    if marks is not None:
        with contextlib.suppress(OSError):
            open(os.path.join(marks, str(index)), "x").close()
    data = _unship(shipment)
    model = copy.deepcopy(model)  # in the caller's process the runs would share one model
    if os.getpid() == caller:
        return index, _train(model, data, config, fit_kwargs), []
    if threading.current_thread() is threading.main_thread():
        # The caller's process handles Ctrl-C for the whole sweep, so an idle worker ignores it
        # (fit still stops the run it is in after the current step).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = _train(model, data, config, fit_kwargs)
    return index, history, [(w.category, str(w.message)) for w in caught]
