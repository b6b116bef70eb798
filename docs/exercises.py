"""Reproduce every number in docs/exercises.md (the chapter's five exercises) on NumPy float64.

    python docs/exercises.py            # prints the numbers, writes docs/lr_sweep.png and
                                        # docs/four_class_filters.png (needs the `plot` extra)

Every run is deterministic: model seeds, data seed 7 and shuffle seed 0 as in the chapter, 80 epochs,
batch size 18. "Epoch" counts from 0, as fit's progress lines do: "first 100% at epoch 5" means
after the sixth pass over the training data. Runs in about 15 s on two cores.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

import tinycnn_xp as tc
from tinycnn_xp.sweep import learning_rate_sweep

HERE = Path(__file__).resolve().parent
EPOCHS = 80
SEEDS = (42, 0, 1, 2, 3, 4)  # 42 is the chapter's; the others show how much a result depends on it
FOUR = ("vertical", "horizontal", "diagonal", "dot")


def first_perfect(history: dict) -> int | None:
    """The first epoch whose validation accuracy is 100% (None if never)."""
    return next((epoch for epoch, acc in enumerate(history["val_acc"]) if acc == 1.0), None)


def describe(history: dict) -> str:
    return (f"first 100% val acc at epoch {first_perfect(history)}, "
            f"train loss at epoch 20 {history['train_loss'][20]:.4f}, "
            f"val loss at epoch 20 {history['val_loss'][20]:.4f}, "
            f"final val acc {history['val_acc'][-1]:.1%}, final train loss {history['train_loss'][-1]:.4f}")


def over_seeds(make, data, **fit_kwargs) -> str:
    """First-100% epoch and final val accuracy for every seed in SEEDS."""
    cells = []
    for seed in SEEDS:
        history = make(seed).fit(*data, epochs=EPOCHS, verbose=False, **fit_kwargs)
        cells.append(f"{seed}: {first_perfect(history)}/{history['val_acc'][-1]:.1%}")
    return "seed: first-100% epoch/final val acc  " + ", ".join(cells)


def tiny_with(pool: type, filters: int = 3, num_classes: int = 3, seed: int = 42) -> tc.Sequential:
    """TinyCNN with another pooling layer or number of filters (seeded like TinyCNN)."""
    return tc.Sequential([tc.Conv2D(1, filters, 3), tc.ReLU(), pool(2), tc.Flatten(),
                          tc.Dense(9 * filters, num_classes)], seed=seed,
                         names=["conv", "relu", "pool", "flatten", "dense"], input_shape=(1, 8, 8))


def pyplot():
    try:
        import matplotlib
    except ImportError:
        print("(figures skipped: matplotlib is missing; pip install 'tinycnn_xp[plot]')")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def exercise_1(data) -> None:
    print("\n== 24.1 momentum (TinyCNN seed 42) ==")
    for lr, beta in [(0.12, 0.0), (0.12, 0.9), (0.05, 0.9), (0.012, 0.9)]:
        history = tc.TinyCNN(seed=42).fit(*data, epochs=EPOCHS, lr=lr, momentum=beta, verbose=False)
        print(f"lr={lr:<5} momentum={beta}: {describe(history)}")
    print("plain SGD lr=0.12      ", over_seeds(lambda s: tc.TinyCNN(seed=s), data))
    print("momentum 0.9 lr=0.12   ", over_seeds(lambda s: tc.TinyCNN(seed=s), data, momentum=0.9))


def exercise_2(data, plt) -> None:
    print("\n== 24.2 learning rates (TinyCNN seed 42) ==")
    lrs = (0.01, 0.05, 0.12, 0.5, 1.0)
    histories = learning_rate_sweep(tc.TinyCNN(seed=42), *data, lrs=lrs, epochs=EPOCHS, verbose=False)
    for lr, history in histories.items():
        loss = history["train_loss"]
        print(f"lr={lr:<5}: train loss epoch 0/20/79 {loss[0]:.4f}/{loss[20]:.4f}/{loss[-1]:.4f}, "
              f"first 100% at epoch {first_perfect(history)}, final val acc {history['val_acc'][-1]:.1%}, "
              f"diverged: {history.get('diverged_epoch')}")
    # What happens at lr=1.0: the ReLUs die during the first epoch (watch one epoch batch by batch).
    model, x, y = tc.TinyCNN(seed=42), data[0], data[1]
    order = np.random.default_rng(0).permutation(x.shape[0])
    alive = []
    for start in range(0, x.shape[0], 18):
        batch = order[start:start + 18]
        model.loss_and_grad(x[batch], y[batch])
        model.step(1.0)
        alive.append(float(np.mean(model.conv.forward(x) > 0)))
    print("lr=1.0, epoch 0: fraction of positive conv outputs after each step",
          " ".join(f"{a:.2f}" for a in alive))
    final = tc.TinyCNN(seed=42)
    final.fit(*data, epochs=EPOCHS, lr=1.0, verbose=False)
    counts = np.bincount(final.predict(data[2]), minlength=3)
    print(f"lr=1.0 after {EPOCHS} epochs: predictions per class {counts.tolist()}, "
          f"ln 3 = {np.log(3):.4f}")
    for lr in (0.7, 0.8, 0.9):
        history = tc.TinyCNN(seed=42).fit(*data, epochs=EPOCHS, lr=lr, verbose=False)
        print(f"lr={lr}: final train loss {history['train_loss'][-1]:.4f}, "
              f"final val acc {history['val_acc'][-1]:.1%}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        huge = learning_rate_sweep(tc.TinyCNN(seed=42), *data, lrs=(0.12, 1e200), epochs=EPOCHS,
                                   verbose=False)
    message = next(str(w.message) for w in caught if "diverged" in str(w.message))
    print(f"lr=1e200: diverged_epoch={huge[1e200]['diverged_epoch']}; warning: {message}")
    print(f"          (lr=0.12 in the same sweep still ends at val acc {huge[0.12]['val_acc'][-1]:.1%})")
    if plt is not None:
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
        for lr, history in histories.items():
            ax.plot(history["train_loss"], label=f"lr = {lr}")
        ax.axhline(np.log(3), color="grey", linestyle=":", linewidth=1, label="ln 3 (chance)")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (mean over the epoch's batches)")
        ax.set_title("TinyCNN (seed 42), plain SGD, batch size 18")
        ax.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        fig.savefig(HERE / "lr_sweep.png")
        plt.close(fig)
        print("wrote docs/lr_sweep.png")


def exercise_3(data) -> None:
    print("\n== 24.3 the deeper model ==")
    deep = tc.deep_cnn(seed=42)
    print(f"deep_cnn parameters: {deep.parameter_count} (TinyCNN: {tc.TinyCNN().parameter_count})")
    print(f"deep_cnn seed 42: {describe(deep.fit(*data, epochs=EPOCHS, verbose=False))}")
    print(f"TinyCNN  seed 42: {describe(tc.TinyCNN(seed=42).fit(*data, epochs=EPOCHS, verbose=False))}")
    print("deep_cnn", over_seeds(lambda s: tc.deep_cnn(seed=s), data))


def exercise_4(data) -> None:
    print("\n== 24.4 average vs max pooling (TinyCNN layout, seed 42) ==")
    for pool in (tc.MaxPool2D, tc.AvgPool2D):
        history = tiny_with(pool).fit(*data, epochs=EPOCHS, verbose=False)
        print(f"{pool.__name__}: {describe(history)}")
    for pool in (tc.MaxPool2D, tc.AvgPool2D):
        print(f"{pool.__name__}", over_seeds(lambda s, pool=pool: tiny_with(pool, seed=s), data))


def exercise_5(plt) -> None:
    print("\n== 24.5 a fourth class, 'dot' ==")
    data = tc.make_dataset_bundle(class_names=FOUR)
    x_val, y_val = data[2], data[3]
    print(f"train {data[0].shape[0]} images, val {x_val.shape[0]}, val per class "
          f"{np.bincount(y_val).tolist()}")
    model = tc.TinyCNN(seed=42, num_classes=4)
    history = model.fit(*data[:4], epochs=EPOCHS, verbose=False)
    print(f"TinyCNN(num_classes=4) seed 42: final val acc {history['val_acc'][-1]:.1%}, "
          f"best {max(history['val_acc']):.1%}, final train loss {history['train_loss'][-1]:.4f}")
    confusion = np.zeros((4, 4), dtype=int)
    np.add.at(confusion, (y_val, model.predict(x_val)), 1)
    print("confusion (rows: true, columns: predicted):\n" + str(confusion))
    # How strongly each filter answers each class: its largest pooled response, averaged per class.
    pooled = model.pool.forward(model.relu.forward(model.conv.forward(x_val)))
    response = pooled.reshape(len(x_val), 3, -1).max(axis=2)
    for c, name in enumerate(FOUR):
        print(f"mean max response to {name:>10}: " + "  ".join(
            f"filter {k}: {v:5.2f}" for k, v in enumerate(response[y_val == c].mean(axis=0))))
    print("TinyCNN(num_classes=4)", over_seeds(lambda s: tc.TinyCNN(seed=s, num_classes=4), data[:4]))
    print("4 filters, Dense(36, 4)",
          over_seeds(lambda s: tiny_with(tc.MaxPool2D, 4, 4, seed=s), data[:4]))
    if plt is not None:
        figure_filters(plt, data, model, response, y_val)


def figure_filters(plt, data, model, response, y_val) -> None:
    fig, axes = plt.subplots(2, 4, figsize=(8.0, 4.4), dpi=100)
    x_train, y_train = data[0], data[1]
    for c, name in enumerate(FOUR):
        ax = axes[0, c]
        ax.imshow(x_train[np.flatnonzero(y_train == c)[0], 0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{name} (sample)", fontsize=9)
        ax.axis("off")
    weights = model.conv.weights[:, 0]
    limit = np.abs(weights).max()
    for k in range(3):
        ax = axes[1, k]
        image = ax.imshow(weights[k], cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"filter {k}", fontsize=9)
        ax.axis("off")
    fig.colorbar(image, ax=list(axes[1, :3]), shrink=0.8)
    ax = axes[1, 3]
    means = np.stack([response[y_val == c].mean(axis=0) for c in range(4)])  # (classes, filters)
    for k in range(3):
        ax.bar(np.arange(4) + (k - 1) * 0.27, means[:, k], width=0.27, label=f"filter {k}")
    ax.set_xticks(range(4), [name[:4] for name in FOUR], fontsize=8)
    ax.set_ylim(0, 1.4 * means.max())
    ax.set_title("mean max response", fontsize=9)
    ax.legend(fontsize=6, ncol=3, loc="upper center", handlelength=1, columnspacing=0.6)
    fig.suptitle("TinyCNN(num_classes=4), seed 42, after 80 epochs", fontsize=10)
    fig.savefig(HERE / "four_class_filters.png")
    plt.close(fig)
    print("wrote docs/four_class_filters.png")


def main() -> None:
    data = tc.make_dataset_bundle()[:4]
    plt = pyplot()
    exercise_1(data)
    exercise_2(data, plt)
    exercise_3(data)
    exercise_4(data)
    exercise_5(plt)


if __name__ == "__main__":
    main()
