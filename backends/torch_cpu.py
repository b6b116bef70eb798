"""PyTorch on the CPU through ``array_api_compat``: a second real library with its own semantics.

Pinned: this machine has the CPU build of torch 2.13.0 on disk; any other version (or an unpinned
``torch``) downloads a CUDA build of several GB.
"""

NAME = "torch"
REQUIREMENTS = ["torch==2.13.0"]
#: pip, even where nox has uv: pip reads the machine's own wheels (pip's ``find-links``) and takes
#: the CPU build there, where uv takes PyPI's CUDA build of the same version.
INSTALLER = "pip"


def probe() -> str | None:
    return None


def unavailable() -> str | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed (pip install torch==2.13.0)"
    return None


def namespace():
    import array_api_compat.torch
    import torch
    # One thread: the suite's arrays are tiny, and on a small shared machine torch's own thread
    # pool oversubscribes the cores (a 30-epoch fit: 0.4 s with one thread, 4.8 s with two).
    torch.set_num_threads(1)
    return array_api_compat.torch


def device():
    import torch
    return torch.device("cpu")


def asarray(host):
    import torch
    return torch.asarray(host, device=device()).clone()


def to_numpy(array):
    return array.detach().cpu().numpy()
