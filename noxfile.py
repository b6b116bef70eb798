"""``nox``: the shared suite once per backend, the numpy and array-api-strict backends on every
supported Python (``tests(numpy-3.11)``, ``tests(numpy-3.12)``, ..., ``tests(torch)``,
``tests(jax)``, ``tests(cupy)``), then ``lint`` (ruff, mypy), ``wheel`` (the built wheel,
installed alone, runs), ``notebook`` (``docs/chapter24.ipynb`` and
``docs/after_the_chapter.ipynb`` top to bottom, side by side, headless, on NumPy; the executed
copies are the ones the site shows) and ``docs`` (the site, built with warnings as errors, then
every page in headless Chromium).

A backend that cannot run on this machine is skipped with its reason and the exit status stays 0;
``TINYCNN_REQUIRE_GPU=1`` turns the CuPy skip into a failure. With ``CI`` set, a missing Python is
an error. Arguments after ``--`` go to pytest. ``nox -s quick`` runs the numpy session's fast tests
(under a minute, warm). ``nox -s bench`` and ``nox -s memory`` run the benchmarks (not part of a
plain ``nox``).
"""

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import backends  # noqa: E402

#: every Python the project supports (pyproject's classifiers say the same; a test checks).
PYTHONS = ("3.11", "3.12", "3.13")
#: torch's pinned CPU wheel and JAX are installed for this Python only: on the others a torch
#: install pulls a CUDA build of several GB.
FRAMEWORKS_PYTHON = "3.11"
EVERY_PYTHON = ("numpy", "array_api_strict")
#: the tests' own parallelism: two processes (pytest-xdist) on a 2-core machine, ...
WORKERS = ["-n", "2"]
#: ... handed tests one at a time (a backend's ``DIST`` may say otherwise)
DIST = "loadgroup"
#: ... and one BLAS thread in each (and in the processes they start): the two already fill the
#: cores, and a BLAS pool per process has its threads wait on each other's (a tenth of the numpy
#: session's time). A count the user set is kept.
ONE_BLAS_THREAD = {name: os.environ.get(name, "1")
                   for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}

nox.options.sessions = ["tests", "lint", "wheel", "notebook", "docs"]
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))

#: one virtual environment per Python, shared by every session that runs on it (a fresh
#: environment per session would install the same packages a dozen times: half of a fresh
#: ``nox``'s time on 2 cores).
SHARED = ROOT / ".nox" / "shared"
#: Bytecode of what the sessions import, kept under ``.nox`` even where the environment sets
#: ``PYTHONDONTWRITEBYTECODE`` (this machine does, and the installs use ``--no-compile``): without
#: it every Python the tests start (the command line's subprocesses, loky and Dask workers, the
#: notebook's kernel) compiles numpy, matplotlib and distributed from source, about 3.5 s each.
BYTECODE = {"PYTHONPYCACHEPREFIX": str(ROOT / ".nox" / "pycache"), "PYTHONDONTWRITEBYTECODE": ""}
TEST_EXTRAS = ".[test,plot,progress,digits,mnist,images,tensorboard,parallel]"


class Shared:
    """A shared environment: ``run(program, *args)`` runs its ``program`` (``python``,
    ``ruff``, ...) with it first on the ``PATH``."""

    def __init__(self, session: nox.Session, bin_dir: Path) -> None:
        self.session, self.bin_dir = session, bin_dir
        self.env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                    "VIRTUAL_ENV": str(bin_dir.parent), **BYTECODE}

    def run(self, program: str, *args: str, env: dict | None = None, **kwargs) -> object:
        return self.session.run(str(self.bin_dir / program), *args, env={**self.env, **(env or {})},
                                external=True, **kwargs)


def find_uv() -> str | None:
    """uv's executable (``$UV``, on the ``PATH``, or the one ``pip install "nox[uv]"`` brings
    along), or ``None``: then environments are made with ``venv`` and filled with pip."""
    name = os.environ.get("UV")
    found = shutil.which(name or "uv")
    if found is None and name is None:
        with contextlib.suppress(ImportError, FileNotFoundError):
            from uv import find_uv_bin
            found = find_uv_bin()
    return found


def make_environment(session: nox.Session, interpreter: str, env_dir: Path) -> Path:
    """A new virtual environment of ``interpreter`` at ``env_dir``, with pip in it; its bin
    folder."""
    uv = find_uv()
    if uv is None:
        session.run(interpreter, "-m", "venv", str(env_dir), external=True)
    else:
        session.run(uv, "venv", "--quiet", "--seed", "--python", interpreter, str(env_dir),
                    external=True)
    return env_dir / ("Scripts" if os.name == "nt" else "bin")


def install(session: nox.Session, bin_dir: Path, args: list[str], *, pip: bool = False) -> None:
    """``pip install args`` into the environment of ``bin_dir``; with uv where there is one
    (the same releases, several times faster) unless ``pip``."""
    uv = None if pip else find_uv()
    if uv is None:
        # --no-compile: bytecode is written for what is imported, when it is (BYTECODE)
        session.run(str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--no-compile",
                    "--disable-pip-version-check", *args, external=True)
    else:  # uv writes no bytecode either
        session.run(uv, "pip", "install", "--quiet", "--python", str(bin_dir / "python"), *args,
                    external=True)


def shared_environment(session: nox.Session, python: str, *requirements: str,
                       with_pip: tuple[str, ...] = ()) -> Shared:
    """The shared environment of ``python`` with ``requirements`` (pip arguments; ``.[...]``:
    the project, editable) installed in it, each once, and ``with_pip`` by pip even where uv
    installs the rest. A Python that is not here skips the session, or fails it with ``CI``
    set."""
    env_dir = SHARED / python
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    if not (bin_dir / "python").exists():
        interpreter = shutil.which(f"python{python}")
        if interpreter is None:
            message = f"Python {python} was not found (python{python} is not on the PATH)"
            if nox.options.error_on_missing_interpreters:
                session.error(message)
            session.skip(message)
        make_environment(session, interpreter, env_dir)
    # What is installed, stamped with the pyproject it was installed from.
    stamp = env_dir / "installed.json"
    project = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    installed = json.loads(stamp.read_text()) if stamp.is_file() else {}
    done = set(installed.get("requirements", ())) if installed.get("pyproject") == project else set()
    for group, by_pip in ((requirements, False), (with_pip, True)):
        missing = [r for r in group if r not in done]
        if missing:
            install(session, bin_dir, [a for r in missing
                                       for a in (["-e", r] if r.startswith(".") else [r])],
                    pip=by_pip)
            done |= set(missing)
            stamp.write_text(json.dumps({"pyproject": project, "requirements": sorted(done)}))
    return Shared(session, bin_dir)

CASES = [nox.param(python, backend, id=f"{backend}-{python}")
         for backend in EVERY_PYTHON for python in PYTHONS]
CASES += [nox.param(FRAMEWORKS_PYTHON, backend, id=backend)
          for backend in backends.MODULES if backend not in EVERY_PYTHON]


@nox.session(venv_backend="none")
@nox.parametrize("python,backend", CASES)
def tests(session: nox.Session, python: str, backend: str) -> None:
    module = backends.load(backend)
    reason = module.probe()
    if reason:
        if backend == "cupy" and os.environ.get("TINYCNN_REQUIRE_GPU") == "1":
            session.error(f"TINYCNN_REQUIRE_GPU=1 but {backend} cannot run here: {reason}")
        session.skip(f"backend {backend} unavailable: {reason}")
    # The optional extras too, so the figure, progress, digits, mnist and parallel-sweep tests
    # (Dask's in the numpy session) run rather than skip.
    requirements = tuple(module.REQUIREMENTS)
    by_pip = getattr(module, "INSTALLER", None) == "pip"
    shared = shared_environment(session, python, TEST_EXTRAS, *(() if by_pip else requirements),
                                with_pip=requirements if by_pip else ())
    env = {"TINYCNN_REQUIRE_GPU": os.environ.get("TINYCNN_REQUIRE_GPU", ""), **ONE_BLAS_THREAD,
           **{key: value.format(root=ROOT) for key, value in getattr(module, "ENV", {}).items()}}
    pytest = ["-m", "pytest", f"--backend={backend}", "-ra"]
    parallel = [*WORKERS, "--dist", getattr(module, "DIST", DIST)]
    shared.run("python", *pytest, *parallel, *session.posargs, env=env)
    for extra in getattr(module, "RUNS", ()):  # e.g. array-api-strict's device without float64
        shared.run("python", *pytest, *extra, *parallel, *session.posargs, env=env)


@nox.session(venv_backend="none")
def quick(session: nox.Session) -> None:
    """The numpy session's fast tests, for the edit-test loop: not the ``slow`` ones (command-line
    subprocesses, worker pools, the notebook, the longest randomized runs)."""
    shared = shared_environment(session, FRAMEWORKS_PYTHON, TEST_EXTRAS)
    shared.run("python", "-m", "pytest", "--backend=numpy", "-q", "-m", "not slow", *WORKERS,
               "--dist", DIST, *session.posargs, env=ONE_BLAS_THREAD)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff on everything, mypy (``check_untyped_defs``) on the package."""
    shared = shared_environment(session, FRAMEWORKS_PYTHON, TEST_EXTRAS, ".[lint]")
    shared.run("ruff", "check", "tinycnn_xp", "tests", "benchmarks", "backends", "docs", "noxfile.py")
    shared.run("mypy")


@nox.session(python=FRAMEWORKS_PYTHON, venv_backend="uv|virtualenv")
def wheel(session: nox.Session) -> None:
    """Build the wheel, install it alone into a fresh environment, and run the command from it.

    Catches a module or subpackage left out of the wheel, which an editable install hides.
    """
    uv = find_uv() is not None  # then uv fills the build's own environment too
    session.install("build[uv]" if uv else "build")
    with tempfile.TemporaryDirectory() as tmp:
        dist, venv, run = Path(tmp, "dist"), Path(tmp, "venv"), Path(tmp, "run")
        session.run("python", "-m", "build", "--wheel", *(["--installer", "uv"] if uv else []),
                    "--outdir", str(dist), str(ROOT))
        built = next(dist.glob("tinycnn_xp-*.whl"))
        session.run("python", str(ROOT / "tests" / "wheel_contents.py"), str(built))
        bin_dir = make_environment(session, "python", venv)  # the session's Python
        install(session, bin_dir, [str(built)])
        run.mkdir()  # outside the checkout: only the installed wheel is importable
        with session.chdir(run):
            session.run(str(bin_dir / "tinycnn-xp"), "--help", env=BYTECODE, external=True)
            session.run(str(bin_dir / "tinycnn-xp"), "train", "--epochs", "2", "--sweep-epochs", "0",
                        "--quiet", "--out", str(run / "train"), env=BYTECODE, external=True)


#: what the site shows: each notebook as ``nox -s notebook`` executed it
EXECUTED = {name: ROOT / "docs" / "_executed" / name
            for name in ("chapter24.ipynb", "after_the_chapter.ipynb")}


NOTEBOOK = ("nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29")


@nox.session(venv_backend="none")
def notebook(session: nox.Session) -> None:
    """``docs/chapter24.ipynb`` and ``docs/after_the_chapter.ipynb`` run top to bottom, side by
    side, each in a fresh kernel on NumPy (nbclient), with their run times; any cell that raises
    fails the session. The executed copies go to ``docs/_executed/``, for the site.
    ``-- --write-figures`` also rewrites the README's figures, ``-- --backend torch`` runs them on
    another library."""
    shared = shared_environment(session, FRAMEWORKS_PYTHON, TEST_EXTRAS, *NOTEBOOK)
    run_notebooks(shared, list(EXECUTED), *session.posargs)


def run_notebooks(shared: Shared, names: list[str], *args: str) -> None:
    """Run the notebooks ``names`` side by side (a kernel each), their executed copies written to
    ``docs/_executed/``."""
    notebooks = [a for name in names for a in ("--notebook", name)]
    shared.run("python", "docs/run_notebook.py", *notebooks, "--output-dir",
               str(ROOT / "docs" / "_executed"), *args)


@nox.session(venv_backend="none")
def docs(session: nox.Session) -> None:
    """The documentation site: built offline with warnings as errors (MathJax from the npm
    registry's package, the notebook as ``nox -s notebook`` executed it: run here only if that
    copy is missing), then checked (``docs/check_site.py``: the API reference lists every public
    name; in headless Chromium every page loads without a console error and every image loads).
    Skips the browser check, with its reason, where no browser is installed."""
    shared = shared_environment(session, FRAMEWORKS_PYTHON, TEST_EXTRAS, ".[docs]", *NOTEBOOK)
    mathjax = ROOT / "docs" / "_static" / "mathjax"
    if not (mathjax / "tex-chtml.js").is_file():
        if shutil.which("npm") is None:  # like a missing browser: skipped, except on CI
            message = "the docs need MathJax from the npm registry: install Node.js and npm"
            if nox.options.error_on_missing_interpreters:
                session.error(message)
            session.skip(message)
        with tempfile.TemporaryDirectory() as tmp:
            session.run("npm", "install", "--silent", "--prefix", tmp, "mathjax@3", external=True)
            es5 = Path(tmp, "node_modules", "mathjax", "es5")  # the TeX input, HTML output, fonts
            (mathjax / "output" / "chtml").mkdir(parents=True, exist_ok=True)
            shutil.copy(es5 / "tex-chtml.js", mathjax)
            shutil.copytree(es5 / "output" / "chtml" / "fonts", mathjax / "output" / "chtml" / "fonts",
                            dirs_exist_ok=True)
    missing = [name for name, executed in EXECUTED.items() if not executed.is_file()]
    if missing:
        run_notebooks(shared, missing)
    build = ROOT / "docs" / "_build" / "html"
    # -j auto: the pages are read on every core (the extensions say they are parallel-safe)
    shared.run("sphinx-build", "-W", "--keep-going", "-q", "-j", "auto", "-b", "html", "docs",
               str(build))
    status = shared.run("python", "docs/check_site.py", str(build), success_codes=[0, 2])
    if status == 2:
        session.skip("the site is built; its pages were not opened: no headless browser here")


@nox.session(python=FRAMEWORKS_PYTHON)
def bench(session: nox.Session) -> None:
    """``nox -s bench [-- --repeats 7 --json out.json]``: the speed table (not in a plain ``nox``).

    The benchmarks live in ``benchmarks/`` (not in the wheel) and run from the repository root.
    Against a current NumPy, run it with ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` unset.
    """
    session.install(".[test]", "torch==2.13.0", "jax==0.10.2")
    session.run("python", "-m", "benchmarks.bench", *session.posargs)


@nox.session(python=FRAMEWORKS_PYTHON)
def memory(session: nox.Session) -> None:
    """``nox -s memory [-- --code-label after --json memory.json]``: peak memory and time per image
    of ``fit`` and ``predict`` at 4k, 24k and 60k images, each in a fresh process (``--quick``: a
    smoke run; ``--help``: the options). Not in a plain ``nox``; Linux only (reads ``/proc``).
    """
    session.install(".", "torch==2.13.0", "jax==0.10.2")
    session.run("python", "-m", "benchmarks.memory", *session.posargs)
