"""``python -m benchmarks.bench`` (from the repository root; ``nox -s bench``): training speed and
memory, compared.

Two workloads, for every usable backend of ``tinycnn_xp._backends`` (numpy; array_api_strict on
``Device("device1")``; torch on the CPU through array_api_compat; jax on its CPU, in float64 too:
the benchmark turns ``jax_enable_x64`` on, and the library runs uncompiled, op by op; cupy where a
CUDA GPU runs a kernel):

* ``fit``: the chapter's fit, ``TinyCNN(seed=42)`` on ``make_dataset_bundle()`` (180 train / 90
  validation 8x8 images), 80 epochs, batch 18, lr 0.12, seed 0; float64 and float32.
* ``step``: one training step (forward + backward + SGD update, the path ``fit`` takes) of
  ``Conv2D(1->16, 3x3) -> ReLU -> MaxPool(2) -> Flatten -> Dense(2704->10)`` on 256 random
  28x28 images, float32.

Baselines, in the same process: the chapter's per-pixel loop code (``chapter_loops``; ``fit``
float64 only) and PyTorch eager on the CPU (``torch_eager``; both workloads), both started
from the library model's initial weights and fed the same batches. Times are medians of repeated
runs after a warm-up; each case's peak memory is measured once, outside the timed runs (the
methods are printed). The final losses of the three implementations are checked against each
other, and the table is written to a JSON file so runs can be compared. The library is used
through its public API only.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable
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
)
from tinycnn_xp._backends import NAMES, Backend, BackendUnavailable, resolve

from . import torch_eager as eager

FIT = {"lr": 0.12, "batch_size": 18, "seed": 0}
STEP = {"batch": 256, "size": 28, "filters": 16, "classes": 10, "lr": 0.01, "seed": 0}
BACKENDS = NAMES  # the library's backends, in its order
DEVICES = {"array_api_strict": "device1"}  # not the default device: device mismatches would show
LOOP_TOLERANCE, TORCH_TOLERANCE = 1e-8, 1e-6  # on the float64 fit's final losses
MEMORY_METHODS = {
    "traced": "tracemalloc peak of the bytes allocated during one call (sees NumPy's allocations, "
              "also under array_api_strict; not torch's, JAX's or CuPy's)",
    "rss": "peak resident set size during one call, minus the RSS before it, in a fresh Python "
           "process after a tiny warm-up (the kernel's high-water mark, reset by writing 5 to "
           "/proc/self/clear_refs; where that is not allowed, getrusage ru_maxrss, an upper bound); "
           "sees every allocation, but at page and allocator granularity: figures under ~1 MiB are "
           "noise (freed memory the allocator keeps is reused unseen)",
    "device": "CuPy memory-pool growth during one call after free_all_blocks (device memory)",
}


@dataclass
class Options:
    epochs: int = 80
    repeats: int = 5
    loop_repeats: int = 3
    steps_per_sample: int = 10
    torch_threads: int | None = None
    rss: bool = True  # the RSS peak needs a fresh process per case: seconds each


@dataclass(frozen=True)
class Case:
    """One row of the table: which workload, which implementation, on what, in which dtype."""

    config: str   # "fit" | "step"
    impl: str     # "tinycnn_xp" | "loop" | "torch_eager"
    backend: str  # where tinycnn_xp's arrays live; "numpy" for the loop, "torch" for eager
    dtype: str

    @property
    def label(self) -> str:
        library = f"tinycnn_xp {self.backend}" + (" (eager)" if self.backend == "jax" else "")
        return {"tinycnn_xp": library, "loop": "chapter loops (numpy)",
                "torch_eager": "torch eager (cpu)"}[self.impl]


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


def _sync_of(backend: Backend, model: Any) -> Callable[[], None]:
    """Wait for the model's queued work: ``backend.sync()``; JAX dispatches asynchronously even
    on the CPU, so there the model's arrays are waited for."""
    if backend.name != "jax":
        return backend.sync
    import jax
    return lambda: jax.block_until_ready(model.state())


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


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


def _no_sync() -> None:
    pass


class Prepared(NamedTuple):
    """The call to measure, and how to wait for the device work it queued."""

    run: Callable[[], Any]
    sync: Callable[[], None] = _no_sync


def _prepare(case: Case, opts: Options, short: bool = False) -> Prepared:
    """Build a fresh model and its data for ``case``; return the call to measure.

    The call runs one whole fit (``short``: 2 epochs) or one training step (``short``: on 2
    images) and returns the fit's history or the step's loss (left on the device).
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
    # Placed once; then each step is what ``fit`` runs per batch: no per-call argument checks.
    model.to(backend.xp, backend.device, case.dtype)

    def train_step() -> Any:
        loss, _ = model.loss_and_grad(x, y, check=False)
        model.step(STEP["lr"], 0.0, check=False)
        return loss
    return Prepared(train_step, _sync_of(backend, model))


def _backend(name: str) -> Backend:
    loaded = _load_backend(name)
    if isinstance(loaded, str):
        raise BackendUnavailable(loaded)
    return loaded


def _final_loss(result: Any) -> float:
    if isinstance(result, dict):
        return result["train_loss"][-1]
    return float(to_numpy(result))


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
def _sample(case: Case, opts: Options) -> tuple[float, Any]:
    """Seconds per call of one timed run on a fresh model, and the run's last result."""
    run, sync = _prepare(case, opts)
    inner = 1
    if case.config == "step":
        run()  # this model's first step
        inner = opts.steps_per_sample
    sync()
    start = time.perf_counter()
    for _ in range(inner):
        result = run()
    sync()
    return (time.perf_counter() - start) / inner, result


def time_cases(cases: list[Case], opts: Options) -> dict[Case, tuple[list[float], float]]:
    """Timed samples of every case after a warm-up of each, and the last sample's final loss.

    Interleaved: round ``r`` takes one sample of every case still due one, so a change in the
    machine's load during the run hits every implementation alike and the ratios stay fair.
    """
    for case in cases:
        warm_up = _prepare(case, opts, short=True)  # code paths, kernel caches, index maps
        warm_up.run()
        warm_up.sync()
    due = {case: opts.loop_repeats if case.impl == "loop" else opts.repeats for case in cases}
    out: dict = {case: ([], None) for case in cases}
    for round_ in range(max(due.values())):
        print(f"timing round {round_ + 1}/{max(due.values())} ...", file=sys.stderr, flush=True)
        for case in (case for case in cases if due[case] > round_):
            seconds, result = _sample(case, opts)
            out[case] = (out[case][0] + [seconds], result)
    return {case: (samples, _final_loss(result)) for case, (samples, result) in out.items()}


def _traced_peak(case: Case, opts: Options) -> int | None:
    """tracemalloc's peak during one call; None where the arrays are not NumPy's."""
    if case.impl == "torch_eager" or case.backend in ("torch", "jax", "cupy"):
        return None
    run, sync = _prepare(case, opts)
    if case.config == "step":
        run()
    gc.collect()
    tracemalloc.start()
    try:
        run()
        sync()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _device_peak(case: Case, opts: Options) -> int | None:
    if case.backend != "cupy":
        return None
    import cupy
    (run, sync), pool = _prepare(case, opts), cupy.get_default_memory_pool()
    if case.config == "step":
        run()
    sync()
    gc.collect()
    pool.free_all_blocks()
    before = pool.total_bytes()
    run()
    sync()
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
    warm_up = _prepare(case, opts, short=True)
    warm_up.run()
    warm_up.sync()
    run, sync = _prepare(case, opts)
    gc.collect()
    with open("/proc/self/statm") as f:
        before = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS high-water mark to the current RSS
        reset = True
    except OSError:
        reset = False
    run()
    sync()
    if reset:
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"bytes": peak - before, "note": "VmHWM reset" if reset else "ru_maxrss"}))


def measure(case: Case, opts: Options, samples: list[float], loss: float) -> dict:
    """The table row of ``case``: its timings, activation size and peak memory (measured now)."""
    row = {**asdict(case), "label": case.label, "median_s": statistics.median(samples),
           "samples_s": samples, "final_loss": loss}
    activations, batch = _activation_bytes(case)
    row.update(activation_bytes=activations, activation_batch=batch)
    row.update(traced_peak_bytes=_traced_peak(case, opts), device_peak_bytes=_device_peak(case, opts))
    rss = _rss_peak(case, opts) if opts.rss else {"bytes": None, "note": "not measured (--quick)"}
    row.update(rss_peak_bytes=rss["bytes"], rss_note=rss["note"])
    return row


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
        # Same thread count as NumPy's BLAS when known (or as asked), so the ratio is like for like.
        wanted = torch_threads_arg or blas_threads
        if wanted:
            torch.set_num_threads(wanted)
        info["torch_threads"] = torch.get_num_threads()
    return info


def _ratios(rows: list[dict]) -> dict:
    """Per (config, dtype): each baseline's median over each library row's (>1: library faster)."""
    out: dict = {}
    by_key = {(r["config"], r["dtype"], r["impl"]): r for r in rows if r["impl"] != "tinycnn_xp"}
    for row in rows:
        for base in ("loop", "torch_eager"):
            ref = by_key.get((row["config"], row["dtype"], base))
            ratio = ref["median_s"] / row["median_s"] if ref and row["impl"] == "tinycnn_xp" else None
            row[f"speedup_vs_{base}"] = ratio
            if ratio is not None:
                out.setdefault(f"{row['config']}_{row['dtype']}", {})[
                    f"{base}_over_{row['backend']}"] = ratio
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


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**20:.2f} MiB" if abs(n) >= 2**20 else f"{n / 2**10:.0f} KiB"


def _times(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}x"


def _report(rows: list[dict], ratios: dict, machine: dict, opts: Options, check: dict,
            skipped: dict) -> str:
    lines = [(f"tinycnn-xp bench: medians of {opts.repeats} runs after a warm-up "
              f"(chapter loops: {opts.loop_repeats}; a step sample = {opts.steps_per_sample} steps)"),
             (f"machine: {machine['cpu_count']} CPUs, load average "
              f"{machine['load_average_start'][0]:.2f} at start; numpy {machine['numpy']} "
              f"(BLAS {machine['numpy_blas']}: {machine['numpy_blas_threads'] or '?'} thread(s))")]
    if machine.get("torch"):
        lines.append(f"torch {machine['torch']}: runs with {machine['torch_threads']} thread(s) "
                     f"(torch.get_num_threads(); its default here: {machine['torch_default_threads']})")
    if any(r["backend"] == "jax" for r in rows):
        lines.append(f"jax {machine['jax']}: float64 turned on by the benchmark (jax_enable_x64); "
                     "the library runs uncompiled, op by op (eager)")
    lines += [f"skipped backend {name}: {why}" for name, why in skipped.items()]
    titles = [("fit", (f"chapter fit: TinyCNN, {opts.epochs} epochs of 180 8x8 images, batch 18, "
                       "lr 0.12, then the epoch's train/val metrics")),
              ("step", ("step: Conv2D(1->16, 3x3) -> ReLU -> MaxPool(2) -> Flatten -> "
                        "Dense(2704->10), 256 28x28 images, forward + backward + SGD update"))]
    header = (f"{'implementation':<29}{'dtype':<9}{'median':>10}{'vs loop':>9}{'vs eager':>10}"
              f"{'traced':>12}{'RSS':>12}{'device':>11}{'activations':>13}{'peak/act':>9}")
    for config, title in titles:
        lines += ["", title, header]
        for r in (r for r in rows if r["config"] == config):
            unit = 1e3 if config == "step" else 1.0
            peak = r.get("traced_peak_bytes") or r.get("device_peak_bytes") or r.get("rss_peak_bytes")
            per_activation = f"{peak / r['activation_bytes']:.1f}" if peak else "-"
            median = f"{r['median_s'] * unit:>8.3f}{' ms' if unit > 1 else ' s':<3}"
            lines.append(
                f"{r['label']:<29}{r['dtype']:<9}{median}"
                f"{_times(r['speedup_vs_loop']):>7}{_times(r['speedup_vs_torch_eager']):>10}"
                f"{_size(r.get('traced_peak_bytes')):>12}{_size(r.get('rss_peak_bytes')):>12}"
                f"{_size(r.get('device_peak_bytes')):>11}{_size(r['activation_bytes']):>13}"
                f"{per_activation:>9}")
    lines.append("")
    for key, ratio in ratios.items():  # the headline: the library on NumPy
        found = [f"{name} {ratio[f'{base}_over_numpy']:.1f}x" for base, name in
                 (("loop", "chapter loops"), ("torch_eager", "torch eager"))
                 if f"{base}_over_numpy" in ratio]
        if found:
            lines.append(f"{key.replace('_', ' ')}: speed-up of tinycnn_xp numpy over "
                         + ", ".join(found))
    lines += ["", "vs loop / vs eager: the baseline's median over this row's (>1: the library is faster);",
              ("activations: every layer's output in the call's largest forward pass (fit: the "
               "180-image evaluation; step: the batch), Flatten excluded; peak/act: the first of "
               "traced, device, RSS over it.")]
    lines += [f"memory {k}: {v}" for k, v in MEMORY_METHODS.items()]
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
                        help="torch's thread count (default: NumPy's BLAS thread count where known)")
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
    cases = [Case("fit", "tinycnn_xp", name, dtype) for name in usable for dtype in ("float64", "float32")]
    cases.append(Case("fit", "loop", "numpy", "float64"))
    if machine.get("torch"):
        cases += [Case("fit", "torch_eager", "torch", dtype) for dtype in ("float64", "float32")]
    cases += [Case("step", "tinycnn_xp", name, "float32") for name in usable]
    if machine.get("torch"):
        cases.append(Case("step", "torch_eager", "torch", "float32"))

    timings = time_cases(cases, opts)
    rows = []
    for case in cases:
        print(f"memory of {case.config} {case.label} {case.dtype} ...", file=sys.stderr, flush=True)
        rows.append(measure(case, opts, *timings[case]))
    ratios, check = _ratios(rows), _check(rows)
    machine["load_average_end"] = list(os.getloadavg())
    print(_report(rows, ratios, machine, opts, check, skipped))
    result = {"machine": machine, "options": {**asdict(opts), "quick": args.quick},
              "workloads": {"fit": {**FIT, "epochs": opts.epochs, "model": "TinyCNN(seed=42)",
                                    "train_images": 180, "val_images": 90, "size": 8},
                            "step": STEP},
              "memory_methods": MEMORY_METHODS, "skipped": skipped, "rows": rows,
              "ratios": ratios, "correctness": check}
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"written to {args.json}")
    return 0 if check["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
