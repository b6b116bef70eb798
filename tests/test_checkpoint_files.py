"""A checkpoint is written like any file: permissions under the umask, through symbolic links,
errors naming the path given. The tests run as root, where permissions do not stop a write, so
failures are injected (``os.replace``, ``os.open``) rather than made with ``chmod``."""

import errno
import os
import stat

import numpy as np
import pytest

import tinycnn_xp as tc
from tinycnn_xp import checkpoint

posix = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions and symbolic links")


@pytest.fixture
def umask():
    """``umask(value)`` for the test; the process's own is restored afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda value: os.umask(value)
    os.umask(previous)


@posix
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0, 0o666)])
def test_a_new_checkpoint_gets_an_ordinary_files_permissions(tmp_path, umask, mask, mode):
    umask(mask)
    path = checkpoint.save(tc.TinyCNN(seed=0), tmp_path / "model.npz")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    (tmp_path / "plain.txt").write_text("x")  # what open() gives, for comparison
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == mode


@posix
def test_overwriting_keeps_the_files_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "model.npz"
    checkpoint.save(tc.TinyCNN(seed=0), path)
    path.chmod(0o640)
    checkpoint.save(tc.TinyCNN(seed=1), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    np.testing.assert_array_equal(tc.Sequential.load(path).conv.weights, tc.TinyCNN(seed=1).conv.weights)


@posix
def test_saving_over_a_symbolic_link_writes_its_target(tmp_path):
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "real.npz"
    checkpoint.save(tc.TinyCNN(seed=0), target)
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    chain = tmp_path / "chain.npz"
    chain.symlink_to(link)
    checkpoint.save(tc.TinyCNN(seed=1), chain)
    assert link.is_symlink() and chain.is_symlink()
    assert os.readlink(link) == str(target)
    expected = tc.TinyCNN(seed=1).conv.weights
    np.testing.assert_array_equal(tc.Sequential.load(target).conv.weights, expected)
    np.testing.assert_array_equal(tc.Sequential.load(chain).conv.weights, expected)
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["real.npz"]  # no temporary


@posix
def test_a_dangling_link_is_written_through_like_open_would(tmp_path):
    link = tmp_path / "new.npz"
    link.symlink_to(tmp_path / "target.npz")
    checkpoint.save(tc.TinyCNN(seed=0), link)
    assert link.is_symlink() and (tmp_path / "target.npz").is_file()


@pytest.mark.parametrize("where", ["replace", "open"])
def test_a_failed_write_names_the_path_given_and_leaves_nothing(tmp_path, monkeypatch, where):
    path = tmp_path / "model.npz"
    checkpoint.save(tc.TinyCNN(seed=0), path)
    before = path.read_bytes()
    real = {"replace": os.replace, "open": os.open}[where]

    def refuse(first, *args, **kwargs):
        if str(first).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied", str(first))
        return real(first, *args, **kwargs)

    monkeypatch.setattr(os, where, refuse)
    with pytest.raises(PermissionError) as info:
        checkpoint.save(tc.TinyCNN(seed=1), path)
    assert info.value.filename == str(path) and ".tmp" not in str(info.value)
    assert str(path) in str(info.value) and "Permission denied" in str(info.value)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_a_missing_folder_is_named_as_given(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        tc.TinyCNN(seed=0).save(tmp_path / "nowhere" / "model.npz")
    assert info.value.filename == str(tmp_path / "nowhere" / "model.npz")


def test_ctrl_c_while_writing_leaves_the_old_file(tmp_path, monkeypatch):
    path = checkpoint.save(tc.TinyCNN(seed=0), tmp_path / "model.npz")
    before = path.read_bytes()

    def interrupted(handle, **arrays):
        handle.write(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tc.TinyCNN(seed=1), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.npz"]
