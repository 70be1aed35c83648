"""Disk full (ENOSPC) and I/O errors while writing an object, committing the catalog, or
restoring a file: one clear line, the catalog unchanged, no temporary file left behind."""

from __future__ import annotations

import errno
import hashlib
import io
import sqlite3
from pathlib import Path
from typing import Any, Self

import pytest
from _invariants import (
    assert_catalog_sound,
    assert_every_snapshot_whole,
    assert_objects_whole,
    snapshot_messages,
)
from fsspec.implementations.local import LocalFileSystem
from IPython.core.error import UsageError

from nbversion import project as project_module
from nbversion import worktree


class FullDisk(io.RawIOBase):
    """A file on a disk with *room* bytes left (shared by every file on it): writes beyond
    that fail like a full disk."""

    def __init__(self, file: Any, room: list[int]) -> None:
        self._file, self._room = file, room

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        if n > self._room[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room[0] -= n
        return self._file.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tmp_files(repo: Path) -> list[Path]:
    tmp = repo / ".nbversion" / "objects" / "tmp"
    return (list(tmp.iterdir()) if tmp.exists() else []) + list(repo.rglob("*.nbversion-*.tmp"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def state(shell: Any, repo: Path) -> Any:
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_text("a,b\n" + "1,2\n" * 200_000)
    shell.run_cell("import numpy as np\nbig = np.arange(3_000_000.0)")
    shell.run_cell('%snapshot "first" --files data')
    shell.run_cell("big = big + 1")
    (repo / "data" / "train.csv").write_text("a,b\n" + "5,6\n" * 200_000)
    return shell


def assert_unchanged(repo: Path, catalog_digest: str) -> None:
    assert snapshot_messages(repo) == ["first"]
    assert digest(repo / ".nbversion" / "catalog.db") == catalog_digest
    assert tmp_files(repo) == []
    assert_catalog_sound(repo)
    assert_objects_whole(repo)
    assert_every_snapshot_whole(repo)


@pytest.mark.parametrize("room", [0, 1 << 20, 20 << 20], ids=["at once", "after 1 MiB", "after 20 MiB"])
def test_disk_full_while_writing_an_object(
    state: Any, repo: Path, capsys: pytest.CaptureFixture[str], room: int
) -> None:
    catalog_digest = digest(repo / ".nbversion" / "catalog.db")
    real_open = LocalFileSystem.open
    left = [room]

    def full_open(self: Any, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        file = real_open(self, path, mode, **kwargs)
        return FullDisk(file, left) if "w" in mode and "/objects/tmp/" in path else file

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LocalFileSystem, "open", full_open)
        with pytest.raises(UsageError) as error:
            state.run_cell('%snapshot "second" --files data')
    message = str(error.value)
    assert "\n" not in message and "object store" in message and "No space left on device" in message
    assert_unchanged(repo, catalog_digest)
    state.run_cell('%snapshot "second" --files data')  # room again: it works
    assert snapshot_messages(repo) == ["first", "second"]


class FailingCommit:
    """A connection whose COMMIT fails the way SQLite reports a full disk."""

    def __init__(self, conn: sqlite3.Connection, error: str) -> None:
        self._conn, self._error = conn, error

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.strip().upper() == "COMMIT":
            raise sqlite3.OperationalError(self._error)
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.parametrize("error", ["database or disk is full", "disk I/O error"])
def test_disk_full_while_committing_the_catalog(state: Any, repo: Path, error: str) -> None:
    catalog_digest = digest(repo / ".nbversion" / "catalog.db")
    real = project_module.Project.open_catalog

    def failing_catalog(self: Any) -> Any:
        catalog = real(self)
        catalog.conn = FailingCommit(catalog.conn, error)
        return catalog

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(project_module.Project, "open_catalog", failing_catalog)
        with pytest.raises(UsageError) as raised:
            state.run_cell('%snapshot "second" --files data')
    message = str(raised.value)
    assert "\n" not in message and "catalog" in message and error in message
    assert_unchanged(repo, catalog_digest)  # the new objects are only unreferenced (gc's job)
    state.run_cell('%snapshot "second" --files data')
    assert snapshot_messages(repo) == ["first", "second"]


def test_disk_full_while_restoring_a_file_changes_nothing(state: Any, repo: Path) -> None:
    state.run_cell('%snapshot "second" --files data')
    current = (repo / "data" / "train.csv").read_bytes()
    state.run_cell("big = 'mine'")

    left = [1 << 16]

    def full_open(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        file = open(path, mode, *args, **kwargs)  # noqa: SIM115 - handed on, closed by its user
        return FullDisk(file, left) if "w" in mode else file

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(worktree, "open", full_open, raising=False)
        with pytest.raises(UsageError) as raised:
            state.run_cell("%restore HEAD~1")
    assert "\n" not in str(raised.value) and "No space left on device" in str(raised.value)
    assert (repo / "data" / "train.csv").read_bytes() == current
    assert state.user_ns["big"] == "mine"
    assert tmp_files(repo) == []
