"""What must hold after any fault: the checks the reliability tests share."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import blake3

import nbversion


def catalog_rows(repo: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(repo / ".nbversion" / "catalog.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def assert_catalog_sound(repo: Path) -> None:
    """The catalog opens, SQLite's own integrity check passes, foreign keys hold."""
    assert catalog_rows(repo, "PRAGMA integrity_check") == [("ok",)]
    assert catalog_rows(repo, "PRAGMA foreign_key_check") == []


def assert_objects_whole(repo: Path) -> int:
    """Every file under an object's final name holds exactly the bytes of its id (a partial
    write may only ever sit under a temporary name). Returns how many objects there are."""
    root = repo / ".nbversion" / "objects"
    count = 0
    for fanout in root.iterdir() if root.exists() else ():
        if fanout.name == "tmp":
            continue
        for path in fanout.iterdir():
            hasher = blake3.blake3()
            with open(path, "rb") as file:
                while data := file.read(1 << 22):
                    hasher.update(data)
            assert hasher.hexdigest() == fanout.name + path.name, f"{path} holds other bytes than its id"
            count += 1
    return count


def assert_every_snapshot_whole(repo: Path) -> None:
    """Every snapshot the catalog shows has all its objects, intact (no partial snapshot)."""
    result = nbversion.check(repo=repo)
    assert result.ok, str(result)


def snapshot_messages(repo: Path) -> list[str]:
    return [m for (m,) in catalog_rows(repo, "SELECT message FROM snapshots ORDER BY id")]
