"""``docs/chapter24.ipynb`` as committed: no outputs, the backend picked by one line of the first
cell, the README's figures tagged. Running it is ``nox -s notebook`` (``docs/run_notebook.py``)."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = json.loads((ROOT / "docs" / "chapter24.ipynb").read_text())


def code_cells():
    return [cell for cell in NOTEBOOK["cells"] if cell["cell_type"] == "code"]


def test_the_notebook_is_committed_without_outputs():
    for cell in code_cells():
        assert cell["outputs"] == [] and cell["execution_count"] is None, "".join(cell["source"])[:80]


def test_the_first_cell_picks_the_array_library_in_one_line():
    first = NOTEBOOK["cells"][0]
    assert first["cell_type"] == "code"
    source = "".join(first["source"])
    assert len(re.findall(r'^BACKEND = "numpy"  # .*"cupy".*"torch".*"jax"', source, re.MULTILINE)) == 1
    for name in ("numpy", "cupy", "torch", "jax"):
        assert f'BACKEND == "{name}"' in source


def test_the_readme_shows_the_tagged_figures_of_the_notebook():
    tags = [tag.split(":", 1)[1] for cell in code_cells()
            for tag in cell.get("metadata", {}).get("tags", []) if tag.startswith("readme-figure:")]
    assert len(tags) == 2
    readme = (ROOT / "README.md").read_text()
    assert "docs/chapter24.ipynb" in readme
    for name in tags:
        assert (ROOT / "docs" / name).is_file() and f"docs/{name}" in readme


def test_the_notebook_covers_the_chapter():
    text = "\n".join("".join(cell["source"]) for cell in NOTEBOOK["cells"])
    for needed in ("make_dataset_bundle", "dataset_samples", ".backward(", "check_gradients",
                   "epochs=80, lr=0.12, batch_size=18", "training_curves", "filter_evolution",
                   "confusion_figure", "**24.1", "**24.2", "**24.3", "**24.4", "**24.5", "sweep("):
        assert needed in text, needed


AFTER = json.loads((ROOT / "docs" / "after_the_chapter.ipynb").read_text())


def test_the_second_notebook_is_committed_without_outputs_and_picks_its_library():
    cells = [cell for cell in AFTER["cells"] if cell["cell_type"] == "code"]
    for cell in cells:
        assert cell["outputs"] == [] and cell["execution_count"] is None, "".join(cell["source"])[:80]
    assert AFTER["cells"][0]["cell_type"] == "code"
    assert len(re.findall(r'^BACKEND = "numpy"', "".join(AFTER["cells"][0]["source"]), re.M)) == 1


def test_the_second_notebook_covers_what_comes_after_the_chapter():
    text = "\n".join("".join(cell["source"]) for cell in AFTER["cells"])
    for needed in ("BatchNorm2D", "bn.backward(", "relative_error", "Dropout", "drop.backward(",
                   "check_gradients", "tc.SGD", "tc.RMSprop", "tc.Adam", "tc.AdamW", "Cosine",
                   "load_mnist", "lenet_bn", "training_curves", "filter_evolution",
                   "confusion_figure"):
        assert needed in text, needed
    assert "docs/after_the_chapter.ipynb" in (ROOT / "README.md").read_text()
