"""``nox``: the shared suite once per backend (``tests(numpy)``, ``tests(array_api_strict)``, ...),
then ``lint`` (ruff, mypy), ``wheel`` (the built wheel, installed alone, runs) and ``notebook``
(``docs/chapter24.ipynb`` top to bottom, headless, on NumPy).

A backend that cannot run on this machine is skipped with its reason and the exit status stays 0;
``TINYCNN_REQUIRE_GPU=1`` turns the CuPy skip into a failure. Arguments after ``--`` go to pytest.
``nox -s bench`` runs the speed benchmarks, ``nox -s memory`` the memory one (neither is part of a
plain ``nox``).
"""

import os
import sys
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import backends  # noqa: E402

nox.options.sessions = ["tests", "lint", "wheel", "notebook"]
nox.options.reuse_venv = "yes"


@nox.session
@nox.parametrize("backend", list(backends.MODULES))
def tests(session: nox.Session, backend: str) -> None:
    module = backends.load(backend)
    reason = module.probe()
    if reason:
        if backend == "cupy" and os.environ.get("TINYCNN_REQUIRE_GPU") == "1":
            session.error(f"TINYCNN_REQUIRE_GPU=1 but {backend} cannot run here: {reason}")
        session.skip(f"backend {backend} unavailable: {reason}")
    # The optional extras too, so the figure, progress, digits and parallel-sweep tests (Dask's in
    # the numpy session) run rather than skip.
    session.install("-e", ".[test,plot,progress,digits,parallel]", *module.REQUIREMENTS)
    env = {"TINYCNN_REQUIRE_GPU": os.environ.get("TINYCNN_REQUIRE_GPU", "")}
    session.run("pytest", f"--backend={backend}", "-ra", *session.posargs, env=env)
    for extra in getattr(module, "RUNS", ()):  # e.g. array-api-strict's device without float64
        session.run("pytest", f"--backend={backend}", "-ra", *extra, *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on everything, mypy (``check_untyped_defs``) on the package."""
    session.install("-e", ".[lint,plot]")
    session.run("ruff", "check", "tinycnn_xp", "tests", "benchmarks", "backends", "docs", "noxfile.py")
    session.run("mypy")


@nox.session
def wheel(session: nox.Session) -> None:
    """Build the wheel, install it alone into a fresh environment, and run the command from it.

    Catches a module or subpackage left out of the wheel, which an editable install hides.
    """
    session.install("build")
    with tempfile.TemporaryDirectory() as tmp:
        dist, venv, run = Path(tmp, "dist"), Path(tmp, "venv"), Path(tmp, "run")
        session.run("python", "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT))
        built = next(dist.glob("tinycnn_xp-*.whl"))
        session.run("python", str(ROOT / "tests" / "wheel_contents.py"), str(built))
        session.run("python", "-m", "venv", str(venv))
        bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
        session.run(str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(built),
                    external=True)
        run.mkdir()  # outside the checkout: only the installed wheel is importable
        with session.chdir(run):
            session.run(str(bin_dir / "tinycnn-xp"), "--help", external=True)
            session.run(str(bin_dir / "tinycnn-xp"), "train", "--epochs", "2", "--sweep-epochs", "0",
                        "--quiet", "--out", str(run / "train"), external=True)


@nox.session
def notebook(session: nox.Session) -> None:
    """``docs/chapter24.ipynb`` run top to bottom in a fresh kernel on NumPy (nbclient), with its run
    time; any cell that raises fails the session. ``nox -s notebook -- --write-figures`` also
    rewrites the README's figures, ``-- --backend torch`` runs it on another library."""
    session.install("-e", ".[plot,parallel]", "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29")
    session.run("python", "docs/run_notebook.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """``nox -s bench [-- --repeats 7 --json out.json]``: the speed/memory table (not in a plain ``nox``).

    The benchmarks live in ``benchmarks/`` (not in the wheel) and run from the repository root.
    """
    session.install(".[test]", "torch==2.13.0", "jax==0.10.2")
    session.run("python", "-m", "benchmarks.bench", *session.posargs)


@nox.session
def memory(session: nox.Session) -> None:
    """``nox -s memory [-- --code-label after --json memory.json]``: peak memory and time per image
    of ``fit`` and ``predict`` at 4k, 24k and 60k images, each in a fresh process (``--quick``: a
    smoke run; ``--help``: the options). Not in a plain ``nox``; Linux only (reads ``/proc``).
    """
    session.install(".", "torch==2.13.0", "jax==0.10.2")
    session.run("python", "-m", "benchmarks.memory", *session.posargs)
