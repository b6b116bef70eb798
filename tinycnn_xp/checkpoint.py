"""Checkpoints: a model's architecture, weights, momentum state, dtype and history in one ``.npz``.

The file holds only plain arrays (``numpy.load(..., allow_pickle=False)`` reads it): host copies
of every parameter and velocity, and JSON text for the rest. It does not remember the library or
device it was saved from, so a model saved from torch or CuPy loads onto NumPy, array-api-strict
or a GPU alike, with the same weights bit for bit. Writes are atomic: a crash mid-write leaves the
previous file untouched.

Entries (format 1): ``format`` (``"tinycnn_xp-checkpoint/1"``), ``architecture`` (JSON: model
class ``"TinyCNN"`` or ``"Sequential"``, each layer's class name and ``config()``, layer names,
``input_shape``), ``dtype``, ``epochs`` (epochs trained), ``history`` and ``meta`` (JSON),
``param/<name>`` and ``velocity/<name>`` per parameter (``conv.weights``, ...), and
``snapshot/<epoch>`` for the history's kernel snapshots.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ._checks import FLOAT_DTYPES
from ._xp import to_numpy
from .history import METRICS, History

__all__ = ["save", "read", "Checkpoint", "load_history", "load_meta"]

FORMAT = "tinycnn_xp-checkpoint/1"
_TEXT_ENTRIES = ("architecture", "dtype", "history", "meta")


class Checkpoint(NamedTuple):
    """What a checkpoint file holds, read back on the host."""

    config: dict[str, Any]                   # the model's ``config()``
    state: dict[str, dict[str, np.ndarray]]  # the model's ``state()``, as host arrays
    dtype: str                               # "float32" or "float64"
    history: History | None
    meta: dict[str, Any]


# -- saving --------------------------------------------------------------------------------------
def save(model: Any, path: str | os.PathLike, history: History | None = None, *,
         meta: dict | None = None) -> Path:
    """Write ``model``, optionally ``fit``'s ``history`` and a JSON-able ``meta`` dict, to ``path``.

    ``model`` is anything with ``config()`` (JSON-able) and ``state()`` (``{"param": {name:
    array}, "velocity": {name: array}}``), as ``Sequential`` has; this module knows no model class.

    The file is written next to ``path`` under a temporary name, flushed to disk, then renamed
    over ``path`` in one step. Returns ``path`` as a ``Path``. The ``epochs`` entry is the length
    of ``history['train_loss']`` (0 without a history).
    """
    if not (callable(getattr(model, "config", None)) and callable(getattr(model, "state", None))):
        raise TypeError(f"model must be a tinycnn_xp model (with config() and state()), got "
                        f"{type(model).__name__}")
    if history is not None and not isinstance(history, dict):
        raise TypeError(f"history must be the dict fit returns, or None, got {type(history).__name__}")
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
    path = Path(path)
    arrays = _to_arrays(model, history, meta or {})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, allow_pickle=False, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _to_arrays(model: Any, history: History | None, meta: dict) -> dict[str, np.ndarray]:
    record: dict = dict(history or {})
    snapshots = record.pop("kernel_snapshots", None) or {}
    arrays = {
        "format": np.array(FORMAT),
        "architecture": np.array(json.dumps(model.config())),
        "epochs": np.array(len(record.get("train_loss", [])), dtype=np.int64),
        "history": np.array(json.dumps(record, default=_plain) if record else ""),
        "meta": np.array(json.dumps(meta, default=_plain)),
    }
    state = model.state()
    for group in ("param", "velocity"):  # host copies: the file never knows the library or device
        for name, array in state[group].items():
            arrays[f"{group}/{name}"] = to_numpy(array)
    first = next(iter(state["param"]), None)
    arrays["dtype"] = np.array(str(arrays[f"param/{first}"].dtype) if first else "float64")
    for epoch, kernels in snapshots.items():
        arrays[f"snapshot/{int(epoch)}"] = to_numpy(kernels)
    return arrays


def _plain(value: Any) -> Any:
    """JSON fallback for NumPy scalars and arrays in a hand-made history or meta."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint's JSON")


# -- loading -------------------------------------------------------------------------------------
def read(path: str | os.PathLike) -> Checkpoint:
    """Everything in the checkpoint at ``path``, checked for the format, on the host.

    ``Sequential.load(path)`` builds the model from it. Raises ``ValueError`` naming the file and
    the problem when it is not a checkpoint (not an ``.npz``, truncated, corrupt, another format,
    entries of the wrong kind), and ``FileNotFoundError`` when there is no file.
    """
    contents = _read(path)
    if contents["dtype"] not in FLOAT_DTYPES:
        raise ValueError(f"{path}: saved dtype {contents['dtype']!r} is not one of {FLOAT_DTYPES}")
    config = _json(contents, "architecture", path)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: checkpoint entry 'architecture' is not a JSON object")
    arrays = contents["arrays"]
    state: dict[str, dict[str, np.ndarray]] = {"param": {}, "velocity": {}}
    for key, array in arrays.items():
        group, _, name = key.partition("/")
        if group in state:
            if array.dtype.kind != "f":
                raise ValueError(f"{path}: {key} has dtype {array.dtype}, not a floating dtype")
            state[group][name] = array
    return Checkpoint(config, state, contents["dtype"], load_history(path, contents),
                      _json(contents, "meta", path))


def load_history(path: str | os.PathLike, contents: dict | None = None) -> History | None:
    """The history saved with the model (``fit``'s dict, snapshots as NumPy arrays), or ``None``."""
    contents = _read(path) if contents is None else contents
    if not contents["history"]:
        return None
    history = _json(contents, "history", path)
    epochs = int(contents["arrays"]["epochs"]) if contents["arrays"]["epochs"].shape == () else -1
    for key in METRICS:
        if not isinstance(history, dict) or not isinstance(history.get(key), list) \
                or len(history[key]) != epochs:
            raise ValueError(f"{path}: the saved history has no {key!r} list of {epochs} epochs")
    snapshots = {int(key.split("/", 1)[1]): value for key, value in contents["arrays"].items()
                 if key.startswith("snapshot/")}
    history["kernel_snapshots"] = dict(sorted(snapshots.items()))
    return history


def load_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` dict given to ``save`` (``{}`` if none)."""
    return _json(_read(path), "meta", path)


def _read(path: str | os.PathLike) -> dict:
    """Every array of the file, checked for the format; ``ValueError`` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    with open(path, "rb") as handle:
        signature = handle.read(4)
    if signature != b"PK\x03\x04":  # every .npz is a zip archive
        what = "the file is empty" if not signature else "not an .npz (zip) file"
        raise ValueError(f"{path}: not a tinycnn_xp checkpoint: {what}")
    try:
        with np.load(path, allow_pickle=False) as npz:  # reading every member checks its CRC
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:  # BadZipFile, EOFError, zlib.error, ValueError (pickles), OSError
        raise ValueError(f"{path}: unreadable .npz (truncated, corrupt, or holding pickled objects): "
                         f"{type(exc).__name__}: {exc}") from None
    found = arrays.get("format")
    if found is None or found.shape != () or str(found) != FORMAT:
        what = "no 'format' entry" if found is None else f"format {str(found)[:60]!r}"
        raise ValueError(f"{path}: not a tinycnn_xp checkpoint (expected format {FORMAT!r}, found {what})")
    contents: dict[str, Any] = {"arrays": arrays}
    for key in _TEXT_ENTRIES:
        if key not in arrays or arrays[key].shape != () or arrays[key].dtype.kind != "U":
            raise ValueError(f"{path}: checkpoint entry {key!r} is missing or not text")
        contents[key] = str(arrays[key])
    if "epochs" not in arrays or arrays["epochs"].dtype.kind not in "iu":
        raise ValueError(f"{path}: checkpoint entry 'epochs' is missing or not an integer")
    return contents


def _json(contents: dict, key: str, path: Any) -> Any:
    try:
        return json.loads(contents[key])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: checkpoint entry {key!r} is not valid JSON ({exc})") from None
