"""Small helpers shared by several test modules."""

from tinycnn_xp._xp import to_numpy


def param_state(model):
    """Host copies of every parameter and velocity, by qualified name (``conv.weights``, ...)."""
    out = {}
    for name, layer, attr in model.parameters():
        out[name] = to_numpy(getattr(layer, attr))
        out[name + ".velocity"] = to_numpy(layer.velocity[attr])
    return out


def run_cli(args, cwd, prelude="", env=None, timeout=300):
    """``tinycnn-xp *args`` as the console entry runs it (``from tinycnn_xp.cli import main``), in
    a subprocess, after ``prelude`` (Python code that, e.g., patches ``os`` to inject failures)."""
    import subprocess
    import sys
    code = f"import sys\n{prelude}\nfrom tinycnn_xp.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)


def local_cluster(**options):
    """A Dask ``LocalCluster`` on 127.0.0.1 without a dashboard, its scheduler's own HTTP server
    (health checks, metrics) on a free port: both test processes may start one at once, and the
    second would find distributed's default port taken (and warn)."""
    import distributed
    return distributed.LocalCluster(host="127.0.0.1", dashboard_address=None,
                                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, **options)


def one_line(result):
    """The single line the command wrote on stderr (and that there was exactly one, no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    return lines[0]


def read_terminal(master):
    """Everything written to a pseudo-terminal (``pty.openpty()``'s ``master``) until its child
    closes it; the master is closed afterwards."""
    import os
    import select
    output = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        try:
            chunk = os.read(master, 65536) if ready else b""
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    return output.decode(errors="replace")
