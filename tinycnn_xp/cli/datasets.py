"""What the commands train and measure on: a built-in set (``--dataset``) or the user's own
(``--data PATH``: a ``.npz`` or a folder of class folders, ``tinycnn_xp.datafiles``), as host
arrays with the record a checkpoint keeps of them (``meta["data"]``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..datafiles import Preprocessing, fingerprint, load_data
from .common import UsageProblem, load_dataset

__all__ = ["Data", "load", "preprocessing_of", "name_of"]


class Data(NamedTuple):
    """Host arrays to train on, their class names, a label for the output (``lines``,
    ``photos/``), and the record for the checkpoint."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    names: tuple[str, ...]
    label: str
    record: dict[str, Any]


def own_data(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "data", None))


def load(args: argparse.Namespace, dtype: str = "float64") -> Data:
    """``--data`` (in ``dtype``, split by ``--val-fraction`` and ``--data-seed``) or else
    ``--dataset``; a file that does not fit is a ``UsageProblem`` naming it."""
    if own_data(args):
        try:
            found = load_data(args.data, val_fraction=args.val_fraction, seed=args.data_seed,
                              image_size=args.image_size, dtype=dtype)
        except (ValueError, ImportError) as exc:
            raise UsageProblem(str(exc)) from None
        if found.skipped:
            print(f"data {args.data}: skipped {found.skipped} entries that are not images "
                  "(hidden files, other kinds of files)")
        x_train, y_train, x_val, y_val = found[:4]
        label, preprocessing = str(args.data), found.preprocessing
    else:
        x_train, y_train, x_val, y_val, names = load_dataset(args.dataset)
        x_train, x_val = x_train.astype(dtype, copy=False), x_val.astype(dtype, copy=False)
        label = args.dataset
        preprocessing = Preprocessing(tuple(x_train.shape[2:]), x_train.shape[1], tuple(names))
    # Of the images in float32 whatever the dtype trained, so that --dtype on a resumed run is
    # not taken for other data (float32(x / 255) is the same from either dtype's pixels).
    record = {**preprocessing.to_json(), "source": "data" if own_data(args) else args.dataset,
              "fingerprint": fingerprint(x_train.astype(np.float32), y_train,
                                         x_val.astype(np.float32), y_val)}
    return Data(x_train, y_train, x_val, y_val, preprocessing.class_names, label, record)


def preprocessing_of(path: str, meta: dict, model: Any) -> Preprocessing:
    """How the model's training images were made: the checkpoint's ``meta["data"]``, else (a
    file saved from Python) the model's input shape and class numbers as names."""
    if "data" in meta:
        try:
            return Preprocessing.from_json(meta["data"], path)
        except ValueError as exc:
            raise UsageProblem(str(exc)) from None
    shape = model.input_shape
    if shape is None:
        raise UsageProblem(f"{path}: neither the checkpoint's meta nor the model says the size of "
                           "its images; save it with Sequential(..., input_shape=(c, h, w))")
    return Preprocessing((shape[1], shape[2]), shape[0],
                         tuple(str(k) for k in range(model.num_classes)))


def name_of(path: str) -> str:
    """A short label of a data path for a run folder's name."""
    return Path(path).stem or "data"
