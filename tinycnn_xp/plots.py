"""The chapter's figures: the data, learning curves, filter evolution, confusion matrix, sweeps.

Needs the optional extra ``plot`` (``pip install "tinycnn-xp[plot]"``). Each function returns a
matplotlib ``Figure``, drawn with matplotlib's object API (no pyplot, no global state), in the
chapter's style: its palette, a warm background, a light grid. In Jupyter a figure shows inline
when it ends a cell (with matplotlib's inline backend on: ``%matplotlib inline``); ``save_figure``
writes it to a file (what the command line does).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .history import History

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["save_figure", "dataset_samples", "training_curves", "filter_evolution",
           "confusion_figure", "lr_sweep_figure", "sweep_figure", "confusion_counts"]

# The chapter's palette.
BLUE, GREEN, AMBER, RED, BURGUNDY = "#3b82f6", "#059669", "#d97706", "#dc2626", "#8c2f39"
_SWEEP_COLORS = (BLUE, GREEN, AMBER, RED, BURGUNDY, "#7c3aed", "#6b7280")  # 5 + purple, grey
_BACKGROUND = "#FAF8F0"
#: the most filters a filter-evolution figure shows (rows); the rest are left out, and said so.
MAX_FILTERS = 8


@contextlib.contextmanager
def _figure(**kwargs: Any) -> Iterator[Figure]:
    """A new matplotlib ``Figure`` in the chapter's style; ImportError naming the extra if missing.

    The figure is drawn once (without rendering) inside the style, so that what matplotlib makes
    lazily (ticks, grid lines) takes the style too, wherever the figure is shown or saved later.
    """
    try:
        import matplotlib
        import matplotlib.style
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError('figures need matplotlib: pip install "tinycnn-xp[plot]"') from exc
    style = {"figure.facecolor": _BACKGROUND, "axes.facecolor": _BACKGROUND, "font.size": 11}
    with matplotlib.style.context("seaborn-v0_8-whitegrid"), \
            matplotlib.rc_context(style):  # type: ignore[arg-type]  # stubs want literal keys
        fig = Figure(layout="constrained", **kwargs)
        yield fig
        fig.draw_without_rendering()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` (any of this module's figures) to ``path`` (PNG, or the format its suffix
    names), at 110 dpi with nothing clipped; returns the path."""
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.2, facecolor=fig.get_facecolor())
    return path


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(classes, classes)`` int matrix: row = true class, column = predicted class (host arrays)."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return counts


def training_curves(history: History, num_classes: int | None = None,
                    title: str | None = None) -> Figure:
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
    return fig


def filter_evolution(history: History) -> Figure:
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
    return fig


def confusion_figure(counts: np.ndarray, class_names: Sequence[str],
                     title: str = "Validation Confusion Matrix") -> Figure:
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
    return fig


def lr_sweep_figure(histories: dict[float, History], num_classes: int | None = None) -> Figure:
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
    return fig


def dataset_samples(x: np.ndarray, y: np.ndarray, class_names: Sequence[str],
                    per_class: int = 6) -> Figure:
    """The first ``per_class`` images of every class (rows), in grey from 0 (black) to 1 (white).

    ``x`` ``(n, 1, height, width)`` and ``y`` ``(n,)`` are host arrays (``to_numpy`` them first).
    """
    x, y = np.asarray(x), np.asarray(y)
    n = len(class_names)
    with _figure(figsize=(1.3 * per_class + 1.6, 1.3 * n + 0.6)) as fig:
        axes = np.asarray(fig.subplots(n, per_class, squeeze=False))
        for c, name in enumerate(class_names):
            members = np.flatnonzero(y == c)[:per_class]
            for k in range(per_class):
                ax = axes[c, k]
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                if k < members.size:
                    ax.imshow(x[members[k], 0], cmap="gray", vmin=0.0, vmax=1.0,
                              interpolation="nearest")
                if k == 0:
                    ax.set_ylabel(name, fontsize=11, fontweight="bold")
        fig.suptitle(f"{x.shape[0]} images of {x.shape[2]}x{x.shape[3]} pixels, {n} classes",
                     fontsize=13, fontweight="bold")
    return fig


def sweep_figure(records: Sequence[Any], num_classes: int | None = None) -> Figure:
    """A sweep's runs (``tinycnn_xp.sweep.sweep``'s records) in three panels.

    Training loss (log scale) and validation accuracy per epoch, one colour per configuration of
    the swept values other than ``seed``: the mean over seeds, with the seeds' spread (lowest to
    highest) shaded. The third panel gives the final validation accuracy: a heatmap when two
    values were swept (mean over seeds), the mean with the seeds' spread against one swept value,
    or one bar per configuration.
    """
    records = list(records)
    if not records:
        raise ValueError("records must hold at least one run of a sweep")
    keys = list(records[0]["config"])
    swept = [key for key in keys if key != "seed"
             and len({record["config"][key] for record in records}) > 1]
    groups: dict[tuple, list[History]] = {}
    for record in records:
        groups.setdefault(tuple(record["config"][key] for key in swept), []).append(record["history"])
    seeds = len({record["config"].get("seed") for record in records})
    label = lambda values: (", ".join(f"{key} {_value(value)}" for key, value in zip(swept, values))
                            or "all runs")
    final = {values: np.array([h["val_acc"][-1] if h["val_acc"] else np.nan for h in histories])
             for values, histories in groups.items()}
    with _figure(figsize=(18, 5.4)) as fig:
        loss_ax, acc_ax, end_ax = fig.subplots(1, 3)
        for i, (values, histories) in enumerate(groups.items()):
            color = _color(i, len(groups))
            for ax, key, scale in ((loss_ax, "train_loss", 1), (acc_ax, "val_acc", 100)):
                curves = _padded([h[key] for h in histories]) * scale  # type: ignore[literal-required]
                if not curves.shape[1]:
                    continue
                epochs = np.arange(curves.shape[1])
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # epochs no run reached
                    mean = np.nanmean(curves, axis=0)
                    low, high = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
                ax.plot(epochs, mean, linewidth=2, color=color, label=label(values))
                if len(histories) > 1:
                    ax.fill_between(epochs, low, high, color=color, alpha=0.12, linewidth=0)
        loss_ax.set_yscale("log")
        spread = f" (mean of {seeds} seeds, lowest to highest shaded)" if seeds > 1 else ""
        loss_ax.set(xlabel="Epoch", ylabel="Training loss (log scale)", title="Training Loss" + spread)
        acc_ax.set(xlabel="Epoch", ylabel="Validation accuracy (%)", ylim=(0, 105),
                   title="Validation Accuracy")
        if num_classes:
            for ax in (acc_ax, end_ax):
                ax.axhline(100 / num_classes, color="gray", linestyle=":", alpha=0.7,
                           label=f"Chance ({100 / num_classes:.1f}%)")
        _final_panel(end_ax, fig, swept, groups, final, records, seeds)
        handles, labels = acc_ax.get_legend_handles_labels()
        if len(groups) > 1:
            fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5),
                       fontsize=10, frameon=False)
        title = (f"Sweep: {len(records)} runs, " + (" x ".join(swept) if swept else "one configuration")
                 + (f", {seeds} seeds each" if seeds > 1 else ""))
        fig.suptitle(title, fontsize=14, fontweight="bold")
    return fig


def _final_panel(ax: Any, fig: Figure, swept: list[str], groups: dict[tuple, list[History]],
                 final: dict[tuple, np.ndarray], records: list[Any], seeds: int) -> None:
    """The sweep figure's third panel: final validation accuracy by configuration."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a configuration with no finished epoch
        means = {values: 100 * np.nanmean(accs) for values, accs in final.items()}
    title = "Final Validation Accuracy" + (" (mean over seeds)" if seeds > 1 else "")
    if len(swept) == 2:
        rows = sorted({values[0] for values in groups})
        cols = sorted({values[1] for values in groups})
        grid = np.full((len(rows), len(cols)), np.nan)
        for (row, col), mean in means.items():
            grid[rows.index(row), cols.index(col)] = mean
        image = ax.imshow(grid, cmap="Blues", vmin=0, vmax=100, aspect="auto")
        ax.grid(False)
        for i in range(len(rows)):
            for j in range(len(cols)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=11,
                            color="white" if grid[i, j] > 60 else "black")
        ax.set_xticks(range(len(cols)), [_value(v) for v in cols])
        ax.set_yticks(range(len(rows)), [_value(v) for v in rows])
        ax.set(xlabel=swept[1], ylabel=swept[0], title=title)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="Validation accuracy (%)")
        return
    names = [", ".join(_value(v) for v in values) or "all runs" for values in groups]
    positions = np.arange(len(groups))
    for i, (values, accs) in enumerate(final.items()):
        color = _color(i, len(groups))
        ax.scatter(np.full(accs.shape, positions[i]), 100 * accs, color=color, alpha=0.5, s=25)
        if accs.size > 1 and np.isfinite(means[values]):
            ax.errorbar(positions[i], means[values],
                        yerr=[[means[values] - 100 * np.nanmin(accs)],
                              [100 * np.nanmax(accs) - means[values]]],
                        fmt="o", color=color, markersize=9, capsize=6, linewidth=2)
        elif np.isfinite(means[values]):
            ax.plot(positions[i], means[values], "o", color=color, markersize=9)
    ax.set_xticks(positions, names, rotation=30 if len(groups) > 4 else 0)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set(xlabel=", ".join(swept) if swept else "", ylabel="Final validation accuracy (%)",
           ylim=(0, 105), title=title + (" and seeds (dots)" if seeds > 1 else ""))


def _value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _color(i: int, n: int) -> Any:
    """The chapter's palette for up to seven colours, then evenly spaced viridis."""
    if n <= len(_SWEEP_COLORS):
        return _SWEEP_COLORS[i]
    import matplotlib
    return matplotlib.colormaps["viridis"](i / max(n - 1, 1))


def _padded(curves: list[list[float]]) -> np.ndarray:
    """Curves of different lengths (runs that diverged or stopped early) as rows padded with NaN."""
    longest = max(len(curve) for curve in curves)
    out = np.full((len(curves), longest), np.nan)
    for i, curve in enumerate(curves):
        out[i, :len(curve)] = curve
    return out
