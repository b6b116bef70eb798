"""One suite, many backends: ``--backend NAME`` (or ``TINYCNN_BACKEND``) picks where arrays live.

A backend that cannot run here is skipped with its reason; with ``TINYCNN_REQUIRE_GPU=1`` the CuPy
skip becomes a failure.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for ``backends``
import backends


def pytest_addoption(parser):
    parser.addoption("--backend", default=os.environ.get("TINYCNN_BACKEND", "numpy"),
                     choices=list(backends.MODULES), help="array library the suite runs on")
    parser.addoption("--device", default=None,
                     help="the backend's device, where it offers several (array_api_strict: "
                          "device1, the default, or no_float64 with -m float32)")


def pytest_configure(config):
    config.addinivalue_line("markers", "float32: runs in float32 only (selected on devices "
                                       "without float64: -m float32)")
    config.addinivalue_line("markers", "slow: command-line subprocesses, worker pools, the "
                                       "notebook, long randomized runs (nox -s quick leaves them out)")
    module = backends.load(config.getoption("--backend"))
    device = config.getoption("--device")
    if device is not None:
        if device not in getattr(module, "DEVICES", ()):
            raise pytest.UsageError(f"--device: backend {module.NAME} offers "
                                    f"{list(getattr(module, 'DEVICES', ()))}, got {device!r}")
        module.DEVICE = device
    backends.selected = module


#: whole modules of slow tests: command-line subprocesses and terminals, the benchmarks' own
#: tests, checkpoint fuzzing, the notebook, the documentation's examples.
SLOW_MODULES = {"test_cli", "test_cli_resume", "test_cli_sweep", "test_cli_voice", "test_cli_optimizers",
                "test_bench", "test_checkpoint_fuzz", "test_notebook", "test_docs_examples",
                "test_own_data"}


#: why a test that never asks for the backend is left to the numpy session elsewhere: it would
#: run the same NumPy code again (the checkpoint fuzzer, the file limits, the package's metadata).
ELSEWHERE = ("does not use the backend: runs in the numpy session, on every Python "
             "(tests(numpy-3.11), ...)")


def pytest_collection_modifyitems(config, items):
    on_numpy = backends.selected.NAME == "numpy"
    for item in items:
        if item.module.__name__.rpartition(".")[2] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if not on_numpy and "backend" not in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=ELSEWHERE))
    # The slow tests first (otherwise in collection order): pytest-xdist hands tests out in this
    # order, so the short ones fill the end of the run instead of one worker idling while the
    # other finishes a long test.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_report_header(config):
    module = backends.selected
    return f"tinycnn_xp backend: {module.NAME}, device {getattr(module, 'DEVICE', 'default')}"


@pytest.fixture(scope="session")
def backend(request):
    """The selected backend module (see ``backends/``), skipped with a reason if unusable."""
    module = backends.selected
    reason = module.unavailable()
    if reason:
        if module.NAME == "cupy" and os.environ.get("TINYCNN_REQUIRE_GPU") == "1":
            pytest.fail(f"TINYCNN_REQUIRE_GPU=1 but the CuPy backend cannot run: {reason}")
        pytest.skip(f"backend {module.NAME} unavailable: {reason}")
    module.namespace()  # import it once, with its settings (e.g. torch's thread count)
    return module


@pytest.fixture(scope="session")
def xp(backend):
    return backend.namespace()


@pytest.fixture(params=["float64", pytest.param("float32", marks=pytest.mark.float32)])
def dtype_name(request):
    return request.param


@pytest.fixture
def put(backend):
    """``put(host_array, dtype_name=None)``: a NumPy array placed on the backend (optionally cast)."""
    def place(host, dtype_name=None):
        host = np.asarray(host)
        if dtype_name is not None:
            host = host.astype(dtype_name)
        return backend.asarray(host)
    return place


@pytest.fixture
def host(backend):
    """``host(array)``: a backend array brought back as NumPy, for assertions."""
    return backend.to_numpy


@pytest.fixture(autouse=True)
def _python_handles_ctrl_c():
    """Every test runs with Python's own Ctrl-C handling, as under a terminal.

    A shell that starts the suite in the background (``nox &``, some CI runners) makes SIGINT
    ignored, Python then installs no handler, and the children the tests start inherit the
    ignored signal: every Ctrl-C test would see nothing. The previous handling is put back after.
    """
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, signal.SIG_DFL, None):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if signal.getsignal(signal.SIGINT) is not previous and previous is not None:
        signal.signal(signal.SIGINT, previous)
