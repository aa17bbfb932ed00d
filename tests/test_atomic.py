"""The one atomic writer: the target appears whole or not at all, with ordinary permissions."""
import os
import stat

import pytest

from plmkit.convert.atomic import atomic_write


def test_file_appears_whole_with_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "sub" / "f.txt", lambda tmp: tmp.write_text("hello"))
    finally:
        os.umask(old)
    assert path.read_text() == "hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
    assert os.listdir(path.parent) == ["f.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_a_writer_that_recreates_the_file_still_gets_the_umask_permissions(tmp_path):
    import torch
    from safetensors.torch import save_file

    def recreate(tmp):  # safetensors replaces the file and leaves it 0600
        tmp.unlink()
        save_file({"w": torch.zeros(2)}, str(tmp))
        os.chmod(tmp, 0o600)

    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "model.safetensors", recreate)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
