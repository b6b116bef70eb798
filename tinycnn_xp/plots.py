"""The chapter's figures as PNG files: learning curves, filter evolution, confusion matrix, LR sweep.

Needs the optional extra ``plot`` (``pip install "tinycnn-xp[plot]"``). Figures are drawn with
matplotlib's object API on its Agg canvas (no pyplot, no display, no global state), in the
chapter's style: its palette, a warm background, a light grid. Each function returns the path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .history import History

__all__ = ["training_curves", "filter_evolution", "confusion_figure", "lr_sweep_figure",
           "confusion_counts"]

# The chapter's palette.
BLUE, GREEN, AMBER, RED, BURGUNDY = "#3b82f6", "#059669", "#d97706", "#dc2626", "#8c2f39"
_SWEEP_COLORS = (BLUE, GREEN, AMBER, RED, BURGUNDY, "#7c3aed", "#6b7280")  # 5 + purple, grey
_BACKGROUND = "#FAF8F0"
#: the most filters a filter-evolution figure shows (rows); the rest are left out, and said so.
MAX_FILTERS = 8


@contextlib.contextmanager
def _figure(**kwargs: Any) -> Iterator[Any]:
    """A new matplotlib ``Figure`` in the chapter's style; ImportError naming the extra if missing."""
    try:
        import matplotlib
        import matplotlib.style
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError('figures need matplotlib: pip install "tinycnn-xp[plot]"') from exc
    style = {"figure.facecolor": _BACKGROUND, "axes.facecolor": _BACKGROUND, "font.size": 11,
             "savefig.facecolor": _BACKGROUND}
    with matplotlib.style.context("seaborn-v0_8-whitegrid"), \
            matplotlib.rc_context(style):  # type: ignore[arg-type]  # stubs want literal keys
        yield Figure(layout="constrained", **kwargs)


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.2)  # no clipped tick labels
    return path


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(classes, classes)`` int matrix: row = true class, column = predicted class (host arrays)."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return counts


def training_curves(history: History, path: str | Path, num_classes: int | None = None,
                    title: str | None = None) -> Path:
    """Loss (left) and accuracy in % (right) per epoch, training solid and validation dashed.

    ``num_classes`` draws the chance level; a diverged run is marked at the epoch it stopped.
    """
    epochs = np.arange(len(history["train_loss"]))
    with _figure(figsize=(13, 5)) as fig:
        loss_ax, acc_ax = fig.subplots(1, 2)
        loss_ax.plot(epochs, history["train_loss"], linewidth=2, color=BLUE, label="Train loss")
        loss_ax.plot(epochs, history["val_loss"], linewidth=2, color=AMBER, linestyle="--",
                     label="Val loss")
        loss_ax.set(xlabel="Epoch", ylabel="Cross-Entropy Loss", title="Training and Validation Loss")
        acc_ax.plot(epochs, 100 * np.asarray(history["train_acc"]), linewidth=2, color=GREEN,
                    label="Train accuracy")
        acc_ax.plot(epochs, 100 * np.asarray(history["val_acc"]), linewidth=2, color=BURGUNDY,
                    linestyle="--", label="Val accuracy")
        if num_classes:
            acc_ax.axhline(100 / num_classes, color="gray", linestyle=":", alpha=0.7,
                           label=f"Chance ({100 / num_classes:.1f}%)")
        acc_ax.set(xlabel="Epoch", ylabel="Accuracy (%)", title="Training and Validation Accuracy",
                   ylim=(0, 105))
        if "diverged_epoch" in history:
            for ax in (loss_ax, acc_ax):
                ax.axvline(history["diverged_epoch"], color=RED, linestyle=":",
                           label=f"Diverged (epoch {history['diverged_epoch']})")
        loss_ax.legend()
        acc_ax.legend(loc="best")  # where it hides the fewest points of the curves
        for ax in (loss_ax, acc_ax):
            ax.grid(True, alpha=0.3)
        if title:
            fig.suptitle(title, fontsize=14, fontweight="bold")
        return _save(fig, path)


def filter_evolution(history: History, path: str | Path) -> Path:
    """The first convolution's filters (rows) at each snapshot epoch (columns), one diverging
    colour scale centred on zero for all of them."""
    snapshots = {int(epoch): np.asarray(k) for epoch, k in history["kernel_snapshots"].items()}
    if not snapshots:
        raise ValueError("history has no kernel snapshots to draw")
    epochs = sorted(snapshots)
    n_filters = next(iter(snapshots.values())).shape[0]
    shown = min(n_filters, MAX_FILTERS)
    vmax = max(float(np.abs(k[:shown, 0]).max()) for k in snapshots.values()) or 1.0
    cell = 2.2 if shown <= 4 else 1.4  # inches per filter image: many filters, smaller images
    with _figure(figsize=(cell * len(epochs) + 1.2, cell * shown + 0.8)) as fig:
        axes = np.asarray(fig.subplots(shown, len(epochs), squeeze=False))
        for col, epoch in enumerate(epochs):
            for f in range(shown):
                ax = axes[f, col]
                image = ax.imshow(snapshots[epoch][f, 0], cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                                  interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if f == 0:
                    ax.set_title(f"Epoch {epoch}", fontsize=11, fontweight="bold")
                if col == 0:
                    ax.set_ylabel(f"Filter {f + 1}", fontsize=11, fontweight="bold")
        title = "Convolutional Filter Evolution During Training"
        if shown < n_filters:
            title += f"\n(first {shown} of {n_filters} filters)"
        fig.suptitle(title, fontsize=14, fontweight="bold")
        fig.colorbar(image, ax=axes, orientation="vertical", fraction=0.03, pad=0.04,
                     label="Weight value")
        return _save(fig, path)


def confusion_figure(counts: np.ndarray, class_names: Sequence[str], path: str | Path,
                     title: str = "Validation Confusion Matrix") -> Path:
    """Counts per (true, predicted) class, annotated, with each class's accuracy on the right."""
    counts = np.asarray(counts)
    n = counts.shape[0]
    totals = counts.sum(axis=1)
    per_class = np.divide(np.diag(counts), totals, out=np.zeros(n), where=totals > 0)
    correct, total = int(np.trace(counts)), int(counts.sum())
    size = max(6.0, 0.55 * n + 3.0)
    with _figure(figsize=(size + 1.6, size)) as fig:
        ax = fig.subplots()
        image = ax.imshow(counts, cmap="Blues")
        ax.grid(False)
        font = 16 if n <= 4 else 12 if n <= 6 else 10
        for i in range(n):
            for j in range(n):
                value = counts[i, j]
                color = "white" if value > counts.max() / 2 else ("black" if value else "#9ca3af")
                ax.text(j, i, str(value), ha="center", va="center", fontsize=font,
                        fontweight="bold" if value else "normal", color=color)
        long_names = n > 4 and max(len(name) for name in class_names) > 3
        ax.set_xticks(range(n), class_names, fontsize=11, rotation=30 if long_names else 0)
        ax.set_yticks(range(n), class_names, fontsize=11)
        ax.set(xlabel="Predicted", ylabel="True")
        ax.set_title(f"{title}\noverall accuracy {correct / max(total, 1):.1%} ({correct}/{total})",
                     fontsize=13, fontweight="bold")
        right = ax.secondary_yaxis("right")
        right.set_yticks(range(n), [f"{a:.0%}" if a in (0, 1) else f"{a:.1%}" for a in per_class])
        right.set_ylabel("Per-class accuracy")
        for label, accuracy in zip(right.get_yticklabels(), per_class):
            label.set_color(GREEN if accuracy == 1 else AMBER if accuracy >= 0.9 else RED)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.12, label="Images")
        return _save(fig, path)


def lr_sweep_figure(histories: dict[float, History], path: str | Path,
                    num_classes: int | None = None) -> Path:
    """Exercise 24.2: training loss (log scale) and validation accuracy per epoch, one colour per
    learning rate; a run that diverged ends in a cross at its last finite epoch."""
    with _figure(figsize=(13, 5)) as fig:
        loss_ax, acc_ax = fig.subplots(1, 2)
        for i, (lr, history) in enumerate(sorted(histories.items())):
            color = _SWEEP_COLORS[i % len(_SWEEP_COLORS)]
            label = f"lr = {lr:g}"
            if "diverged_epoch" in history:
                label += f" (diverged at epoch {history['diverged_epoch']})"
            epochs = np.arange(len(history["train_loss"]))
            loss_ax.plot(epochs, history["train_loss"], linewidth=2, color=color, label=label)
            acc_ax.plot(epochs, 100 * np.asarray(history["val_acc"]), linewidth=2, color=color,
                        label=label)
            if "diverged_epoch" in history:
                end = max(len(epochs) - 1, 0)
                if len(epochs):
                    loss_ax.plot(end, history["train_loss"][-1], "x", color=color, markersize=12,
                                 markeredgewidth=3)
                    acc_ax.plot(end, 100 * history["val_acc"][-1], "x", color=color,
                                markersize=12, markeredgewidth=3)
        if num_classes:
            acc_ax.axhline(100 / num_classes, color="gray", linestyle=":", alpha=0.7,
                           label=f"Chance ({100 / num_classes:.1f}%)")
        loss_ax.set_yscale("log")
        loss_ax.set(xlabel="Epoch", ylabel="Training loss (log scale)",
                    title="Training Loss per Learning Rate")
        acc_ax.set(xlabel="Epoch", ylabel="Validation accuracy (%)", ylim=(0, 105),
                   title="Validation Accuracy per Learning Rate")
        for ax in (loss_ax, acc_ax):
            ax.grid(True, alpha=0.3)
        # One legend for both panels, under them: inside, it would hide the curves.
        handles, labels = acc_ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4),
                   fontsize=10, frameon=False)
        return _save(fig, path)
