"""Several kernels on one catalog: concurrent snapshots, a long reader, WAL growth, git
swapping the catalog file under a kernel, and a fork after a snapshot."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _invariants import (
    assert_catalog_sound,
    assert_every_snapshot_whole,
    catalog_rows,
    snapshot_messages,
)
from conftest import git

import nbversion

WRITER = r'''
import sys
import numpy as np
import nbversion

who, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    nbversion.snapshot(f"{who} {i}", {"i": i, "who": who, "values": np.full(2000, i)})
'''

READER = r'''
import sqlite3, sys, time
conn = sqlite3.connect(".nbversion/catalog.db", isolation_level=None)
conn.execute("BEGIN")
seen = conn.execute("SELECT count(*) FROM snapshots").fetchone()[0]
start = time.time()
time.sleep(float(sys.argv[1]))
still = conn.execute("SELECT count(*) FROM snapshots").fetchone()[0]
conn.execute("COMMIT")
print(start, time.time(), seen, still)
'''


def test_two_kernels_snapshot_100_times_each_beside_a_long_reader(repo: Path) -> None:
    nbversion.snapshot("start", {"x": 1}, repo=repo)
    (repo / "writer.py").write_text(WRITER)
    (repo / "reader.py").write_text(READER)
    wal = repo / ".nbversion" / "catalog.db-wal"
    sizes: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            sizes.append(wal.stat().st_size if wal.exists() else 0)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    writers = [
        subprocess.Popen([sys.executable, "writer.py", who, "100"], cwd=repo, stderr=subprocess.PIPE, text=True)
        for who in ("alice", "bob")
    ]
    time.sleep(1.0)
    reader = subprocess.run([sys.executable, "reader.py", "3"], cwd=repo, capture_output=True, text=True, check=True)
    errors = [w.communicate()[1] for w in writers]
    done.set()
    watcher.join()

    assert [w.returncode for w in writers] == [0, 0], errors
    assert errors == ["", ""]  # nothing reached the user: no "database is locked", no warning
    messages = snapshot_messages(repo)
    assert sorted(messages) == sorted(["start"] + [f"{who} {i}" for who in ("alice", "bob") for i in range(100)])
    assert len(set(catalog_rows(repo, "SELECT id FROM snapshots"))) == 201
    # The reader held one consistent view for 3 s while the writers kept committing.
    start, end, seen, still = reader.stdout.split()
    assert seen == still
    during = catalog_rows(
        repo, f"SELECT count(*) FROM snapshots WHERE created_at > '{_iso(float(start))}' AND created_at < '{_iso(float(end))}'"
    )[0][0]
    assert during > 0
    # The WAL is folded back after the reader leaves: it never runs away, and ends empty.
    assert max(sizes) < 32 << 20
    assert not wal.exists() or wal.stat().st_size == 0
    assert_catalog_sound(repo)
    assert_every_snapshot_whole(repo)


def _iso(timestamp: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


def _child_snapshot(repo: str, size: int) -> None:
    nbversion.snapshot("child", {"child": np.arange(size, dtype=np.float64)}, repo=repo)


def test_a_forked_child_snapshots_on_its_own_connection(repo: Path) -> None:
    size = 4_000_000  # 32 MB: big enough that hashing and writing use their helper threads
    nbversion.snapshot("parent before", {"a": np.arange(size, dtype=np.float64)}, repo=repo)
    child = multiprocessing.get_context("fork").Process(target=_child_snapshot, args=(str(repo), size + 1))
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in its snapshot")
    assert child.exitcode == 0
    nbversion.snapshot("parent after", {"a": np.arange(size, dtype=np.float64) + 1}, repo=repo)
    assert snapshot_messages(repo) == ["parent before", "child", "parent after"]
    assert_catalog_sound(repo)
    assert_every_snapshot_whole(repo)


def test_git_checkout_swaps_the_catalog_under_a_kernel(shell: Any, repo: Path) -> None:
    (repo / "README").write_text("x\n")
    git(repo, "add", "README")
    git(repo, "commit", "-qm", "start")
    shell.run_cell("x = 1")
    shell.run_cell('%snapshot "on main"')
    git(repo, "add", ".nbversion")
    git(repo, "commit", "-qm", "catalog on main")
    git(repo, "checkout", "-qb", "experiment")
    shell.run_cell("x = 2")
    shell.run_cell('%snapshot "on experiment"')
    git(repo, "commit", "-qam", "catalog on experiment")

    git(repo, "checkout", "-q", "-")  # git writes main's catalog.db under the running kernel
    assert snapshot_messages(repo) == ["on main"]
    shell.run_cell("x = 3")
    shell.run_cell('%snapshot "main again"')
    assert snapshot_messages(repo) == ["on main", "main again"]
    shell.run_cell("%restore HEAD~1")
    assert shell.user_ns["x"] == 1
    git(repo, "stash", "-q")
    git(repo, "checkout", "-q", "experiment")
    assert snapshot_messages(repo) == ["on main", "on experiment"]  # the other file was never written
    assert_catalog_sound(repo)


def test_a_branch_switch_never_mixes_the_old_catalogs_pending_wal_into_the_new(
    repo: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    (repo / "README").write_text("x\n")
    git(repo, "add", "README")
    git(repo, "commit", "-qm", "start")
    nbversion.snapshot("main 1", {"x": 1}, repo=repo)
    git(repo, "add", ".nbversion")
    git(repo, "commit", "-qm", "catalog on main")
    git(repo, "checkout", "-qb", "experiment")
    nbversion.snapshot("experiment 1", {"x": 2}, repo=repo)
    git(repo, "commit", "-qam", "catalog on experiment")
    # A reader in the middle of a query (Datasette, a notebook's SQL) keeps the next
    # snapshot's WAL from being folded into catalog.db ...
    reader = sqlite3.connect(repo / ".nbversion" / "catalog.db")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM snapshots").fetchone()
    result = nbversion.snapshot("experiment 2", {"x": 3}, repo=repo)
    assert any("could not be folded in yet" in note for note in result.notes)
    # ... so git sees catalog.db unchanged and lets the branch switch replace it.
    git(repo, "checkout", "-q", "-")
    capfd.readouterr()
    nbversion.snapshot("main 2", {"x": 4}, repo=repo)
    assert "moved that WAL to catalog.db-wal.replaced-" in capfd.readouterr().err
    assert snapshot_messages(repo) == ["main 1", "main 2"]  # nothing of the experiment branch
    assert_catalog_sound(repo)
    reader.close()
    assert list((repo / ".nbversion").glob("catalog.db-wal.replaced-*"))  # set aside, not lost
    assert git(repo, "status", "--porcelain", "--ignored=no", ".nbversion").strip() == "M .nbversion/catalog.db"
