"""``nox``: the shared suite once per backend (``tests(numpy)``, ``tests(array_api_strict)``, ...).

A backend that cannot run on this machine is skipped with its reason and the exit status stays 0;
``TINYCNN_REQUIRE_GPU=1`` turns the CuPy skip into a failure. Arguments after ``--`` go to pytest.
"""

import os
import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).resolve().parent))
import backends  # noqa: E402

nox.options.sessions = ["tests"]
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
    # The optional extras too, so the figure, progress and digits tests run rather than skip.
    session.install("-e", ".[test,plot,progress,digits]", *module.REQUIREMENTS)
    session.run("pytest", f"--backend={backend}", "-ra", *session.posargs,
                env={"TINYCNN_REQUIRE_GPU": os.environ.get("TINYCNN_REQUIRE_GPU", "")})


@nox.session
def bench(session: nox.Session) -> None:
    """``nox -s bench [-- --repeats 7 --json out.json]``: the speed/memory table (not in a plain ``nox``)."""
    session.install(".[test]", "torch==2.13.0")
    session.run("python", "-m", "tinycnn_xp.bench", *session.posargs)
