"""Array calls per training step: what a step costs wherever a call has a fixed price (a kernel
launch on a GPU, Python dispatch on the CPU), counted rather than timed.

A counting wrapper goes around array-api-strict (the same code path as every other backend):
every function of the namespace, every operator and method of its arrays, with indexing
(``__getitem__``) and views (``.T``, ``.mT``) counted apart. The count per step is the
difference between an epoch of 20 steps and one of 10, divided by 10, so what ``fit`` does
once per epoch (shuffle, metrics) is left out and what it does per step (slicing the batch) is in.

    python -m benchmarks.calls            # the chapter's TinyCNN, fit's step
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import tinycnn_xp as tc

#: Operators and methods of an array that compute something (one array call each).
OPERATORS = ("__abs__", "__add__", "__and__", "__eq__", "__floordiv__", "__ge__", "__gt__",
             "__invert__", "__le__", "__lshift__", "__lt__", "__matmul__", "__mod__", "__mul__",
             "__ne__", "__neg__", "__or__", "__pos__", "__pow__", "__radd__", "__rand__",
             "__rfloordiv__", "__rmatmul__", "__rmod__", "__rmul__", "__ror__", "__rpow__",
             "__rshift__", "__rsub__", "__rtruediv__", "__rxor__", "__sub__", "__truediv__",
             "__xor__", "__iadd__", "__isub__", "__imul__", "__itruediv__", "__iand__", "__ior__",
             "__ixor__", "__ipow__", "__imatmul__", "__ifloordiv__", "__imod__", "to_device")
INDEXING = ("__getitem__", "__setitem__")
VIEWS = ("T", "mT")


@contextlib.contextmanager
def counting(counts: Counter) -> Iterator[None]:
    """While active, every array call of array-api-strict adds one to ``counts[kind]``
    (``"function"``, ``"operator"``, ``"indexing"``, ``"view"``) and ``counts[name]``."""
    import array_api_strict as xs

    array_type = type(xs.asarray(0.0))
    saved: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, kind: str, prop: bool = False) -> None:
        original = owner.__dict__[name] if prop else getattr(owner, name)
        if prop:
            def getter(self: Any) -> Any:
                counts[kind] += 1
                counts[name] += 1
                return original.__get__(self)
            replacement: Any = property(getter)
        else:
            def replacement(*args: Any, **kwargs: Any) -> Any:
                counts[kind] += 1
                counts[name] += 1
                return original(*args, **kwargs)
        saved.append((owner, name, original))
        setattr(owner, name, replacement)

    for name in xs.__all__:
        if callable(getattr(xs, name)) and not isinstance(getattr(xs, name), type) \
                and name[0].islower() and name not in ("Device",):
            wrap(xs, name, "function")
    for name in OPERATORS:
        if hasattr(array_type, name):
            wrap(array_type, name, "operator")
    for name in INDEXING:
        wrap(array_type, name, "indexing")
    for name in VIEWS:
        wrap(array_type, name, "view", prop=True)
    try:
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def per_step(build: Callable[[], Any], momentum: float = 0.0) -> Counter:
    """Array calls per training step of ``build()`` on the chapter's data (float64, device1)."""
    import array_api_strict as xs

    device = xs.Device("device1")
    x, y, xv, yv = (xs.asarray(a, device=device) for a in tc.make_dataset_bundle()[:4])
    runs = []
    for batch in (18, 9):  # 10 and 20 steps per epoch
        model = build()
        model.forward(x[:1, ...])  # placement and index maps outside the count
        model.fit(x, y, xv, yv, epochs=1, batch_size=batch, verbose=False,
                  momentum=momentum)  # a warm-up: the index maps
        counts: Counter = Counter()
        with counting(counts):
            model.fit(x, y, xv, yv, epochs=1, batch_size=batch, verbose=False, momentum=momentum)
        runs.append(counts)
    return Counter({key: (runs[1][key] - runs[0][key]) / 10 for key in runs[1] | runs[0]})


def table(rows: dict[str, Counter]) -> str:
    kinds = ("function", "operator", "indexing", "view")
    lines = [f"{'':28s}{'calls':>7s}" + "".join(f"{k:>10s}" for k in kinds)]
    for label, counts in rows.items():
        calls = counts["function"] + counts["operator"]
        lines.append(f"{label:28s}{calls:7.1f}" + "".join(f"{counts[k]:10.1f}" for k in kinds))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=0, help="also list the N most frequent calls")
    args = parser.parse_args(argv)
    rows = {"TinyCNN": per_step(lambda: tc.TinyCNN(seed=42)),
            "TinyCNN, momentum 0.9": per_step(lambda: tc.TinyCNN(seed=42), momentum=0.9)}
    print("array calls per training step (calls = functions + operators; indexing and views "
          "apart), array-api-strict, batch 18")
    print(table(rows))
    if args.top:
        for label, counts in rows.items():
            names = [(n, c) for n, c in counts.most_common() if n not in
                     ("function", "operator", "indexing", "view")]
            print(f"{label}: " + ", ".join(f"{n} {c:g}" for n, c in names[:args.top]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
