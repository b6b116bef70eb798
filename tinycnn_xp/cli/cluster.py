"""Where a sweep's runs go: this process, joblib's worker processes (``--jobs``), or a Dask cluster
(``--scheduler``), which must answer, have a worker, and keep one.

A cluster is watched while the sweep runs: when it has had no worker (or no scheduler) for the
connect timeout (``distributed.comm.timeouts.connect`` in Dask's config), the watch says why in
``LOST`` and interrupts the sweep, which ends as on Ctrl-C, keeping its finished runs. A scheduler
that goes away mid-sweep ends it the same way (``failed``). Either way the command says so in one
line, in bounded time.
"""

from __future__ import annotations

import _thread
import argparse
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from .common import UsageProblem

__all__ = ["LOST", "check_extras", "workers", "failed"]

LOST: dict[str, str | None] = {"why": None}


def check_extras(args: argparse.Namespace) -> None:
    """``--jobs`` needs joblib, ``--scheduler`` dask.distributed too: one line before anything."""
    if args.scheduler is None and args.jobs in (None, 1):
        return
    try:
        import joblib  # noqa: F401
        if args.scheduler is not None:
            import distributed  # noqa: F401
    except ImportError:
        flag = "--scheduler" if args.scheduler is not None else f"--jobs {args.jobs}"
        needs = "joblib and dask.distributed" if args.scheduler is not None else "joblib"
        raise UsageProblem(f'{flag} needs {needs}: pip install "tinycnn-xp[parallel]"') from None


@contextlib.contextmanager
def workers(args: argparse.Namespace, runs: int) -> Iterator[str]:
    """Where the runs go, in words; with ``--scheduler``, connected to it (and joblib's Dask
    backend on) for the duration. An address that cannot be reached, or a cluster without a
    worker, is a usage problem."""
    LOST["why"] = None
    if args.scheduler is None:
        jobs = every = 1
        if args.jobs not in (None, 1):
            import joblib
            every = joblib.effective_n_jobs(args.jobs)
            jobs = min(every, runs)  # as sweep does: at most one worker per run
        yield ("one after the other in this process" if jobs == 1 else f"on {jobs} worker processes"
               + (" (every core)" if args.jobs == -1 and jobs == every else ""))
        return
    import dask.config
    import joblib
    from dask.utils import parse_timedelta
    from distributed import Client
    print(f"connecting to the Dask scheduler at {args.scheduler}", flush=True)
    wait = float(parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), "s"))
    try:
        client = Client(args.scheduler)  # waits that long (dask's config)
    except (OSError, ValueError, TypeError) as exc:
        raise UsageProblem(f"cannot connect to the Dask scheduler at {args.scheduler}: {exc}") from None
    with _quiet("distributed", "tornado", "asyncio"), client:
        try:
            client.wait_for_workers(1, timeout=wait)
        except (TimeoutError, OSError):
            raise UsageProblem(f"the Dask scheduler at {args.scheduler} has no worker (waited "
                               f"{wait:g} s); start one with  dask worker {args.scheduler}") from None
        count = len(client.nthreads())
        with joblib.parallel_config(backend="dask"), _watch(client, args.scheduler, wait):
            yield f"on the Dask cluster at {args.scheduler} ({count} worker{'s' if count != 1 else ''})"


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Dask's own log lines (a lost connection, its retries) silenced: the command says what
    happened, in one line."""
    loggers = [logging.getLogger(name) for name in [*names, *logging.root.manager.loggerDict]
               if name.split(".")[0] in names]  # each has its own level in Dask's config
    disabled = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, was in zip(loggers, disabled):
            logger.disabled = was


@contextlib.contextmanager
def _watch(client: Any, address: str, patience: float) -> Iterator[None]:
    """While the block runs, a thread checks each second that the cluster has a worker and a
    scheduler; after ``patience`` seconds without, it sets ``LOST`` and interrupts the block."""
    stop = threading.Event()

    def watch() -> None:
        since = None
        while not stop.wait(1.0):
            try:
                alive = client.status == "running" and bool(client.nthreads())
            except Exception:  # the scheduler does not answer
                alive = False
            since = None if alive else (since or time.monotonic())
            if since is not None and time.monotonic() - since >= patience:
                LOST["why"] = f"no worker or scheduler answered for {patience:g} s"
                _thread.interrupt_main()  # the sweep ends as on Ctrl-C, keeping its finished runs
                return
    thread = threading.Thread(target=watch, name=f"watch {address}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def failed(exc: BaseException) -> bool:
    """Whether ``exc`` says the cluster failed under the sweep (its scheduler closed, a future
    cancelled with it); if so, ``LOST`` says how."""
    module = type(exc).__module__ or ""
    if isinstance(exc, (concurrent.futures.CancelledError, OSError, TimeoutError)) \
            or module.startswith(("distributed", "tornado")):
        LOST["why"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        return True
    return False
