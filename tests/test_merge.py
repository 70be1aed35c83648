"""Two clones snapshot independently; git merges their catalogs through nbversion's driver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import git, query

SNAPSHOT = "import sys, nbversion; nbversion.snapshot(sys.argv[1], {'v': sys.argv[1]}, tag=sys.argv[2] or None)"
NBVERSION = str(Path(sys.executable).parent / "nbversion")


def snap(repo: Path, message: str, tag: str = "") -> None:
    subprocess.run([sys.executable, "-c", SNAPSHOT, message, tag], cwd=repo, check=True)


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def test_git_merge_unions_two_histories_and_reports_tag_conflicts(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    init = subprocess.run([NBVERSION, "init"], cwd=origin, capture_output=True, text=True, check=True)
    assert "merge driver installed" in init.stdout
    assert ".nbversion/catalog.db -diff -text merge=nbversion" in (origin / ".gitattributes").read_text()
    snap(origin, "shared start")
    commit(origin, "start")

    clones = {}
    for name in ("alice", "bob"):
        clone = tmp_path / name
        git(tmp_path, "clone", "-q", str(origin), name)
        subprocess.run([NBVERSION, "init"], cwd=clone, check=True, capture_output=True)
        clones[name] = clone
    snap(clones["alice"], "alice's run", "best")
    snap(clones["alice"], "alice again", "alice")
    commit(clones["alice"], "alice")
    snap(clones["bob"], "bob's run", "best")
    commit(clones["bob"], "bob")

    git(clones["alice"], "fetch", "-q", str(clones["bob"]), "main")
    merged = subprocess.run(
        ["git", "merge", "--no-edit", "FETCH_HEAD"], cwd=clones["alice"], capture_output=True, text=True,
        env={**__import__("os").environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
             "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"},
    )
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert "tag 'best'" in merged.stdout + merged.stderr  # reported, not silently overwritten
    alice = clones["alice"]
    messages = [m for (m,) in query(alice, "SELECT message FROM snapshots ORDER BY id")]
    assert sorted(messages) == sorted(["shared start", "alice's run", "alice again", "bob's run"])
    tags = dict(query(alice, "SELECT t.name, s.message FROM tags t JOIN snapshots s ON s.id = t.snapshot_id"))
    assert tags == {"best": "alice's run", "alice": "alice again"}
    assert query(alice, "PRAGMA integrity_check") == [("ok",)]
    assert git(alice, "status", "--porcelain").strip() == ""  # merged cleanly, committed


def test_merge_by_hand(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for repo, message in ((a, "from a"), (b, "from b")):
        repo.mkdir()
        git(repo, "init", "-q")
        snap(repo, message)
    result = subprocess.run(
        [NBVERSION, "merge", str(a / ".nbversion" / "catalog.db"), str(b / ".nbversion" / "catalog.db")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0 and "1 snapshot added" in result.stdout
    assert sorted(m for (m,) in query(a, "SELECT message FROM snapshots")) == ["from a", "from b"]
    again = subprocess.run(
        [NBVERSION, "merge", str(a / ".nbversion" / "catalog.db"), str(b / ".nbversion" / "catalog.db")],
        capture_output=True, text=True,
    )
    assert "0 snapshots added" in again.stdout  # idempotent
    missing = subprocess.run([NBVERSION, "merge", str(a / "nope.db"), str(b / ".nbversion" / "catalog.db")], capture_output=True, text=True)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_merged_clones_pull_everything_from_one_remote_and_check_clean(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    subprocess.run([NBVERSION, "init"], cwd=origin, check=True, capture_output=True)
    subprocess.run([NBVERSION, "remote", "add", "team", str(tmp_path / "shared")], cwd=origin, check=True, capture_output=True)
    snap(origin, "start")
    subprocess.run([NBVERSION, "push"], cwd=origin, check=True, capture_output=True)
    commit(origin, "start")
    for name in ("alice", "bob"):
        git(tmp_path, "clone", "-q", str(origin), name)
        subprocess.run([NBVERSION, "init"], cwd=tmp_path / name, check=True, capture_output=True)
        snap(tmp_path / name, f"{name}'s work")
        subprocess.run([NBVERSION, "push"], cwd=tmp_path / name, check=True, capture_output=True)
        commit(tmp_path / name, name)
    alice = tmp_path / "alice"
    git(alice, "fetch", "-q", str(tmp_path / "bob"), "main")
    git(alice, "-c", "user.name=t", "-c", "user.email=t@t", "merge", "-q", "--no-edit", "FETCH_HEAD")
    assert len(query(alice, "SELECT id FROM snapshots")) == 3
    pulled = subprocess.run([NBVERSION, "pull", "--all"], cwd=alice, capture_output=True, text=True)
    assert pulled.returncode == 0 and "pulled 3 objects" in pulled.stdout  # origin's and bob's
    check = subprocess.run([NBVERSION, "check"], cwd=alice, capture_output=True, text=True)
    assert check.returncode == 0 and "all present and intact" in check.stdout
