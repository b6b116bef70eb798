"""Your own images, read as data: a ``.npz`` of arrays, or a folder with one subfolder of image
files per class (torchvision's ``ImageFolder`` layout).

``load_data(path)`` returns a ``DataSet``: host NumPy arrays ``(x_train, y_train, x_val, y_val)``
of images ``(n, channels, height, width)`` and ``int64`` labels, the class names, and the
``Preprocessing`` that made them, which a checkpoint keeps so that ``read_images`` treats new
images exactly as training did. Files are read as data, never as code: ``allow_pickle=False``,
and no path written in a file is followed. Anything that does not fit is a ``ValueError`` naming
the file, the entry and what was expected, before any array is built for training.

Image files need Pillow (``pip install "tinycnn-xp[images]"``), imported only to read them.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .checkpoint import npy_header

__all__ = ["DataSet", "Preprocessing", "load_data", "load_npz", "load_folder", "load_labelled",
           "read_images",
           "images_in", "stratified_split", "fingerprint", "IMAGE_SUFFIXES", "MAX_AUTO_SIZE",
           "MAX_DATA_BYTES"]

#: the file names (lower case) read as images in a class folder; other files are skipped.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: a folder's images take the first image's size when it is at most this, else ``image_size``
#: must be given.
MAX_AUTO_SIZE = 64
#: the most bytes the arrays of a ``.npz`` may declare (each member's header is read first).
MAX_DATA_BYTES = 8 << 30
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclass(frozen=True)
class Preprocessing:
    """How files became the training images; a checkpoint keeps it (``meta["data"]``).

    ``image_size`` is ``(height, width)``, ``channels`` 1 (grayscale) or 3 (RGB, alpha dropped),
    ``class_names`` the name of each label. ``uint8`` pixels are always divided by 255; floating
    pixels are taken as they are.
    """

    image_size: tuple[int, int]
    channels: int
    class_names: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"image_size": list(self.image_size), "channels": self.channels,
                "class_names": list(self.class_names), "uint8_scale": 1 / 255}

    @classmethod
    def from_json(cls, entry: Any, where: str) -> Preprocessing:
        """The ``Preprocessing`` of a checkpoint's ``meta["data"]``; ``ValueError`` naming
        ``where`` if the entry is not one."""
        try:
            size = tuple(int(v) for v in entry["image_size"])
            channels = int(entry["channels"])
            names = tuple(str(n) for n in entry["class_names"])
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"{where}: meta entry 'data' is not image_size, channels and "
                             "class_names") from None
        if len(size) != 2 or min(size) < 1 or channels not in (1, 3) or len(names) < 2:
            raise ValueError(f"{where}: meta entry 'data' says image_size {size}, {channels} "
                             f"channels, {len(names)} classes: not a model's input")
        return cls((size[0], size[1]), channels, names)


class DataSet(NamedTuple):
    """A training and a validation set on the host, with its class names and preprocessing."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    skipped: int  # files of a folder that were not images (hidden or another kind), 0 for a .npz


def load_data(path: str | os.PathLike, *, val_fraction: float = 0.2, seed: int = 0,
              image_size: tuple[int, int] | None = None, dtype: str = "float32") -> DataSet:
    """A ``.npz`` file (``load_npz``) or a folder of class folders (``load_folder``)."""
    path = Path(path)
    if path.is_dir():
        return load_folder(path, val_fraction=val_fraction, seed=seed, image_size=image_size,
                           dtype=dtype)
    if image_size is not None:
        raise ValueError(f"{path}: image_size resizes the images of a folder; the arrays of a "
                         ".npz are taken at their size")
    return load_npz(path, val_fraction=val_fraction, seed=seed, dtype=dtype)


# -- .npz ------------------------------------------------------------------------------------------
def load_npz(path: str | os.PathLike, *, val_fraction: float = 0.2, seed: int = 0,
             dtype: str = "float32") -> DataSet:
    """Images and labels of a ``.npz``: ``x_train``, ``y_train`` and optionally ``x_val``,
    ``y_val``, or ``x`` and ``y`` (split by ``stratified_split``), and optionally
    ``class_names`` (strings). Images ``(n, h, w)`` or ``(n, c, h, w)`` with c 1 or 3, floating
    or ``uint8`` (scaled to [0, 1]), finite; labels of any integer dtype in
    ``[0, len(class_names))``, at least two classes. Returned in ``dtype``."""
    path = Path(path)
    where = str(path)
    check_val_fraction(val_fraction)
    entries = _read_npz(path)
    names_given = entries.pop("class_names", None)
    if {"x_train", "y_train"} <= entries.keys():
        if ("x_val" in entries) != ("y_val" in entries):
            raise ValueError(f"{where}: has {'x_val' if 'x_val' in entries else 'y_val'} without "
                             f"{'y_val' if 'x_val' in entries else 'x_val'}")
        x_keys = ["x_train", "x_val"] if "x_val" in entries else ["x_train"]
    elif {"x", "y"} <= entries.keys():
        x_keys = ["x"]
    else:
        raise ValueError(f"{where}: expected arrays x_train and y_train (and optionally x_val, "
                         f"y_val), or x and y; found {sorted(entries) or 'none'}")
    images = {key: _images(entries[key], f"{where}: entry {key!r}") for key in x_keys}
    shapes = {key: x.shape[1:] for key, x in images.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"{where}: the images differ in size: "
                         + ", ".join(f"{key} {shape}" for key, shape in shapes.items()))
    labels = {}
    for key in x_keys:
        y_key = "y" if key == "x" else key.replace("x_", "y_")
        labels[y_key] = _labels(entries[y_key], len(images[key]), f"{where}: entry {y_key!r}",
                                key)
    names = _class_names(names_given, labels, where)
    x = {key: _scaled(images[key], dtype) for key in x_keys}
    if "x" in x:
        train, val = stratified_split(labels["y"], val_fraction, seed, where)
        x_train, y_train, x_val, y_val = x["x"][train], labels["y"][train], x["x"][val], labels["y"][val]
    elif "x_val" in x:
        x_train, y_train, x_val, y_val = x["x_train"], labels["y_train"], x["x_val"], labels["y_val"]
    else:
        train, val = stratified_split(labels["y_train"], val_fraction, seed, where)
        x_train, y_train = x["x_train"][train], labels["y_train"][train]
        x_val, y_val = x["x_train"][val], labels["y_train"][val]
    _at_least_two_classes(y_train, names, where)
    preprocessing = Preprocessing((x_train.shape[2], x_train.shape[3]), x_train.shape[1], names)
    return DataSet(x_train, y_train, x_val, y_val, names, preprocessing, 0)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every member of the ``.npz``, each checked by its header (kind, size) before it is read."""
    where = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            declared = 0
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"{where}: member {info.filename!r} is not a .npy array")
                with archive.open(info) as member:
                    shape, _, dtype = npy_header(member)
                if dtype.hasobject:
                    raise ValueError(f"{where}: entry {info.filename[:-4]!r} holds Python objects; "
                                     "only numbers and strings are read")
                declared += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if declared > MAX_DATA_BYTES:
                    raise ValueError(f"{where}: the arrays declare more than {MAX_DATA_BYTES:,} "
                                     "bytes (tinycnn_xp.datafiles.MAX_DATA_BYTES)")
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise ValueError(f"{where}: no such file or folder") from None
    except IsADirectoryError:
        raise ValueError(f"{where}: is a folder without class folders") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{where}: not a readable .npz ({exc})") from None


def _images(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{where}: expected images (n, height, width) or (n, channels, height, "
                         f"width) with 1 or 3 channels, got shape {x.shape}")
    if x.shape[0] == 0 or min(x.shape[2:]) == 0:
        raise ValueError(f"{where}: holds no image (shape {x.shape})")
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        raise ValueError(f"{where}: expected floating or uint8 pixels, got {x.dtype}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError(f"{where}: holds NaN or infinite pixels")
    return x


def _scaled(x: np.ndarray, dtype: str) -> np.ndarray:
    """``uint8`` pixels divided by 255, in ``dtype``; floating pixels as they are."""
    if x.dtype == np.uint8:
        return x.astype(dtype) / np.asarray(255, dtype=dtype)
    return x.astype(dtype, copy=False)


def _labels(y: np.ndarray, n: int, where: str, images: str) -> np.ndarray:
    if y.dtype.kind not in "iu" or y.ndim != 1:
        raise ValueError(f"{where}: expected integer labels (n,), got {y.dtype} of shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{where}: {y.shape[0]} labels for the {n} images of {images!r}")
    if y.size and y.min() < 0:
        raise ValueError(f"{where}: labels must be >= 0, found {int(y.min())}")
    return y.astype(np.int64)


def _class_names(given: np.ndarray | None, labels: dict[str, np.ndarray], where: str) -> tuple[str, ...]:
    largest = max(int(y.max()) for y in labels.values() if y.size)
    if given is None:
        return tuple(str(k) for k in range(largest + 1))
    if given.dtype.kind != "U" or given.ndim != 1:
        raise ValueError(f"{where}: entry 'class_names' must be strings (k,), got {given.dtype} "
                         f"of shape {given.shape}")
    names = tuple(str(n) for n in given)
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: entry 'class_names' repeats a name")
    if largest >= len(names):
        key = next(k for k, y in labels.items() if y.size and int(y.max()) == largest)
        raise ValueError(f"{where}: entry {key!r} has label {largest}, but 'class_names' names "
                         f"{len(names)} classes (labels 0 to {len(names) - 1})")
    return names


def _at_least_two_classes(y_train: np.ndarray, names: tuple[str, ...], where: str) -> None:
    found = np.unique(y_train)
    if len(names) < 2 or found.size < 2:
        raise ValueError(f"{where}: the training images hold {found.size} class(es); a classifier "
                         "needs at least two")


def check_val_fraction(val_fraction: Any) -> None:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) \
            or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be a number in (0, 1), got {val_fraction!r}")


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int,
                     where: str = "the data") -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` indices: ``round(val_fraction * count)`` of each class to validation,
    drawn by ``numpy.random.default_rng(seed)``; each part shuffled (the digits' split)."""
    check_val_fraction(val_fraction)
    rng = np.random.default_rng(seed)
    val_mask = np.zeros(labels.size, dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        val_mask[rng.choice(members, size=round(val_fraction * members.size), replace=False)] = True
    if not val_mask.any() or val_mask.all():
        raise ValueError(f"{where}: a validation fraction of {val_fraction:g} leaves "
                         f"{'no validation' if not val_mask.any() else 'no training'} images of "
                         f"the {labels.size}; give more images, another val_fraction, or x_val, y_val")
    return rng.permutation(np.flatnonzero(~val_mask)), rng.permutation(np.flatnonzero(val_mask))


# -- a folder of class folders -------------------------------------------------------------------
def _pillow() -> Any:
    try:
        from PIL import Image, ImageOps
    except ImportError as exc:
        raise ImportError('image files need Pillow: pip install "tinycnn-xp[images]"') from exc
    return Image, ImageOps


def images_in(folder: Path) -> tuple[list[Path], int]:
    """The image files directly in ``folder``, sorted, and how many other entries were skipped
    (hidden ones, other kinds of files, subfolders)."""
    found, skipped = [], 0
    for entry in sorted(folder.iterdir()):
        if (not entry.name.startswith(".") and entry.is_file()
                and entry.suffix.lower() in IMAGE_SUFFIXES):
            found.append(entry)
        else:
            skipped += 1
    return found, skipped


def load_folder(path: str | os.PathLike, *, val_fraction: float = 0.2, seed: int = 0,
                image_size: tuple[int, int] | None = None, dtype: str = "float32") -> DataSet:
    """The images of ``path/<class>/<image>``: the sorted subfolder names are the classes
    (hidden ones skipped), their PNG and JPEG files the images (others skipped and counted),
    EXIF orientation applied, grayscale if every image is, else RGB (alpha dropped), resized
    to ``image_size`` (default: the first image's size, if at most ``MAX_AUTO_SIZE`` pixels a
    side), scaled to [0, 1], split by ``stratified_split``."""
    path = Path(path)
    check_val_fraction(val_fraction)
    _pillow()  # the missing extra is one line before any folder is read
    files, labels, names, skipped = _class_folders(path, at_least=2)
    channels = 1 if all(_mode(file) in _GRAY_MODES for file in files) else 3
    if image_size is None:
        width, height = _open(files[0]).size
        if max(height, width) > MAX_AUTO_SIZE:
            megabytes = len(files) * channels * height * width * np.dtype(dtype).itemsize / 2**20
            raise ValueError(f"{files[0]}: the first image is {height}x{width}, larger than "
                             f"{MAX_AUTO_SIZE}x{MAX_AUTO_SIZE}: pass image_size (--image-size HxW); "
                             f"at that size the {len(files)} images would take {megabytes:,.0f} MiB")
        image_size = (height, width)
    size = _check_image_size(image_size)
    x = _stack(files, size, channels, dtype)
    y = np.asarray(labels, dtype=np.int64)
    train, val = stratified_split(y, val_fraction, seed, str(path))
    return DataSet(x[train], y[train], x[val], y[val], names, Preprocessing(size, channels, names),
                   skipped)


def _class_folders(path: Path, at_least: int) -> tuple[list[Path], list[int], tuple[str, ...], int]:
    """``(image files, their labels, class names, entries skipped)`` of ``path/<class>/<image>``:
    the sorted subfolders (hidden ones left out) are the classes, at least ``at_least``."""
    classes = [entry for entry in sorted(path.iterdir())
               if entry.is_dir() and not entry.name.startswith(".")]
    if len(classes) < at_least:
        raise ValueError(f"{path}: expected one folder of images per class, at least {at_least}; "
                         f"found {len(classes)}")
    files, labels, skipped = [], [], 0
    for label, folder in enumerate(classes):
        found, other = images_in(folder)
        if not found:
            raise ValueError(f"{folder}: the class folder {folder.name!r} holds no PNG or JPEG image")
        files += found
        labels += [label] * len(found)
        skipped += other
    return files, labels, tuple(folder.name for folder in classes), skipped


def _check_image_size(size: Any) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {size!r}") from None
    if min(height, width) < 1:
        raise ValueError(f"image_size must be positive, got {size!r}")
    return height, width


def _mode(file: Path) -> str:
    """The image's mode, from its header (nothing decoded yet)."""
    Image, _ = _pillow()
    try:
        with Image.open(file) as image:
            return str(image.mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{file}: cannot be decoded as an image ({exc})") from None


def _open(file: Path) -> Any:
    """The decoded image, EXIF orientation applied; ``ValueError`` naming the file if it is not one."""
    Image, ImageOps = _pillow()
    try:
        with Image.open(file) as image:
            image.load()
            return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{file}: cannot be decoded as an image ({exc})") from None


def _stack(files: Sequence[Path], size: tuple[int, int], channels: int, dtype: str) -> np.ndarray:
    """``(n, channels, height, width)`` pixels in [0, 1] of the image files, decoded one by one."""
    Image, _ = _pillow()
    height, width = size
    out = np.empty((len(files), channels, height, width), dtype=dtype)
    for i, file in enumerate(files):
        try:
            converted = _open(file).convert("L" if channels == 1 else "RGB")
            if converted.size != (width, height):
                converted = converted.resize((width, height), Image.Resampling.BILINEAR)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{file}: cannot be converted ({exc})") from None
        pixels = np.asarray(converted, dtype=np.uint8)
        out[i] = (pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)) / np.asarray(255, dtype)
    return out


# -- labelled images to measure a model on ---------------------------------------------------------
def load_labelled(path: str | os.PathLike, preprocessing: Preprocessing,
                  dtype: str = "float32") -> tuple[np.ndarray, np.ndarray, str]:
    """``(images, labels, which)`` to measure a model trained with ``preprocessing`` on: the
    validation part of a ``.npz`` with ``x_val``, else its whole ``x``/``x_train``; or every
    image of a folder of class folders. Labels are the model's class numbers: a file's or a
    folder's class names are matched to the model's by name. ``which`` says which part, in words."""
    path = Path(path)
    names = preprocessing.class_names
    if path.is_dir():
        x, y, found = _folder_images(path, preprocessing, dtype)
        return x, _by_name(y, found, names, str(path)), f"the {len(y)} images of {path}"
    entries = _read_npz(path)
    pairs = [(x, y) for x, y in (("x_val", "y_val"), ("x", "y"), ("x_train", "y_train"))
             if x in entries and y in entries]
    if not pairs:
        raise ValueError(f"{path}: expected arrays x_val and y_val, x and y, or x_train and "
                         f"y_train; found {sorted(entries) or 'none'}")
    x_key, y_key = pairs[0]
    x = _model_images(entries[x_key], path, x_key, preprocessing)
    y = _labels(entries[y_key], len(x), f"{path}: entry {y_key!r}", x_key)
    given = entries.get("class_names")
    if given is not None:
        y = _by_name(y, _class_names(given, {y_key: y}, str(path)), names, str(path))
    elif y.size and int(y.max()) >= len(names):
        raise ValueError(f"{path}: entry {y_key!r} has label {int(y.max())}; the model knows "
                         f"{len(names)} classes")
    part = "validation images" if x_key == "x_val" else "images"
    return _scaled(x, dtype), y, f"the {len(y)} {part} ({x_key}) of {path}"


def _model_images(x: np.ndarray, path: Path, key: str, preprocessing: Preprocessing) -> np.ndarray:
    """Entry ``key``'s images, checked (``_images``) and of the shape the model was trained on."""
    x = _images(x, f"{path}: entry {key!r}")
    expected = (preprocessing.channels, *preprocessing.image_size)
    if x.shape[1:] != expected:
        raise ValueError(f"{path}: entry {key!r} holds images {x.shape[1:]}; the model was "
                         f"trained on {expected}")
    return x


def _by_name(labels: np.ndarray, found: Sequence[str], names: Sequence[str], where: str) -> np.ndarray:
    """``labels`` numbered by ``found`` names, renumbered by the model's ``names``."""
    unknown = [name for name in found if name not in names]
    if unknown:
        raise ValueError(f"{where}: class {unknown[0]!r} is not one the model knows "
                         f"({', '.join(names)})")
    order = np.asarray([list(names).index(name) for name in found], dtype=np.int64)
    return order[labels]


def _folder_images(path: Path, preprocessing: Preprocessing,
                   dtype: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    files, labels, names, _ = _class_folders(path, at_least=1)
    x = _stack(files, preprocessing.image_size, preprocessing.channels, dtype)
    return x, np.asarray(labels, dtype=np.int64), names


# -- new images, as training saw them --------------------------------------------------------------
def read_images(inputs: Iterable[str | os.PathLike], preprocessing: Preprocessing,
                dtype: str = "float32") -> tuple[np.ndarray, list[str]]:
    """``(images, names)`` of image files, folders of them (their images and those of their
    subfolders, sorted), or ``.npz`` files with an ``x`` entry, made as training made its
    images: resized, in its channels, scaled. ``names`` are the paths (``file.npz[i]`` for an
    array's images)."""
    height, width = preprocessing.image_size
    parts, names = [], []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found, _ = images_in(path)
            for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
                found += images_in(sub)[0]
            if not found:
                raise ValueError(f"{path}: holds no PNG or JPEG image")
        elif path.suffix.lower() == ".npz":
            entries = _read_npz(path)
            if "x" not in entries:
                raise ValueError(f"{path}: expected an entry 'x' of images; found {sorted(entries)}")
            x = _model_images(entries["x"], path, "x", preprocessing)
            parts.append(_scaled(x, dtype))
            names += [f"{path}[{i}]" for i in range(len(x))]
            continue
        elif path.is_file():
            found = [path]
        else:
            raise ValueError(f"{path}: no such file or folder")
        parts.append(_stack(found, (height, width), preprocessing.channels, dtype))
        names += [str(f) for f in found]
    if not parts:
        raise ValueError("no images given")
    return np.concatenate(parts) if len(parts) > 1 else parts[0], names


def fingerprint(*arrays: np.ndarray) -> str:
    """A SHA-256 of the arrays' dtypes, shapes and bytes: the same data gives the same text."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data)
    return digest.hexdigest()
