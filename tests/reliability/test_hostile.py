"""Hostile input: restored files and arrays edited afterwards, and a catalog from someone else,
edited with plain sqlite3 (paths that escape, object ids that are paths, manifests that lie,
megabytes of text, terminal escapes). Each is refused by name in one line, nothing is written
outside the repository, and nothing is half restored.

Complements tests/test_code_and_files.py, which covers ``..``, ``/abs``, a symlinked tracked
directory, ``.git/hooks`` and a symlink loop.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import query
from IPython.core.error import UsageError

import nbversion
from nbversion.errors import NbversionError, ObjectError, UsageProblem
from nbversion.project import Project
from nbversion.store import hash_buffers

NBVERSION = str(Path(sys.executable).parent / "nbversion")

#: What a terminal must never receive raw from catalog content.
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def snap(repo: Path, message: str = "one", **kwargs):
    return nbversion.snapshot(message, kwargs.pop("ns", {"v": 1}), repo=repo, **kwargs)


def edit(repo: Path, sql: str, *params: object) -> None:
    """Change the catalog with plain sqlite3, as someone else's tool could."""
    conn = sqlite3.connect(repo / ".nbversion" / "catalog.db")
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NBVERSION, *args], cwd=repo, capture_output=True, text=True, check=False)


def tree_state(root: Path, skip: Path | None = None) -> dict[str, bytes | str]:
    """Every path under *root* (but *skip*) with its bytes, or a symlink's target."""
    state: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and Path(dirpath) == skip.parent:
            dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                state[key] = "-> " + os.readlink(path)
            elif path.is_file():
                state[key] = path.read_bytes()
    return state


@pytest.fixture
def outside(tmp_path: Path, repo: Path) -> Iterator[Path]:
    """A directory beside the repository; on exit, asserts nothing outside the repository
    (this directory, or anything else in tmp_path) was written or changed."""
    sentinel = tmp_path / "outside"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("keep")
    before = tree_state(tmp_path, skip=repo)
    yield sentinel
    assert tree_state(tmp_path, skip=repo) == before


def no_temp_files(repo: Path) -> bool:
    return not [p for p in repo.rglob("*") if ".nbversion-" in p.name and p.name.endswith(".tmp")]


def one_line(exc: BaseException, *needles: str) -> str:
    message = str(exc)
    assert "\n" not in message and len(message) < 2000, message[:300]
    for needle in needles:
        assert needle in message, message
    return message


# -- item 7: what a restore hands out is a copy --------------------------------------------------


@pytest.mark.parametrize("size", [1000, 17 * 1024 * 1024 + 5], ids=["small", "beyond-one-chunk"])
def test_editing_a_restored_file_in_place_never_alters_the_store(repo: Path, size: int) -> None:
    original = os.urandom(size)
    (repo / "data.bin").write_bytes(original)
    snap(repo, "data", files=["data.bin"])
    (object_id,) = query(repo, "SELECT object_id FROM artifacts WHERE path = 'data.bin'")[0]
    stored = repo / ".nbversion" / "objects" / object_id[:2] / object_id[2:]
    target = repo / "data.bin"

    def in_place_edits() -> Iterator[str]:
        with open(target, "r+b") as file:  # overwrite the first bytes, same inode
            file.write(b"\xff" * 64)
        yield "r+b"
        with open(target, "ab") as file:
            file.write(b"appended")
        yield "append"
        with open(target, "r+b") as file:
            file.truncate(10)
        yield "truncate"
        os.truncate(target, 0)
        yield "os.truncate"

    edits = in_place_edits()
    for _ in range(4):
        target.unlink()
        nbversion.restore("HEAD", {}, repo=repo)
        assert target.read_bytes() == original
        assert os.stat(target).st_ino != os.stat(stored).st_ino and os.stat(target).st_nlink == 1
        what = next(edits)
        assert target.read_bytes() != original, what
        assert nbversion.check(repo=repo).ok, what
        assert stored.stat().st_size == size, what
        nbversion.restore("HEAD", {}, repo=repo, force=True)
        assert target.read_bytes() == original, what


def test_modifying_a_restored_array_in_place_never_alters_the_store(shell, repo: Path) -> None:
    shell.run_cell("import numpy as np\nweights = np.arange(200_000, dtype=np.float64).reshape(400, 500)")
    shell.run_cell('%snapshot "weights"')
    for _ in range(2):
        shell.run_cell("del weights")
        shell.run_cell("%restore HEAD")
        restored = shell.user_ns["weights"]
        assert restored.flags.writeable  # like the array that was kept
        restored[:] = -1.0  # in place, as a training step would
        restored[0, :5] += 3.0
    assert nbversion.check(repo=repo).ok
    assert np.array_equal(nbversion.load("HEAD", "weights", repo=repo), np.arange(200_000.0).reshape(400, 500))


# -- item 8: hostile paths -------------------------------------------------------------------------


def symlink(link: Path, to: str | Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(to)


#: id -> (the path the catalog names, how to prepare the work tree, what the refusal says)
HOSTILE_PATHS = {
    "absolute-into-outside": ("{outside}/abs.txt", None, "not a plain path"),
    "dot-dot-hidden-in-the-middle": ("sub/x/../../../outside/x.txt", None, "not a plain path"),
    "empty-component": ("sub//x.txt", None, "not a plain path"),
    "dot-component": ("./ok.txt", None, "not a plain path"),
    "into-nbversion": (".nbversion/catalog.db", None, "inside .nbversion/"),
    "into-objects": (".nbversion/objects/ab/cdef", None, "inside .nbversion/"),
    "nested-git-dir": ("vendor/lib/.git/config", None, "inside .git/"),
    "file-symlink-out": ("link.txt", lambda repo, out: symlink(repo / "link.txt", out / "keep.txt"), "outside the repository"),
    "dangling-symlink-out": ("new.txt", lambda repo, out: symlink(repo / "new.txt", out / "new.txt"), "outside the repository"),
    "dir-symlink-out": ("deep/link/x.txt", lambda repo, out: symlink(repo / "deep" / "link", out), "outside the repository"),
    "dir-symlink-into-git": ("hooks/pre-commit", lambda repo, out: symlink(repo / "hooks", ".git/hooks"), "inside .git/"),
    "dir-symlink-into-nbversion": ("meta/catalog.db", lambda repo, out: symlink(repo / "meta", ".nbversion"), "inside .nbversion/"),
}


@pytest.mark.parametrize("case", HOSTILE_PATHS, ids=list(HOSTILE_PATHS))
def test_hostile_file_path_is_refused_by_name_and_nothing_is_restored(repo: Path, outside: Path, case: str) -> None:
    template, prepare, said = HOSTILE_PATHS[case]
    hostile = template.format(outside=outside)
    (repo / "good.txt").write_text("good")
    (repo / "ok.txt").write_text("fine")
    snap(repo, "two files", files=["good.txt", "ok.txt"])
    edit(repo, "UPDATE artifacts SET path = ? WHERE path = 'ok.txt'", hostile)
    (repo / "good.txt").unlink()
    if prepare is not None:
        prepare(repo, outside)
    git_config = (repo / ".git" / "config").read_bytes()
    catalog = (repo / ".nbversion" / "catalog.db").read_bytes()
    with pytest.raises(UsageProblem) as info:
        nbversion.restore("HEAD", {}, repo=repo)
    one_line(info.value, f"refusing to restore file {hostile!r}", said)
    assert not (repo / "good.txt").exists()  # all or nothing: the good file waits too
    assert no_temp_files(repo)
    assert (repo / ".git" / "config").read_bytes() == git_config
    assert (repo / ".nbversion" / "catalog.db").read_bytes() == catalog
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()


def test_hostile_path_from_the_shell_is_one_line(repo: Path, outside: Path) -> None:
    (repo / "ok.txt").write_text("fine")
    snap(repo, "one", files=["ok.txt"])
    edit(repo, "UPDATE artifacts SET path = 'hooks/post-checkout' WHERE path = 'ok.txt'")
    symlink(repo / "hooks", ".git/hooks")
    result = cli(repo, "restore", "HEAD")
    assert result.returncode == 2 and result.stdout == ""  # refused as asked: a usage problem
    assert result.stderr == (
        "nbversion: error: refusing to restore file 'hooks/post-checkout': it is inside .git/ through a symlink\n"
    )


@pytest.mark.parametrize("hostile", ["../../x", "ab/../../../outside/keep.txt", "/etc/passwd", "A" * 64])
def test_object_id_that_is_a_path_is_refused_by_name(repo: Path, outside: Path, hostile: str) -> None:
    (repo / "ok.txt").write_text("fine")
    snap(repo, "one", files=["ok.txt"], ns={"v": np.arange(3)})
    edit(repo, "UPDATE artifacts SET object_id = ? WHERE source IN ('file', 'variable')", hostile)
    (repo / "ok.txt").unlink()
    for call in (
        lambda: nbversion.restore("HEAD", {}, repo=repo),
        lambda: nbversion.restore("HEAD", {}, repo=repo, files_only=True),
        lambda: nbversion.load("HEAD", "v", repo=repo),
    ):
        with pytest.raises(ObjectError) as info:
            call()
        one_line(info.value, repr(hostile), "not valid")
    assert not (repo / "ok.txt").exists()
    checked = cli(repo, "check")
    assert checked.returncode == 1 and checked.stderr.count("\n") == 1 and repr(hostile) in checked.stderr


@pytest.mark.parametrize(
    "entries, said",
    [
        ([{"path": "../escaped.txt", "object_id": "GOOD", "size": 4}], "refusing to restore file '../escaped.txt'"),
        ([{"path": ".git/config", "object_id": "GOOD", "size": 4}], "inside .git/"),
        ([{"path": "data/a.csv", "object_id": "../../x", "size": 4}], "'../../x' is not valid"),
        ([{"path": "data/a.csv", "object_id": "GOOD", "size": 4}, {"path": "data/a.csv/b", "object_id": "GOOD", "size": 4}],
         "'data/a.csv/b': 'data/a.csv' is a file in the same snapshot"),
        ([{"path": "data/a.csv", "object_id": "GOOD", "size": 4}, {"path": "data/a.csv", "object_id": "OTHER", "size": 5}],
         "'data/a.csv': the snapshot names it twice"),
        ([{"path": "data/a.csv", "object_id": "GOOD", "size": "four"}], "is malformed"),
        ([{"path": 5, "object_id": "GOOD", "size": 4}], "is malformed"),
        ([{"object_id": "GOOD"}], "is malformed"),
        ([["data/a.csv", "GOOD", 4]], "is malformed"),
        ({"data/a.csv": "GOOD"}, "is malformed"),
        (b"\x00not json at all", "is malformed"),
    ],
    ids=["dot-dot", "git", "object-id", "file-and-dir", "twice", "size", "path-type", "keys", "list-entry",
         "not-a-list", "not-json"],
)
def test_lying_directory_manifest_is_refused_by_name(repo: Path, outside: Path, entries: object, said: str) -> None:
    (repo / "data").mkdir()
    (repo / "data" / "a.csv").write_text("good")
    (repo / "data" / "b.csv").write_text("other")
    snap(repo, "dir", files=["data"])
    good, other = hash_buffers([b"good"]), hash_buffers([b"other"])
    text = (entries if isinstance(entries, bytes) else json.dumps(entries).encode()).replace(b'"GOOD"', json.dumps(good).encode())
    text = text.replace(b'"OTHER"', json.dumps(other).encode())
    manifest = Project(repo).store.put_bytes(text).object_id
    edit(repo, "UPDATE artifacts SET object_id = ? WHERE codec = 'tree'", manifest)
    for name in ("a.csv", "b.csv"):
        (repo / "data" / name).unlink()
    with pytest.raises(NbversionError) as info:
        nbversion.restore("HEAD", {}, repo=repo)
    one_line(info.value, said)
    assert sorted(p.name for p in (repo / "data").iterdir()) == [] and no_temp_files(repo)
    result = cli(repo, "restore", "HEAD")
    assert result.returncode != 0 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_hostile_commit_and_untracked_paths_never_reach_git_or_outside(repo: Path, outside: Path, tmp_path: Path) -> None:
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "add", "a.py"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "a"], cwd=repo, check=True)
    (repo / "scratch.py").write_text("# untracked\n")
    snap(repo, "code")
    target = tmp_path / "co"
    edit(repo, "UPDATE artifacts SET path = '../outside/escaped.py' WHERE name = 'untracked/scratch.py'")
    with pytest.raises(UsageProblem) as info:
        nbversion.checkout_code("HEAD", target, repo=repo)
    one_line(info.value, "'../outside/escaped.py'")
    assert not target.exists()  # refused before anything was made
    edit(repo, "UPDATE snapshots SET git_commit = '--orphan=evil'")
    with pytest.raises(UsageProblem) as info:
        nbversion.checkout_code("HEAD", target, repo=repo)
    one_line(info.value, "'--orphan=evil' is not a commit id")
    assert not target.exists()


def test_hostile_variable_names_are_refused_and_the_namespace_is_untouched(repo: Path) -> None:
    snap(repo, "vars", ns={"a": 1, "b": 2})
    ns = {"a": 0}
    for hostile in ("__builtins__", "get_ipython", "a b", "x\x1b[2J", "1st"):
        edit(repo, "UPDATE artifacts SET name = ? WHERE name = 'b'", hostile)
        with pytest.raises(UsageProblem) as info:
            nbversion.restore("HEAD", ns, repo=repo)
        message = one_line(info.value, "refusing to restore variable", repr(hostile))
        assert not RAW_CONTROLS.search(message)
        assert ns == {"a": 0}
        edit(repo, "UPDATE artifacts SET name = 'b' WHERE name = ?", hostile)


# -- item 8: what the catalog says is shown, never obeyed -------------------------------------------

EVIL = "evil\x1b]0;pwned\x07\x1b[2J\r\nsecond line\x00\x9b31m\u202eexe.txt"


@pytest.fixture
def evil_repo(repo: Path) -> Path:
    """Two snapshots; the newer one's text (message, tag, names, paths, summary, branch, even
    its time) is full of terminal escapes, as a plain-sqlite3 edit can make it."""
    (repo / "data").mkdir()
    (repo / "data" / "a.csv").write_text("a\n")
    snap(repo, "fine", ns={"accuracy": 0.5, "v": 1}, files=["data"])
    (repo / "data" / "a.csv").write_text("b\n")
    snap(repo, "evil", ns={"accuracy": 0.7, "v": 2}, files=["data"], tag="t")
    newest = query(repo, "SELECT id FROM snapshots ORDER BY id DESC LIMIT 1")[0][0]
    edit(
        repo, "UPDATE snapshots SET message = ?, git_branch = ?, notebook = ?, created_at = ? WHERE id = ?",
        EVIL, EVIL, EVIL, EVIL, newest,
    )
    edit(repo, "UPDATE tags SET name = ?", EVIL)
    edit(repo, "UPDATE metrics SET name = ? WHERE snapshot_id = ? AND name = 'accuracy'", EVIL, newest)
    edit(repo, "UPDATE artifacts SET name = ? WHERE snapshot_id = ? AND name = 'accuracy'", EVIL, newest)
    edit(repo, "UPDATE artifacts SET summary = json_object('preview', ?) WHERE name = 'v' AND snapshot_id = ?", EVIL, newest)
    edit(repo, "UPDATE tree_entries SET path = ? WHERE object_id = (SELECT object_id FROM tree_entries ORDER BY rowid DESC LIMIT 1)", EVIL)
    edit(repo, "INSERT INTO skipped VALUES (?, ?, ?, ?)", newest, EVIL, EVIL, EVIL)
    return repo


def assert_printable(text: str) -> None:
    found = RAW_CONTROLS.search(text)
    assert found is None, f"raw {found.group()!r} at {found.start()}: {text[max(0, found.start() - 60):found.start() + 20]!r}"


def test_terminal_escapes_in_the_catalog_are_never_printed_raw(evil_repo: Path) -> None:
    repo = evil_repo
    for args in (["log"], ["show"], ["show", "-p"], ["diff", "HEAD~1"], ["diff", "HEAD", "HEAD~1"], ["check"]):
        result = cli(repo, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert_printable(result.stdout)
        assert "second line" in result.stdout or args == ["check"]
    log = cli(repo, "log").stdout.splitlines()
    assert len(log) == 4  # heading, rule, two snapshots: a newline in a message is no new row


def test_terminal_escapes_in_the_catalog_are_never_printed_raw_by_the_magics(shell, evil_repo: Path, capsys) -> None:
    shell.run_cell("v = 0")
    capsys.readouterr()
    shell.run_cell("%restore HEAD --vars v")
    assert shell.user_ns["v"] == 2
    shown = capsys.readouterr().out
    for line in ("%snapshots", "%nbversion show", "%nbversion diff HEAD~1"):
        shown += repr(shell.run_cell(line).result)
    assert "second line" in shown
    assert_printable(shown)
    with pytest.raises(UsageError) as info:  # an error that quotes catalog text is printable too
        shell.run_cell("%restore HEAD --vars nope")  # it lists the snapshot's variables
    assert_printable(one_line(info.value, "'nope' is not in snapshot", "second line"))


def test_megabytes_of_message_and_summary_are_cut_short(shell, repo: Path, capsys) -> None:
    shell.run_cell("v = 1")
    shell.run_cell('%snapshot "small"')
    shell.run_cell("v = 2")
    shell.run_cell('%snapshot "big"')
    huge = "m" * (50 * 1024 * 1024)
    large = "s" * (5 * 1024 * 1024)
    newest = query(repo, "SELECT id FROM snapshots ORDER BY id DESC LIMIT 1")[0][0]
    edit(repo, "UPDATE snapshots SET message = ? WHERE id = ?", huge, newest)
    edit(
        repo, "UPDATE artifacts SET summary = json_object('preview', ?, 'shape', json(?), 'class', ?) WHERE name = 'v' AND snapshot_id = ?",
        large, json.dumps([1] * 100_000), large, newest,
    )
    for args in (["log"], ["show"], ["diff", "HEAD~1"], ["restore", "HEAD"]):
        result = cli(repo, *args)
        assert result.returncode == 0 and len(result.stdout) < 20_000, (args, len(result.stdout), result.stderr[-300:])
        assert "more characters" in result.stdout, args
    capsys.readouterr()
    shell.run_cell("%restore HEAD")
    shown = capsys.readouterr().out
    for line in ("%snapshots", "%nbversion show", "%nbversion diff HEAD~1"):
        shown += repr(shell.run_cell(line).result)
    assert len(shown) < 40_000 and shell.user_ns["v"] == 2


@pytest.mark.parametrize(
    "summary",
    ["not json", "[1, 2]", '{"shape": 5}', '{"class": 5, "params": [1]}', '{"columns": "abc", "library": "x"}', '{"dtype": null, "shape": [[1]]}'],
)
def test_malformed_summary_shows_and_restores_without_a_traceback(repo: Path, summary: str) -> None:
    snap(repo, "one", ns={"v": 1})
    snap(repo, "two", ns={"v": 2, "s": {1, 2}})  # a set: joblib, whose summary names its library
    edit(repo, "UPDATE artifacts SET summary = ?", summary)
    for args in (["log"], ["show"], ["diff", "HEAD~1"]):
        result = cli(repo, *args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (args, result.stderr[-500:])
    ns: dict = {}
    nbversion.restore("HEAD", ns, repo=repo)
    assert ns == {"v": 2, "s": {1, 2}}
