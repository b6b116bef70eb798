"""Crafted checkpoints: files that lie about their size, and what loading them costs.

``python -m benchmarks.crafted_checkpoints [--out DIR] [--zero-gib 2]`` (from the repository
root) writes the three files of issue 12 and times ``tinycnn_xp.Sequential.load`` on each in a
fresh subprocess (wall time and peak resident memory, ``ru_maxrss``), with whatever
``tinycnn_xp`` that subprocess imports: set ``PYTHONPATH`` to compare two versions.

- ``dense_1e7.npz``: a TinyCNN checkpoint (a few KB) whose architecture declares
  ``Dense(27, 10**7)``; its arrays are those of ``Dense(27, 3)``.
- ``dense_1e12.npz``: the same with ``Dense(27, 10**12)``.
- ``zero_member.npz``: a good TinyCNN checkpoint plus a member ``junk.npy`` holding 2 GiB of
  zeros (a 2 MB file: zeros deflate about 1000:1).
- ``many_snapshots.npz``: a model of 8 MiB of parameters (``Conv2D(1, 1024, 32)``, ``Dense(1024,
  3)``) whose history holds 256 kernel snapshots (``MAX_SNAPSHOTS``) of zeros: 2 GiB once
  inflated, a 10 MiB file. Measured with ``Sequential.load`` and with ``checkpoint.load_history``.

Measured on a 2-core shared Linux box (Python 3.11, NumPy 2.4; peak RSS includes the ~30 MiB of
the interpreter with NumPy), tinycnn_xp 0.1.0 then this version:

=================  ==============================================  ===============================
file               0.1.0                                           now
=================  ==============================================  ===============================
dense_1e7.npz      14.6 s, 6367 MiB, then ValueError (shapes)      2 ms, 33 MiB, ValueError (cap)
dense_1e12.npz     raw MemoryError (196 TiB requested)             2 ms, 33 MiB, ValueError (cap)
zero_member.npz    loaded after 10.4 s at 2090 MiB                 1 ms, 33 MiB, ValueError
                                                                   (unexpected entry, not read)
=================  ==============================================  ===============================

With the cap raised (``--load-kwargs '{"max_parameters": 100000000000000}'``) both dense files
are refused from their headers in 2 ms at 33 MiB. A real 6.5 M-parameter checkpoint loads in
0.5 s at ~290 MiB with either version.

The writers build the zip by hand (``write_zip``), so a test can also make members whose
headers, sizes and checksums say anything. They use NumPy only, never ``tinycnn_xp``, so the same
files can be given to any version of it. The tests import them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["Member", "npy", "npy_header", "write_zip", "tiny_members", "write_declared_dense",
           "write_zero_member", "write_many_snapshots", "measure"]

FORMAT = "tinycnn_xp-checkpoint/1"


class Member(NamedTuple):
    """One zip member: ``name``, its bytes (``data``) followed by ``zeros`` zero bytes (streamed,
    never held in memory), deflated unless ``stored``; ``file_size`` and ``crc`` override what the
    zip directory declares (``None``: the truth)."""

    name: str
    data: bytes
    zeros: int = 0
    stored: bool = False
    file_size: int | None = None
    crc: int | None = None


def npy(array: np.ndarray) -> bytes:
    """The ``.npy`` bytes NumPy writes for ``array``."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


def npy_header(shape: tuple[int, ...], descr: str, fortran: bool = False) -> bytes:
    """A version 1.0 ``.npy`` header declaring anything (the data is up to the caller)."""
    header = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}).encode("latin1")
    header += b" " * ((64 - (10 + len(header) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def write_zip(path: str | os.PathLike, members: Iterable[Member]) -> Path:
    """A zip archive of ``members``, written by hand (no ZIP64: each member under 4 GiB).
    Members of the same bytes and zeros are deflated once (256 snapshots of 8 MiB of zeros: one)."""
    directory, offset = [], 0
    deflated: dict[tuple[bytes, int], tuple[int, int, bytes]] = {}
    with open(path, "wb") as handle:
        for member in members:
            name = member.name.encode()
            crc, size, body = _compress(member, handle, name, offset, deflated)
            declared = member.file_size if member.file_size is not None else size
            crc = member.crc if member.crc is not None else crc
            directory.append(struct.pack("<4s4H4s3I5H2I", b"PK\x01\x02", 20, 20, 0,
                                         0 if member.stored else 8, b"\0\0\0\0", crc, body,
                                         declared, len(name), 0, 0, 0, 0, 0, offset) + name)
            offset = handle.tell()
        table = b"".join(directory)
        handle.write(table)
        handle.write(struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(directory), len(directory),
                                 len(table), offset, 0))
    return Path(path)


def _compress(member: Member, handle, name: bytes, offset: int,
              deflated: dict[tuple[bytes, int], tuple[int, int, bytes]]) -> tuple[int, int, int]:
    """Write ``member``'s local header and data at ``offset``; its CRC, size and stored size.
    ``deflated``: the CRC, size and deflated bytes of the members written before."""
    handle.seek(offset + 30 + len(name))
    key = (member.data, member.zeros)
    if not member.stored and key in deflated:
        crc, size, out = deflated[key]
        handle.write(out)
        body = len(out)
    else:
        crc, size, body, pieces = 0, 0, 0, []
        compressor = None if member.stored else zlib.compressobj(9, zlib.DEFLATED, -15)
        zero_chunk = bytes(1 << 24)
        chunks = [member.data] + [zero_chunk] * (member.zeros // len(zero_chunk))
        chunks.append(bytes(member.zeros % len(zero_chunk)))
        for chunk in chunks:
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
            out = chunk if compressor is None else compressor.compress(chunk)
            handle.write(out)
            body += len(out)
            if compressor is not None:
                pieces.append(out)
        if compressor is not None:
            pieces.append(compressor.flush())
            handle.write(pieces[-1])
            body += len(pieces[-1])
            deflated[key] = (crc, size, b"".join(pieces))
    end = handle.tell()
    declared = member.file_size if member.file_size is not None else size
    handle.seek(offset)
    handle.write(struct.pack("<4s3H4s3I2H", b"PK\x03\x04", 20, 0, 0 if member.stored else 8,
                             b"\0\0\0\0", member.crc if member.crc is not None else crc, body,
                             declared, len(name), 0) + name)
    handle.seek(end)
    return crc, size, body


def tiny_members(out_features: int = 3, seed: int = 0) -> list[Member]:
    """A good checkpoint of an untrained TinyCNN (``num_classes=3``), member by member, whose
    architecture declares ``Dense(27, out_features)``."""
    rng = np.random.default_rng(seed)
    params = {"conv.weights": rng.normal(0, 0.47, (3, 1, 3, 3)), "conv.bias": np.zeros(3),
              "dense.weights": rng.normal(0, 0.27, (27, 3)), "dense.bias": np.zeros(3)}
    layers = [{"class": "Conv2D", "config": {"in_channels": 1, "out_channels": 3, "kernel_size": 3,
                                             "stride": 1, "padding": 0}},
              {"class": "ReLU", "config": {}},
              {"class": "MaxPool2D", "config": {"pool_size": 2, "stride": 2}},
              {"class": "Flatten", "config": {}},
              {"class": "Dense", "config": {"in_features": 27, "out_features": out_features}}]
    config = {"model": "TinyCNN", "layers": layers,
              "names": ["conv", "relu", "pool", "flatten", "dense"], "input_shape": [1, 8, 8]}
    entries = {"format": np.array(FORMAT), "architecture": np.array(json.dumps(config)),
               "epochs": np.array(0, dtype=np.int64), "history": np.array(""),
               "meta": np.array("{}"), "dtype": np.array("float64")}
    for name, array in params.items():
        entries[f"param/{name}"] = array
        entries[f"velocity/{name}"] = np.zeros_like(array)
    return [Member(f"{key}.npy", npy(value)) for key, value in entries.items()]


def write_declared_dense(path: str | os.PathLike, out_features: int) -> Path:
    """A few-KB TinyCNN checkpoint whose architecture declares ``Dense(27, out_features)``."""
    return write_zip(path, tiny_members(out_features))


def write_zero_member(path: str | os.PathLike, zero_bytes: int) -> Path:
    """A good TinyCNN checkpoint plus ``junk.npy``: a uint8 array of ``zero_bytes`` zeros."""
    junk = Member("junk.npy", npy_header((zero_bytes,), "|u1"), zeros=zero_bytes)
    return write_zip(path, [*tiny_members(), junk])


def write_many_snapshots(path: str | os.PathLike, snapshots: int = 256) -> Path:
    """A checkpoint of ``Conv2D(1, 1024, 32) -> Flatten -> Dense(1024, 3)`` (8 MiB of float64
    parameters) trained for ``snapshots`` epochs, with a kernel snapshot of zeros at each."""
    rng = np.random.default_rng(0)
    params = {"conv.weights": rng.normal(0, 0.04, (1024, 1, 32, 32)), "conv.bias": np.zeros(1024),
              "dense.weights": rng.normal(0, 0.04, (1024, 3)), "dense.bias": np.zeros(3)}
    layers = [{"class": "Conv2D", "config": {"in_channels": 1, "out_channels": 1024,
                                             "kernel_size": 32, "stride": 1, "padding": 0}},
              {"class": "Flatten", "config": {}},
              {"class": "Dense", "config": {"in_features": 1024, "out_features": 3}}]
    config = {"model": "Sequential", "layers": layers, "names": ["conv", "flatten", "dense"],
              "input_shape": [1, 32, 32]}
    history = {key: [0.5] * snapshots for key in ("train_loss", "val_loss", "train_acc", "val_acc")}
    entries = {"format": np.array(FORMAT), "architecture": np.array(json.dumps(config)),
               "epochs": np.array(snapshots, dtype=np.int64), "history": np.array(json.dumps(history)),
               "meta": np.array("{}"), "dtype": np.array("float64")}
    for name, array in params.items():
        entries[f"param/{name}"] = array
        entries[f"velocity/{name}"] = np.zeros_like(array)
    members = [Member(f"{key}.npy", npy(value)) for key, value in entries.items()]
    kernel = 1024 * 32 * 32 * 8
    members += [Member(f"snapshot/{epoch}.npy", npy_header((1024, 1, 32, 32), "<f8"), zeros=kernel)
                for epoch in range(snapshots)]
    return write_zip(path, members)


_PROBE = """
import json, resource, sys, time
import tinycnn_xp
from tinycnn_xp import checkpoint
load = {"load": tinycnn_xp.Sequential.load, "load_history": checkpoint.load_history}[sys.argv[3]]
kwargs = json.loads(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    load(sys.argv[1], **kwargs)
    outcome = "loaded"
except BaseException as exc:
    outcome = f"{type(exc).__name__}: {str(exc)[:160]}"
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_rss_mib": peak / 1024,
                  "rss_after_import_mib": before / 1024, "outcome": outcome,
                  "library": tinycnn_xp.__file__}))
"""


def measure(path: str | os.PathLike, timeout: float = 600, call: str = "load", **kwargs: object) -> dict:
    """``Sequential.load(path, **kwargs)`` (or ``checkpoint.load_history``: ``call``) in a fresh
    interpreter: seconds, peak RSS (MiB; the interpreter's after importing the library too), the
    outcome."""
    done = subprocess.run([sys.executable, "-c", _PROBE, str(path), json.dumps(kwargs), call],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return {"outcome": f"exit status {done.returncode}: {done.stderr.strip()[-300:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="crafted", help="folder for the files (default: crafted)")
    parser.add_argument("--zero-gib", type=float, default=2.0, help="GiB of zeros in zero_member.npz")
    parser.add_argument("--only", nargs="*", help="names of the files to measure (default: all)")
    parser.add_argument("--load-kwargs", default="{}", metavar="JSON",
                        help='keyword arguments of load, e.g. \'{"max_parameters": 10000000000000}\'')
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"dense_1e7.npz": lambda p: write_declared_dense(p, 10**7),
             "dense_1e12.npz": lambda p: write_declared_dense(p, 10**12),
             "zero_member.npz": lambda p: write_zero_member(p, int(args.zero_gib * (1 << 30))),
             "many_snapshots.npz": write_many_snapshots}
    for name, write in files.items():
        if args.only and name not in args.only:
            continue
        path = out / name
        if not path.exists():
            write(path)
        for call in ("load", "load_history") if name == "many_snapshots.npz" else ("load",):
            result = measure(path, call=call, **json.loads(args.load_kwargs))
            print(json.dumps({"file": name, "call": call, "bytes": path.stat().st_size, **result}))


if __name__ == "__main__":
    main()
