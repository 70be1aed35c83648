"""The object store: content addressing, write-once, verification on read."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pytest

from nbversion.errors import CorruptObject, InvalidObjectId, MissingObject
from nbversion.store import ObjectStore, hash_buffers


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore.local(str(tmp_path / "objects"))


def test_put_and_read_round_trip_with_fan_out(store: ObjectStore, tmp_path: Path) -> None:
    put = store.put_bytes(b"hello world")
    assert put.new and put.size == 11
    assert put.object_id == hash_buffers([b"hello world"])
    path = tmp_path / "objects" / put.object_id[:2] / put.object_id[2:]
    assert path.read_bytes() == b"hello world"
    assert store.read_bytes(put.object_id) == b"hello world"


def test_existing_object_is_not_written_again(store: ObjectStore, tmp_path: Path) -> None:
    first = store.put_bytes(b"same")
    path = Path(store.path(first.object_id))
    inode = path.stat().st_ino
    os.utime(path, ns=(1, 1))
    second = store.put_stream(lambda f: f.write(b"same"))
    assert second.object_id == first.object_id and not second.new
    assert path.stat().st_ino == inode  # the same file, not a copy renamed over it
    # ... marked as just used, so gc's grace period covers a snapshot that reuses it
    assert path.stat().st_mtime_ns > 1
    assert list((tmp_path / "objects" / "tmp").iterdir()) == []


def test_buffers_are_hashed_without_writing_when_present(store: ObjectStore) -> None:
    store.put_bytes(b"abcdef")
    calls = []

    def buffers():
        calls.append(1)
        return [b"abc", b"def"]

    put = store.put_buffers(buffers)
    assert not put.new and put.size == 6
    assert len(calls) == 2  # hash pass and size; no write pass


def test_failed_write_leaves_no_object_and_no_temp_file(store: ObjectStore, tmp_path: Path) -> None:
    def write(f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        store.put_stream(write)
    assert list((tmp_path / "objects" / "tmp").iterdir()) == []
    assert [p for p in (tmp_path / "objects").iterdir() if p.name != "tmp"] == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ab/cd", "A" * 64, "0" * 63, "", "g" * 64])
def test_invalid_object_id_never_becomes_a_path(store: ObjectStore, bad: str) -> None:
    with pytest.raises(InvalidObjectId, match="not valid"):
        store.path(bad)
    with pytest.raises(InvalidObjectId):
        store.read_bytes(bad)


def test_corrupt_object_is_refused_by_name(store: ObjectStore) -> None:
    put = store.put_bytes(b"precious data")
    path = Path(store.path(put.object_id))
    data = bytearray(path.read_bytes())
    data[3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptObject, match=put.object_id):
        store.read_bytes(put.object_id)


def test_missing_object_is_named(store: ObjectStore) -> None:
    object_id = hash_buffers([b"never stored"])
    with pytest.raises(MissingObject, match=object_id):
        store.read_bytes(object_id)


def test_works_over_any_fsspec_filesystem() -> None:
    fs = fsspec.filesystem("memory")
    store = ObjectStore(fs, "/nbv-test-objects")
    try:
        put = store.put_bytes(b"in memory")
        assert store.exists(put.object_id)
        assert store.read_bytes(put.object_id) == b"in memory"
    finally:
        fs.rm("/nbv-test-objects", recursive=True)


def test_fingerprint_memo_never_trusts_a_missing_object(store: ObjectStore) -> None:
    data = [b"x" * 1000, b"y" * 1000]
    first = store.put_buffers(lambda: data, probe=False)
    assert first.new
    again = store.put_buffers(lambda: data)
    assert again == type(first)(first.object_id, 2000, False)
    Path(store.path(first.object_id)).unlink()
    third = store.put_buffers(lambda: data)  # the memo names it, but it is gone: store anew
    assert third.new and store.read_bytes(third.object_id) == b"x" * 1000 + b"y" * 1000


def test_changed_bytes_are_never_taken_for_stored_ones(store: ObjectStore) -> None:
    buffer = bytearray(b"a" * 4096)
    first = store.put_buffers(lambda: [buffer])
    buffer[4000] = ord("b")
    second = store.put_buffers(lambda: [buffer])
    assert second.new and second.object_id != first.object_id
    assert store.read_bytes(second.object_id) == bytes(buffer)


def test_preallocated_object_shorter_than_announced_is_exact(store: ObjectStore) -> None:
    put = store.put_stream(lambda f: f.write(b"abc"), size=10)
    assert put.size == 3 and Path(store.path(put.object_id)).stat().st_size == 3
    assert store.read_bytes(put.object_id) == b"abc"
