"""Ctrl-C (a real SIGINT) during %snapshot and %restore, at each stage.

A snapshot is recorded whole or not at all; a restore changes the variables and the files
together or not at all. Ctrl-C during the slow parts (hashing, writing, reading) stops at
once; during the instant that commits (the catalog transaction, renaming staged files and
assigning variables) it is held back until that instant is over.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _invariants import (
    assert_catalog_sound,
    assert_every_snapshot_whole,
    assert_objects_whole,
    snapshot_messages,
)
from fsspec.implementations.local import LocalFileSystem

from nbversion import catalog, store, worktree


@pytest.fixture(autouse=True)
def ctrl_c_raises() -> Any:
    """Ctrl-C raises KeyboardInterrupt, as in a kernel or a terminal. (A process started in
    the background by a shell, as CI may run the tests, inherits SIGINT ignored.)"""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def interrupt_on_call(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, nth: int = 1) -> list[int]:
    """Deliver a real SIGINT to this process on the *nth* call of ``owner.name``."""
    original = getattr(owner, name)
    calls = [0]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == nth:
            signal.raise_signal(signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)
    return calls


def run_interrupted(shell: Any, stage: tuple[Any, str, int, bool], cell: str) -> None:
    """Run *cell* with a SIGINT delivered at *stage*; it must end in KeyboardInterrupt."""
    owner, name, nth, _ = stage
    with pytest.MonkeyPatch.context() as mp, pytest.raises(KeyboardInterrupt):
        calls = interrupt_on_call(mp, owner, name, nth)
        shell.run_cell(cell)
    assert calls[0] >= nth  # the interrupt was delivered at that stage


def tmp_files(repo: Path) -> list[Path]:
    tmp = repo / ".nbversion" / "objects" / "tmp"
    work_tree_temps = [p for p in repo.rglob("*.nbversion-*.tmp")]
    return (list(tmp.iterdir()) if tmp.exists() else []) + work_tree_temps


def setup_state(shell: Any, repo: Path) -> None:
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_text("a,b\n" + "1,2\n" * 100_000)
    shell.run_cell("import numpy as np\nbig = np.arange(6_000_000.0)\nparams = {'lr': 0.1}")
    shell.run_cell('%snapshot "first" --files data')


SNAPSHOT_STAGES = {
    # stage: (what to interrupt, which call); True = the commit instant (held back)
    "writing an array's bytes": (store._HashingWriter, "_write_raw", 2, False),
    "storing a data file": (store.ObjectStore, "put_file", 1, False),
    "renaming an object into place": (LocalFileSystem, "mv", 1, False),
    "the catalog transaction": (catalog.Catalog, "check_tag_free", 2, True),  # 1: before capture
    "the WAL checkpoint": (catalog.Catalog, "checkpoint", 1, True),
}


@pytest.mark.parametrize("stage", list(SNAPSHOT_STAGES))
def test_ctrl_c_during_snapshot_records_all_or_nothing(
    shell: Any, repo: Path, stage: str
) -> None:
    setup_state(shell, repo)
    shell.run_cell("big = big + 1\nparams['lr'] = 0.2")
    (repo / "data" / "train.csv").write_text("a,b\n" + "3,4\n" * 100_000)
    commits = SNAPSHOT_STAGES[stage][3]
    run_interrupted(shell, SNAPSHOT_STAGES[stage], '%snapshot "second" --tag second --files data')
    assert snapshot_messages(repo) == (["first", "second"] if commits else ["first"])
    assert tmp_files(repo) == []
    assert_catalog_sound(repo)
    assert_objects_whole(repo)
    assert_every_snapshot_whole(repo)
    shell.run_cell('%snapshot "third" --files data')
    assert snapshot_messages(repo)[-1] == "third"
    if commits:  # held back, then the whole snapshot is there, tag included
        shell.run_cell("big = None")
        shell.run_cell("%restore second --force")
        assert shell.user_ns["big"][0] == 1.0 and shell.user_ns["params"] == {"lr": 0.2}


RESTORE_STAGES = {
    "reading a variable": (store.VerifiedReader, "readinto", 1, False),
    "staging a file": (worktree, "_write_verified", 1, False),
    "renaming files into place": (worktree.os, "replace", 1, True),
}


@pytest.mark.parametrize("stage", list(RESTORE_STAGES))
def test_ctrl_c_during_restore_changes_nothing_or_everything(
    shell: Any, repo: Path, stage: str
) -> None:
    setup_state(shell, repo)
    shell.run_cell("big = big * 2\nparams = {'lr': 0.5}\nextra = 1")
    (repo / "data" / "train.csv").write_text("a,b\n" + "9,9\n" * 100_000)
    shell.run_cell('%snapshot "second" --files data')
    before_file = (repo / "data" / "train.csv").read_bytes()
    commits = RESTORE_STAGES[stage][3]
    run_interrupted(shell, RESTORE_STAGES[stage], "%restore HEAD~1 --exact")

    ns = shell.user_ns
    if commits:  # held back until the files and the variables were all restored
        assert ns["big"][1] == 1.0 and ns["params"] == {"lr": 0.1} and "extra" not in ns
        assert (repo / "data" / "train.csv").read_text().startswith("a,b\n1,2\n")
    else:
        assert ns["big"][1] == 2.0 and ns["params"] == {"lr": 0.5} and ns["extra"] == 1
        assert (repo / "data" / "train.csv").read_bytes() == before_file
    assert tmp_files(repo) == []
    assert np.array_equal(ns["big"], np.arange(6_000_000.0) * (1 if commits else 2))
