"""Run a notebook of docs/ top to bottom, headless, and say how long it took (``nox -s notebook``).

    python docs/run_notebook.py                      # chapter24.ipynb on NumPy; fails on a cell that raises
    python docs/run_notebook.py --notebook after_the_chapter.ipynb   # the second notebook
    python docs/run_notebook.py --backend torch      # the first cell's BACKEND line, changed here
    python docs/run_notebook.py --write-figures      # also write the README's figures into docs/
    python docs/run_notebook.py --output out.ipynb   # keep the executed notebook (with outputs)
    python docs/run_notebook.py --notebook chapter24.ipynb --notebook after_the_chapter.ipynb \
        --output-dir docs/_executed                  # both, side by side (nox -s notebook)

The committed notebook has no outputs (a test checks it); this runs a copy in memory with
nbclient, in a kernel of this Python (``python3``), from the notebook's folder. Cells tagged
``readme-figure:NAME.png`` hold the figures the README shows; ``--write-figures`` writes their
PNG output to ``docs/NAME.png``.
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOTEBOOKS = ("chapter24.ipynb", "after_the_chapter.ipynb")
BACKEND_LINE = re.compile(r'^BACKEND = "numpy"', re.MULTILINE)
#: what the issue asks of a NumPy run on a laptop; reported, not enforced (CI machines vary).
BUDGET_S = 120.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", action="append", choices=NOTEBOOKS,
                        help=f"the notebook to run; repeat it to run several side by side "
                             f"(default: {NOTEBOOKS[0]})")
    parser.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "torch", "jax"))
    parser.add_argument("--write-figures", action="store_true",
                        help="write the outputs of the readme-figure cells into docs/")
    parser.add_argument("--output", type=Path, help="also save the executed notebook here")
    parser.add_argument("--output-dir", type=Path,
                        help="also save each executed notebook in this folder, under its name")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: 600)")
    args = parser.parse_args(argv)
    names = list(dict.fromkeys(args.notebook or NOTEBOOKS[:1]))
    if args.output and len(names) > 1:
        parser.error("--output takes one notebook; with several, give --output-dir")

    # Each notebook in a kernel of its own, side by side: a kernel is a process, so two of them
    # keep two cores busy, where one after the other the first cell's imports and the figures
    # leave one idle.
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        results = list(pool.map(lambda name: run(name, args), names))
    return max(results)


def run(notebook_name: str, args: argparse.Namespace) -> int:
    """Execute ``docs/<notebook_name>`` as ``args`` say; 0 if every cell ran, 1 if not."""
    import nbclient
    import nbformat

    name = f"docs/{notebook_name}"
    notebook = nbformat.read(HERE / notebook_name, as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    if not BACKEND_LINE.search(first.source):
        print(f'{name}: the first code cell must set BACKEND = "numpy" on a line of its own',
              file=sys.stderr)
        return 1
    first.source = BACKEND_LINE.sub(f'BACKEND = "{args.backend}"', first.source)

    client = nbclient.NotebookClient(notebook, timeout=args.timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(HERE)}})
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        print(f"{name} failed on {args.backend} after "
              f"{time.perf_counter() - start:.1f} s:\n{error}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    code_cells = sum(cell.cell_type == "code" for cell in notebook.cells)
    budget = ""
    if args.backend == "numpy":  # the budget is NumPy's (torch and JAX run small arrays slower)
        budget = f" ({'within' if seconds <= BUDGET_S else 'OVER'} the {BUDGET_S:.0f} s budget)"
    print(f"{name} ran on {args.backend}: {code_cells} code cells in {seconds:.1f} s"
          f"{budget}")
    output = args.output or (args.output_dir / notebook_name if args.output_dir else None)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)  # docs/_executed/ on a fresh clone
        nbformat.write(notebook, output)
    if args.write_figures:
        for path in write_figures(notebook):
            print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


def write_figures(notebook) -> list[Path]:
    """The PNG output of every cell tagged ``readme-figure:NAME.png``, written to docs/NAME.png."""
    written = []
    for cell in notebook.cells:
        for tag in cell.get("metadata", {}).get("tags", []):
            if not tag.startswith("readme-figure:"):
                continue
            images = [out["data"]["image/png"] for out in cell.get("outputs", [])
                      if "image/png" in out.get("data", {})]
            if len(images) != 1:
                raise RuntimeError(f"cell tagged {tag} has {len(images)} PNG outputs, not one")
            path = HERE / tag.split(":", 1)[1]
            path.write_bytes(base64.b64decode(images[0]))
            written.append(path)
    return written


if __name__ == "__main__":
    sys.exit(main())
