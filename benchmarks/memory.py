"""``python benchmarks/memory.py`` (``nox -s memory``): peak memory and time per image of ``fit`` and
``predict`` as the dataset grows (issue 10: memory bounded by the batch, not by the dataset).

Workload: random 28x28 float32 images (values in [0, 1)), 10 classes, ``Conv2D(1->16, 3x3) -> ReLU
-> MaxPool2D(2) -> Flatten -> Dense(2704->10)``; ``fit`` is 1 epoch, batch 64, lr 0.01, seed 0, with
``n // 5`` validation images (the epoch-end metrics cover all n training and n // 5 validation
images); ``predict`` runs on the n training images. Backends: numpy, torch (CPU tensors made with
``torch.asarray``, used through array_api_compat, ``torch.set_num_threads(2)`` by default) and,
optionally, jax (CPU, float32).

Every (call, backend, n) runs in its own fresh Python process: it builds the data and the model,
warms the call up on a few images with another model, then measures the call: the peak resident
set size added during it (the kernel's high-water mark, reset by writing 5 to
``/proc/self/clear_refs``, read from ``VmHWM`` in ``/proc/self/status``, minus the RSS just before
the call) and its wall time per image (n images: the training images for ``fit``). The call is
repeated ``--repeats`` times in that process; the memory is the first call's (a user's first
call), the time per image the median over the calls.

The bound of issue 10 is ``2 * data + 400 MiB``, data being the arrays passed in (``fit``: training
and validation images and labels; ``predict``: the images); the time target is a time per image at
24,000 images within 1.3x of that at 4,000 (the ``/ smallest`` column: each row's time per image
over that of the smallest n of the same call, backend and chunk size in the run).

Only the public API present before and after issue 10 is used, so one script measures both: the
code measured is the ``tinycnn_xp`` package in ``--code`` (a directory holding it), put first on
the children's path; without ``--code``, the one this Python imports (run as
``python -m benchmarks.memory`` from a checkout: that checkout; run by its path: the installed
package, which an editable install may take from another checkout, so pass ``--code``). The
children check that they imported it. Results go to a JSON file; ``--compare a.json b.json``
prints saved runs side by side. ``--eval-batch-sizes`` passes ``eval_batch_size`` (code after
issue 10 only) to measure the chunk size.

On a shared machine the per-process times drift with the load (the ``cpu/wall`` and ``load 1m``
columns show it); ``--interleave ROUNDS`` measures time only, one process per backend timing every
(call, n, chunk) round-robin, so the ratios stay fair.

    git worktree add ../before 6fb968b      # the code before the redesign and issue 10
    python benchmarks/memory.py --code ../before --code-label before --json memory-before.json
    python benchmarks/memory.py --code . --code-label after --json memory-after.json
    python benchmarks/memory.py --compare memory-before.json memory-after.json
    python benchmarks/memory.py --code . --interleave 5 --json times-after.json
    python benchmarks/memory.py --code . --what predict --backends numpy --sizes 24000 \\
        --repeats 5 --eval-batch-sizes 128,256,512,1024,2048,4096,24000 --json chunks.json
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MiB = 2**20
SIZE, FILTERS, KERNEL, POOL, CLASSES = 28, 16, 3, 2, 10
FIT = {"epochs": 1, "batch_size": 64, "lr": 0.01, "seed": 0}
VAL_DIVISOR = 5          # n // 5 validation images
WARM_UP_IMAGES = 160     # 2.5 batches of 64, and 32 validation images
BOUND_FACTOR, BOUND_SLACK = 2, 400 * MiB
TIME_TARGET = 1.3        # time per image at the largest size over the smallest
SIZES, QUICK_SIZES = (4000, 24000, 60000), (200, 1200)
WHATS, BACKENDS = ("fit", "predict"), ("numpy", "torch", "jax")
MARK = "MEMORY-RESULT "  # the child's result line


# -- the child: one (call, backend, n) in a fresh process ----------------------------------------
def _images(n: int, seed: int) -> tuple[Any, Any]:
    import numpy as np
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, SIZE, SIZE), dtype=np.float32), rng.integers(0, CLASSES, n)


def _model(tc: Any) -> Any:
    flat = FILTERS * ((SIZE - KERNEL + 1) // POOL) ** 2  # 16 * 13 * 13 = 2704
    return tc.Sequential([tc.Conv2D(1, FILTERS, KERNEL), tc.ReLU(), tc.MaxPool2D(POOL), tc.Flatten(),
                          tc.Dense(flat, CLASSES)], seed=FIT["seed"])


def _placer(backend: str, threads: int) -> tuple[Any, Any]:
    """How host arrays become the backend's arrays, and how to wait for a result."""
    if backend == "torch":
        import torch
        torch.set_num_threads(threads)
        return torch.asarray, lambda result: None  # shares the NumPy buffer; CPU ops are synchronous
    if backend == "jax":
        import jax
        import jax.numpy as jnp
        return jnp.asarray, jax.block_until_ready
    return (lambda a: a), (lambda result: None)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the high-water mark of the RSS becomes the current RSS
        return True
    except OSError:
        return False


def _peak(reset: bool) -> int:
    if reset:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # since the start: an upper bound


def _child(spec: dict) -> dict:
    import tinycnn_xp as tc
    put, wait = _placer(spec["backend"], spec["torch_threads"])
    kwargs = {} if spec["eval_batch_size"] is None else {"eval_batch_size": spec["eval_batch_size"]}

    def prepare(n: int, seed: int) -> tuple[Any, int]:
        """A fresh model and the call to measure on n images; the bytes of the data it is given."""
        x, y = _images(n, seed)
        if spec["what"] == "predict":
            data, xd = x.nbytes, put(x)
            del x, y
            return (lambda model: model.predict(xd, **kwargs)), data
        xv, yv = _images(n // VAL_DIVISOR, seed + 1)
        data = x.nbytes + y.nbytes + xv.nbytes + yv.nbytes
        xd, yd, xvd, yvd = put(x), put(y), put(xv), put(yv)
        del x, y, xv, yv
        return (lambda model: model.fit(xd, yd, xvd, yvd, verbose=False, **FIT, **kwargs)), data

    warm_call, _ = prepare(WARM_UP_IMAGES, 100)  # imports, kernels, BLAS threads, code paths
    wait(warm_call(_model(tc)))
    del warm_call
    call, data = prepare(spec["n"], 0)
    model = _model(tc)
    calls = []
    for _ in range(spec["repeats"]):
        gc.collect()
        before = _rss()
        reset = _reset_peak()
        cpu, start = time.process_time(), time.perf_counter()
        result = call(model)
        wait(result)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        peak = _peak(reset)
        del result
        calls.append({"seconds": seconds, "cpu_seconds": cpu, "rss_before_bytes": before,
                      "peak_added_bytes": peak - before, "hwm_reset": reset})
    return {"data_bytes": data, "calls": calls, "library": tc.__file__,
            "load_average_end": list(os.getloadavg())}


def _interleaved_child(spec: dict) -> dict:
    """Timing only: every (call, n, chunk) of one backend, round-robin in this process.

    The data is made once at the largest n and sliced; the rounds alternate their direction, so a
    change in the machine's load hits every case alike and the ratios stay fair.
    """
    import tinycnn_xp as tc
    put, wait = _placer(spec["backend"], spec["torch_threads"])
    largest = max(spec["sizes"])
    x, y = _images(largest, 0)
    xv, yv = _images(largest // VAL_DIVISOR, 1)
    x, y, xv, yv = put(x), put(y), put(xv), put(yv)
    model = _model(tc)
    cases = [(what, n, chunk) for what in spec["whats"] for chunk in spec["chunks"] for n in spec["sizes"]]

    def call(what: str, n: int, chunk: int | None) -> Any:
        kwargs = {} if chunk is None else {"eval_batch_size": chunk}
        if what == "predict":
            return model.predict(x[:n, ...], **kwargs)
        v = n // VAL_DIVISOR
        return model.fit(x[:n, ...], y[:n], xv[:v, ...], yv[:v], verbose=False, **FIT, **kwargs)

    for what, _, chunk in cases:
        wait(call(what, WARM_UP_IMAGES, chunk))
    seconds: list[list[float]] = [[] for _ in cases]
    for round_ in range(spec["rounds"]):
        for i in (range(len(cases)) if round_ % 2 == 0 else reversed(range(len(cases)))):
            gc.collect()
            start = time.perf_counter()
            wait(call(*cases[i]))
            seconds[i].append(time.perf_counter() - start)
    return {"cases": [{"what": what, "n": n, "eval_batch_size": chunk, "seconds": s}
                      for (what, n, chunk), s in zip(cases, seconds)],
            "library": tc.__file__, "load_average_end": list(os.getloadavg())}


# -- the parent: one child per case, watched, then the table --------------------------------------
def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))


def _child_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0


def _spawn(spec: dict, code: Path, limit: int, timeout: float) -> dict:
    """Run ``spec`` in a fresh process; stop it if its RSS passes ``limit`` bytes. Its result, with
    ``error`` where there is none."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(code), os.environ.get("PYTHONPATH")) if p)}
    load = list(os.getloadavg())
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    start, highest, killed = time.monotonic(), 0, None
    while proc.poll() is None:
        highest = max(highest, _child_rss(proc.pid))
        if highest > limit:
            killed = f"stopped: RSS over the limit of {limit / 2**30:.1f} GiB"
        elif time.monotonic() - start > timeout:
            killed = f"stopped: over {timeout:.0f} s"
        if killed:
            proc.kill()
            break
        time.sleep(0.05)
    out, err = proc.communicate()
    lines = [line for line in out.splitlines() if line.startswith(MARK)]
    if killed or proc.returncode != 0 or not lines:
        last = (err.strip().splitlines() or ["no message"])[-1]
        return {"load_average_start": load,
                "error": killed or f"child failed (exit {proc.returncode}): {last}"}
    found = json.loads(lines[-1][len(MARK):])
    if Path(found["library"]).resolve().parent != code / "tinycnn_xp":  # the code asked for?
        return {"load_average_start": load, "error": f"measured {found['library']}, not {code}"}
    return {**found, "load_average_start": load}


def _run_case(spec: dict, code: Path, limit: int, timeout: float) -> dict:
    """One table row: one call in a fresh process, its memory and time per image."""
    row = {**spec, **_spawn(spec, code, limit, timeout)}
    if "error" in row:
        return row
    first = row["calls"][0]
    row["peak_added_bytes"] = first["peak_added_bytes"]
    row["seconds_per_image"] = statistics.median(c["seconds"] for c in row["calls"]) / spec["n"]
    row["best_seconds_per_image"] = min(c["seconds"] for c in row["calls"]) / spec["n"]
    row["cpu_per_wall"] = statistics.median(c["cpu_seconds"] / c["seconds"] for c in row["calls"])
    row["bound_bytes"] = BOUND_FACTOR * row["data_bytes"] + BOUND_SLACK
    row["within_bound"] = row["peak_added_bytes"] <= row["bound_bytes"]
    return row


def _ratios(rows: list[dict]) -> None:
    """Each row's time per image over that of the smallest n of its (call, backend, chunk)."""
    groups: dict = {}
    for row in rows:
        if "seconds_per_image" in row:
            groups.setdefault((row["what"], row["backend"], row["eval_batch_size"]), []).append(row)
    for group in groups.values():
        smallest = min(group, key=lambda r: r["n"])
        for row in group:
            row["vs_smallest_n"] = smallest["n"]
            row["time_ratio"] = row["seconds_per_image"] / smallest["seconds_per_image"]
            row["best_ratio"] = row["best_seconds_per_image"] / smallest["best_seconds_per_image"]


def _git(code: Path) -> str | None:
    try:
        rev = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "--", "tinycnn_xp"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return rev + ("+dirty" if dirty else "")


def _machine(torch_threads: int) -> dict:
    info: dict = {"platform": platform.platform(), "python": platform.python_version(),
                  "cpu_count": os.cpu_count(), "mem_total_gib": None,
                  "load_average_start": list(os.getloadavg()), "torch_threads": torch_threads}
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    with open("/proc/meminfo") as f:
        info["mem_total_gib"] = int(f.readline().split()[1]) / 2**20
    for name in ("numpy", "torch", "jax", "array_api_compat"):
        spec = importlib.util.find_spec(name)
        if spec is not None:
            from importlib.metadata import PackageNotFoundError, version
            try:
                info[name] = version(name)
            except PackageNotFoundError:
                info[name] = "?"
    try:
        import numpy  # noqa: F401  (loads its BLAS so threadpoolctl sees it)
        import threadpoolctl
        info["numpy_blas"] = [{k: p.get(k) for k in ("internal_api", "num_threads")}
                              for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
    except ImportError:
        info["numpy_blas"] = None
    return info


def _mib(n: float | None) -> str:
    return "-" if n is None else f"{n / MiB:,.0f}"


def _key(row: dict) -> tuple:
    return row["what"], row["backend"], row["n"], row["eval_batch_size"]


def _ratio(row: dict) -> str:
    return "1" if row["n"] == row["vs_smallest_n"] else f"{row['time_ratio']:.2f}x"


def _table(rows: list[dict], label: str) -> str:
    sweep = any(r["eval_batch_size"] is not None for r in rows)
    head = (f"{'code':<10}{'call':<9}{'backend':<9}{'n':>8}" + (f"{'eval batch':>11}" if sweep else "")
            + f"{'data MiB':>10}{'peak+ MiB':>11}{'bound MiB':>11}{'within':>8}{'ms/image':>10}"
            + f"{'best':>8}{'/ smallest':>11}{'cpu/wall':>9}{'load 1m':>9}")
    lines = [head]
    for r in rows:
        start = (f"{label:<10}{r['what']:<9}{r['backend']:<9}{r['n']:>8}"
                 + (f"{r['eval_batch_size'] or 'default':>11}" if sweep else ""))
        if "error" in r:
            lines.append(f"{start}  {r['error']}")
            continue
        lines.append(f"{start}{_mib(r['data_bytes']):>10}{_mib(r['peak_added_bytes']):>11}"
                     f"{_mib(r['bound_bytes']):>11}{'yes' if r['within_bound'] else 'NO':>8}"
                     f"{r['seconds_per_image'] * 1e3:>10.4f}{r['best_seconds_per_image'] * 1e3:>8.4f}"
                     f"{_ratio(r):>11}{r['cpu_per_wall']:>9.2f}{r['load_average_start'][0]:>9.2f}")
    return "\n".join(lines)


LEGEND = ("peak+: peak RSS added by the first call, MiB (VmHWM reset); bound: 2 * data + 400 MiB; "
          "ms/image: median call time / n (best: the fastest call); / smallest: ms/image over that "
          f"of the run's smallest n (target at 24k vs 4k: <= {TIME_TARGET}x); cpu/wall: process CPU "
          "time over wall time of the call (2 = both cores busy; well under the thread count: the "
          "machine was shared); load 1m: the 1-minute load average when the process started")


def _notes(result: dict) -> str:
    m = result["machine"]
    return "\n".join([
        f"code: {result['code_label']} = {result['library']} (git {result['git']})",
        f"machine: {m.get('cpus_usable', m['cpu_count'])} usable CPUs, "
        f"{m['mem_total_gib']:.0f} GiB; load average {m['load_average_start'][0]:.2f} at start, "
        f"{result['load_average_end'][0]:.2f} at end; torch threads {m['torch_threads']}; "
        f"NumPy BLAS {m['numpy_blas'] or 'unknown (no threadpoolctl)'}",
        f"fit: {FIT['epochs']} epoch, batch {FIT['batch_size']}, lr {FIT['lr']}, n // {VAL_DIVISOR} "
        f"validation images; predict: on the n images; {result['repeats']} call(s) per process",
        LEGEND,
    ])


def _compare(paths: list[str]) -> str:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    keys = list(dict.fromkeys(_key(r) for run in runs for r in run["rows"]))
    head = f"{'call':<9}{'backend':<9}{'n':>7}{'eval batch':>11}{'data MiB':>10}{'bound MiB':>11}"
    for run in runs:
        head += f" | {run['code_label'][:14] + ' peak+':>20}{'ms/image':>10}{'best':>8}{'/ smallest':>11}"
    lines = [head]
    for key in keys:
        found = [next((r for r in run["rows"] if _key(r) == key), None) for run in runs]
        first = next((r for r in found if r and "data_bytes" in r), {})
        what, backend, n, chunk = key
        line = (f"{what:<9}{backend:<9}{n:>7}{chunk or 'default':>11}"
                f"{_mib(first.get('data_bytes')):>10}{_mib(first.get('bound_bytes')):>11}")
        for r in found:
            if r is None or "error" in r:
                line += f" | {(r or {}).get('error', 'not run')[:48]:>49}"
                continue
            best = min(c["seconds"] for c in r["calls"]) / r["n"] if "calls" in r else \
                r["best_seconds_per_image"]  # interleaved runs: no memory figures
            peak = _mib(r.get("peak_added_bytes")) + ("" if r.get("within_bound", True) else " OVER")
            line += (f" | {peak:>20}{r['seconds_per_image'] * 1e3:>10.4f}"
                     f"{best * 1e3:>8.4f}{_ratio(r):>11}")
        lines.append(line)
    loads = ", ".join(f"{run['code_label']}: {run['machine']['load_average_start'][0]:.2f} -> "
                      f"{run['load_average_end'][0]:.2f}" for run in runs)
    lines += ["", f"load average (1 min) at start -> end: {loads}", "OVER: above the bound. " + LEGEND]
    return "\n".join(lines)


def _interleave(args: argparse.Namespace, label: str, code: Path, git: str | None, machine: dict,
                whats: list, backends: list, sizes: list, chunks: list) -> int:
    """``--interleave``: per backend, one process times every case round-robin."""
    rows = []
    for backend in backends:
        spec = {"interleave": True, "backend": backend, "whats": whats, "sizes": sizes, "chunks": chunks,
                "rounds": args.interleave, "torch_threads": args.torch_threads}
        limit = int(args.max_gib * 2**30) if args.max_gib else _mem_available() - 2 * 2**30
        print(f"{label}: {backend}, {args.interleave} interleaved rounds ...", file=sys.stderr, flush=True)
        found = _spawn(spec, code, limit, args.timeout)
        if "error" in found:
            rows += [{"what": what, "backend": backend, "n": n, "eval_batch_size": chunk, **found}
                     for what in whats for chunk in chunks for n in sizes]
            continue
        for case in found["cases"]:
            rows.append({**case, "backend": backend, "load_average_start": found["load_average_start"],
                         "seconds_per_image": statistics.median(case["seconds"]) / case["n"],
                         "best_seconds_per_image": min(case["seconds"]) / case["n"]})
    _ratios(rows)
    lines = [f"{'code':<10}{'call':<9}{'backend':<9}{'n':>8}{'eval batch':>11}{'ms/image':>10}{'best':>8}"
             f"{'/ smallest':>11}{'(best)':>8}"]
    for r in rows:
        start = (f"{label[:9]:<10}{r['what']:<9}{r['backend']:<9}{r['n']:>8}"
                 f"{r['eval_batch_size'] or 'default':>11}")
        if "error" in r:
            lines.append(f"{start}  {r['error']}")
            continue
        best = "1" if r["n"] == r["vs_smallest_n"] else f"{r['best_ratio']:.2f}x"
        lines.append(f"{start}{r['seconds_per_image'] * 1e3:>10.4f}{r['best_seconds_per_image'] * 1e3:>8.4f}"
                     f"{_ratio(r):>11}{best:>8}")
    print("\n".join(lines))
    print(f"\ncode: {label} = {code / 'tinycnn_xp'} (git {git}); load average "
          f"{machine['load_average_start'][0]:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
          f"{args.interleave} rounds, round-robin in one process per backend (directions alternate); "
          "ms/image: median over the rounds, best: the fastest; / smallest: over the smallest n's "
          "(median, best)")
    result = {"mode": "interleave", "code_label": label, "library": str(code / "tinycnn_xp"), "git": git,
              "machine": machine, "load_average_end": list(os.getloadavg()), "rounds": args.interleave,
              "rows": rows}
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"written to {args.json}")
    return 1 if any("error" in row for row in rows) else 0


def _csv(text: str, kind: type) -> list:
    return [kind(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", default=None, help="directory holding the tinycnn_xp package to "
                        "measure (default: the one this Python imports)")
    parser.add_argument("--code-label", default=None, help="name of this run in the table and in "
                        "--compare (default: the code directory's name and git commit)")
    parser.add_argument("--json", default="memory.json", help="where to write the results")
    parser.add_argument("--what", default="fit,predict", help="calls to measure: fit,predict")
    parser.add_argument("--backends", default="numpy,torch", help="comma-separated, of numpy,torch,jax")
    parser.add_argument("--sizes", default=None, help=f"comma-separated image counts (default "
                        f"{','.join(map(str, SIZES))})")
    parser.add_argument("--repeats", type=int, default=3, help="calls per process (memory: the first; "
                        "time: the median); default 3")
    parser.add_argument("--eval-batch-sizes", default=None, help="comma-separated eval_batch_size "
                        "values, one process each (code after issue 10 only); default: not passed")
    parser.add_argument("--torch-threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--max-gib", type=float, default=None, help="stop a child whose RSS passes "
                        "this (default: MemAvailable minus 2 GiB, checked before each child)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per child (default 1800)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: sizes {QUICK_SIZES}, one call")
    parser.add_argument("--interleave", type=int, default=0, metavar="ROUNDS", help="timing only, "
                        "for a shared machine: per backend, one process times every (call, n, chunk) "
                        "round-robin for ROUNDS rounds (no memory figures)")
    parser.add_argument("--compare", nargs="+", metavar="JSON", help="print saved runs side by side")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(MARK + json.dumps((_interleaved_child if spec.get("interleave") else _child)(spec)), flush=True)
        return 0
    if args.compare:
        print(_compare(args.compare))
        return 0

    if not Path("/proc/self/statm").is_file():
        parser.error("the peak RSS is read from /proc (Linux only)")
    whats, backends = _csv(args.what, str), _csv(args.backends, str)
    if not whats or set(whats) - set(WHATS) or not backends or set(backends) - set(BACKENDS):
        parser.error(f"--what takes {','.join(WHATS)}, --backends {','.join(BACKENDS)}")
    sizes = _csv(args.sizes, int) if args.sizes else list(QUICK_SIZES if args.quick else SIZES)
    chunks = _csv(args.eval_batch_sizes, int) if args.eval_batch_sizes else [None]
    repeats = 1 if args.quick else args.repeats
    if min(sizes) < 1 or min(repeats, args.torch_threads, args.interleave + 1) < 1 or any(
            c is not None and c < 1 for c in chunks):
        parser.error("sizes, --repeats, --torch-threads and --eval-batch-sizes must be >= 1")
    if args.code:
        code = Path(args.code).resolve()
    else:
        found = importlib.util.find_spec("tinycnn_xp")
        if found is None or found.origin is None:
            parser.error("tinycnn_xp is not importable: pass --code")
        code = Path(found.origin).resolve().parent.parent
    if not (code / "tinycnn_xp" / "__init__.py").is_file():
        parser.error(f"no tinycnn_xp package in {code}")
    git = _git(code)
    label = args.code_label or f"{code.name}@{git}"

    machine = _machine(args.torch_threads)
    if args.interleave:
        return _interleave(args, label, code, git, machine, whats, backends, sizes, chunks)
    rows = []
    for what in whats:
        for backend in backends:
            for chunk in chunks:
                for n in sizes:
                    spec = {"what": what, "backend": backend, "n": n, "eval_batch_size": chunk,
                            "repeats": repeats, "torch_threads": args.torch_threads}
                    limit = int(args.max_gib * 2**30) if args.max_gib else _mem_available() - 2 * 2**30
                    print(f"{label}: {what} {backend} n={n}" + (f" eval_batch_size={chunk}" if chunk else "")
                          + " ...", file=sys.stderr, flush=True)
                    rows.append(_run_case(spec, code, limit, args.timeout))
    _ratios(rows)
    result = {"code_label": label, "library": str(code / "tinycnn_xp"), "git": git,
              "machine": machine, "load_average_end": list(os.getloadavg()), "repeats": repeats,
              "quick": args.quick, "workload": {"size": SIZE, "filters": FILTERS, "kernel": KERNEL,
                                                "pool": POOL, "classes": CLASSES, **FIT,
                                                "validation": f"n // {VAL_DIVISOR}",
                                                "warm_up_images": WARM_UP_IMAGES},
              "bound": f"{BOUND_FACTOR} * data + {BOUND_SLACK // MiB} MiB", "rows": rows}
    print(_table(rows, label[:9]))
    print()
    print(_notes(result))
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"written to {args.json}")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
