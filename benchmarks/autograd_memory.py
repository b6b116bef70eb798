"""``python -m benchmarks.autograd_memory [--epochs 150] [--every 50]``: memory over epochs when the
training data are torch tensors that autograd tracks (``requires_grad=True``).

Trains ``TinyCNN(seed=42)`` on the chapter's data (torch, CPU, float64) in ``fit`` calls of
``--every`` epochs (resumed with ``initial_epoch``, as one run), and prints the process's resident
memory (``/proc/self/statm``, Linux) after each, and whether the parameters were pulled into an
autograd graph. If they are, every step's graph hangs on the last one and memory grows with the
epochs (issue 12 measured about 115 MB per 50 epochs); inputs taken as data keep it flat. Uses the
public API only, so ``PYTHONPATH`` can point it at any version of tinycnn_xp.
"""

from __future__ import annotations

import argparse
import json
import os


def resident_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--every", type=int, default=50)
    args = parser.parse_args(argv)
    import torch

    import tinycnn_xp as tc
    torch.set_num_threads(1)
    x_train, y_train, x_val, y_val, _ = tc.make_dataset_bundle()
    data = [torch.asarray(x_train).requires_grad_(True), torch.asarray(y_train),
            torch.asarray(x_val).requires_grad_(True), torch.asarray(y_val)]
    model = tc.TinyCNN(seed=42)
    rows = [{"epochs": 0, "rss_mib": round(resident_mib(), 1)}]
    for done in range(0, args.epochs, args.every):
        model.fit(*data, epochs=min(done + args.every, args.epochs), initial_epoch=done,
                  verbose=False)
        weights = model.conv.weights
        rows.append({"epochs": min(done + args.every, args.epochs),
                     "rss_mib": round(resident_mib(), 1),
                     "weights_tracked": bool(weights.requires_grad or weights.grad_fn is not None)})
        print(json.dumps(rows[-1]), flush=True)
    growth = (rows[-1]["rss_mib"] - rows[1]["rss_mib"]) / max(1, len(rows) - 2)
    print(json.dumps({"library": tc.__file__, "mib_per_chunk_after_the_first": round(growth, 1)}))


if __name__ == "__main__":
    main()
