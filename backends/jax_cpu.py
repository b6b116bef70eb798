"""JAX on the CPU: immutable arrays, so any state change that relies on mutating an array in place
is lost here, and shows as a model that does not learn.

The library never changes JAX's settings; like a user, the test suite turns float64 on itself,
before any array is made. Pinned to a release that installs on this machine.
"""

import os

NAME = "jax"
REQUIREMENTS = ["jax==0.10.2", "jaxlib==0.10.2"]
#: the share of the randomized architectures the suite draws here: each compiles (seconds)
EXAMPLE_SCALE = 0.06
#: a test file's tests on one test process: they share shapes, so each program is traced and
#: lowered once (the on-disk cache below spares the other process the compile, not the lowering)
DIST = "loadfile"
#: the session's environment: one on-disk compilation cache for both test processes (what one
#: compiled, the other reads; every program, since most compile in tens of milliseconds) and for
#: the next run of the session; and XLA's CPU code generated the quick way, since the suite's
#: programs are tiny and compiling them is most of their time: without LLVM's optimization passes
#: (they reorder and inline) and with the elemental emitters rather than the newer fusion
#: emitters (the same arithmetic, a third less compile time; no fast-math either way). Flags the
#: user set come after, so theirs win.
QUICK_CODEGEN = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
ENV = {"JAX_COMPILATION_CACHE_DIR": "{root}/.nox/jax-compilation-cache",
       "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
       "XLA_FLAGS": f"{QUICK_CODEGEN} {os.environ.get('XLA_FLAGS', '')}"
                    .strip().replace("{", "{{").replace("}", "}}")}  # noxfile formats {root}


def probe() -> str | None:
    return None


def unavailable() -> str | None:
    try:
        import jax  # noqa: F401
    except ImportError:
        return "jax is not installed (pip install jax==0.10.2)"
    return None


def namespace():
    import jax
    jax.config.update("jax_enable_x64", True)  # float64 for the gradient checks and parity
    import jax.numpy
    return jax.numpy


def device():
    import jax
    return jax.devices("cpu")[0]


def asarray(host):
    import jax.numpy as jnp
    return jnp.array(host, copy=True, device=device())


def to_numpy(array):
    import numpy
    return numpy.array(array, copy=True)
