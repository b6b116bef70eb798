"""Checkpoints: a model's architecture, weights, momentum state, dtype and history in one ``.npz``.

The file holds only plain arrays (no pickles): host copies of every parameter and velocity, and
JSON text for the rest. It does not remember the library or device it was saved from, so a model
saved from torch or CuPy loads onto NumPy, array-api-strict or a GPU alike, with the same weights
bit for bit.

Entries (format 2): ``format`` (``"tinycnn_xp-checkpoint/2"``), ``architecture`` (JSON: model
class ``"TinyCNN"`` or ``"Sequential"``, each layer's class name and ``config()``, layer names,
``input_shape``), ``dtype``, ``epochs`` (epochs trained), ``history`` and ``meta`` (JSON),
``param/<name>`` and ``velocity/<name>`` per parameter (``conv.weights``, ...), ``buffer/<name>``
per buffer (``bn.running_mean``, ...), ``optimizer`` (JSON: the optimizer's ``config()`` with its
schedule, and its step count; empty without one) with ``optimizer/<slot>/<name>`` for its state
(Adam's ``exp_avg``, ...; SGD's velocities are the ``velocity/`` entries), and
``snapshot/<epoch>`` for the history's kernel snapshots. Format 1 (0.1 to 0.3) has no buffers,
optimizer or ``lr`` history, and still loads.

**A file is data, never control.** Reading costs what the declared model costs, whatever the file
says:

- The zip directory and every member's ``.npy`` header are read first; members are inflated only
  after their names, dtypes, shapes and sizes match the format and the declared architecture
  (``Sequential.load`` declares it with ``Sequential.parameter_shapes``, computed without
  building the model). A member the format does not name is refused without being inflated.
- A declared architecture of more than ``MAX_PARAMETERS`` parameters is refused (``max_parameters``
  raises the cap). Text entries are capped (``TEXT_LIMITS``, in characters), and so is the number
  of snapshots (``MAX_SNAPSHOTS``), each the shape of a stored convolution's weights.
- The history is checked: ``fit``'s keys only, four lists of ``epochs`` finite numbers
  (accuracies in [0, 1], losses >= 0), integer epochs, a boolean ``interrupted``. ``meta`` must be
  a JSON object; what its values mean is for its reader to check (the command line does).

Every problem is a ``ValueError`` naming the file and the entry. ``save`` refuses what ``read``
would refuse, so a file it writes always loads.

**Files behave like files.** ``save`` writes next to the target under a temporary name, flushes it
to disk and renames it over the target in one step (a crash leaves the previous file whole). The
new file gets an ordinary file's permissions (``0o666`` under the umask; an existing file keeps
its mode), saving over a symbolic link writes the link's target, and errors name the path given.
"""

from __future__ import annotations

import errno
import json
import math
import os
import secrets
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from . import _checks, optim
from ._checks import FLOAT_DTYPES
from ._xp import to_numpy
from .history import METRICS, History

__all__ = ["save", "read", "Checkpoint", "load_history", "load_meta", "FORMAT", "MAX_PARAMETERS",
           "TEXT_LIMITS", "HISTORY_CHARS_PER_EPOCH", "MAX_EPOCHS", "MAX_SNAPSHOTS", "text_limit"]

FORMAT = "tinycnn_xp-checkpoint/2"
#: the formats ``read`` takes: this one and 0.1 to 0.3's
FORMATS = ("tinycnn_xp-checkpoint/1", FORMAT)
#: the most parameters a checkpoint's architecture may declare (``Sequential.load(...,
#: max_parameters=)`` raises it): 10**8 float64 parameters and their velocities are 1.6 GB.
MAX_PARAMETERS = 10**8
#: the longest each text entry may be, in characters; the history may also take
#: ``HISTORY_CHARS_PER_EPOCH`` per epoch the file declares (``fit``'s 80 epochs take 7,000).
TEXT_LIMITS = {"format": 64, "dtype": 16, "architecture": 1 << 20, "meta": 1 << 16,
               "history": 1 << 22, "optimizer": 1 << 16}
#: five numbers (four metrics and the rate) of at most 24 characters and their separators: a
#: history's room per epoch.
HISTORY_CHARS_PER_EPOCH = 5 * 26 + 8
#: the most epochs a checkpoint may declare: its history text is then at most ~112 MB.
MAX_EPOCHS = 10**6
#: the most kernel snapshots a history may hold (``fit`` keeps at most 7).
MAX_SNAPSHOTS = 256
#: the largest zip directory a checkpoint may have (about 9,000 members), checked before it is
#: parsed.
MAX_DIRECTORY_BYTES = 1 << 20

_TEXT_ENTRIES = ("architecture", "dtype", "history", "meta")
_HISTORY_FLAGS = {"diverged_epoch": int, "stopped_epoch": int, "interrupted": bool,
                  "interrupted_steps": int}
_STATE_GROUPS = ("param", "velocity", "buffer", "optimizer")
_ACCURACIES = ("train_acc", "val_acc")
_CHUNK = 1 << 20  # members are inflated 1 MiB at a time, straight into their arrays

Shapes = Callable[[dict[str, Any]], dict[str, tuple[int, ...]]]


class Checkpoint(NamedTuple):
    """What a checkpoint file holds, read back on the host (the history without its kernel
    snapshots: ``load_history`` reads them)."""

    config: dict[str, Any]                   # the model's ``config()``
    state: dict[str, dict[str, np.ndarray]]  # the model's ``state()``, as host arrays
    dtype: str                               # "float32" or "float64"
    history: History | None
    meta: dict[str, Any]
    #: ``{"config": optimizer config, "steps": int, "state": {"<slot>/<name>": array}}`` or None
    optimizer: dict[str, Any] | None = None


def optimizer_of(saved: Checkpoint, dtype: str) -> optim.Optimizer:
    """The optimizer a checkpoint holds, with its step count and state (host arrays in ``dtype``)."""
    assert saved.optimizer is not None
    optimizer = optim.optimizer_from_config(saved.optimizer["config"])
    arrays: dict[str, dict[str, Any]] = {}
    for key, array in saved.optimizer["state"].items():
        slot, _, name = key.partition("/")
        arrays.setdefault(slot, {})[name] = array.astype(dtype, copy=False)
    return optimizer.load_state(saved.optimizer["steps"], arrays)


# -- saving --------------------------------------------------------------------------------------
def save(model: Any, path: str | os.PathLike, history: History | None = None, *,
         meta: dict | None = None) -> Path:
    """Write ``model``, optionally ``fit``'s ``history`` and a JSON-able ``meta`` dict, to ``path``.

    ``model`` is anything with ``config()`` (JSON-able) and ``state()`` (``{"param": {name:
    array}, "velocity": {name: array}, "buffer": {name: array}}``), as ``Sequential`` has, and
    optionally an ``optimizer`` (``tinycnn_xp.optim``); this module knows no model class. An
    optimizer whose schedule is a Python function is saved without it, with a warning.

    The file is written next to ``path`` (next to its target, for a symbolic link) under a
    temporary name, flushed to disk, then renamed over it in one step. Returns ``path`` as a
    ``Path``. The ``epochs`` entry is the length of ``history['train_loss']`` (0 without a
    history). ``ValueError`` for contents a checkpoint cannot hold (what ``read`` would refuse),
    ``OSError`` naming ``path`` if it cannot be written.
    """
    if not (callable(getattr(model, "config", None)) and callable(getattr(model, "state", None))):
        raise TypeError(f"model must be a tinycnn_xp model (with config() and state()), got "
                        f"{type(model).__name__}")
    if history is not None and not isinstance(history, dict):
        raise TypeError(f"history must be the dict fit returns, or None, got {type(history).__name__}")
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
    arrays = _to_arrays(model, history, meta or {}, path)
    _write_atomically(Path(path), arrays)
    return Path(path)


def _to_arrays(model: Any, history: History | None, meta: dict, path: Any) -> dict[str, np.ndarray]:
    record: dict = dict(history or {})
    snapshots = record.pop("kernel_snapshots", None) or {}
    epochs = len(record.get("train_loss", []))
    where = f"cannot save to {os.fspath(path)}"
    optimizer = getattr(model, "optimizer", None)
    texts = {"architecture": _dumps(model.config(), "the model's config()", where),
             "history": _dumps(record, "history", where) if record else "",
             "meta": _dumps(meta, "meta", where),
             "optimizer": _dumps(_optimizer_entry(optimizer), "the optimizer", where)
             if optimizer is not None else ""}
    arrays = {"format": np.array(FORMAT), "epochs": np.array(epochs, dtype=np.int64),
              **{key: np.array(text) for key, text in texts.items()}}
    state = model.state()
    for group in ("param", "velocity", "buffer"):  # host copies: the file never knows the
        for name, array in state.get(group, {}).items():  # library or device
            arrays[f"{group}/{name}"] = to_numpy(array)
    if optimizer is not None and optimizer.slots and not isinstance(optimizer, optim.SGD):
        held = optimizer.state or {}
        for slot in optimizer.slots:
            for name, param in state["param"].items():
                value = held.get(slot, {}).get(name)
                arrays[f"optimizer/{slot}/{name}"] = (to_numpy(value) if value is not None
                                                      else np.zeros_like(to_numpy(param)))
    first = next(iter(state["param"]), None)
    dtype = str(arrays[f"param/{first}"].dtype) if first else "float64"
    arrays["dtype"] = np.array(dtype)
    if not isinstance(snapshots, dict):
        raise ValueError(f"{where}: history['kernel_snapshots'] must be a dict {{epoch: kernels}}, "
                         f"got {type(snapshots).__name__}")
    for epoch, kernels in snapshots.items():
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise ValueError(f"{where}: history['kernel_snapshots'] keys must be epochs "
                             f"(integers), got {epoch!r}")
        # In the model's dtype: a run resumed in another dtype carries the first part's snapshots.
        kernels = to_numpy(kernels)
        if kernels.dtype.kind == "f" and kernels.dtype != np.dtype(dtype):
            kernels = kernels.astype(dtype)
        arrays[f"snapshot/{int(epoch)}"] = kernels
    # What read would refuse is refused here, before anything is written.
    layout = {key: _Member(key, tuple(a.shape), a.dtype, False, 0) for key, a in arrays.items()}
    _check_layout(layout, where, epochs)
    _check_texts({key: str(arrays[key]) for key in ("format", "dtype", *_TEXT_ENTRIES)}, where)
    _check_state(layout, dtype, None, None, where)
    if optimizer is not None:
        _check_optimizer(json.loads(texts["optimizer"]), where)
    if record:
        _check_history(json.loads(texts["history"]), epochs, where)
    _check_snapshots(layout, dtype, epochs, bool(record), where)
    for key, array in arrays.items():
        if "/" in key and key.partition("/")[0] in (*_STATE_GROUPS, "snapshot"):
            _check_finite(array, key, where)
    return arrays


def _optimizer_entry(optimizer: Any) -> dict[str, Any]:
    """The ``optimizer`` text entry: its settings and step count."""
    config = optimizer.config()
    if not optimizer.schedule.storable:
        warnings.warn(f"{optimizer!r}: its schedule is a Python function, which a checkpoint "
                      f"cannot hold; pass the optimizer again to resume", UserWarning, stacklevel=4)
    return {"config": config, "steps": optimizer.steps}


def _dumps(value: Any, what: str, where: str) -> str:
    try:
        return json.dumps(value, default=_plain)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{where}: {what} cannot be stored as JSON: {exc}") from None


def _plain(value: Any) -> Any:
    """JSON fallback for NumPy scalars and arrays in a hand-made history or meta."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint's JSON")


def _write_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` as an ``.npz`` at ``path``: a temporary file next to the target, renamed over it."""
    target = Path(os.path.realpath(path))  # a symbolic link: write its target, keep the link
    try:
        existing = os.stat(target)
    except OSError:
        mode = None
    else:
        if not stat.S_ISREG(existing.st_mode):  # the rename would replace a device, a FIFO, ...
            raise OSError(errno.EEXIST, f"it is {_kind_of(existing.st_mode)}, not a regular file: "
                          f"a checkpoint replaces only a file", os.fspath(path))
        mode = stat.S_IMODE(existing.st_mode)
    tmp = None
    try:
        tmp, fd = _create_temporary(target)
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, allow_pickle=False, **arrays)
            handle.flush()
            if mode is not None and hasattr(os, "fchmod"):  # overwriting keeps the file's mode
                os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, target)  # atomic: readers see the old file or the new one, never half
        tmp = None
        sync_directory(target.parent)
    except OSError as exc:
        raise _naming(exc, path) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _kind_of(mode: int) -> str:
    """What a path whose ``st_mode`` is ``mode`` is, in words."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _create_temporary(target: Path) -> tuple[Path, int]:
    """A new file next to ``target``, created with mode 0o666 so that the umask applies, as it
    does to any file a program creates (``tempfile`` would make it 0o600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {target}")


def sync_directory(folder: Path) -> None:
    """Flush the rename to disk too (POSIX; elsewhere, and where it is refused, a no-op)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` about ``path`` as the caller gave it (not the hidden temporary file or the target
    of a link), of the same kind (``PermissionError``, ...)."""
    if exc.errno is None:
        return OSError(f"cannot write {os.fspath(path)}: {exc}")
    return OSError(exc.errno, exc.strerror or str(exc), os.fspath(path))


# -- reading -------------------------------------------------------------------------------------
def read(path: str | os.PathLike, shapes: Shapes | None = None, *,
         max_parameters: int | None = None, buffer_shapes: Shapes | None = None) -> Checkpoint:
    """Everything in the checkpoint at ``path``, checked, on the host.

    ``shapes(config)`` gives the parameter shapes the architecture declares (``{"conv.weights":
    (3, 1, 3, 3), ...}``; ``Sequential.parameter_shapes``, which ``Sequential.load`` passes);
    the stored arrays must be exactly those, in the saved dtype, before any is read, and so must
    the buffers ``buffer_shapes(config)`` declares and the optimizer state its settings declare.
    Without ``shapes`` parameters and velocities must pair up. The declared (or stored) parameter
    count, with the optimizer's state, is capped at ``max_parameters`` (default
    ``MAX_PARAMETERS``).

    Raises ``ValueError`` naming the file and the entry for anything that is not a good
    checkpoint, and ``FileNotFoundError`` when there is no file.
    """
    cap = MAX_PARAMETERS if max_parameters is None else _checks.positive_int(max_parameters,
                                                                             "max_parameters")
    with _Archive(path) as archive:
        config = archive.json("architecture")
        if not isinstance(config, dict):
            raise ValueError(f"{path}: checkpoint entry 'architecture' is not a JSON object")
        declared, extra = None, {}
        entry = archive.optimizer()
        try:
            if shapes is not None:
                declared = shapes(config)
                extra = {f"buffer/{name}": shape for name, shape in
                         (buffer_shapes(config) if buffer_shapes is not None else {}).items()}
                if entry is not None:
                    extra.update({f"optimizer/{key}": shape for key, shape in
                                  optim.state_shapes(entry["config"], declared).items()})
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        _check_state(archive.members, archive.texts["dtype"], declared, cap, str(path), extra)
        history = archive.history(snapshots=False)  # checked from their headers, never inflated
        meta = archive.meta()
        state: dict[str, dict[str, np.ndarray]] = {group: {} for group in _STATE_GROUPS}
        for key in archive.members:
            group, _, name = key.partition("/")
            if group in state and name:
                state[group][name] = archive.array(key)
                _check_finite(state[group][name], key, str(path))
    held = state.pop("optimizer")
    if entry is not None:
        entry = {**entry, "state": held}
    return Checkpoint(config, state, archive.texts["dtype"], history, meta, entry)


def load_history(path: str | os.PathLike, *, max_parameters: int | None = None) -> History | None:
    """The history saved with the model (``fit``'s dict, snapshots as NumPy arrays), or ``None``.

    Checked like ``read`` checks it (the parameters only from their headers); the parameters and
    the snapshots together are capped at ``max_parameters`` values (default ``MAX_PARAMETERS``),
    so reading a history costs at most what the largest model a file may hold costs."""
    cap = MAX_PARAMETERS if max_parameters is None else _checks.positive_int(max_parameters,
                                                                             "max_parameters")
    with _Archive(path) as archive:
        _check_state(archive.members, archive.texts["dtype"], None, cap, str(path))
        snapshots = sum(math.prod(member.shape) for key, member in archive.members.items()
                        if key.startswith("snapshot/"))
        params = sum(math.prod(member.shape) for key, member in archive.members.items()
                     if key.startswith("param/"))
        if params + snapshots > cap:
            raise ValueError(f"{path}: the history's kernel snapshots hold {snapshots:,} values, "
                             f"which with the {params:,} parameters pass the cap of {cap:,} "
                             "(tinycnn_xp.checkpoint.MAX_PARAMETERS); pass max_parameters= to "
                             "load_history to read them")
        return archive.history()


def load_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` dict given to ``save`` (``{}`` if none), a JSON object: its values are
    whatever the file says, for the caller to check."""
    with _Archive(path) as archive:
        return archive.meta()


class _Member(NamedTuple):
    """A member's ``.npy`` header, read without inflating its data."""

    key: str             # the name without ".npy"
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int          # where the data starts, after the header


class _Archive:
    """An open checkpoint whose layout (names, headers, sizes) and text entries are checked."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = path
        self.where = str(path)
        self.handle: IO[bytes] | None = None
        self.zip: zipfile.ZipFile | None = None

    def __enter__(self) -> _Archive:
        path = Path(self.path)
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise FileNotFoundError(f"no checkpoint file at {self.path}") from None
        if not stat.S_ISREG(mode):
            raise ValueError(f"{self.path} is {_kind_of(mode)}, not a checkpoint file")
        self.handle = open(path, "rb")  # closed by __exit__
        try:
            self._open()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.zip is not None:
            self.zip.close()
        if self.handle is not None:
            self.handle.close()

    def _open(self) -> None:
        assert self.handle is not None
        signature = self.handle.read(4)
        if signature != b"PK\x03\x04":  # every .npz is a zip archive
            what = "the file is empty" if not signature else "not an .npz (zip) file"
            raise ValueError(f"{self.where}: not a tinycnn_xp checkpoint: {what}")
        directory = _directory_size(self.handle)
        if directory is not None and directory > MAX_DIRECTORY_BYTES:
            raise ValueError(f"{self.where}: the zip directory is {directory} bytes; a checkpoint's "
                             f"is at most {MAX_DIRECTORY_BYTES}")
        try:
            self.zip = zipfile.ZipFile(self.handle)
            infos = self.zip.infolist()
        except Exception as exc:  # BadZipFile, EOFError, OSError, ...
            raise self._unreadable(exc) from None
        self.infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if key in self.infos:
                raise ValueError(f"{self.where}: entry {key!r} appears twice")
            self.infos[key] = info
        # The format first: a foreign .npz is told so, not given a list of its strange members.
        if "format" not in self.infos:
            raise ValueError(f"{self.where}: not a tinycnn_xp checkpoint (expected format "
                             f"{FORMAT!r}, found no 'format' entry)")
        self.members: dict[str, _Member] = {"format": self._header("format")}
        readable = (_is_text(self.members["format"])
                    and self.members["format"].dtype.itemsize <= 4 * TEXT_LIMITS["format"])
        found = self._text("format") if readable else None
        if found not in FORMATS:
            what = f"format {found[:60]!r}" if found is not None else "an entry 'format' that is not text"
            raise ValueError(f"{self.where}: not a tinycnn_xp checkpoint (expected format "
                             f"{FORMAT!r}, found {what})")
        for key, info in self.infos.items():
            if _kind(key) is None:
                raise ValueError(f"{self.where}: unexpected entry {info.filename!r} "
                                 f"({info.file_size} bytes, not read): a checkpoint holds only "
                                 "format, architecture, dtype, epochs, history, meta, optimizer, "
                                 "param/*, velocity/*, buffer/*, optimizer/* and snapshot/<epoch>")
        for key in self.infos:
            if key != "format":
                self.members[key] = self._header(key)
        _check_layout(self.members, self.where)
        self.epochs = int(self.array("epochs"))
        if self.epochs < 0:
            raise ValueError(f"{self.where}: checkpoint entry 'epochs' is negative ({self.epochs})")
        _check_layout(self.members, self.where, self.epochs)  # the history's limit follows it
        self.texts = {key: self._text(key) for key in ("format", "dtype", *_TEXT_ENTRIES)}
        self.texts["optimizer"] = self._text("optimizer") if "optimizer" in self.members else ""
        _check_texts(self.texts, self.where)

    def _unreadable(self, exc: BaseException) -> ValueError:
        return ValueError(f"{self.where}: unreadable .npz (truncated or corrupt): "
                          f"{type(exc).__name__}: {exc}")

    def _header(self, key: str) -> _Member:
        """The ``.npy`` header of member ``key``, checked against the member's size; nothing
        after the header is inflated."""
        assert self.zip is not None
        info = self.infos[key]
        if info.flag_bits & 0x1:
            raise ValueError(f"{self.where}: entry {key!r} is encrypted")
        try:
            with self.zip.open(info) as member:
                shape, fortran, dtype = npy_header(member)
                offset = member.tell()
        except ValueError as exc:
            raise ValueError(f"{self.where}: entry {key!r} is not a readable .npy array: {exc}") from None
        except Exception as exc:
            raise self._unreadable(exc) from None
        if dtype.hasobject:
            raise ValueError(f"{self.where}: entry {key!r} holds pickled objects (dtype object), "
                             "which a checkpoint never does")
        if any(size < 0 for size in shape):
            raise ValueError(f"{self.where}: entry {key!r} declares a negative shape {shape}")
        nbytes = math.prod(shape) * dtype.itemsize
        if info.file_size != offset + nbytes:
            raise ValueError(f"{self.where}: entry {key!r} is {info.file_size} bytes, but its "
                             f"header declares {shape} {dtype} ({offset + nbytes} bytes)")
        return _Member(key, tuple(shape), dtype, bool(fortran), offset)

    def _text(self, key: str) -> str:
        return str(self.array(key))

    def array(self, key: str) -> np.ndarray:
        """Member ``key``'s data, inflated straight into its array (its size was checked)."""
        assert self.zip is not None
        member = self.members[key]
        shape = member.shape[::-1] if member.fortran else member.shape
        array = np.empty(shape, dtype=member.dtype)
        view = memoryview(array.reshape(-1).view(np.uint8).data if array.nbytes else bytearray())
        try:
            with self.zip.open(self.infos[key]) as stream:
                stream.read(member.offset)
                done = 0
                while done < len(view):
                    chunk = stream.read(min(_CHUNK, len(view) - done))
                    if not chunk:
                        raise EOFError(f"entry {key!r} ends early")
                    view[done:done + len(chunk)] = chunk
                    done += len(chunk)
                if stream.read(1):  # reading to the end also checks the CRC
                    raise ValueError(f"entry {key!r} is longer than its header says")
        except Exception as exc:  # BadZipFile (CRC), zlib.error, EOFError, ...
            raise self._unreadable(exc) from None
        if member.fortran:
            array = array.T
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        return array

    def json(self, key: str) -> Any:
        try:
            return json.loads(self.texts[key])
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{self.where}: checkpoint entry {key!r} is not valid JSON "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from None

    def history(self, snapshots: bool = True) -> History | None:
        """The history, checked; its kernel snapshots read only if ``snapshots``."""
        if not self.texts["history"]:
            if self.epochs:
                raise ValueError(f"{self.where}: checkpoint entry 'epochs' says {self.epochs} "
                                 "epochs, but there is no history")
            _check_snapshots(self.members, self.texts["dtype"], 0, False, self.where)
            return None
        history = self.json("history")
        _check_history(history, self.epochs, self.where)
        _check_snapshots(self.members, self.texts["dtype"], self.epochs, True, self.where)
        if not snapshots:
            return history
        kernels = {int(key.split("/", 1)[1]): self.array(key) for key in self.members
                   if key.startswith("snapshot/")}
        for key, value in kernels.items():
            _check_finite(value, f"snapshot/{key}", self.where)
        history["kernel_snapshots"] = dict(sorted(kernels.items()))
        return history

    def optimizer(self) -> dict[str, Any] | None:
        """The optimizer entry (``{"config": ..., "steps": ...}``), checked, or ``None``."""
        if not self.texts["optimizer"]:
            return None
        entry = self.json("optimizer")
        _check_optimizer(entry, self.where)
        return entry

    def meta(self) -> dict:
        meta = self.json("meta")
        if not isinstance(meta, dict):
            raise ValueError(f"{self.where}: checkpoint entry 'meta' is not a JSON object")
        return meta


def npy_header(member: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from the header of a ``.npy`` stream, read without the
    data (and without trusting a header larger than 10,000 bytes); ``ValueError`` if it is not one."""
    version = np.lib.format.read_magic(member)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                   np.lib.format.read_array_header_2_0 if version == (2, 0) else None)
    if read_header is None:
        raise ValueError(f"unsupported .npy version {version}")
    return read_header(member, max_header_size=10_000)


def _directory_size(handle: IO[bytes]) -> int | None:
    """The size in bytes of the zip directory, from the archive's end record, read before the
    directory itself is parsed (``None`` if there is no end record: the zip reader then says
    what is wrong)."""
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - 22 - 65535))  # the end record and its comment, at most 64 KiB
    tail = handle.read()
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or len(tail) - end < 22:
        return None
    directory = struct.unpack("<I", tail[end + 12:end + 16])[0]
    locator = end - 20
    if directory == 0xFFFFFFFF and locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
        handle.seek(struct.unpack("<Q", tail[locator + 8:locator + 16])[0])
        record = handle.read(56)  # the ZIP64 end record holds the real size
        if len(record) == 56 and record[:4] == b"PK\x06\x06":
            directory = struct.unpack("<Q", record[40:48])[0]
    return directory


def _kind(key: str) -> str | None:
    """What the format says member ``key`` is, or ``None`` for a name it does not have."""
    if key in ("format", "dtype", "optimizer", *_TEXT_ENTRIES):
        return "text"
    if key == "epochs":
        return "integer"
    group, _, name = key.partition("/")
    if group in ("param", "velocity", "buffer") and name:
        return "float"
    if group == "optimizer" and "/" in name:
        return "float"
    if group == "snapshot" and name.isdigit() and name.isascii() and str(int(name)) == name:
        return "float"
    return None


def _is_text(member: _Member) -> bool:
    return member.shape == () and member.dtype.kind == "U"


# -- checks shared by saving and reading ---------------------------------------------------------
def text_limit(key: str, epochs: int) -> int:
    """The most characters text entry ``key`` may hold in a checkpoint of ``epochs`` epochs."""
    if key == "history":
        return max(TEXT_LIMITS[key], HISTORY_CHARS_PER_EPOCH * epochs)
    return TEXT_LIMITS[key]


def _check_layout(members: dict[str, _Member], where: str, epochs: int | None = None) -> None:
    """Each member is of the kind its name says; text within its limit (before it is read: the
    history's once ``epochs`` is known, at most ``MAX_EPOCHS``)."""
    if epochs is not None and epochs > MAX_EPOCHS:
        raise ValueError(f"{where}: checkpoint entry 'epochs' says {epochs:,} epochs, more than "
                         f"the {MAX_EPOCHS:,} a checkpoint may have")
    for key in ("format", "epochs", *_TEXT_ENTRIES):
        if key not in members:
            what = "text" if key != "epochs" else "an integer"
            raise ValueError(f"{where}: checkpoint entry {key!r} is missing or not {what}")
    for key, member in members.items():
        kind = _kind(key)
        if kind is None:  # read refuses such a member before this; save, here
            raise ValueError(f"{where}: {key!r} is not an entry a checkpoint can hold (snapshots "
                             "are keyed by epochs >= 0)")
        if kind == "text":
            if not _is_text(member):
                raise ValueError(f"{where}: checkpoint entry {key!r} is missing or not text")
            chars = member.dtype.itemsize // 4
            if key == "history" and epochs is None:
                continue  # checked again once 'epochs' is read
            limit = text_limit(key, epochs or 0)
            if chars > limit:
                raise ValueError(f"{where}: checkpoint entry {key!r} holds {chars} characters, more "
                                 f"than the {limit} a checkpoint may have there")
        elif kind == "integer":
            if member.shape != () or member.dtype.kind not in "iu":
                raise ValueError(f"{where}: checkpoint entry 'epochs' is missing or not an integer")
        elif member.dtype.name not in FLOAT_DTYPES:
            raise ValueError(f"{where}: {key} has dtype {member.dtype}, not one of {FLOAT_DTYPES}")


def _check_texts(texts: dict[str, str], where: str) -> None:
    if texts["dtype"] not in FLOAT_DTYPES:
        raise ValueError(f"{where}: saved dtype {texts['dtype']!r} is not one of {FLOAT_DTYPES}")


def _check_state(members: dict[str, _Member], dtype: str,
                 declared: dict[str, tuple[int, ...]] | None, cap: int | None, where: str,
                 extra: dict[str, tuple[int, ...]] | None = None) -> None:
    """Parameters and velocities, from their headers: those ``declared`` (or pairs), in ``dtype``,
    at most ``cap`` parameters in all (with the optimizer's state); with ``declared``, the
    buffers and optimizer state must be exactly ``extra`` (``{"buffer/<name>": shape, ...}``)."""
    groups = ("param", "velocity") if declared is None else _STATE_GROUPS
    stored = {key: member for key, member in members.items()
              if "/" in key and key.partition("/")[0] in groups}
    optimizer_values = sum(math.prod(member.shape) for key, member in members.items()
                           if key.startswith("optimizer/"))
    if declared is None:  # no architecture to hold them against: parameters and velocities pair up
        expected = {f"{group}/{key.partition('/')[2]}": member.shape for key, member in stored.items()
                    if key.startswith("param/") for group in ("param", "velocity")}
        count = sum(math.prod(shape) for key, shape in expected.items() if key.startswith("param/"))
    else:
        expected = {f"{group}/{name}": tuple(shape) for name, shape in declared.items()
                    for group in ("param", "velocity")}
        expected.update(extra or {})
        count = sum(math.prod(shape) for shape in declared.values())
        optimizer_values = sum(math.prod(shape) for key, shape in expected.items()
                               if key.startswith("optimizer/"))
    if cap is not None and count + optimizer_values > cap:
        what = f"{count:,} parameters" + (f" and {optimizer_values:,} values of optimizer state"
                                          if optimizer_values else "")
        raise ValueError(f"{where}: the architecture declares {what}, more than the "
                         f"cap of {cap:,} (tinycnn_xp.checkpoint.MAX_PARAMETERS); pass "
                         "max_parameters= to Sequential.load to load a model that large")
    if set(stored) != set(expected):
        raise ValueError(f"{where}: the parameter arrays do not match the architecture: missing "
                         f"{sorted(set(expected) - set(stored))}, unexpected "
                         f"{sorted(set(stored) - set(expected))}")
    for key, shape in expected.items():
        member = stored[key]
        if member.shape != shape or member.dtype.name != dtype:
            raise ValueError(f"{where}: {key} has shape {member.shape} and dtype {member.dtype.name}, "
                             f"the architecture needs a {dtype} array of shape {shape}")


def _check_snapshots(members: dict[str, _Member], dtype: str, epochs: int, history: bool,
                     where: str) -> None:
    """At most ``MAX_SNAPSHOTS`` snapshots, each shaped like a stored convolution's weights."""
    snapshots = [member for key, member in members.items() if key.startswith("snapshot/")]
    if snapshots and not history:
        raise ValueError(f"{where}: the checkpoint holds kernel snapshots but no history")
    if len(snapshots) > MAX_SNAPSHOTS:
        raise ValueError(f"{where}: the history holds {len(snapshots)} kernel snapshots, more than "
                         f"the {MAX_SNAPSHOTS} a checkpoint may have")
    kernels = {member.shape for key, member in members.items()
               if key.startswith("param/") and len(member.shape) == 4}
    for member in snapshots:
        if member.shape not in kernels or member.dtype.name != dtype:
            raise ValueError(f"{where}: {member.key} has shape {member.shape} and dtype "
                             f"{member.dtype.name}; a kernel snapshot is a {dtype} copy of a "
                             f"convolution's weights, of shape {' or '.join(map(str, kernels)) or 'none'}")


def _check_history(history: Any, epochs: int, where: str) -> None:
    """``fit``'s history (without its snapshots), as JSON gives it back, for ``epochs`` epochs."""
    if not isinstance(history, dict):
        raise ValueError(f"{where}: the saved history is not a JSON object")
    unknown = sorted(set(history) - set(METRICS) - set(_HISTORY_FLAGS) - {"lr"})
    if unknown:
        raise ValueError(f"{where}: the saved history has entries {unknown!r:.200} that fit never "
                         f"writes (it has {[*METRICS, 'lr', *_HISTORY_FLAGS]}); put "
                         "your own data in meta")
    for key in (*METRICS, *(("lr",) if "lr" in history else ())):
        values = history.get(key)
        if not isinstance(values, list) or len(values) != epochs:
            raise ValueError(f"{where}: the saved history has no {key!r} list of {epochs} epochs")
        high = 1.0 if key in _ACCURACIES else math.inf
        for epoch, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not (0.0 <= _as_float(value) <= high) or not math.isfinite(_as_float(value)):
                what = "a fraction in [0, 1]" if key in _ACCURACIES else "a finite number >= 0"
                raise ValueError(f"{where}: the saved history's {key}[{epoch}] is {value!r:.60}, "
                                 f"not {what}")
    for key, kind in _HISTORY_FLAGS.items():
        if key not in history:
            continue
        value = history[key]
        good = isinstance(value, bool) if kind is bool else (
            isinstance(value, int) and not isinstance(value, bool) and value >= 0)
        if not good:
            what = "true or false" if kind is bool else "an integer >= 0"
            raise ValueError(f"{where}: the saved history's {key!r} is {value!r:.60}, not {what}")


def _check_optimizer(entry: Any, where: str) -> None:
    """The ``optimizer`` entry: ``{"config": settings an optimizer takes, "steps": int >= 0}``."""
    if not isinstance(entry, dict) or set(entry) != {"config", "steps"}:
        raise ValueError(f"{where}: checkpoint entry 'optimizer' is not {{'config': ..., "
                         f"'steps': ...}}")
    steps = entry["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"{where}: the optimizer's step count is {steps!r:.60}, not an integer >= 0")
    try:
        optim.optimizer_from_config(entry["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: checkpoint entry 'optimizer': {exc}") from None


def _as_float(value: int | float) -> float:
    """``value`` as a float; an integer too large for one is infinite (JSON integers are unbounded)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _check_finite(array: np.ndarray, key: str, where: str) -> None:
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: {key} holds NaN or infinite values; a trained model's "
                         "parameters, velocities and snapshots are finite")
