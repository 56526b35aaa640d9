import json
import os

import numpy as np
import pytest

from facegate.edge.atomic import atomic_path, atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text


def test_a_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")
    atomic_write(path, lambda f: f.write(b"new content"))
    assert path.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["data.bin"]
    atomic_write_bytes(tmp_path / "fresh.bin", b"\x00\x01")  # the target need not exist yet
    assert (tmp_path / "fresh.bin").read_bytes() == b"\x00\x01"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("old")

    def half_then_fail(f):
        f.write(b"half a new fi")
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["manifest.json"]
    with pytest.raises(RuntimeError, match="power cut"):
        atomic_write(tmp_path / "new.json", half_then_fail)
    assert os.listdir(tmp_path) == ["manifest.json"]


def test_numpy_writes_through_the_file_object_keep_the_target_name(tmp_path):
    a = np.arange(12, dtype=np.int8).reshape(3, 4)
    atomic_write(tmp_path / "status.npy", lambda f: np.save(f, a))
    atomic_write(tmp_path / "cache.npz", lambda f: np.savez(f, a=a))
    assert sorted(os.listdir(tmp_path)) == ["cache.npz", "status.npy"]
    assert np.array_equal(np.load(tmp_path / "status.npy"), a)
    with np.load(tmp_path / "cache.npz") as z:
        assert np.array_equal(z["a"], a)


def test_text_and_json_round_trip(tmp_path):
    atomic_write_text(tmp_path / "t.txt", "naïve\nline two\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "naïve\nline two\n"
    obj = {"b": [1, 2.5, None], "a": {"x": "y"}}
    atomic_write_json(tmp_path / "o.json", obj, indent=2)
    text = (tmp_path / "o.json").read_text()
    assert text == json.dumps(obj, indent=2) + "\n"
    assert json.loads(text) == obj


def test_atomic_path_renames_only_on_success(tmp_path):
    path = tmp_path / "crops.npy"
    path.write_bytes(b"old")
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp != path
        m = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(2, 3))
        m[:] = 7
        m.flush()
        del m
        assert path.read_bytes() == b"old"
    assert np.array_equal(np.load(path), np.full((2, 3), 7, np.uint8))
    with pytest.raises(KeyError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"partial")
            raise KeyError("stop")
    assert np.array_equal(np.load(path), np.full((2, 3), 7, np.uint8))
    assert os.listdir(tmp_path) == ["crops.npy"]


@pytest.mark.skipif(os.name != "posix", reason="umask is POSIX")
def test_the_new_file_gets_the_usual_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "m.json", "{}\n")
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
