"""``python -m benchmarks.bench`` (from the repository root; ``nox -s bench``): training speed,
memory and work per step, compared.

Two workloads, for every usable backend of ``tinycnn_xp._backends`` (numpy; array_api_strict on
``Device("device1")``; torch on the CPU through array_api_compat; jax on its CPU, in float64 too:
the benchmark, not the library, turns ``jax_enable_x64`` on; cupy where a CUDA GPU runs a kernel):

* ``fit``: the chapter's fit, ``TinyCNN(seed=42)`` on ``make_dataset_bundle()`` (180 train / 90
  validation 8x8 images), 80 epochs, batch 18, lr 0.12, seed 0; float64 and float32. Run as a
  user runs it, ``model.fit``: the fast path (``tinycnn_xp.fastpath``), compiled by ``jax.jit``
  on JAX. One more row runs the general path (``training.fit(..., fast=False)``) on NumPy in
  float64, to show what the fast path bought. On JAX, the first fit (compilation included) is a
  row of its own, beside the median of the fits after it.
* ``step``: one training step (forward + backward + SGD update) of ``Conv2D(1->16, 3x3) -> ReLU
  -> MaxPool(2) -> Flatten -> Dense(2704->10)`` on 256 random 28x28 images, float32, timed
  through ``training.repeat_step``: the step ``fit`` runs (fast path; compiled on JAX, where the
  first call, the warm-up, compiles). Plus the general path (``fast=False``) on NumPy.

Baselines, in the same process: the chapter's per-pixel loop code (``chapter_loops``; ``fit``
float64 only) and PyTorch eager on the CPU (``torch_eager``; both workloads) with 1 and with 2
threads (``torch.set_num_threads`` around each of its samples, restored after), both started
from the library model's initial weights and fed the same batches. Times are medians of repeated
runs after a warm-up; each case's peak memory is measured once, outside the timed runs; the array
calls per training step of the chapter model are counted on array-api-strict
(``benchmarks.calls``), fast and general path (the methods are printed). The final losses of the
float64 fits are checked against each other, and the table is written to a JSON file so runs can
be compared. The library is used through its public API (``Sequential.fit``, ``training.fit``,
``training.repeat_step``), except that the first JAX fit empties ``tinycnn_xp.paths._COMPILED``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from tinycnn_xp import (
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    ReLU,
    Sequential,
    TinyCNN,
    make_dataset_bundle,
    to_numpy,
    training,
)
from tinycnn_xp._backends import NAMES, Backend, BackendUnavailable, resolve

from . import torch_eager as eager

FIT = {"lr": 0.12, "batch_size": 18, "seed": 0}
STEP = {"batch": 256, "size": 28, "filters": 16, "classes": 10, "lr": 0.01, "seed": 0}
BACKENDS = NAMES  # the library's backends, in its order
DEVICES = {"array_api_strict": "device1"}  # not the default device: device mismatches would show
EAGER_THREADS = (1, 2)  # PyTorch eager's rows: torch.set_num_threads for each of its samples
REFERENCE_THREADS = 2   # the "vs eager" column is against PyTorch eager with this many threads
LOOP_TOLERANCE, TORCH_TOLERANCE = 1e-8, 1e-6  # on the float64 fit's final losses
MEMORY_METHODS = {
    "traced": "tracemalloc peak of the bytes allocated during one call (sees NumPy's allocations, "
              "also under array_api_strict; not torch's, JAX's or CuPy's)",
    "rss": "peak resident set size during one call, minus the RSS before it, in a fresh Python "
           "process after a tiny warm-up (JAX's step: after one full-size step, which compiles) "
           "(the kernel's high-water mark, reset by writing 5 to "
           "/proc/self/clear_refs; where that is not allowed, getrusage ru_maxrss, an upper bound); "
           "sees every allocation, but at page and allocator granularity: figures under ~1 MiB are "
           "noise (freed memory the allocator keeps is reused unseen)",
    "device": "CuPy memory-pool growth during one call after free_all_blocks (device memory)",
}
FIRST_FIT_METHOD = ("JAX's first fit: one fit of a fresh model, timed once per dtype in this "
                    "process before any other JAX work of the benchmark, right after "
                    "tinycnn_xp.paths._COMPILED.clear() and jax.clear_caches() (JAX's persistent "
                    "compilation cache is off unless configured): tracing and compilation "
                    "included, JAX's import and backend start-up not; its memory is not measured. "
                    "2nd fit: the median of fits of fresh models after the warm-up compiled "
                    "(compiled steps are cached by architecture, so none compiles again)")
CALLS_METHOD = ("array calls per training step of the chapter's TinyCNN (batch 18, float64), "
                "counted by benchmarks.calls.per_step on array-api-strict (Device('device1')): "
                "calls = namespace functions + array operators and methods; indexing "
                "(__getitem__/__setitem__) and views (.T, .mT) apart; per step = (an epoch of 20 "
                "steps - one of 10) / 10, so what fit does once per epoch is left out")


@dataclass
class Options:
    epochs: int = 80
    repeats: int = 5
    loop_repeats: int = 3
    steps_per_sample: int = 10
    torch_threads: int | None = None  # the library's torch backend (eager rows: their own)
    rss: bool = True  # the RSS peak needs a fresh process per case: seconds each


@dataclass(frozen=True)
class Case:
    """One row of the table: which workload, which implementation, on what, in which dtype, and
    the row's variant (``variant``)."""

    config: str   # "fit" | "step"
    impl: str     # "tinycnn_xp" | "loop" | "torch_eager"
    backend: str  # where tinycnn_xp's arrays live; "numpy" for the loop, "torch" for eager
    dtype: str
    general: bool = False    # tinycnn_xp: the general path (fast=False), not the fast path
    first_fit: bool = False  # tinycnn_xp on JAX, fit: the first fit, compile included (timed once)
    threads: int | None = None  # torch_eager: torch's thread count for its samples

    @property
    def variant(self) -> str:
        """``""`` (tinycnn_xp's own path), ``"general"``, ``"first fit"``, ``"1 thread"``, ..."""
        if self.impl == "torch_eager":
            return f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return "general" if self.general else "first fit" if self.first_fit else ""

    @property
    def name(self) -> str:
        """Short id in the ratios' keys: ``numpy``, ``numpy_general``, ``jax_first_fit``, ``loop``,
        ``torch_eager`` (eager with ``REFERENCE_THREADS`` threads), ``torch_eager_1thread``."""
        if self.impl == "loop":
            return "loop"
        if self.impl == "torch_eager":
            return ("torch_eager" if self.threads == REFERENCE_THREADS
                    else f"torch_eager_{self.threads}thread")
        return self.backend + ("_general" if self.general else "_first_fit" if self.first_fit
                               else "")

    @property
    def label(self) -> str:
        if self.impl == "loop":
            return "chapter loops (numpy)"
        if self.impl == "torch_eager":
            return f"torch eager (cpu, {self.variant})"
        if self.general:
            return f"tinycnn_xp {self.backend} (general path)"
        if self.backend == "jax":
            which = "" if self.config == "step" else ", 1st fit" if self.first_fit else ", 2nd fit"
            return f"tinycnn_xp jax (compiled{which})"
        return f"tinycnn_xp {self.backend}"


# -- backends ------------------------------------------------------------------------------------
def _load_backend(name: str) -> Backend | str:
    """The backend (``tinycnn_xp._backends.resolve``), or the reason it cannot run here.

    JAX computes in float32 unless told otherwise; the benchmark (not the library) turns float64
    on, before any JAX array exists, so that its float64 rows are float64.
    """
    try:
        backend = resolve(name, DEVICES.get(name))
    except BackendUnavailable as exc:
        return str(exc)
    if name == "jax":
        import jax
        jax.config.update("jax_enable_x64", True)
    return backend


def _sync_of(backend: Backend, model: Any = None) -> Callable[[Any], None]:
    """``sync(result)`` waits for the work a call queued: ``backend.sync()``. JAX dispatches
    asynchronously even on the CPU, so there the arrays are waited for: the model's (``fit``,
    which binds them to the layers) or the call's result (a compiled step: its outputs come from
    one executable, and each step reads the parameters the last one wrote)."""
    if backend.name != "jax":
        return lambda result: backend.sync()
    import jax
    if model is not None:
        return lambda result: jax.block_until_ready(model.state())
    return lambda result: jax.block_until_ready(result)


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


@contextlib.contextmanager
def _threads(case: Case) -> Iterator[None]:
    """PyTorch eager's rows run with ``case.threads`` threads; the count is restored after."""
    torch = _torch() if case.threads else None
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(case.threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- workloads -----------------------------------------------------------------------------------
_CACHE: dict = {}


def _chapter_data() -> tuple:
    if "fit" not in _CACHE:
        _CACHE["fit"] = make_dataset_bundle()[:4]
    return _CACHE["fit"]


def _step_data() -> tuple[np.ndarray, np.ndarray]:
    if "step" not in _CACHE:
        rng = np.random.default_rng(STEP["seed"])
        x = rng.random((STEP["batch"], 1, STEP["size"], STEP["size"]), dtype=np.float32)
        _CACHE["step"] = (x, rng.integers(0, STEP["classes"], STEP["batch"]))
    return _CACHE["step"]


def step_model() -> Sequential:
    """The compute-heavy network: ``Conv2D(1->16, 3x3) -> ReLU -> MaxPool(2) -> Flatten -> Dense``."""
    flat = STEP["filters"] * ((STEP["size"] - 2) // 2) ** 2
    return Sequential([Conv2D(1, STEP["filters"], 3), ReLU(), MaxPool2D(2), Flatten(),
                       Dense(flat, STEP["classes"])], seed=STEP["seed"],
                      input_shape=(1, STEP["size"], STEP["size"]))


def _no_sync(result: Any) -> None:
    pass


def _final_loss(result: Any) -> float:
    """A fit's last train loss, or a step's loss (a 0-d array of the general path or PyTorch)."""
    if isinstance(result, dict):
        return result["train_loss"][-1]
    return float(to_numpy(result))


class Prepared(NamedTuple):
    """The call to measure, how to wait for the device work it queued (given the call's result),
    and the final loss of a result."""

    run: Callable[[], Any]
    sync: Callable[[Any], None] = _no_sync
    loss: Callable[[Any], float] = _final_loss


def _prepare(case: Case, opts: Options, short: bool = False) -> Prepared:
    """Build a fresh model and its data for ``case``; return the call to measure.

    The call runs one whole fit (``short``: 2 epochs) or one training step (``short``: on 2
    images) and returns the fit's history or what the step gives (left on the device).
    """
    if case.config == "fit":
        model = TinyCNN(seed=42)
        host = _chapter_data()
        kwargs = dict(FIT, epochs=min(opts.epochs, 2) if short else opts.epochs)
        if case.impl == "loop":
            from .chapter_loops import LoopCNN
            loop = LoopCNN.from_model(model)
            return Prepared(lambda: loop.fit(*host, **kwargs))
        if case.impl == "torch_eager":
            net = eager.twin(model, case.dtype)
            data = [eager.tensor(a, case.dtype if a.ndim > 1 else None) for a in host]
            return Prepared(lambda: eager.fit(net, *data, **kwargs))
        backend = _backend(case.backend)
        data = [backend.put(a, case.dtype if a.ndim > 1 else None) for a in host]
        # fit checks its data and places the model itself, once per call, like a user's fit.
        if case.general:
            return Prepared(lambda: training.fit(model, *data, verbose=False, fast=False, **kwargs),
                            _sync_of(backend, model))
        return Prepared(lambda: model.fit(*data, verbose=False, **kwargs), _sync_of(backend, model))

    model = step_model()
    x_host, y_host = (a[:2] if short else a for a in _step_data())
    if case.impl == "torch_eager":
        torch = _torch()
        net = eager.twin(model, case.dtype)
        optimizer = torch.optim.SGD(net.parameters(), lr=STEP["lr"])
        x, y = eager.tensor(x_host, case.dtype), eager.tensor(y_host)
        return Prepared(lambda: eager.train_step(net, optimizer, x, y))
    backend = _backend(case.backend)
    x, y = backend.put(x_host, case.dtype), backend.put(y_host)
    # Checked and placed once; then each call is one step as fit runs it per batch, unchecked.
    step = training.repeat_step(model, x, y, STEP["lr"], fast=not case.general)
    if case.general:  # the step's loss
        return Prepared(step, _sync_of(backend))

    def loss(probabilities: Any) -> float:
        """The step's batch loss (before its update) from its probabilities, (classes, batch)."""
        p = to_numpy(probabilities).astype(np.float64)[y_host, np.arange(y_host.shape[0])]
        return float(np.mean(-np.log(np.maximum(p, 1e-12))))
    return Prepared(step, _sync_of(backend), loss)


def _backend(name: str) -> Backend:
    loaded = _load_backend(name)
    if isinstance(loaded, str):
        raise BackendUnavailable(loaded)
    return loaded


def _activation_bytes(case: Case) -> tuple[int, int]:
    """Bytes of every layer's output in the largest forward pass of the call, and its batch.

    ``fit``: the epoch-end evaluation of the 180 training images; ``step``: the 256-image batch.
    Flatten is not counted (a view of the pooled output in every library).
    """
    if case.config == "fit":
        model, shape = TinyCNN(seed=42), _chapter_data()[0].shape
    else:
        model, shape = step_model(), _step_data()[0].shape
    total = 0
    for layer in model.layers:
        shape = layer.output_shape(shape)
        if not isinstance(layer, Flatten):
            total += math.prod(shape)
    return total * np.dtype(case.dtype).itemsize, shape[0]


# -- measurements --------------------------------------------------------------------------------
#: Minor page faults per call of each timed sample, by case (``_sample`` adds to it): where a
#: process's allocator hands freed memory back to the kernel, every call faults its temporaries
#: in again, and that, not the arithmetic, can set a large step's time.
FAULTS: dict = {}


def _sample(case: Case, opts: Options) -> tuple[float, Any]:
    """Seconds per call of one timed run on a fresh model, and the run's last result as a loss."""
    with _threads(case):
        run, sync, loss = _prepare(case, opts)
        inner, result = 1, None
        if case.config == "step":
            result = run()  # this model's first step (JAX: at this batch size, the compile)
            inner = opts.steps_per_sample
        sync(result)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        for _ in range(inner):
            result = run()
        sync(result)
        seconds = (time.perf_counter() - start) / inner
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        FAULTS.setdefault(case, []).append(faults / inner)
        return seconds, loss(result)


def _first_fit(case: Case, opts: Options) -> tuple[float, float]:
    """Seconds of one JAX fit with nothing compiled yet (``FIRST_FIT_METHOD``), and its loss."""
    import jax

    from tinycnn_xp import paths

    run, sync, loss = _prepare(case, opts)
    paths._COMPILED.clear()
    jax.clear_caches()
    gc.collect()
    start = time.perf_counter()
    result = run()
    sync(result)
    return time.perf_counter() - start, loss(result)


def time_cases(cases: list[Case], opts: Options) -> dict[Case, tuple[list[float], float]]:
    """Timed samples of every case after a warm-up of each, and the last sample's final loss.

    JAX's first fits come first, once each, before anything else of JAX has run. Then the rest,
    interleaved: round ``r`` takes one sample of every case still due one, so a change in the
    machine's load during the run hits every implementation alike and the ratios stay fair.
    """
    out: dict = {}
    for case in (case for case in cases if case.first_fit):
        print(f"timing the first fit of {case.label} {case.dtype} ...", file=sys.stderr, flush=True)
        seconds, loss = _first_fit(case, opts)
        out[case] = ([seconds], loss)
    repeated = [case for case in cases if not case.first_fit]
    for case in repeated:
        with _threads(case):
            warm_up = _prepare(case, opts, short=True)  # code paths, kernel caches, compiles
            warm_up.sync(warm_up.run())
    due = {case: opts.loop_repeats if case.impl == "loop" else opts.repeats for case in repeated}
    rounds = max(due.values(), default=0)
    samples: dict = {case: [] for case in repeated}
    for round_ in range(rounds):
        print(f"timing round {round_ + 1}/{rounds} ...", file=sys.stderr, flush=True)
        for case in (case for case in repeated if due[case] > round_):
            seconds, loss = _sample(case, opts)
            samples[case].append(seconds)
            out[case] = (samples[case], loss)
    return {case: out[case] for case in cases}


def _traced_peak(case: Case, opts: Options) -> int | None:
    """tracemalloc's peak during one call; None where the arrays are not NumPy's."""
    if case.impl == "torch_eager" or case.backend in ("torch", "jax", "cupy"):
        return None
    run, sync, _ = _prepare(case, opts)
    if case.config == "step":
        run()
    gc.collect()
    tracemalloc.start()
    try:
        sync(run())
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _device_peak(case: Case, opts: Options) -> int | None:
    if case.backend != "cupy":
        return None
    import cupy
    (run, sync, _), pool = _prepare(case, opts), cupy.get_default_memory_pool()
    if case.config == "step":
        sync(run())
    gc.collect()
    pool.free_all_blocks()
    before = pool.total_bytes()
    sync(run())
    return pool.total_bytes() - before


def _rss_peak(case: Case, opts: Options) -> dict:
    """Peak RSS growth of one call, measured in a fresh process (see ``MEMORY_METHODS['rss']``)."""
    if case.backend == "cupy":
        return {"bytes": None, "note": "device memory: see the device column"}
    spec = json.dumps({"case": asdict(case), "opts": asdict(opts)})
    # Named, not ``__name__``: that is ``__main__`` under ``python -m benchmarks.bench``. The child
    # imports this module from the folder above ``benchmarks`` (the repository root), put first on
    # its path, wherever it was started from.
    code = "import sys; from benchmarks.bench import _rss_child; _rss_child(sys.argv[1])"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True,
                              check=False, timeout=600, env={**os.environ, "PYTHONPATH": path})
    except subprocess.SubprocessError as exc:
        return {"bytes": None, "note": f"child failed: {type(exc).__name__}"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return {"bytes": None, "note": f"child failed (exit {done.returncode}): {last}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rss_child(spec: str) -> None:
    """In a fresh process: warm up at a tiny size, then report the RSS peak of one call."""
    spec = json.loads(spec)
    case, opts = Case(**spec["case"]), Options(**spec["opts"])
    if opts.torch_threads and _torch() is not None:
        _torch().set_num_threads(opts.torch_threads)
    with _threads(case):
        warm_up = _prepare(case, opts, short=True)
        warm_up.sync(warm_up.run())
        run, sync, _ = _prepare(case, opts)
        if case.config == "step" and case.backend == "jax" and case.impl == "tinycnn_xp":
            sync(run())  # the compile at this batch size is not a step's memory
        gc.collect()
        with open("/proc/self/statm") as f:
            before = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak-RSS high-water mark to the current RSS
            reset = True
        except OSError:
            reset = False
        sync(run())
    if reset:
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"bytes": peak - before, "note": "VmHWM reset" if reset else "ru_maxrss"}))


def measure(case: Case, opts: Options, samples: list[float], loss: float) -> dict:
    """The table row of ``case``: its timings, activation size and peak memory (measured now)."""
    row = {**asdict(case), "variant": case.variant, "name": case.name, "label": case.label,
           "median_s": statistics.median(samples), "samples_s": samples, "final_loss": loss,
           "page_faults_per_call": statistics.median(FAULTS[case]) if FAULTS.get(case) else None}
    activations, batch = _activation_bytes(case)
    row.update(activation_bytes=activations, activation_batch=batch)
    if case.first_fit:  # compile-time memory is not a step's; the 2nd-fit row has the fit's
        row.update(traced_peak_bytes=None, device_peak_bytes=None, rss_peak_bytes=None,
                   rss_note="not measured (first fit: see the 2nd-fit row)")
        return row
    with _threads(case):
        row.update(traced_peak_bytes=_traced_peak(case, opts),
                   device_peak_bytes=_device_peak(case, opts))
    rss = _rss_peak(case, opts) if opts.rss else {"bytes": None, "note": "not measured (--quick)"}
    row.update(rss_peak_bytes=rss["bytes"], rss_note=rss["note"])
    return row


def calls_per_step() -> dict:
    """Array calls per training step of the chapter model, fast and general path
    (``CALLS_METHOD``); ``{"note": why}`` where array-api-strict is not installed."""
    try:
        import array_api_strict  # noqa: F401
    except ImportError:
        return {"note": "not counted: array_api_strict is not installed (pip install "
                        "array-api-strict)"}
    from .calls import per_step

    out: dict = {}
    for path, fast in (("fast", True), ("general", False)):
        counts = per_step(lambda: TinyCNN(seed=42), fast=fast)
        out[path] = {"calls": counts["function"] + counts["operator"],
                     **{kind: counts[kind] for kind in ("function", "operator", "indexing", "view")}}
    return out


# -- machine, threads, report --------------------------------------------------------------------
def _blas_threads() -> tuple[int | None, str]:
    """NumPy's BLAS threads, where threadpoolctl (not a dependency) is installed to tell."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None, "unknown (threadpoolctl not installed)"
    blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    blas.sort(key=lambda info: "numpy" not in info.get("filepath", ""))
    if not blas:
        return None, "unknown (no BLAS found by threadpoolctl)"
    return blas[0]["num_threads"], f"{blas[0].get('internal_api')} (threadpoolctl)"


def _machine(torch_threads_arg: int | None) -> dict:
    np.dot(np.ones((64, 64)), np.ones((64, 64)))  # load NumPy's BLAS so threadpoolctl sees it
    blas_threads, blas_source = _blas_threads()
    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "numpy": np.__version__,
            "numpy_blas_threads": blas_threads, "numpy_blas": blas_source,
            "load_average_start": list(os.getloadavg())}
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    for name in ("array_api_compat", "array_api_strict", "cupy"):
        try:
            info[name] = __import__(name).__version__
        except (ImportError, AttributeError, OSError, RuntimeError):  # absent or broken: None
            info[name] = None
    try:  # without importing it (seconds) where it is not benchmarked
        info["jax"] = importlib.metadata.version("jax")
    except importlib.metadata.PackageNotFoundError:
        info["jax"] = None
    torch = _torch()
    info["torch"] = torch.__version__ if torch else None
    if torch:
        info["torch_default_threads"] = torch.get_num_threads()
        # The library's torch backend: NumPy's BLAS thread count when known (or as asked), so it
        # is like for like with the numpy rows. PyTorch eager's rows set their own.
        wanted = torch_threads_arg or blas_threads
        if wanted:
            torch.set_num_threads(wanted)
        info["torch_threads"] = torch.get_num_threads()
        info["torch_eager_threads"] = list(EAGER_THREADS)
    return info


def _baselines() -> list[tuple[str, str]]:
    """``(name, words)`` of each baseline: the loops, then PyTorch eager by thread count, the
    reference count (the "vs eager" column) first."""
    threads = sorted(EAGER_THREADS, key=lambda t: (t != REFERENCE_THREADS, t))
    eager_cases = [Case("fit", "torch_eager", "torch", "float64", threads=t) for t in threads]
    return [("loop", "chapter loops")] + [(c.name, f"torch eager {c.variant}") for c in eager_cases]


def _ratios(rows: list[dict]) -> dict:
    """Per (config, dtype): each baseline's median over each library row's (>1: library faster)
    as ``{base}_over_{row}``, and each other library row's median over the numpy row's as
    ``{row}_over_numpy`` (the general path: what the fast path bought; JAX: times NumPy's time).
    Each library row gets ``speedup_vs_{base}``."""
    out: dict = {}
    by_key = {(r["config"], r["dtype"], r["name"]): r for r in rows}
    for row in rows:
        key = f"{row['config']}_{row['dtype']}"
        for base, _ in _baselines():
            ref = by_key.get((row["config"], row["dtype"], base))
            ratio = ref["median_s"] / row["median_s"] if ref and row["impl"] == "tinycnn_xp" else None
            row[f"speedup_vs_{base}"] = ratio
            if ratio is not None:
                out.setdefault(key, {})[f"{base}_over_{row['name']}"] = ratio
        numpy_row = by_key.get((row["config"], row["dtype"], "numpy"))
        if row["impl"] == "tinycnn_xp" and numpy_row and row is not numpy_row:
            out.setdefault(key, {})[f"{row['name']}_over_numpy"] = (
                row["median_s"] / numpy_row["median_s"])
    return out


def _check(rows: list[dict]) -> dict:
    """The float64 fit's final loss of every implementation against the library's first backend."""
    fits = [r for r in rows if r["config"] == "fit" and r["dtype"] == "float64"]
    ref = next((r for r in fits if r["impl"] == "tinycnn_xp"), None)
    result: dict = {"reference": ref and ref["label"], "ok": ref is not None, "diffs": {}}
    for row in fits:
        if ref is None or row is ref:
            continue
        tol = {"loop": LOOP_TOLERANCE, "torch_eager": TORCH_TOLERANCE}.get(row["impl"], LOOP_TOLERANCE)
        diff = abs(row["final_loss"] - ref["final_loss"])
        result["diffs"][row["label"]] = {"abs_diff": diff, "tolerance": tol}
        result["ok"] = result["ok"] and diff <= tol
    return result


def _count(n: float | None) -> str:
    return "-" if n is None else f"{n:.0f}"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.2f} MiB" if abs(n) >= 2**20 else f"{n / 2**10:.0f} KiB"


def _times(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}x"


def _summary(ratios: dict) -> list[str]:
    """The headline per workload: the library on NumPy against each baseline; the fast path
    against the general path; JAX compiled against NumPy."""
    lines = []
    for key, ratio in ratios.items():
        words = key.replace("_", " ")
        found = [f"{name} {ratio[f'{base}_over_numpy']:.1f}x" for base, name in _baselines()
                 if f"{base}_over_numpy" in ratio]
        if found:
            lines.append(f"{words}: speed-up of tinycnn_xp numpy over " + ", ".join(found))
        if "numpy_general_over_numpy" in ratio:
            lines.append(f"{words}: speed-up of the fast path over the general path (numpy) "
                         f"{ratio['numpy_general_over_numpy']:.1f}x")
        if "jax_over_numpy" in ratio:
            first = (f"; the 1st fit (compile included) {ratio['jax_first_fit_over_numpy']:.1f}x"
                     if "jax_first_fit_over_numpy" in ratio else "")
            which = ", 2nd fit" if key.startswith("fit") else ""
            lines.append(f"{words}: tinycnn_xp jax (compiled{which}) takes "
                         f"{ratio['jax_over_numpy']:.2f}x NumPy's time{first}")
    return lines


def _calls_table(calls: dict) -> list[str]:
    if "note" in calls:
        return [f"array calls per training step: {calls['note']}"]
    kinds = ("calls", "function", "operator", "indexing", "view")
    lines = ["array calls per training step, chapter TinyCNN, batch 18, float64, array-api-strict:",
             f"{'path':<16}" + "".join(f"{kind:>10}" for kind in kinds)]
    for path, counts in calls.items():
        lines.append(f"{path + ' path':<16}" + "".join(f"{counts[kind]:>10.1f}" for kind in kinds))
    return lines


def _report(rows: list[dict], ratios: dict, machine: dict, opts: Options, check: dict,
            skipped: dict, calls: dict) -> str:
    lines = [(f"tinycnn-xp bench: medians of {opts.repeats} runs after a warm-up "
              f"(chapter loops: {opts.loop_repeats}; a step sample = {opts.steps_per_sample} steps)"),
             (f"machine: {machine['cpu_count']} CPUs, load average "
              f"{machine['load_average_start'][0]:.2f} at start; numpy {machine['numpy']} "
              f"(BLAS {machine['numpy_blas']}: {machine['numpy_blas_threads'] or '?'} thread(s))")]
    if machine.get("torch"):
        lines.append(f"torch {machine['torch']}: PyTorch eager runs with "
                     f"{' and '.join(map(str, EAGER_THREADS))} thread(s), a row each "
                     f"(torch.set_num_threads around each sample); 'vs eager' is against "
                     f"{REFERENCE_THREADS} threads; the library's torch backend runs with "
                     f"{machine['torch_threads']} thread(s) (torch's default here: "
                     f"{machine['torch_default_threads']})")
        usable = machine.get("cpus_usable", machine["cpu_count"])
        if usable and usable < max(EAGER_THREADS):
            lines.append(f"note: only {usable} CPU(s) usable: torch's extra threads share them")
    if any(r["backend"] == "jax" for r in rows):
        lines.append(f"jax {machine['jax']}: float64 turned on by the benchmark (jax_enable_x64); "
                     "the library compiles its step with jax.jit (the fast path)")
    lines += [f"skipped backend {name}: {why}" for name, why in skipped.items()]
    titles = [("fit", (f"chapter fit: TinyCNN, {opts.epochs} epochs of 180 8x8 images, batch 18, "
                       "lr 0.12, then the epoch's train/val metrics")),
              ("step", ("step: Conv2D(1->16, 3x3) -> ReLU -> MaxPool(2) -> Flatten -> "
                        "Dense(2704->10), 256 28x28 images, forward + backward + SGD update "
                        "(training.repeat_step)"))]
    width = max([36] + [len(r["label"]) + 1 for r in rows])
    header = (f"{'implementation':<{width}}{'dtype':<9}{'median':>10}{'vs loop':>9}{'vs eager':>10}"
              f"{'traced':>12}{'RSS':>12}{'device':>11}{'activations':>13}{'peak/act':>9}"
              f"{'faults':>8}")
    for config, title in titles:
        lines += ["", title, header]
        for r in (r for r in rows if r["config"] == config):
            unit = 1e3 if config == "step" else 1.0
            peak = r.get("traced_peak_bytes") or r.get("device_peak_bytes") or r.get("rss_peak_bytes")
            per_activation = f"{peak / r['activation_bytes']:.1f}" if peak else "-"
            median = f"{r['median_s'] * unit:>8.3f}{' ms' if unit > 1 else ' s':<3}"
            lines.append(
                f"{r['label']:<{width}}{r['dtype']:<9}{median}"
                f"{_times(r['speedup_vs_loop']):>7}{_times(r['speedup_vs_torch_eager']):>10}"
                f"{_size(r.get('traced_peak_bytes')):>12}{_size(r.get('rss_peak_bytes')):>12}"
                f"{_size(r.get('device_peak_bytes')):>11}{_size(r['activation_bytes']):>13}"
                f"{per_activation:>9}{_count(r.get('page_faults_per_call')):>8}")
    lines += ["", *_calls_table(calls), "", *_summary(ratios)]
    lines += ["", (f"vs loop / vs eager: the baseline's median over this row's (>1: the library is "
                   f"faster); eager: PyTorch eager with {REFERENCE_THREADS} threads;"),
              ("activations: every layer's output in the call's largest forward pass (fit: the "
               "180-image evaluation; step: the batch), Flatten excluded; peak/act: the first of "
               "traced, device, RSS over it."),
              ("faults: minor page faults of the process per call (fit) or per step, median over "
               "the samples: memory the allocator gave back to the kernel and takes again, page "
               "by page; thousands per step can double a step's time, and which implementation "
               "pays them depends on the process's allocation history, not on its code alone.")]
    lines += [f"memory {k}: {v}" for k, v in MEMORY_METHODS.items()]
    if any(r.get("first_fit") for r in rows):
        lines.append(f"first fit: {FIRST_FIT_METHOD}")
    if "note" not in calls:
        lines.append(f"calls: {CALLS_METHOD}")
    verdict = "OK" if check["ok"] else "MISMATCH"
    diffs = ", ".join(f"{k} {v['abs_diff']:.1e} (tol {v['tolerance']:.0e})"
                      for k, v in check["diffs"].items())
    lines += ["", f"correctness [{verdict}]: final loss of the float64 fit vs {check['reference']}: {diffs}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (default 5; "
                        "the chapter loops: at most 3)")
    parser.add_argument("--json", default="bench.json",
                        help="where to write the results (default bench.json)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2-epoch fits, one repeat, 2-step samples, no RSS processes")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma-separated subset of {','.join(BACKENDS)} (default: all usable)")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="the thread count of the library's torch backend (default: NumPy's "
                             "BLAS thread count where known); PyTorch eager runs with "
                             f"{' and '.join(map(str, EAGER_THREADS))}")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    if args.repeats < 1 or (args.torch_threads is not None and args.torch_threads < 1):
        parser.error("--repeats and --torch-threads must be >= 1")
    if not names or any(name not in BACKENDS for name in names):
        parser.error(f"--backends must be a comma-separated subset of {','.join(BACKENDS)}, "
                     f"got {args.backends!r}")
    opts = (Options(epochs=2, repeats=1, loop_repeats=1, steps_per_sample=2, rss=False) if args.quick
            else Options(repeats=args.repeats, loop_repeats=min(args.repeats, 3)))
    torch = _torch()
    threads_before = torch.get_num_threads() if torch else None
    try:
        return _run(args, names, opts)
    finally:  # leave the caller's torch as it was (the thread count is process-wide)
        if torch:
            torch.set_num_threads(threads_before)


def _cases(usable: list[str], torch: bool) -> list[Case]:
    """Every row, in the table's order."""
    cases = []
    for name in usable:
        for dtype in ("float64", "float32"):
            if name == "jax":
                cases.append(Case("fit", "tinycnn_xp", name, dtype, first_fit=True))
            cases.append(Case("fit", "tinycnn_xp", name, dtype))
        if name == "numpy":
            cases.append(Case("fit", "tinycnn_xp", name, "float64", general=True))
    cases.append(Case("fit", "loop", "numpy", "float64"))
    if torch:
        cases += [Case("fit", "torch_eager", "torch", dtype, threads=threads)
                  for dtype in ("float64", "float32") for threads in EAGER_THREADS]
    for name in usable:
        cases.append(Case("step", "tinycnn_xp", name, "float32"))
        if name == "numpy":
            cases.append(Case("step", "tinycnn_xp", name, "float32", general=True))
    if torch:
        cases += [Case("step", "torch_eager", "torch", "float32", threads=threads)
                  for threads in EAGER_THREADS]
    return cases


def _run(args: argparse.Namespace, names: list[str], opts: Options) -> int:
    machine = _machine(args.torch_threads)
    opts.torch_threads = machine.get("torch_threads")
    skipped, usable = {}, []
    for name in names:
        loaded = _load_backend(name)
        if isinstance(loaded, str):
            skipped[name] = loaded
        else:
            usable.append(name)
    cases = _cases(usable, bool(machine.get("torch")))

    timings = time_cases(cases, opts)
    rows = []
    for case in cases:
        print(f"memory of {case.config} {case.label} {case.dtype} ...", file=sys.stderr, flush=True)
        rows.append(measure(case, opts, *timings[case]))
    print("counting array calls per step ...", file=sys.stderr, flush=True)
    calls = calls_per_step()
    ratios, check = _ratios(rows), _check(rows)
    machine["load_average_end"] = list(os.getloadavg())
    print(_report(rows, ratios, machine, opts, check, skipped, calls))
    result = {"machine": machine, "options": {**asdict(opts), "quick": args.quick},
              "workloads": {"fit": {**FIT, "epochs": opts.epochs, "model": "TinyCNN(seed=42)",
                                    "train_images": 180, "val_images": 90, "size": 8},
                            "step": STEP},
              "memory_methods": MEMORY_METHODS, "first_fit_method": FIRST_FIT_METHOD,
              "calls_method": CALLS_METHOD, "calls_per_step": calls, "skipped": skipped,
              "rows": rows, "ratios": ratios, "correctness": check}
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"written to {args.json}")
    return 0 if check["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
