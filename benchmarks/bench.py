"""``python -m benchmarks.bench`` (from the repository root; ``nox -s bench``): training speed,
side by side in one process, against PyTorch eager and against the machine's limit.

Workloads (``WORKLOADS``), each timed through ``fit`` and through a hand-written loop
(``loss_and_grad`` then ``step`` per batch, ``evaluate`` on both sets at the end of an epoch),
for every usable backend of ``tinycnn_xp._backends``, with PyTorch eager on 2 threads (and 1) on
the same layers, weights and batches:

* ``chapter``: the chapter's fit, TinyCNN on the line patterns, 80 epochs, batch 18, float64;
  also against the chapter's per-pixel loops (``chapter_loops``).
* ``step28``: one training step, Conv2D(1->16) ReLU MaxPool Dense(2704->10), 28x28, batch 256,
  float32 (``fit``: the step ``fit`` takes, ``training.train_step``).
* ``lenet``: one epoch, conv 1->8, pool, conv 8->16, pool, dense 400->10, 28x28, 6,000 + 500
  images, batch 64, float32.
* ``vgg``: one epoch, padded conv 3->16, pool, padded conv 16->32, pool, dense 2048->10, 32x32
  RGB, 2,000 + 200 images, batch 64, float32.
* ``uncovered``: one epoch of a stack no fusion covers (a stride-2 convolution, an average pool,
  an overlapping max pool), 28x28, 6,000 + 500 images, float32.
* ``lenet_bn``: one epoch with Adam of a LeNet-like stack with batch normalization and dropout
  (conv 1->8, BN, ReLU, pool, conv 8->16, BN, ReLU, pool, dropout, dense 400->64, BN, ReLU,
  dropout, dense 64->10), 28x28, 6,000 + 500 images, batch 64, float32; PyTorch with the same
  layers and ``torch.optim.Adam`` (its own dropout masks).

Rounds are interleaved (one sample of every case per round), so load on the machine hits every
case alike; a ratio is the median over rounds of the per-round ratio. The limit of a workload is
``max(flops / matmul rate, bytes / copy rate)``: its floating-point operations and bytes moved
(each activation written once and read once per pass: a lower bound) over the machine's measured
float32 ``matmul`` rate (2048 x 2048) and large-copy bandwidth, same threads; for the chapter,
bound by array calls, also its calls per fit times the cost of the cheapest call. ``--processes``
runs the 28x28 step in fresh processes: its first steps and its warm steps, with page faults.
``--baseline DIR`` times the chapter fit of another checkout (e.g. 0.2.0) in the same run, in
alternating child processes, on each backend given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

import tinycnn_xp as tc
from tinycnn_xp import training
from tinycnn_xp._backends import NAMES, Backend, BackendUnavailable, resolve

from . import torch_eager as eager

REFERENCE_THREADS = 2  # "vs torch" is against PyTorch eager with this many threads


# -- workloads -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """What one timed unit is: a whole fit (``epochs``), an epoch, or one step (``step``)."""

    name: str
    build: Callable[[], tc.Sequential]
    data: Callable[[], tuple]  # host (x_train, y_train, x_val, y_val)
    dtype: str
    batch_size: int
    lr: float
    epochs: int = 1
    step: bool = False  # time one training step on the first batch_size images
    adam: bool = False  # Adam(lr) instead of the chapter's SGD(lr)

    def optimizer(self) -> Any:
        return tc.Adam(self.lr) if self.adam else tc.SGD(self.lr)

    def unit(self) -> str:
        return "step" if self.step else f"{self.epochs}-epoch fit" if self.epochs > 1 else "epoch"


def _random(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape), dtype=np.float32), rng.integers(0, 10, n)


def _images(shape: tuple[int, ...], n: int, n_val: int) -> Callable[[], tuple]:
    return lambda: (*_random(n, shape, 0), *_random(n_val, shape, 1))


WORKLOADS = {
    "chapter": Workload("chapter", lambda: tc.TinyCNN(seed=42),
                        lambda: tc.make_dataset_bundle()[:4], "float64", 18, 0.12, epochs=80),
    "step28": Workload("step28", lambda: tc.Sequential(
        [tc.Conv2D(1, 16, 3), tc.ReLU(), tc.MaxPool2D(2), tc.Flatten(), tc.Dense(2704, 10)], seed=0),
        _images((1, 28, 28), 256, 10), "float32", 256, 0.01, step=True),
    "lenet": Workload("lenet", lambda: tc.Sequential(
        [tc.Conv2D(1, 8, 3), tc.ReLU(), tc.MaxPool2D(2), tc.Conv2D(8, 16, 3), tc.ReLU(),
         tc.MaxPool2D(2), tc.Flatten(), tc.Dense(400, 10)], seed=0),
        _images((1, 28, 28), 6000, 500), "float32", 64, 0.01),
    "vgg": Workload("vgg", lambda: tc.Sequential(
        [tc.Conv2D(3, 16, 3, padding=1), tc.ReLU(), tc.MaxPool2D(2), tc.Conv2D(16, 32, 3, padding=1),
         tc.ReLU(), tc.MaxPool2D(2), tc.Flatten(), tc.Dense(2048, 10)], seed=0),
        _images((3, 32, 32), 2000, 200), "float32", 64, 0.01),
    "uncovered": Workload("uncovered", lambda: tc.Sequential(
        [tc.Conv2D(1, 8, 3, stride=2), tc.ReLU(), tc.AvgPool2D(2), tc.Conv2D(8, 16, 3), tc.ReLU(),
         tc.MaxPool2D(3, stride=1), tc.Flatten(), tc.Dense(64, 10)], seed=0),
        _images((1, 28, 28), 6000, 500), "float32", 64, 0.01),
    "lenet_bn": Workload("lenet_bn", lambda: tc.Sequential(
        [tc.Conv2D(1, 8, 3), tc.BatchNorm2D(8), tc.ReLU(), tc.MaxPool2D(2), tc.Conv2D(8, 16, 3),
         tc.BatchNorm2D(16), tc.ReLU(), tc.MaxPool2D(2), tc.Flatten(), tc.Dropout(0.25),
         tc.Dense(400, 64), tc.BatchNorm1D(64), tc.ReLU(), tc.Dropout(0.25, seed=1),
         tc.Dense(64, 10)], seed=0),
        _images((1, 28, 28), 6000, 500), "float32", 64, 0.001, adam=True),
}
ENTRIES = ("fit", "hand")


def hand_loop(model: tc.Sequential, x: Any, y: Any, x_val: Any, y_val: Any, work: Workload,
              put: Callable[[np.ndarray], Any]) -> float:
    """The loop a learner writes: shuffled (``default_rng(0).permutation``), ``loss_and_grad``
    then ``step`` per batch (``optimizer.step(model, epoch)`` with Adam), ``evaluate`` on both
    sets after each epoch; the last accuracy."""
    rng, n = np.random.default_rng(0), x.shape[0]
    accuracy, optimizer = 0.0, work.optimizer()
    for epoch in range(work.epochs):
        order = put(rng.permutation(n))
        xs, ys = _take(x, order), _take(y, order)
        for start in range(0, n, work.batch_size):
            stop = min(start + work.batch_size, n)
            model.loss_and_grad(xs[start:stop, ...], ys[start:stop])
            if work.adam:
                optimizer.step(model, epoch)
            else:
                model.step(work.lr)
        model.evaluate(x, y)
        accuracy = model.evaluate(x_val, y_val)
    return accuracy


def _take(a: Any, order: Any) -> Any:
    from array_api_compat import array_namespace
    return array_namespace(a).take(a, order, axis=0)


# -- one case: a callable that runs one unit --------------------------------------------------------
@dataclass(frozen=True)
class Case:
    workload: str
    impl: str       # "fit" | "hand" | "torch" | "loops"
    backend: str    # tinycnn_xp's backend; "torch" for PyTorch eager, "numpy" for the loops
    threads: int | None = None  # PyTorch eager's threads

    @property
    def label(self) -> str:
        if self.impl == "torch":
            return f"torch eager, {self.threads} thread{'s' if self.threads != 1 else ''}"
        if self.impl == "loops":
            return "chapter loops (numpy)"
        return f"{self.backend} {self.impl}"


def prepare(case: Case) -> Callable[[], Any]:
    """The call that runs one unit of ``case`` and returns what it computed (a history, a loss,
    an accuracy: ``result_of`` makes it a number). A fit or an epoch starts from a fresh model
    each time (as a user's would, building it included), so every call computes the same run; a
    step takes one more step on the same model."""
    work = WORKLOADS[case.workload]
    host = tuple(a.astype(work.dtype) if a.ndim > 1 else a for a in work.data())
    if case.impl == "loops":
        from .chapter_loops import LoopCNN
        return lambda: LoopCNN.from_model(work.build()).fit(
            *host, epochs=work.epochs, lr=work.lr, batch_size=work.batch_size, seed=0)
    if case.impl == "torch":
        import torch
        data = [eager.tensor(a) for a in host]
        if work.step:
            net = eager.twin(work.build(), work.dtype)
            optimizer = torch.optim.SGD(net.parameters(), lr=work.lr)
            x, y = data[0][:work.batch_size], data[1][:work.batch_size]
            return lambda: eager.train_step(net, optimizer, x, y)
        return lambda: eager.fit(eager.twin(work.build(), work.dtype), *data, epochs=work.epochs,
                                 lr=work.lr, batch_size=work.batch_size, seed=0,
                                 adam=work.adam)
    backend = _backend(case.backend)
    data = [backend.put(a) for a in host]
    if work.step:
        model = work.build()
        sync = _sync(backend, model)
        x, y = data[0][:work.batch_size, ...], data[1][:work.batch_size]
        if case.impl == "hand":
            return lambda: sync(model.loss_and_grad(x, y)[0])
        model.forward(x[:1, ...])  # placed
        from tinycnn_xp.layers import to_rows
        from tinycnn_xp.losses import one_hot_columns
        xp = model.placement.xp
        rows, targets = to_rows(x, xp), one_hot_columns(y, 10, x.dtype, xp)
        optimizer = work.optimizer()
        step = training.train_step(model, tuple(x.shape[1:]), optimizer)
        state = {"params": model.params(), "state": optimizer.state_of(model),
                 "buffers": model.buffers()}
        masks = model.draw_masks(model.program(tuple(x.shape[1:])), x.shape[0])

        def fit_step() -> Any:  # what fit does per batch: the step, its results bound
            optimizer.steps += 1
            params, opt_state, buffers, grads, p = step(
                state["params"], state["state"], state["buffers"], masks, rows, targets,
                optimizer.hyper(work.lr))
            model.bind(params, grads=grads, buffers=buffers)
            optimizer.bind_state(model, opt_state)
            state["params"], state["state"], state["buffers"] = params, opt_state, buffers
            return sync(p)
        return fit_step

    def unit() -> Any:
        model = work.build()
        sync = _sync(backend, model)
        if case.impl == "hand":
            return sync(hand_loop(model, *data, work, backend.put))
        return sync(model.fit(*data, epochs=work.epochs, batch_size=work.batch_size,
                              verbose=False, optimizer=work.optimizer()))
    return unit


def result_of(value: Any) -> float:
    """The number a case's call leaves: a fit's last training loss, a step's loss (PyTorch's,
    or the mean over the batch of the probabilities' true-class cross-entropy is not kept: the
    fit step returns probabilities, whose first entry serves as a checksum), an accuracy."""
    if isinstance(value, dict):
        return float(value["train_loss"][-1])
    if isinstance(value, float):
        return value
    return float(np.asarray(tc.to_numpy(value)).reshape(-1)[0])


def _backend(name: str) -> Backend:
    backend = resolve(name, "device1" if name == "array_api_strict" else None)
    if name == "jax":
        import jax
        jax.config.update("jax_enable_x64", True)  # the benchmark's, not the library's, choice
    return backend


def _sync(backend: Backend, model: tc.Sequential) -> Callable[[Any], Any]:
    if backend.name != "jax":
        return lambda result: (backend.sync(), result)[1]
    import jax
    return lambda result: (jax.block_until_ready(model.params()), result)[1]


def usable(name: str) -> str | None:
    """``None`` if backend ``name`` runs here, else why not."""
    try:
        _backend(name)
    except BackendUnavailable as exc:
        return str(exc)
    return None


def _torch_threads(threads: int | None) -> Any:
    import contextlib
    if threads is None:
        return contextlib.nullcontext()
    import torch

    @contextlib.contextmanager
    def scoped():
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)
    return scoped()


def time_cases(cases: list[Case], repeats: int, inner: int = 10) -> dict[Case, list[float]]:
    """Seconds per unit of every case, ``repeats`` interleaved rounds after a warm-up each (a
    step case: the median of ``inner`` calls per sample). Minor page faults per unit too."""
    runs = {}
    for case in cases:
        with _torch_threads(case.threads):
            runs[case] = prepare(case)
            runs[case]()  # warm-up: imports, index maps, compiles
    samples: dict[Case, list[float]] = {case: [] for case in cases}
    for round_ in range(repeats):
        print(f"round {round_ + 1}/{repeats}", file=sys.stderr, flush=True)
        for case in cases:
            count = inner if WORKLOADS[case.workload].step else 1
            with _torch_threads(case.threads):
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                times = []
                for _ in range(count):
                    start = time.perf_counter()
                    value = runs[case]()
                    times.append(time.perf_counter() - start)
                RESULTS[case] = result_of(value)
                FAULTS.setdefault(case, []).append(
                    (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / count)
            samples[case].append(statistics.median(times))
    return samples


FAULTS: dict[Case, list[float]] = {}
RESULTS: dict[Case, float] = {}


# -- the limit ------------------------------------------------------------------------------------
def work_of(name: str) -> tuple[float, float]:
    """``(floating-point operations, bytes)`` of one unit of workload ``name``: the products of
    every convolution and dense layer (forward; backward: the weights' and the input's, none for
    the first layer's input), and every activation written once and read once per pass."""
    work = WORKLOADS[name]
    model, (x, _, x_val, _) = work.build(), work.data()
    itemsize = np.dtype(work.dtype).itemsize
    shape: tuple[int, ...] = (1, *x.shape[1:])
    forward = backward = moved = 0.0
    for i, layer in enumerate(model.layers):
        out = layer.output_shape(shape)
        if isinstance(layer, tc.Conv2D):
            flops = 2.0 * math.prod(out[1:]) * layer.in_channels * layer.kernel_size ** 2
        elif isinstance(layer, tc.Dense):
            flops = 2.0 * layer.in_features * layer.out_features
        else:
            flops = 0.0
        forward += flops
        backward += flops * (1 if i == 0 else 2)
        if not isinstance(layer, tc.Flatten):
            moved += (math.prod(shape[1:]) + math.prod(out[1:])) * itemsize
        shape = out
    if work.step:
        n_train, n_eval = work.batch_size, 0
    else:
        n_train, n_eval = x.shape[0] * work.epochs, (x.shape[0] + x_val.shape[0]) * work.epochs
    flops = n_train * (forward + backward) + n_eval * forward
    return flops, (3 * n_train + n_eval) * moved  # training: forward, and backward twice the bytes


def machine_rates() -> dict[str, float]:
    """The machine's float32 ``matmul`` rate (2048 x 2048) and copy bandwidth (256 MiB), NumPy
    with its BLAS threads as the benchmark runs it: best of 5; and the cheapest array call."""
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    big = np.ones(64 * 2**20, dtype=np.float32)
    out = np.empty_like(big)
    a @ a
    matmul = min(_seconds(lambda: a @ a) for _ in range(5))
    np.copyto(out, big)
    copy = min(_seconds(lambda: np.copyto(out, big)) for _ in range(5))
    small = np.ones(8)
    call = min(_seconds(lambda: [np.add(small, small) for _ in range(1000)]) for _ in range(5)) / 1000
    return {"matmul_flops": 2 * 2048 ** 3 / matmul, "copy_bytes": 2 * big.nbytes / copy,
            "cheapest_call_s": call}


def _seconds(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


# -- the 28x28 step in fresh processes --------------------------------------------------------------
def step_processes(backend: str, impl: str, processes: int) -> list[dict]:
    """Per fresh process: the median of its first 5 steps after one warm-up step, of steps
    50-59, and minor page faults per step of each."""
    code = ("import sys, json; from benchmarks.bench import _step_child; "
            "print(json.dumps(_step_child(sys.argv[1], sys.argv[2])))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH"))
                                                       if p)}
    out = []
    for _ in range(processes):
        done = subprocess.run([sys.executable, "-c", code, backend, impl], capture_output=True,
                              text=True, check=True, env=env, timeout=600)
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def _step_child(backend: str, impl: str) -> dict:
    if impl == "torch":
        import torch
        torch.set_num_threads(REFERENCE_THREADS)
    run = prepare(Case("step28", impl, backend, REFERENCE_THREADS if impl == "torch" else None))
    run()

    def measure(steps: int) -> tuple[float, float]:
        faults, times = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, []
        for _ in range(steps):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return statistics.median(times), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
    fresh, fresh_faults = measure(5)
    for _ in range(44):
        run()
    warm, warm_faults = measure(10)
    return {"fresh_s": fresh, "fresh_faults": fresh_faults, "warm_s": warm, "warm_faults": warm_faults}


# -- another checkout's chapter fit, alternating ------------------------------------------------------
def baseline_rows(code: str, backends: list[str], rounds: int) -> list[dict]:
    """The chapter fit (float64, warm: the median of 3 fits after one) of the checkout at ``code``
    and of this one, in alternating child processes; per backend the medians and their ratio."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = []
    for backend in backends:
        times: dict[str, list[float]] = {"this": [], "baseline": []}
        for _ in range(rounds):
            for which, root in (("baseline", code), ("this", here)):
                times[which].append(_chapter_child(root, backend))
        rows.append({"backend": backend, "this_s": statistics.median(times["this"]),
                     "baseline_s": statistics.median(times["baseline"])})
    return rows


_CHAPTER_CHILD = """
import os, statistics, sys, time
backend = sys.argv[1]
import numpy as np
import tinycnn_xp as tc
data = tc.make_dataset_bundle()[:4]
if backend == "jax":
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    data = [jnp.asarray(a) for a in data]
    sync = lambda m: jax.block_until_ready(m.state())
elif backend == "torch":
    import torch
    torch.set_num_threads(2)
    data = [torch.asarray(a) for a in data]
    sync = lambda m: None
else:
    sync = lambda m: None
def fit():
    model = tc.TinyCNN(seed=42)
    start = time.perf_counter()
    model.fit(*data, verbose=False)
    sync(model)
    return time.perf_counter() - start
fit()
print(statistics.median(fit() for _ in range(3)))
"""


def _chapter_child(root: str, backend: str) -> float:
    env = {**os.environ, "PYTHONPATH": root}
    done = subprocess.run([sys.executable, "-c", _CHAPTER_CHILD, backend], capture_output=True,
                          text=True, check=True, env=env, timeout=900, cwd=root)
    return float(done.stdout.strip().splitlines()[-1])


# -- the table --------------------------------------------------------------------------------------
def table(samples: dict[Case, list[float]], rates: dict[str, float], calls: float | None) -> list[str]:
    lines = []
    for name, work in WORKLOADS.items():
        cases = [case for case in samples if case.workload == name]
        if not cases:
            continue
        flops, moved = work_of(name)
        limit = max(flops / rates["matmul_flops"], moved / rates["copy_bytes"])
        lines.append(f"\n{name}: one {work.unit()}, {work.dtype}; {flops / 1e9:.3g} GFLOP, "
                     f"{moved / 2**20:.4g} MiB moved: limit {_time(limit)}"
                     + (f"; {calls:g} array calls per step" if calls and name == "chapter" else ""))
        torch_case = next((c for c in cases if c.impl == "torch" and c.threads == REFERENCE_THREADS), None)
        loops = next((c for c in cases if c.impl == "loops"), None)
        lines.append(f"  {'':30s} {'median':>9s} {'min-max':>19s} {'vs torch':>9s} "
                     f"{'vs loops':>9s} {'of limit':>8s} {'faults':>8s} {'result':>10s}")
        for case in cases:
            times = samples[case]
            row = (f"  {case.label:30s} {_time(statistics.median(times)):>9s} "
                   f"{_time(min(times)) + '-' + _time(max(times)):>19s} "
                   f"{_ratio(samples, torch_case, case):>9s} {_ratio(samples, loops, case):>9s} "
                   f"{limit / statistics.median(times):>8.0%} "
                   f"{statistics.median(FAULTS.get(case, [0])):>8.0f} {RESULTS.get(case, math.nan):>10.5g}")
            lines.append(row)
        if name == "chapter" and calls:
            floor = calls * rates["cheapest_call_s"] * (180 // 18) * work.epochs
            lines.append(f"  call-bound floor: {calls:g} calls x {rates['cheapest_call_s'] * 1e6:.2f} us "
                         f"x 800 steps = {_time(floor)} (steps only)")
    return lines


def _ratio(samples: dict[Case, list[float]], base: Case | None, case: Case) -> str:
    """Median over rounds of base time / case time ("" where there is no base)."""
    if base is None or base == case or case.impl in ("torch", "loops"):
        return ""
    return f"{statistics.median(b / c for b, c in zip(samples[base], samples[case])):.2f}x"


def _spread(times: list[float]) -> str:
    return f"{_time(statistics.median(times))} ({_time(min(times))}-{_time(max(times))})"


def _time(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.3f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated")
    parser.add_argument("--backends", default=",".join(n for n in NAMES if n != "array_api_strict"),
                        help="comma-separated (default: every usable one but array_api_strict)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--processes", type=int, default=0,
                        help="also run the 28x28 step in this many fresh processes")
    parser.add_argument("--baseline", metavar="DIR", help="another checkout to time the chapter fit of")
    parser.add_argument("--baseline-backends", default="numpy,jax")
    parser.add_argument("--json", metavar="FILE", help="write the samples here")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: one round of the step and the chapter fit on NumPy")
    args = parser.parse_args(argv)
    workloads = ["step28", "chapter"] if args.quick else args.workloads.split(",")
    names = ["numpy"] if args.quick else args.backends.split(",")
    repeats = 1 if args.quick else args.repeats
    skipped = {name: usable(name) for name in names}
    backends = [name for name in names if skipped[name] is None]
    have_torch = usable("torch") is None
    cases = []
    for name in workloads:
        if WORKLOADS[name].epochs > 1 and args.quick:
            WORKLOADS[name] = replace(WORKLOADS[name], epochs=2)
        cases += [Case(name, impl, b) for b in backends for impl in ENTRIES]
        if have_torch:
            cases += [Case(name, "torch", "torch", threads) for threads in (REFERENCE_THREADS, 1)]
        if name == "chapter":
            cases.append(Case(name, "loops", "numpy"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus; numpy {np.__version__}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    for name, reason in skipped.items():
        if reason:
            print(f"backend {name} skipped: {reason}")
    rates = machine_rates()
    print(f"limits: float32 matmul {rates['matmul_flops'] / 1e9:.1f} GFLOP/s, copy "
          f"{rates['copy_bytes'] / 1e9:.1f} GB/s, cheapest array call "
          f"{rates['cheapest_call_s'] * 1e6:.2f} us ({os.cpu_count()} cpus)")
    calls = None
    if "chapter" in workloads and usable("array_api_strict") is None:
        from .calls import per_step
        counts = per_step(lambda: tc.TinyCNN(seed=42))
        calls = counts["function"] + counts["operator"]
    samples = time_cases(cases, repeats)
    for line in table(samples, rates, calls):
        print(line)
    result: dict[str, Any] = {"samples": {f"{c.workload}/{c.label}": v for c, v in samples.items()},
                              "rates": rates}
    if args.processes:
        print(f"\n28x28 step in {args.processes} fresh processes: first steps / warm steps (faults per step)")
        for backend, impl in [(b, i) for b in backends for i in ENTRIES] + (
                [("torch", "torch")] if have_torch else []):  # the last: PyTorch eager
            rows = step_processes(backend, impl, args.processes)
            result[f"processes/{backend} {impl}"] = rows
            label = "torch eager" if impl == "torch" else f"{backend} {impl}"
            print(f"  {label:20s} " + "   ".join(
                f"{kind} {_spread([r[kind + '_s'] for r in rows])}, "
                f"{statistics.median(r[kind + '_faults'] for r in rows):.0f} faults"
                for kind in ("fresh", "warm")))
    if args.baseline:
        print(f"\nchapter fit, this checkout against {args.baseline} (alternating child processes)")
        rows = baseline_rows(args.baseline, args.baseline_backends.split(","), 3)
        result["baseline"] = rows
        for row in rows:
            print(f"  {row['backend']:8s} this {_time(row['this_s'])}  baseline {_time(row['baseline_s'])}"
                  f"  ({row['baseline_s'] / row['this_s']:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
