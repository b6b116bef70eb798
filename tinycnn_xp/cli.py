"""Command line: ``tinycnn-xp train`` trains TinyCNN on the line patterns and reports the results."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import CLASS_NAMES, TinyCNN, make_dataset_bundle


def _train(args: argparse.Namespace) -> int:
    x_train, y_train, x_val, y_val, names = make_dataset_bundle()
    model = TinyCNN(seed=args.seed)
    print(f"backend: numpy   device: cpu   dtype: float64")
    print(f"TinyCNN: {model}  ({model.parameter_count} parameters)")
    start = time.perf_counter()
    history = model.fit(x_train, y_train, x_val, y_val, epochs=args.epochs, lr=args.lr,
                        batch_size=args.batch_size, seed=0, verbose=not args.quiet)
    seconds = time.perf_counter() - start
    preds = model.predict(x_val)
    confusion = np.zeros((len(names), len(names)), dtype=int)
    np.add.at(confusion, (y_val, preds), 1)
    print(f"\ntrained {args.epochs} epochs in {seconds:.2f} s")
    print(f"final train accuracy: {history['train_acc'][-1]:.1%}")
    print(f"final val accuracy:   {history['val_acc'][-1]:.1%}")
    print("per-class validation accuracy:")
    for i, name in enumerate(names):
        print(f"  {name:>12s}: {confusion[i, i]}/{confusion[i].sum()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tinycnn-xp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train TinyCNN on the line patterns")
    train.add_argument("--epochs", type=int, default=80)
    train.add_argument("--lr", type=float, default=0.12)
    train.add_argument("--batch-size", type=int, default=18)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    return _train(args)


if __name__ == "__main__":
    sys.exit(main())
