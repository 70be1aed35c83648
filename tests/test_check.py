"""nbversion check: every missing or corrupt object named, with the snapshots it breaks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import nbversion
from conftest import query

NBVERSION = str(Path(sys.executable).parent / "nbversion")


def run(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NBVERSION, "check", *args], cwd=repo, capture_output=True, text=True)


def object_path(repo: Path, object_id: str) -> Path:
    return repo / ".nbversion" / "objects" / object_id[:2] / object_id[2:]


def test_check_names_missing_and_corrupt_objects_and_the_snapshots_they_break(repo: Path) -> None:
    (repo / "data").mkdir()
    for i in range(5):
        (repo / "data" / f"{i}.csv").write_text(f"row,{i}\n")
    first = nbversion.snapshot("one", {"a": np.arange(1000.0), "b": [1, 2]}, files=["data"], repo=repo)
    second = nbversion.snapshot("two", {"a": np.arange(1000.0), "c": "new"}, files=["data"], repo=repo)
    clean = run(repo)
    assert clean.returncode == 0 and "all present and intact" in clean.stdout

    (a_id,) = query(repo, "SELECT DISTINCT object_id FROM artifacts WHERE name = 'a'")[0]
    (file_id,) = query(repo, "SELECT object_id FROM snapshot_files WHERE path = 'data/3.csv' LIMIT 1")[0]
    (b_id,) = query(repo, "SELECT object_id FROM artifacts WHERE name = 'b'")[0]
    damaged = bytearray(object_path(repo, a_id).read_bytes())
    damaged[-1] ^= 0xFF
    object_path(repo, a_id).write_bytes(bytes(damaged))
    object_path(repo, file_id).unlink()
    object_path(repo, b_id).unlink()

    broken = run(repo)
    assert broken.returncode == 1
    lines = broken.stdout.splitlines()
    assert "3 problems" in lines[0]
    by_object = {line.split()[0]: line for line in lines[1:]}
    assert "is corrupt" in by_object[a_id] and "2 snapshots" in by_object[a_id]
    assert "is missing" in by_object[file_id] and "2 snapshots" in by_object[file_id]
    assert "is missing" in by_object[b_id] and "1 snapshot:" in by_object[b_id]
    assert first.short_id in by_object[b_id] and second.short_id not in by_object[b_id]

    only_second = run(repo, "HEAD")
    assert only_second.returncode == 1 and b_id not in only_second.stdout and a_id in only_second.stdout
    result = nbversion.check(repo=repo)
    assert not result.ok and {p[0] for p in result.problems} == {a_id, file_id, b_id}


def test_what_is_intact_still_restores(repo: Path) -> None:
    nbversion.snapshot("one", {"x": [1, 2, 3]}, repo=repo)
    nbversion.snapshot("two", {"y": [4, 5, 6]}, repo=repo)
    (x_id,) = query(repo, "SELECT object_id FROM artifacts WHERE name = 'x'")[0]
    object_path(repo, x_id).unlink()
    ns: dict = {}
    nbversion.restore("HEAD", ns, repo=repo)
    assert ns == {"y": [4, 5, 6]}
    assert run(repo, "HEAD").returncode == 0 and run(repo, "HEAD~1").returncode == 1


def test_gc_removes_only_old_unreferenced_objects(repo: Path) -> None:
    import os
    import time

    from nbversion.project import Project

    nbversion.snapshot("keep", {"x": np.arange(100.0)}, repo=repo)
    store = Project(repo).store
    old = store.put_bytes(b"left over by an aborted snapshot")
    fresh = store.put_bytes(b"written just now by another kernel's snapshot in progress")
    long_ago = time.time() - 7200
    os.utime(store.path(old.object_id), (long_ago, long_ago))
    abandoned = Path(store.root) / "tmp" / "dead.tmp"
    abandoned.parent.mkdir(exist_ok=True)
    abandoned.write_bytes(b"partial")
    os.utime(abandoned, (long_ago, long_ago))

    dry = subprocess.run([NBVERSION, "gc", "--dry-run"], cwd=repo, capture_output=True, text=True)
    assert dry.returncode == 0 and "would remove 1 unreferenced object" in dry.stdout
    assert store.exists(old.object_id)
    result = subprocess.run([NBVERSION, "gc"], cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0 and "removed 1 unreferenced object" in result.stdout
    assert "1 abandoned temporary file" in result.stdout
    assert not store.exists(old.object_id) and store.exists(fresh.object_id) and not abandoned.exists()
    assert run(repo).returncode == 0  # everything snapshots need survived
    ns: dict = {}
    nbversion.restore("HEAD", ns, repo=repo)
    assert ns["x"].sum() == 4950.0
