"""``python -m benchmarks.jax_cache`` (from the repository root): memory of JAX's compiled
functions as one process trains many architectures, then one architecture on many training-set
sizes. Prints the resident set size after each fit (MiB). Run it from another checkout's folder
(``cd old && python -m benchmarks.jax_cache``, with this file copied there) to compare.

    python -m benchmarks.jax_cache --architectures 100 --sizes 40
"""

from __future__ import annotations

import argparse
import os
import sys


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--architectures", type=int, default=100)
    parser.add_argument("--sizes", type=int, default=40)
    args = parser.parse_args(argv)
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import tinycnn_xp as tc
    x, y, xv, yv = tc.make_dataset_bundle(train_per_class=20, val_per_class=5)[:4]
    put = jnp.asarray
    print(f"library {tc.__file__}; start {rss_mib():.0f} MiB", flush=True)
    for k in range(args.architectures):  # distinct architectures: hidden Dense widths
        model = tc.Sequential([tc.Conv2D(1, 2, 3), tc.ReLU(), tc.MaxPool2D(2), tc.Flatten(),
                               tc.Dense(18, 4 + k), tc.ReLU(), tc.Dense(4 + k, 3)], seed=k)
        model.fit(put(x), put(y), put(xv), put(yv), epochs=1, batch_size=16, verbose=False)
        if (k + 1) % 10 == 0:
            print(f"{k + 1:4d} architectures: {rss_mib():.0f} MiB", flush=True)
    start = rss_mib()
    for k in range(args.sizes):  # one architecture, training sets of 20 .. 20 + sizes - 1 images
        n = 20 + k
        tc.TinyCNN(seed=0).fit(put(x[:n]), put(y[:n]), put(xv), put(yv), epochs=1, batch_size=8,
                               verbose=False)
        if (k + 1) % 10 == 0:
            print(f"{k + 1:4d} training-set sizes: {rss_mib():.0f} MiB (+{rss_mib() - start:.0f})",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
