"""kill -9 in the middle of a snapshot, at every write step: the catalog stays sound, no
partial snapshot is visible, no object holds partial bytes under its final name, and the
next snapshot and ``nbversion check`` succeed.

The crash points are exact: a driver process wraps every step that writes (each chunk
written to an object, each rename into place, each SQL statement of the snapshot's
transaction, the commit, the WAL checkpoint, the stat cache) and SIGKILLs itself at step N,
for every N. A second, timed sweep (``-m slow``) kills a 1 GiB snapshot at ten moments.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _invariants import (
    assert_catalog_sound,
    assert_every_snapshot_whole,
    assert_objects_whole,
    catalog_rows,
    snapshot_messages,
)

import nbversion

DRIVER = r'''
import os, signal, sys
from contextlib import contextmanager

import numpy as np
from fsspec.implementations.local import LocalFileSystem

import nbversion
from nbversion import catalog, store

crash_at, size = int(sys.argv[1]), int(sys.argv[2])
steps = 0


def step():
    global steps
    steps += 1
    if steps == crash_at:
        os.kill(os.getpid(), signal.SIGKILL)


def around(owner, name):
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        step()
        result = original(*args, **kwargs)
        step()
        return result

    setattr(owner, name, wrapped)


class Statements:
    """A connection whose every statement is a crash point."""

    def __init__(self, conn):
        self._conn = conn

    def __getattr__(self, name):
        attr = getattr(self._conn, name)
        if name in ("execute", "executemany"):
            def run(*args, **kwargs):
                step()
                return attr(*args, **kwargs)
            return run
        return attr


transaction = catalog.Catalog.transaction


@contextmanager
def crashing_transaction(self):
    with transaction(self) as conn:
        yield Statements(conn)
        step()  # the body is done, the COMMIT comes next


catalog.Catalog.transaction = crashing_transaction
around(store._HashingWriter, "_write_raw")
around(LocalFileSystem, "mv")
around(catalog.Catalog, "checkpoint")
around(catalog.StatCache, "save")

big = np.arange(size // 8, dtype=np.float64)
nbversion.snapshot(
    "the crashing one",
    {"big": big, "params": {"lr": 0.1}, "small": np.ones(10), "accuracy": 0.9},
    files=["data"],
)
print("STEPS", steps)
'''

MIB = 1 << 20


def pristine_repo(root: Path) -> Path:
    """A repository with one snapshot and a tracked data directory."""
    repo = root / "pristine"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "data").mkdir()
    for i in range(3):
        (repo / "data" / f"part{i}.csv").write_text("x,y\n" + "".join(f"{j},{j * i}\n" for j in range(20_000)))
    nbversion.snapshot("before", {"x": np.arange(100)}, files=[str(repo / "data")], repo=repo)
    (repo / "data" / "part1.csv").write_text("changed\n" * 50_000)  # new bytes for the next snapshot
    return repo


def drive(repo: Path, crash_at: int, size: int) -> subprocess.CompletedProcess[str]:
    script = repo.parent / "driver.py"
    script.write_text(DRIVER)
    return subprocess.run(
        [sys.executable, str(script), str(crash_at), str(size)], cwd=repo, capture_output=True, text=True, timeout=300, check=False
    )


def assert_recovers(repo: Path, before: list[str]) -> None:
    assert_catalog_sound(repo)
    after = snapshot_messages(repo)
    assert after in (before, [*before, "the crashing one"]), after
    if after[-1] == "the crashing one":  # then all of it: every variable, every file, the metric
        names = catalog_rows(repo, "SELECT name FROM artifacts WHERE snapshot_id = (SELECT max(id) FROM snapshots)")
        assert {"big", "params", "small", "accuracy"} <= {n for (n,) in names}
        files = catalog_rows(repo, "SELECT path FROM snapshot_files WHERE snapshot_id = (SELECT max(id) FROM snapshots)")
        assert {f"data/part{i}.csv" for i in range(3)} <= {p for (p,) in files}
        assert catalog_rows(repo, "SELECT value FROM metrics WHERE name = 'accuracy'") == [(0.9,)]
    assert_objects_whole(repo)
    assert_every_snapshot_whole(repo)
    nbversion.snapshot("after the crash", {"x": np.arange(5)}, files=[str(repo / "data")], repo=repo)
    assert snapshot_messages(repo)[-1] == "after the crash"
    assert_catalog_sound(repo)
    assert_every_snapshot_whole(repo)


def test_kill_at_every_write_step_of_a_snapshot(tmp_path: Path) -> None:
    size = 48 * MIB  # three 16 MiB chunks, so crashes land between chunks too
    pristine = pristine_repo(tmp_path)
    before = snapshot_messages(pristine)

    dry = tmp_path / "dry"
    shutil.copytree(pristine, dry, symlinks=True)
    completed = drive(dry, 0, size)
    assert completed.returncode == 0, completed.stderr
    total = int(completed.stdout.split("STEPS")[1])
    assert total > 20  # the wrapping reached the store, the catalog and the stat cache

    outcomes = {"recorded": 0, "not recorded": 0}
    for crash_at in range(1, total + 1):
        repo = tmp_path / f"crash{crash_at}"
        shutil.copytree(pristine, repo, symlinks=True)
        result = drive(repo, crash_at, size)
        assert result.returncode == -signal.SIGKILL, f"step {crash_at}: {result.returncode} {result.stderr[-500:]}"
        recorded = snapshot_messages(repo)[-1] == "the crashing one"
        outcomes["recorded" if recorded else "not recorded"] += 1
        assert_recovers(repo, before)
        shutil.rmtree(repo)
    # The sweep crossed the commit: early kills lose the snapshot, late ones keep it whole.
    assert outcomes["recorded"] >= 1 and outcomes["not recorded"] >= 1, outcomes


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [i / 10 for i in range(1, 10)])
def test_kill_a_1_gib_snapshot_at_any_moment(tmp_path: Path, fraction: float) -> None:
    size = int(float(os.environ.get("NBVERSION_CRASH_GIB", "1")) * 1024 * MIB)
    pristine = pristine_repo(tmp_path)
    before = snapshot_messages(pristine)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)

    timing = tmp_path / "timing"
    shutil.copytree(pristine, timing, symlinks=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, str(script), "0", str(size)], cwd=timing, check=True, capture_output=True)
    duration = time.perf_counter() - start
    shutil.rmtree(timing)

    repo = tmp_path / "repo"
    shutil.copytree(pristine, repo, symlinks=True)
    proc = subprocess.Popen([sys.executable, str(script), "0", str(size)], cwd=repo, stdout=subprocess.DEVNULL)
    time.sleep(duration * fraction)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert_recovers(repo, before)
