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
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device as device_of

from .layers import AvgPool2D, Conv2D, Dense, Flatten, MaxPool2D, ReLU
from .models import Sequential, TinyCNN
from ._xp import Placement, to_numpy

__all__ = ["save", "load", "load_history", "load_meta"]

FORMAT = "tinycnn_xp-checkpoint/1"
_LAYER_CLASSES = {cls.__name__: cls for cls in (Conv2D, ReLU, MaxPool2D, AvgPool2D, Flatten, Dense)}
_DTYPES = ("float32", "float64")
_METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")
_TEXT_ENTRIES = ("architecture", "dtype", "history", "meta")


# -- saving --------------------------------------------------------------------------------------
def save(model: Sequential, path: str | os.PathLike, history: dict | None = None, *,
         meta: dict | None = None) -> Path:
    """Write ``model``, optionally ``fit``'s ``history`` and a JSON-able ``meta`` dict, to ``path``.

    The file is written next to ``path`` under a temporary name, flushed to disk, then renamed
    over ``path`` in one step. Returns ``path`` as a ``Path``. The ``epochs`` entry is the length
    of ``history['train_loss']`` (0 without a history).
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a tinycnn_xp Sequential or TinyCNN, got {type(model).__name__}")
    if history is not None and not isinstance(history, dict):
        raise TypeError(f"history must be the dict fit returns, or None, got {type(history).__name__}")
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
    path = Path(path)
    arrays = _to_arrays(model, history, meta or {})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # atomic: readers see the old file or the new one, never half
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _to_arrays(model: Sequential, history: dict | None, meta: dict) -> dict[str, np.ndarray]:
    architecture = {
        "model": "TinyCNN" if type(model) is TinyCNN else "Sequential",
        "layers": [{"class": type(layer).__name__, "config": layer.config()} for layer in model.layers],
        "names": list(model.names),
        "input_shape": list(model.input_shape) if model.input_shape is not None else None,
    }
    unknown = [entry["class"] for entry in architecture["layers"] if entry["class"] not in _LAYER_CLASSES]
    if unknown:
        raise TypeError(f"cannot save layers of type {unknown}: checkpoints know {sorted(_LAYER_CLASSES)}")
    history = dict(history or {})
    snapshots = history.pop("kernel_snapshots", None) or {}
    arrays = {
        "format": np.array(FORMAT),
        "architecture": np.array(json.dumps(architecture)),
        "epochs": np.array(len(history.get("train_loss", [])), dtype=np.int64),
        "history": np.array(json.dumps(history, default=_plain) if history else ""),
        "meta": np.array(json.dumps(meta, default=_plain)),
    }
    params = model.parameters()
    for name, layer, attr in params:  # host copies: the file never knows the library or device
        arrays[f"param/{name}"] = to_numpy(getattr(layer, attr))
        arrays[f"velocity/{name}"] = to_numpy(layer.velocity[attr])
    arrays["dtype"] = np.array(str(arrays[f"param/{params[0][0]}"].dtype) if params else "float64")
    for epoch, kernels in snapshots.items():
        arrays[f"snapshot/{int(epoch)}"] = to_numpy(kernels)
    return arrays


def _plain(value: Any) -> Any:
    """JSON fallback for NumPy scalars and arrays in a hand-made history or meta."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint's JSON")


# -- loading -------------------------------------------------------------------------------------
def load(path: str | os.PathLike, xp: Any = None, device: Any = None,
         dtype: str | None = None) -> Sequential:
    """The model saved in ``path``, placed on namespace ``xp`` and ``device`` with ``dtype``.

    ``xp`` is an array namespace (``numpy``, ``array_api_strict``, ``array_api_compat.torch``,
    ``array_api_compat.cupy``, ...; default NumPy), ``device`` one of its devices (default: its
    default device), ``dtype`` ``"float32"`` or ``"float64"`` (default: the saved one). Weights
    and momentum velocities are restored: with ``history = load_history(path)``,
    ``fit(..., initial_epoch=len(history["train_loss"]))`` continues the run as if it had never
    stopped. A model saved as a ``TinyCNN`` comes back as a ``TinyCNN``, any other as a
    ``Sequential`` with the same layers and names.

    Raises ``ValueError`` naming the file and the problem when it is not a checkpoint (not an
    ``.npz``, truncated, corrupt, another format, arrays that do not fit the architecture or are
    not finite), and
    ``FileNotFoundError`` when there is no file.
    """
    if dtype is not None and dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES} or None, got {dtype!r}")
    contents = _read(path)
    if contents["dtype"] not in _DTYPES:
        raise ValueError(f"{path}: saved dtype {contents['dtype']!r} is not one of {_DTYPES}")
    model = _build(_json(contents, "architecture", path), path)
    arrays = contents["arrays"]
    expected = {f"{prefix}/{name}": tuple(getattr(layer, attr).shape)
                for name, layer, attr in model.parameters() for prefix in ("param", "velocity")}
    stored = {key for key in arrays if key.startswith(("param/", "velocity/"))}
    if stored != set(expected):
        raise ValueError(f"{path}: the parameter arrays do not match the saved architecture: "
                         f"missing {sorted(set(expected) - stored)}, unexpected {sorted(stored - set(expected))}")
    for key, shape in expected.items():
        if arrays[key].shape != shape or arrays[key].dtype.kind != "f":
            raise ValueError(f"{path}: {key} has shape {arrays[key].shape} and dtype {arrays[key].dtype}, "
                             f"the architecture needs a floating array of shape {shape}")
        if not np.all(np.isfinite(arrays[key])):  # fit never leaves these; a damaged file does
            raise ValueError(f"{path}: {key} holds NaN or infinite values; a trained model's "
                             "parameters and velocities are finite")
    for name, layer, attr in model.parameters():
        setattr(layer, attr, arrays[f"param/{name}"])
        layer.velocity[attr] = arrays[f"velocity/{name}"]
    model._adopt(_placement(xp, device, dtype or contents["dtype"]))  # one transfer per array
    return model


def load_history(path: str | os.PathLike) -> dict | None:
    """The history saved with the model (``fit``'s dict, snapshots as NumPy arrays), or ``None``."""
    contents = _read(path)
    if not contents["history"]:
        return None
    history = _json(contents, "history", path)
    epochs = int(contents["arrays"]["epochs"]) if contents["arrays"]["epochs"].shape == () else -1
    for key in _METRICS:
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
    contents = {"arrays": arrays}
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


def _build(architecture: Any, path: Any) -> Sequential:
    """A fresh model with the saved architecture (the caller overwrites its weights)."""
    try:
        kind, entries = architecture["model"], architecture["layers"]
        names, input_shape = architecture["names"], architecture["input_shape"]
        if kind == "TinyCNN":
            model = TinyCNN(num_classes=entries[-1]["config"]["out_features"])
        elif kind == "Sequential":
            layers = [_LAYER_CLASSES[entry["class"]](**entry["config"]) for entry in entries]
            model = Sequential(layers, names=names,
                               input_shape=tuple(input_shape) if input_shape is not None else None)
        else:
            raise ValueError(f"unknown model class {kind!r}")
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"{path}: the saved architecture cannot be rebuilt: "
                         f"{type(exc).__name__}: {exc}") from None
    rebuilt = [{"class": type(layer).__name__, "config": layer.config()} for layer in model.layers]
    if rebuilt != entries or model.names != names:
        raise ValueError(f"{path}: the saved layers {entries} do not make a {kind}")
    return model


def _placement(xp: Any, device: Any, dtype: str) -> Placement:
    """Where a loaded model goes: the namespace, device and dtype of a probe array made there."""
    xp = np if xp is None else xp
    try:
        probe = xp.zeros((1,), dtype=getattr(xp, dtype), **({} if device is None else {"device": device}))
    except Exception as exc:
        raise ValueError(f"cannot make a {dtype} array with {getattr(xp, '__name__', xp)} on device "
                         f"{device!r}: {type(exc).__name__}: {exc}") from None
    return Placement(array_namespace(probe), device_of(probe), probe.dtype)
