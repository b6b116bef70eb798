"""``python -m benchmarks.sweep_speedup`` (from the repository root): a learning-rate sweep run
serially, then on ``--jobs`` joblib worker processes, cold and warm.

The issue's target: 4 learning rates x the vgg preset on the 8x8 digits, 10 epochs each (batch 32,
momentum 0.9, the digits' tuned settings for vgg), ``--jobs 2`` against serial on 2 cores, at
least 1.6x faster with worker start-up included.

* ``serial``: ``sweep(..., n_jobs=None)``, every run in this process.
* ``cold``: ``n_jobs=jobs`` on fresh workers: joblib's reusable loky workers are shut down first,
  so the time includes starting the processes, importing NumPy and tinycnn_xp there, and
  shipping the model and data.
* ``warm``: the same call again at once, on the workers the cold run left running.

An untimed one-epoch run in this process comes first (first-call costs are not the
sweep's). Each is timed ``--repeats`` times (a cold run starts from no workers every time); the table gives
the median and the speed-up of the medians, and every parallel run is checked to give the serial
run's histories bitwise. ``--quick`` is a smoke test (TinyCNN on the line patterns, 2 rates, 2
epochs, 1 repeat): it proves the script runs, not a speed-up. Run it on a quiet machine: other
load on the cores counts against the parallel runs. ``--json out.json`` keeps the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

import tinycnn_xp as tc
from tinycnn_xp.presets import make_model
from tinycnn_xp.sweep import sweep

TARGET = 1.6
FULL = {"model": "vgg", "dataset": "digits", "lrs": [0.005, 0.01, 0.02, 0.05], "epochs": 10,
        "batch_size": 32, "momentum": 0.9}
QUICK = {"model": "tiny", "dataset": "lines", "lrs": [0.05, 0.12], "epochs": 2, "batch_size": 18,
         "momentum": 0.0}


def load(dataset: str) -> tuple[list[Any], int]:
    if dataset == "digits":
        from tinycnn_xp.digits import load_digits_split
        *data, names = load_digits_split()
    else:
        *data, names = tc.make_dataset_bundle()
    return data, len(names)


def shut_down_workers() -> None:
    """No joblib worker left running: the next parallel call starts cold."""
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True, kill_workers=True)


def timed(call: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def same(records: list, reference: list) -> bool:
    return all(a["config"] == b["config"] and all(a["history"][k] == b["history"][k] for k in tc.METRICS)
               for a, b in zip(records, reference)) and len(records) == len(reference)


def largest_difference(records: list, reference: list) -> float:
    return max(abs(x - y) for a, b in zip(records, reference) for k in tc.METRICS
               for x, y in zip(a["history"][k], b["history"][k]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each kind (default: 3)")
    parser.add_argument("--epochs", type=int, help=f"epochs per rate (default: {FULL['epochs']})")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small model, data and sweep")
    parser.add_argument("--json", metavar="PATH", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    settings = dict(QUICK if args.quick else FULL)
    if args.epochs:
        settings["epochs"] = args.epochs
    repeats = 1 if args.quick else args.repeats
    data, classes = load(settings["dataset"])
    model = make_model(settings["model"], seed=42, num_classes=classes)
    fit = {"epochs": settings["epochs"], "batch_size": settings["batch_size"],
           "momentum": settings["momentum"]}
    grid = {"lr": settings["lrs"]}
    run = lambda n_jobs: sweep(model, *data, grid=grid, n_jobs=n_jobs, **fit)

    print(f"{len(grid['lr'])} learning rates x {settings['model']} on {settings['dataset']}, "
          f"{settings['epochs']} epochs each; --jobs {args.jobs} against serial; "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, {repeats} repeat(s)", flush=True)
    # First calls in this process (window maps, lazy imports) are not the sweep's: warm up here.
    sweep(model, *data, grid={"lr": grid["lr"][:1]}, **{**fit, "epochs": 1})
    times: dict[str, list[float]] = {"serial": [], "cold": [], "warm": []}
    identical, largest = True, 0.0
    reference = None
    for repeat in range(repeats):
        seconds, reference = timed(lambda: run(None))
        times["serial"].append(seconds)
        shut_down_workers()
        for kind in ("cold", "warm"):
            seconds, records = timed(lambda: run(args.jobs))
            times[kind].append(seconds)
            identical &= same(records, reference)
            largest = max(largest, largest_difference(records, reference))
        print(f"  repeat {repeat + 1}: " + ", ".join(f"{kind} {values[-1]:.2f} s"
                                                    for kind, values in times.items()), flush=True)
    shut_down_workers()
    median = {kind: statistics.median(values) for kind, values in times.items()}
    print(f"\n{'':8s}{'median':>9s}  speed-up")
    for kind in ("serial", "cold", "warm"):
        speedup = median["serial"] / median[kind]
        mark = ("" if kind == "serial" else "  >= target" if speedup >= TARGET
                else f"  below the {TARGET}x target")
        print(f"{kind:8s}{median[kind]:8.2f}s  {speedup:7.2f}x{mark}")
    print(f"parallel histories identical to the serial run: {identical} (largest difference "
          f"{largest:.1e}; workers run BLAS with cores/jobs threads, and a large matrix product "
          f"split over another number of threads may round its last bit differently)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"settings": settings, "jobs": args.jobs, "cpu_count": os.cpu_count(),
                       "times": times, "median": median,
                       "speedup": {k: median["serial"] / median[k] for k in ("cold", "warm")},
                       "identical": identical, "largest_difference": largest}, handle, indent=1)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
