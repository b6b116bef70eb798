"""The backends the shared test suite runs on, one small module each.

Every module says: ``NAME``; ``REQUIREMENTS`` (pip requirements nox installs for it); ``probe()``
(a reason it cannot run on this machine, checked before installing anything, or ``None``);
``unavailable()`` (the same, checked after importing it); ``namespace()``/``device()`` (namespace
and device arrays go to); ``asarray(host)`` (place a NumPy array there); ``to_numpy(array)``
(bring one back for assertions); optionally ``DEVICES``, the devices ``pytest --device`` may
choose, ``RUNS``, extra pytest runs of its nox session, ``ENV``, environment variables of
that session (``{root}``: the repository), ``INSTALLER = "pip"`` to install its
``REQUIREMENTS`` with pip where nox would use uv, ``DIST``, how pytest-xdist hands out its tests
(``loadgroup``, one at a time, unless it says otherwise), and ``EXAMPLE_SCALE``, the share of the
randomized architectures the suite draws there (the numpy session draws them all). Read by
``noxfile.py`` and ``tests/conftest.py``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: backend name -> module name, in the order ``nox`` runs them.
MODULES = {
    "numpy": "backends.numpy_cpu",
    "array_api_strict": "backends.strict_device1",
    "torch": "backends.torch_cpu",
    "jax": "backends.jax_cpu",
    "cupy": "backends.cupy_gpu",
}


#: the backend module the test session runs on (set by ``tests/conftest.py``).
selected: ModuleType


def load(name: str) -> ModuleType:
    if name not in MODULES:
        raise ValueError(f"backend must be one of {list(MODULES)}, got {name!r}")
    return importlib.import_module(MODULES[name])
