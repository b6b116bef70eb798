"""``plots``: every figure is a matplotlib ``Figure`` (shown inline in a notebook), saving is a
separate call; the sweep figure for every shape of grid. Host-only, so the numpy session runs it."""

import numpy as np
import pytest

import tinycnn_xp as tc
from tinycnn_xp.sweep import sweep

matplotlib = pytest.importorskip("matplotlib", reason='figures need matplotlib: pip install ".[plot]"')
from matplotlib.figure import Figure  # noqa: E402

from tinycnn_xp import plots  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def numpy_only(backend):
    if backend.NAME != "numpy":
        pytest.skip("figures are drawn from host arrays: the numpy session runs them")


@pytest.fixture(scope="module")
def run():
    x_train, y_train, x_val, y_val, names = tc.make_dataset_bundle(train_per_class=12, val_per_class=6)
    model = tc.TinyCNN(seed=42)
    history = model.fit(x_train, y_train, x_val, y_val, epochs=6, verbose=False)
    counts = plots.confusion_counts(y_val, model.predict(x_val), 3)
    return (x_train, y_train, x_val, y_val), names, history, counts


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_figures_are_figures_and_saving_is_a_separate_call(run, tmp_path):
    data, names, history, counts = run
    figures = {
        "samples": plots.dataset_samples(data[0], data[1], names),
        "curves": plots.training_curves(history, num_classes=3, title="six epochs"),
        "filters": plots.filter_evolution(history),
        "confusion": plots.confusion_figure(counts, names),
        "lr_sweep": plots.lr_sweep_figure({0.1: history, 0.5: history}, num_classes=3),
    }
    assert not list(tmp_path.iterdir())  # drawing writes nothing
    for name, fig in figures.items():
        assert isinstance(fig, Figure), name
        path = plots.save_figure(fig, tmp_path / f"{name}.png")
        assert path == tmp_path / f"{name}.png"
        width, height = png_size(path)
        assert width > 300 and height > 200, name


def test_figures_never_touch_pyplot():
    """No pyplot, so no global figure list to leak into, and no display needed."""
    import subprocess
    import sys
    code = ("import sys, tinycnn_xp as tc\nfrom tinycnn_xp import plots\n"
            "h = tc.TinyCNN().fit(*tc.make_dataset_bundle(6, 3)[:4], epochs=1, verbose=False)\n"
            "plots.training_curves(h); plots.filter_evolution(h)\n"
            "print('matplotlib.pyplot' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_chapter_style_holds_outside_the_drawing_call(run, tmp_path):
    """Saved later, with other settings in force: the background and grid are still the chapter's."""
    fig = plots.training_curves(run[2])
    with matplotlib.rc_context({"axes.facecolor": "red", "figure.facecolor": "blue", "grid.color": "green"}):
        plots.save_figure(fig, tmp_path / "later.png")
    assert fig.get_facecolor()[:3] == pytest.approx(matplotlib.colors.to_rgb("#FAF8F0"))
    for ax in fig.axes:
        assert ax.get_facecolor()[:3] == pytest.approx(matplotlib.colors.to_rgb("#FAF8F0"))
        assert all(line.get_color() != "green" for line in ax.get_xgridlines())


@pytest.mark.parametrize("grid,panel", [
    ({"lr": [0.05, 0.5], "momentum": [0.0, 0.9], "seed": [0, 1]}, "heatmap"),
    ({"lr": [0.05, 0.5], "seed": [0, 1, 2]}, "spread"),
    ({"seed": [0, 1]}, "spread"),
    ({"lr": [0.05, 0.5]}, "points"),
    ({"lr": [0.05, 0.5], "momentum": [0.0, 0.9], "batch_size": [9, 18]}, "points"),
])
def test_sweep_figure_for_every_shape_of_grid(run, grid, panel, tmp_path):
    data = run[0]
    records = sweep(tc.TinyCNN(seed=1), *data, grid=grid, epochs=3)
    fig = plots.sweep_figure(records, num_classes=3)
    assert isinstance(fig, Figure)
    end = fig.axes[2]
    assert bool(end.images) == (panel == "heatmap")
    if panel == "heatmap":
        texts = [t.get_text() for t in end.texts]
        assert len(texts) == 4 and all(float(t) <= 100 for t in texts)
    if panel == "spread":
        assert end.containers  # an error bar: the mean with the seeds' lowest and highest
    plots.save_figure(fig, tmp_path / "sweep.png")
    seeds = len(grid.get("seed", [None]))
    assert (f"{seeds} seeds each" in fig.get_suptitle()) == (seeds > 1)


def test_sweep_figure_with_a_run_that_diverged_at_once(run):
    records = sweep(tc.TinyCNN(seed=1), *run[0], grid={"lr": [0.1, 0.2]}, epochs=3)
    records[1]["history"] = {"train_loss": [], "val_loss": [], "train_acc": [], "val_acc": [],
                             "kernel_snapshots": {}, "diverged_epoch": 0}  # no finite epoch
    fig = plots.sweep_figure(records)
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match="at least one run"):
        plots.sweep_figure([])


def test_saving_without_the_plot_extra_says_what_to_install(monkeypatch, run):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"tinycnn-xp\[plot\]"):
        plots.training_curves(run[2])
    assert np.asarray(plots.confusion_counts([0, 1], [1, 1], 2)).sum() == 2  # counting needs none
