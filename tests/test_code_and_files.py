"""Code and files: git state, executed cells, notebook, environment, tracked files, show,
diff, restore of files and checkout-code, in real git repositories."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

import nbversion
from conftest import git, query
from nbversion.errors import UsageProblem

NBVERSION = str(Path(sys.executable).parent / "nbversion")


def commit_all(repo: Path, message: str = "work") -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def snap(repo: Path, message: str, **kwargs):
    return nbversion.snapshot(message, kwargs.pop("ns", {"v": 1}), repo=repo, **kwargs)


def git_row(repo: Path):
    return query(repo, "SELECT git_commit, git_branch, git_dirty FROM snapshots ORDER BY id DESC LIMIT 1")[0]


# -- git state -------------------------------------------------------------------------------------


def test_clean_dirty_and_detached(repo: Path) -> None:
    (repo / "train.py").write_text("print('v1')\n")
    commit_all(repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    branch = git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip()
    snap(repo, "clean")
    assert git_row(repo) == (head, branch, 0)
    (repo / "train.py").write_text("print('v2')\n")
    snap(repo, "dirty")
    assert git_row(repo) == (head, branch, 1)
    assert "+print('v2')" in nbversion.show("HEAD", patch=True, repo=repo)
    git(repo, "checkout", "-q", "--detach")
    snap(repo, "detached")
    assert git_row(repo) == (head, None, 1)


def test_repo_without_commits_and_outside_git(repo: Path, tmp_path: Path) -> None:
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "a.py")
    result = snap(repo, "no commit yet")
    assert git_row(repo)[0] is None and git_row(repo)[2] == 1
    assert "(no commit)" in str(result)
    assert "+x = 1" in nbversion.show("HEAD", patch=True, repo=repo)

    plain = tmp_path / "plain"
    plain.mkdir()
    snap(plain, "not a repo")
    assert git_row(plain) == (None, None, None)
    assert "git:      not a git repository" in nbversion.show("HEAD", repo=plain)


def test_untracked_files_kept_up_to_the_cap(repo: Path) -> None:
    (repo / "pyproject.toml").write_text("[tool.nbversion]\nuntracked_max_bytes = 100\n")
    (repo / "small.py").write_text("s = 1\n")
    (repo / "big.bin").write_bytes(b"x" * 1000)
    snap(repo, "untracked")
    rows = dict(query(repo, "SELECT name, object_id IS NOT NULL FROM artifacts WHERE source = 'git'"))
    assert rows == {"untracked/small.py": 1, "untracked/big.bin": 0, "untracked/pyproject.toml": 1}
    assert "not kept: larger than untracked_max_bytes (100)" in nbversion.show("HEAD", repo=repo)


# -- the notebook's code ---------------------------------------------------------------------------


def test_cells_run_out_of_order_are_captured_in_the_order_they_ran(repo: Path) -> None:
    cells = [
        new_code_cell("%load_ext nbversion"),
        new_code_cell("x = 1"),
        new_code_cell("x = x * 10"),
        new_code_cell('%snapshot "out of order"'),
    ]
    notebook = new_notebook(cells=cells)
    client = NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(repo)}})
    with client.setup_kernel():
        for index in (0, 2 - 1, 2, 1, 2, 3):  # load, x=1, x*=10, x=1 again, x*=10 again, snapshot
            client.execute_cell(notebook.cells[index], index)
    (object_id,) = query(repo, "SELECT object_id FROM artifacts WHERE source = 'notebook' AND name = 'cells'")[0]
    store = nbversion.project.Project(repo).store
    ran = json.loads(store.read_bytes(object_id))
    assert [c["source"] for c in ran] == [
        "%load_ext nbversion", "x = 1", "x = x * 10", "x = 1", "x = x * 10", '%snapshot "out of order"',
    ]
    assert [c["execution_count"] for c in ran] == [1, 2, 3, 4, 5, 6]
    assert nbversion.load("HEAD", "x", repo=repo) == 10


def test_notebook_file_found_by_env_explicit_or_said_once(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = repo / "analysis.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("1")]), notebook)
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    snap(repo, "found by jupyter's variable")
    assert query(repo, "SELECT notebook FROM snapshots") == [("analysis.ipynb",)]
    assert query(repo, "SELECT name, type FROM artifacts WHERE source = 'notebook'") == [("analysis.ipynb", "ipynb")]
    monkeypatch.delenv("JPY_SESSION_NAME")
    snap(repo, "explicit", notebook=str(notebook))
    assert query(repo, "SELECT notebook FROM snapshots ORDER BY id DESC LIMIT 1") == [("analysis.ipynb",)]
    with pytest.raises(UsageProblem, match="'nope.ipynb' is not an existing .ipynb file"):
        snap(repo, "bad", notebook="nope.ipynb")


def test_unknown_notebook_path_is_said_once_not_failed(shell, repo: Path, capsys, monkeypatch) -> None:
    import nbversion.api

    import sys
    import types

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setitem(nbversion.api._said, "notebook", False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    shell.run_cell("v = 1")
    shell.run_cell("%snapshot in a terminal")  # no notebook to find there: nothing to say
    assert "path is unknown" not in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))  # as in Jupyter
    shell.run_cell("%snapshot one")
    shell.run_cell("%snapshot two")
    out = capsys.readouterr().out
    assert out.count("the notebook file's path is unknown") == 1
    assert query(repo, "SELECT count(*) FROM snapshots") == [(3,)]


# -- environment -----------------------------------------------------------------------------------


def test_package_versions_are_queryable_and_stored_once(repo: Path) -> None:
    import numpy

    snap(repo, "one")
    snap(repo, "two")
    rows = query(repo, "SELECT DISTINCT version FROM snapshot_packages WHERE name = 'numpy'")
    assert rows == [(numpy.__version__,)]
    assert query(repo, "SELECT count(*) FROM environments") == [(1,)]
    assert query(repo, "SELECT count(DISTINCT environment_id) FROM snapshots") == [(1,)]


def test_restore_warns_when_a_models_library_version_differs(shell, repo: Path, capsys) -> None:
    shell.run_cell(
        "from sklearn.linear_model import LinearRegression\n"
        "model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])"
    )
    shell.run_cell("%snapshot model")
    conn = sqlite3.connect(repo / ".nbversion" / "catalog.db")
    conn.execute(  # as if a teammate with another scikit-learn had taken it
        "UPDATE artifacts SET summary = json_set(summary, '$.library.version', '0.0.1') WHERE name = 'model'"
    )
    conn.commit()
    conn.close()
    import sklearn

    capsys.readouterr()
    shell.run_cell("%restore HEAD")
    out = capsys.readouterr().out
    assert f"warning: model was saved with scikit-learn 0.0.1; this kernel has {sklearn.__version__}" in out


# -- tracked files ---------------------------------------------------------------------------------


@pytest.fixture
def data_repo(repo: Path) -> Path:
    (repo / "pyproject.toml").write_text('[tool.nbversion]\ntrack = ["data", "models/*.pkl"]\n')
    (repo / "data").mkdir()
    for i in range(1000):
        (repo / "data" / f"part-{i:04d}.csv").write_text(f"id,value\n{i},{i * i}\n")
    (repo / "models").mkdir()
    (repo / "models" / "model.pkl").write_bytes(b"\x80\x04fake model bytes")
    (repo / "models" / "notes.md").write_text("not tracked")
    return repo


def test_tracked_directory_change_one_file_stores_only_that_file(data_repo: Path) -> None:
    repo = data_repo
    first = snap(repo, "all files")
    assert "1001 files" in str(first)
    kinds = dict(query(repo, "SELECT path, kind FROM artifacts WHERE source = 'file'"))
    assert kinds == {"data": "data", "models/model.pkl": "model"}
    objects_before = query(repo, "SELECT count(*) FROM objects")[0][0]
    (repo / "data" / "part-0500.csv").write_text("id,value\n500,changed\n")
    second = snap(repo, "one changed")
    # New: the changed file and the directory's new manifest; nothing else.
    new_objects = query(repo, "SELECT count(*) FROM objects")[0][0] - objects_before
    assert new_objects == 2
    (manifest,) = [a for a in second.artifacts if a.codec == "tree"]
    assert second.new_bytes - manifest.object_size == len("id,value\n500,changed\n")
    changed = query(
        repo,
        "SELECT a.path FROM snapshot_files a JOIN snapshot_files b ON a.path = b.path"
        " WHERE a.snapshot_id = ? AND b.snapshot_id = ? AND a.object_id != b.object_id",
        first.id, second.id,
    )
    assert changed == [("data/part-0500.csv",)]


def bytes_read_during(call) -> int:
    """Bytes this process read through read() calls while *call* ran (Linux's rchar)."""

    def rchar() -> int:
        with open("/proc/self/io") as io:
            return int(next(line for line in io if line.startswith("rchar")).split()[1])

    before = rchar()
    call()
    return rchar() - before


def test_stat_cache_means_unchanged_files_are_not_read(repo: Path) -> None:
    (repo / "shards").mkdir()
    for i in range(200):
        (repo / "shards" / f"{i:03d}.npy").write_bytes(os.urandom(64 * 1024))  # 12.5 MiB in all
    total = 200 * 64 * 1024
    assert bytes_read_during(lambda: snap(repo, "first", files=["shards"])) >= total
    assert bytes_read_during(lambda: snap(repo, "nothing changed", files=["shards"])) < total / 8
    (repo / "shards" / "007.npy").write_bytes(os.urandom(64 * 1024))
    assert bytes_read_during(lambda: snap(repo, "one changed", files=["shards"])) < total / 8
    (repo / ".nbversion" / "state.db").unlink()
    assert bytes_read_during(lambda: snap(repo, "no cache", files=["shards"])) >= total


def test_same_size_rewrite_with_restored_mtime_is_still_seen(data_repo: Path) -> None:
    repo = data_repo
    snap(repo, "first")
    target = repo / "data" / "part-0001.csv"
    before = target.stat()
    target.write_text("id,value\n1,X\n")  # same size, then the old mtime back, as cp -p does
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    snap(repo, "rewritten")
    rows = query(repo, "SELECT object_id FROM artifacts WHERE path = 'data' ORDER BY snapshot_id")
    assert rows[0] != rows[1]  # the inode's ctime changed: the cache does not vouch for it


def test_files_restore_byte_identical_and_refuse_unsaved_work(data_repo: Path) -> None:
    repo = data_repo
    originals = {p: p.read_bytes() for p in (repo / "data").iterdir()}
    snap(repo, "good data", tag="good")
    (repo / "data" / "part-0007.csv").write_text("broken\n")
    snap(repo, "broken data")
    (repo / "data" / "part-0008.csv").unlink()
    (repo / "models" / "model.pkl").write_bytes(b"retrained, never snapshotted")
    with pytest.raises(UsageProblem, match="models/model.pkl has changes no snapshot holds.*--force"):
        nbversion.restore("good", {}, repo=repo)
    assert (repo / "data" / "part-0007.csv").read_text() == "broken\n"  # all or nothing
    result = nbversion.restore("good", {}, repo=repo, force=True)
    assert sorted(result.files) == ["data/part-0007.csv", "data/part-0008.csv", "models/model.pkl"]
    assert {p: p.read_bytes() for p in (repo / "data").iterdir()} == originals
    assert (repo / "models" / "model.pkl").read_bytes() == b"\x80\x04fake model bytes"
    assert not list(repo.rglob("*.nbversion-*.tmp"))
    # Editing a restored file never alters what the store holds.
    (repo / "data" / "part-0007.csv").write_text("edited after restore\n")
    nbversion.restore("good", {}, repo=repo, force=True)
    assert (repo / "data" / "part-0007.csv").read_bytes() == originals[repo / "data" / "part-0007.csv"]


def test_no_files_and_files_only(data_repo: Path) -> None:
    repo = data_repo
    snap(repo, "v", ns={"v": 1})
    (repo / "data" / "part-0001.csv").write_text("changed\n")
    snap(repo, "w", ns={"v": 2})
    ns = {"v": 2}
    nbversion.restore("HEAD~1", ns, repo=repo, files=False)
    assert ns["v"] == 1 and (repo / "data" / "part-0001.csv").read_text() == "changed\n"
    ns = {"v": 2}
    nbversion.restore("HEAD~1", ns, repo=repo, files_only=True)
    assert ns["v"] == 2 and (repo / "data" / "part-0001.csv").read_text() == "id,value\n1,1\n"


def test_explicit_files_and_bad_paths(repo: Path, tmp_path: Path) -> None:
    (repo / "weights.pt").write_bytes(b"w" * 10)
    snap(repo, "explicit", files=["weights.pt"])
    assert query(repo, "SELECT path, kind FROM artifacts WHERE source = 'file'") == [("weights.pt", "model")]
    with pytest.raises(UsageProblem, match="'missing.csv' does not exist"):
        snap(repo, "x", files=["missing.csv"])
    outside = tmp_path / "outside.csv"
    outside.write_text("x")
    with pytest.raises(UsageProblem, match="outside the repository"):
        snap(repo, "x", files=[str(outside)])


@pytest.mark.parametrize("hostile", ["../escaped.txt", "/tmp/nbversion-escaped.txt", "data/../../escaped.txt"])
def test_hostile_paths_in_the_catalog_are_refused_by_name(repo: Path, hostile: str) -> None:
    (repo / "ok.txt").write_text("fine")
    snap(repo, "one", files=["ok.txt"])
    conn = sqlite3.connect(repo / ".nbversion" / "catalog.db")
    conn.execute("UPDATE artifacts SET path = ? WHERE path = 'ok.txt'", (hostile,))
    conn.commit()
    conn.close()
    with pytest.raises(UsageProblem, match=f"refusing to restore file {hostile!r}"):
        nbversion.restore("HEAD", {}, repo=repo)
    assert not (repo.parent / "escaped.txt").exists()
    assert not Path("/tmp/nbversion-escaped.txt").exists()


def test_symlink_leading_outside_is_refused(data_repo: Path, tmp_path: Path) -> None:
    repo = data_repo
    snap(repo, "one")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (repo / "data").rename(tmp_path / "moved-data")
    (repo / "data").symlink_to(outside)
    with pytest.raises(UsageProblem, match="outside the repository through a symlink"):
        nbversion.restore("HEAD", {}, repo=repo)
    assert list(outside.iterdir()) == []


# -- show, diff, checkout-code ---------------------------------------------------------------------


def test_diff_shows_changed_metric_variable_file_and_code(data_repo: Path) -> None:
    repo = data_repo
    snap(repo, "before", ns={"accuracy": 0.81, "weights": [1, 2], "gone": 1, "In": ["", "a = 1"]})
    (repo / "data" / "part-0003.csv").write_text("new\n")
    snap(repo, "after", ns={"accuracy": 0.87, "weights": [1, 2, 3], "added": "x", "In": ["", "a = 1", "a = 2"]})
    text = nbversion.diff("HEAD~1", "HEAD", repo=repo)
    assert "accuracy: 0.81 -> 0.87" in text
    assert "~ weights  length 2 [1, 2] -> length 3 [1, 2, 3]" in text
    assert "+ added" in text and "- gone" in text
    assert "~ data/part-0003.csv" in text
    assert "+a = 2" in text


def test_checkout_code_reproduces_the_dirty_tree(repo: Path, tmp_path: Path) -> None:
    (repo / "train.py").write_text("print('committed')\n")
    (repo / "lib.py").write_text("A = 1\n")
    commit_all(repo)
    (repo / "train.py").write_text("print('edited, not committed')\n")
    (repo / "lib.py").unlink()
    (repo / "scratch.py").write_text("# untracked\n")
    snap(repo, "dirty work")
    (repo / "train.py").write_text("print('later')\n")
    out = tmp_path / "code"
    text = nbversion.checkout_code("HEAD", out, repo=repo)
    assert "uncommitted diff applied" in text and "1 untracked file" in text
    assert (out / "train.py").read_text() == "print('edited, not committed')\n"
    assert not (out / "lib.py").exists()
    assert (out / "scratch.py").read_text() == "# untracked\n"
    assert (repo / "train.py").read_text() == "print('later')\n"  # the user's tree is untouched
    with pytest.raises(UsageProblem, match="exists and is not empty"):
        nbversion.checkout_code("HEAD", out, repo=repo)


def test_cli_verbs_from_the_shell(data_repo: Path, tmp_path: Path) -> None:
    repo = data_repo
    (repo / "train.py").write_text("print(1)\n")
    commit_all(repo)
    snap(repo, "base", ns={"score": 1.0}, tag="base")
    (repo / "data" / "part-0002.csv").write_text("x\n")
    snap(repo, "next", ns={"score": 2.0})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([NBVERSION, *args], cwd=repo, capture_output=True, text=True)

    show = run("show", "base")
    assert show.returncode == 0 and "message:  base" in show.stdout and "score = 1" in show.stdout
    diff = run("diff", "base", "HEAD")
    assert diff.returncode == 0 and "score: 1 -> 2" in diff.stdout and "data/part-0002.csv" in diff.stdout
    restore = run("restore", "base")
    assert restore.returncode == 0 and "1 file" in restore.stdout
    assert (repo / "data" / "part-0002.csv").read_text() == "id,value\n2,4\n"
    checkout = run("checkout-code", "base", str(tmp_path / "co"))
    assert checkout.returncode == 0 and (tmp_path / "co" / "train.py").exists()
    bad = run("show", "nope")
    assert bad.returncode == 1 and bad.stderr == "nbversion: error: snapshot 'nope' not found\n"


def test_unchanged_directory_in_a_new_catalog_still_lists_its_files(data_repo: Path) -> None:
    repo = data_repo
    first = snap(repo, "first")
    for name in ("catalog.db", "catalog.db-wal", "catalog.db-shm"):
        (repo / ".nbversion" / name).unlink(missing_ok=True)
    second = snap(repo, "fresh catalog, same files")  # the machine-local memo says: unchanged
    assert [a.object_id for a in second.artifacts if a.codec == "tree"] == [
        a.object_id for a in first.artifacts if a.codec == "tree"
    ]
    assert query(repo, "SELECT count(*) FROM snapshot_files") == [(1001,)]


def test_large_file_restores_verified_and_corruption_writes_nothing(repo: Path) -> None:
    big = repo / "model.onnx"
    payload = os.urandom(40 * 1024 * 1024 + 123)  # several chunks, and a ragged end
    big.write_bytes(payload)
    snap(repo, "big", files=["model.onnx"])
    big.unlink()
    nbversion.restore("HEAD", {}, repo=repo)
    assert big.read_bytes() == payload
    (object_id,) = query(repo, "SELECT object_id FROM artifacts WHERE path = 'model.onnx'")[0]
    stored = repo / ".nbversion" / "objects" / object_id[:2] / object_id[2:]
    damaged = bytearray(stored.read_bytes())
    damaged[30_000_000] ^= 1
    stored.write_bytes(bytes(damaged))
    big.unlink()
    with pytest.raises(nbversion.errors.CorruptObject, match=object_id):
        nbversion.restore("HEAD", {}, repo=repo)
    assert not big.exists() and not list(repo.glob(".model.onnx.*"))


# -- regressions found in review ---------------------------------------------------------------


def test_tracked_paths_are_normalized_and_the_root_refused(repo: Path) -> None:
    (repo / "pyproject.toml").write_text('[tool.nbversion]\ntrack = ["./data/"]\n')
    (repo / "data").mkdir()
    (repo / "data" / "a.csv").write_text("x\n")
    snap(repo, "dotted", files=["./data/a.csv"])
    assert sorted(p for (p,) in query(repo, "SELECT path FROM artifacts WHERE source = 'file'")) == ["data", "data/a.csv"]
    (repo / "data" / "a.csv").unlink()
    nbversion.restore("HEAD", {}, repo=repo)
    assert (repo / "data" / "a.csv").read_text() == "x\n"
    with pytest.raises(UsageProblem, match="the whole repository"):
        snap(repo, "root", files=["."])


def test_symlinks_and_non_utf8_names_are_passed_over_and_said(repo: Path) -> None:
    (repo / "data").mkdir()
    (repo / "data" / "v1.csv").write_text("one\n")
    (repo / "data" / "current.csv").symlink_to("v1.csv")
    os.close(os.open(os.path.join(os.fsencode(repo / "data"), b"bad\xff.csv"), os.O_CREAT | os.O_WRONLY))
    os.close(os.open(os.path.join(os.fsencode(repo), b"notes\xff.txt"), os.O_CREAT | os.O_WRONLY))
    result = snap(repo, "odd names", files=["data", "data/current.csv"])
    text = str(result)
    assert "data/current.csv is a symbolic link: not kept" in text  # named alone: a link is not a file to track
    assert "not valid UTF-8" in text and text.count("not valid UTF-8") == 2
    # Inside a tracked directory, a link that stays inside the repository is kept, as a link.
    assert [p for (p,) in query(repo, "SELECT path FROM snapshot_files")] == ["data/current.csv", "data/v1.csv"]


def test_committed_catalog_does_not_make_snapshots_dirty(repo: Path) -> None:
    (repo / "a.py").write_text("x = 1\n")
    commit_all(repo)
    snap(repo, "one")
    commit_all(repo, "catalog")
    snap(repo, "two")
    third = snap(repo, "three")
    assert git_row(repo)[2] == 0 and "clean" in str(third)
    assert query(repo, "SELECT count(*) FROM artifacts WHERE source = 'git' AND name = 'diff'") == [(0,)]


def test_stored_diff_ignores_the_users_diff_config(repo: Path, tmp_path: Path) -> None:
    (repo / "a.py").write_text("x = 1\n")
    commit_all(repo)
    git(repo, "config", "diff.noprefix", "true")
    git(repo, "config", "color.diff", "always")
    (repo / "a.py").write_text("x = 2\n")
    snap(repo, "edited")
    nbversion.checkout_code("HEAD", tmp_path / "out", repo=repo)
    assert (tmp_path / "out" / "a.py").read_text() == "x = 2\n"


def test_failed_checkout_leaves_nothing_behind(repo: Path, tmp_path: Path) -> None:
    (repo / "a.py").write_text("x = 1\n")
    commit_all(repo)
    (repo / "a.py").write_text("x = 2\n")
    (repo / "junk.txt").write_text("not a patch\n")
    snap(repo, "edited")
    conn = sqlite3.connect(repo / ".nbversion" / "catalog.db")
    conn.execute(  # point the diff at bytes that are not a patch
        "UPDATE artifacts SET object_id = (SELECT object_id FROM artifacts WHERE name = 'untracked/junk.txt')"
        " WHERE name = 'diff'"
    )
    conn.commit()
    conn.close()
    out = tmp_path / "out"
    with pytest.raises(UsageProblem, match="cannot check out the code"):
        nbversion.checkout_code("HEAD", out, repo=repo)
    assert not out.exists() and str(out) not in git(repo, "worktree", "list")


def test_restore_refuses_git_internals_and_symlink_loops(repo: Path) -> None:
    (repo / "ok.txt").write_text("fine")
    snap(repo, "one", files=["ok.txt"])
    conn = sqlite3.connect(repo / ".nbversion" / "catalog.db")
    conn.execute("UPDATE artifacts SET path = '.git/hooks/pre-commit' WHERE path = 'ok.txt'")
    conn.commit()
    with pytest.raises(UsageProblem, match="inside .git/"):
        nbversion.restore("HEAD", {}, repo=repo)
    conn.execute("UPDATE artifacts SET path = 'loop/ok.txt' WHERE source = 'file'")
    conn.commit()
    conn.close()
    (repo / "loop").symlink_to("loop")
    with pytest.raises(UsageProblem, match="refusing to restore file 'loop/ok.txt'"):
        nbversion.restore("HEAD", {}, repo=repo)
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()


# -- modes, links, files added after the snapshot ------------------------------------------------


def mode(path: Path) -> int:
    return os.lstat(path).st_mode & 0o777


def manifest(repo: Path, tree: str = "data", ref: str = "HEAD") -> list[dict]:
    (object_id,) = query(
        repo, "SELECT object_id FROM artifacts WHERE path = ? AND codec = 'tree' ORDER BY snapshot_id DESC LIMIT 1", tree
    )[0]
    return json.loads(nbversion.project.Project(repo).store.read_bytes(object_id))


def replace_manifest(repo: Path, entries: list[dict], tree: str = "data") -> None:
    """Point *tree*'s artifact at a manifest of *entries*, as a catalog from someone else could."""
    object_id = nbversion.project.Project(repo).store.put_bytes(json.dumps(entries).encode()).object_id
    conn = sqlite3.connect(repo / ".nbversion" / "catalog.db")
    conn.execute("UPDATE artifacts SET object_id = ? WHERE codec = 'tree' AND path = ?", (object_id, tree))
    conn.commit()
    conn.close()


def test_modes_restore_exactly_for_a_file_and_a_directory(repo: Path) -> None:
    (repo / "data").mkdir()
    modes = {"run.sh": 0o755, "key.pem.bak": 0o600, "shared.csv": 0o640, "tool": 0o700, "plain.csv": 0o644}
    for name, bits in modes.items():
        (repo / "data" / name).write_text(name)
        os.chmod(repo / "data" / name, bits)
    (repo / "secret.txt").write_text("private")
    os.chmod(repo / "secret.txt", 0o600)
    snap(repo, "modes", files=["data", "secret.txt"])
    assert {e["path"]: e["mode"] for e in manifest(repo)} == {f"data/{n}": b for n, b in modes.items()}
    for name in modes:
        os.chmod(repo / "data" / name, 0o644)
    (repo / "data" / "tool").unlink()
    (repo / "secret.txt").unlink()
    old_umask = os.umask(0o022)  # what a restore gives back does not depend on the umask
    try:
        nbversion.restore("HEAD", {}, repo=repo)
    finally:
        os.umask(old_umask)
    assert {name: mode(repo / "data" / name) for name in modes} == modes
    assert mode(repo / "secret.txt") == 0o600 and (repo / "secret.txt").read_text() == "private"
    assert no_temp_files(repo)


def test_a_mode_only_change_is_a_change_for_the_next_snapshot(repo: Path) -> None:
    (repo / "data").mkdir()
    (repo / "data" / "run.sh").write_text("#!/bin/sh\n")
    (repo / "tool.sh").write_text("#!/bin/sh\n")
    snap(repo, "one", files=["data", "tool.sh"])
    snap(repo, "two: the stat cache and the unchanged-directory memo are warm", files=["data", "tool.sh"])
    os.chmod(repo / "data" / "run.sh", 0o755)
    os.chmod(repo / "tool.sh", 0o755)
    snap(repo, "chmod +x", files=["data", "tool.sh"])
    trees = [o for (o,) in query(repo, "SELECT object_id FROM artifacts WHERE path = 'data' ORDER BY snapshot_id")]
    assert trees[0] == trees[1] != trees[2]
    summaries = [json.loads(s) for (s,) in query(repo, "SELECT summary FROM artifacts WHERE path = 'tool.sh' ORDER BY snapshot_id")]
    assert [s["mode"] for s in summaries] == [0o644, 0o644, 0o755]
    nbversion.restore("HEAD~1", {}, repo=repo)
    assert mode(repo / "data" / "run.sh") == mode(repo / "tool.sh") == 0o644
    nbversion.restore("HEAD", {}, repo=repo)
    assert mode(repo / "data" / "run.sh") == mode(repo / "tool.sh") == 0o755


def test_records_without_a_mode_restore_as_before(repo: Path) -> None:
    (repo / "data").mkdir()
    (repo / "data" / "a.csv").write_text("a")
    (repo / "one.csv").write_text("one")
    os.chmod(repo / "data" / "a.csv", 0o600)
    os.chmod(repo / "one.csv", 0o600)
    snap(repo, "one", files=["data", "one.csv"])
    replace_manifest(repo, [{k: v for k, v in e.items() if k != "mode"} for e in manifest(repo)])
    conn = sqlite3.connect(repo / ".nbversion" / "catalog.db")
    conn.execute("UPDATE artifacts SET summary = '{}' WHERE path = 'one.csv'")
    conn.commit()
    conn.close()
    (repo / "data" / "a.csv").unlink()
    (repo / "one.csv").unlink()
    old_umask = os.umask(0o027)
    try:
        nbversion.restore("HEAD", {}, repo=repo)
    finally:
        os.umask(old_umask)
    assert mode(repo / "data" / "a.csv") == mode(repo / "one.csv") == 0o640  # 0666 less the umask, as before


def test_links_in_a_tracked_directory_are_kept_as_links(repo: Path, tmp_path: Path) -> None:
    (repo / "data" / "v2").mkdir(parents=True)
    (repo / "data" / "v2" / "train.csv").write_text("x\n")
    (repo / "data" / "current").symlink_to("v2")
    (repo / "data" / "train.csv").symlink_to("v2/train.csv")
    (repo / "data" / "später ➜.csv").symlink_to("not-made-yet.csv")  # dangling, but inside
    (repo / "data" / "readme").symlink_to("../README.md")  # out of data/, still in the repository
    (tmp_path / "big.csv").write_text("outside")
    (repo / "data" / "big.csv").symlink_to(tmp_path / "big.csv")  # absolute
    (repo / "data" / "escape.csv").symlink_to("../../big.csv")  # relative, but out of the repository
    (repo / "data" / "hooks").symlink_to("../.git/hooks")
    result = snap(repo, "links", files=["data"])
    text = str(result)
    assert "note: data/big.csv is a symbolic link: not kept, its target" in text and "is an absolute path" in text
    assert "note: data/escape.csv is a symbolic link: not kept, its target '../../big.csv' leads outside the repository" in text
    assert "note: data/hooks is a symbolic link: not kept, its target '../.git/hooks' leads into .git/" in text
    links = {e["path"]: e for e in manifest(repo) if e.get("type") == "symlink"}
    assert sorted(links) == ["data/current", "data/readme", "data/später ➜.csv", "data/train.csv"]
    for path in links:
        (repo / path).unlink()
    (repo / "data" / "train.csv").write_text("a file where the link was")
    nbversion.restore("HEAD", {}, repo=repo, force=True)
    assert {p: os.readlink(repo / p) for p in links} == {
        "data/current": "v2", "data/später ➜.csv": "not-made-yet.csv", "data/readme": "../README.md",
        "data/train.csv": "v2/train.csv",
    }
    assert (repo / "data" / "v2" / "train.csv").read_text() == "x\n"  # the link was replaced, not written through
    assert (tmp_path / "big.csv").read_text() == "outside"
    # The link as stored is "already as stored": nothing to do, nothing to force.
    assert nbversion.restore("HEAD", {}, repo=repo).files == []


def test_a_file_replaced_by_a_link_is_restored_as_a_file_never_written_through(repo: Path) -> None:
    (repo / "data").mkdir()
    (repo / "data" / "a.csv").write_text("a\n")
    (repo / "data" / "b.csv").write_text("b\n")
    snap(repo, "two files", files=["data"])
    (repo / "data" / "a.csv").unlink()
    (repo / "data" / "a.csv").symlink_to("b.csv")
    with pytest.raises(UsageProblem, match="data/a.csv has changes no snapshot holds"):
        nbversion.restore("HEAD", {}, repo=repo)  # the link is work no snapshot holds
    nbversion.restore("HEAD", {}, repo=repo, force=True)
    assert not (repo / "data" / "a.csv").is_symlink()
    assert (repo / "data" / "a.csv").read_text() == "a\n" and (repo / "data" / "b.csv").read_text() == "b\n"


@pytest.mark.parametrize(
    "links, said",
    [
        ({"data/l": "/etc/passwd"}, "refusing to restore link 'data/l': its target '/etc/passwd' is an absolute path"),
        ({"data/l": "../../outside"}, "refusing to restore link 'data/l': its target '../../outside' leads outside the repository"),
        # each inside by itself; once both are there, data/l is the repository's parent
        ({"data/up": "..", "data/l": "up/.."}, "refusing to restore link 'data/l': its target 'up/..' leads outside"),
        ({"data/l": "../.git/hooks"}, "refusing to restore link 'data/l': its target '../.git/hooks' leads into .git/"),
        ({"data/l": "../.nbversion"}, "leads into .nbversion/"),
        ({"data/l": "a\0b"}, "refusing to restore link 'data/l': its target 'a\\x00b' is not a path"),
    ],
    ids=["absolute", "dot-dot", "through-another-restored-link", "into-git", "into-nbversion", "nul"],
)
def test_hostile_link_entries_are_refused_by_name(repo: Path, links: dict[str, str], said: str) -> None:
    (repo / "data").mkdir()
    (repo / "data" / "a.csv").write_text("good")
    snap(repo, "dir", files=["data"])
    store = nbversion.project.Project(repo).store
    entries = manifest(repo)
    for path, target in links.items():
        put = store.put_bytes(target.encode())
        entries.append({"path": path, "object_id": put.object_id, "size": put.size, "kind": "data", "type": "symlink"})
    replace_manifest(repo, entries)
    (repo / "data" / "a.csv").unlink()
    with pytest.raises(UsageProblem) as info:
        nbversion.restore("HEAD", {}, repo=repo)
    assert said in str(info.value) and "\n" not in str(info.value)
    assert sorted(os.listdir(repo / "data")) == []  # all or nothing


def test_a_link_where_the_snapshot_has_a_directory_is_not_written_through(repo: Path) -> None:
    (repo / "data" / "sub").mkdir(parents=True)
    (repo / "data" / "other").mkdir()
    (repo / "data" / "sub" / "x.csv").write_text("sub's x")
    (repo / "data" / "other" / "x.csv").write_text("other's x")
    snap(repo, "two directories", files=["data"])
    (repo / "data" / "sub" / "x.csv").unlink()
    (repo / "data" / "sub").rmdir()
    (repo / "data" / "sub").symlink_to("other")
    with pytest.raises(UsageProblem, match="'data/sub/x.csv': 'data/sub' is a symbolic link now, where the snapshot has a directory"):
        nbversion.restore("HEAD", {}, repo=repo, force=True)
    assert (repo / "data" / "other" / "x.csv").read_text() == "other's x"


def test_two_files_that_became_one_through_a_link_are_refused(repo: Path) -> None:
    for name, text in (("data", "data's x"), ("other", "other's x")):
        (repo / name).mkdir()
        (repo / name / "x.csv").write_text(text)
    snap(repo, "two files", files=["data/x.csv", "other/x.csv"])
    (repo / "other" / "x.csv").unlink()
    (repo / "other").rmdir()
    (repo / "other").symlink_to("data")  # other/x.csv is data/x.csv now
    with pytest.raises(UsageProblem, match="refusing to restore file 'other/x.csv': it is 'data/x.csv' through a symbolic link"):
        nbversion.restore("HEAD", {}, repo=repo, force=True)
    assert (repo / "data" / "x.csv").read_text() == "data's x"


def test_files_added_after_the_snapshot_are_named_or_removed_with_exact(repo: Path) -> None:
    (repo / "data").mkdir()
    (repo / "data" / "a.csv").write_text("a")
    snap(repo, "one file", files=["data"], tag="one")
    (repo / "data" / "saved.csv").write_text("in a snapshot")
    snap(repo, "two files", files=["data"])
    (repo / "data" / "new").mkdir()
    (repo / "data" / "new" / "unsaved.csv").write_text("in no snapshot")
    result = nbversion.restore("one", {}, repo=repo)
    assert (
        f"warning: kept 2 files in data/ that snapshot {result.id[:10]} does not have: data/new/unsaved.csv, "
        "data/saved.csv (--exact removes them)"
    ) in str(result)
    assert (repo / "data" / "saved.csv").exists() and (repo / "data" / "new" / "unsaved.csv").exists()
    with pytest.raises(UsageProblem, match="data/new/unsaved.csv has changes no snapshot holds.*--force"):
        nbversion.restore("one", {}, repo=repo, exact=True)
    assert (repo / "data" / "saved.csv").exists()  # all or nothing
    (repo / "data" / "new" / "unsaved.csv").unlink()
    result = nbversion.restore("one", {}, repo=repo, exact=True)  # saved.csv is in a snapshot: it may go
    assert "removed 1 file the snapshot does not have: data/saved.csv" in str(result)
    assert sorted(os.listdir(repo / "data")) == ["a.csv", "new"]  # a directory is not a file: left alone
    (repo / "data" / "new" / "unsaved.csv").write_text("in no snapshot")
    result = nbversion.restore("one", {}, repo=repo, exact=True, force=True)
    assert result.removed_files == ["data/new/unsaved.csv"]
    assert sorted(os.listdir(repo / "data")) == ["a.csv"]  # but one the restore emptied goes too


def test_exact_from_the_shell_and_with_files_only(repo: Path) -> None:
    (repo / "pyproject.toml").write_text('[tool.nbversion]\ntrack = ["data"]\n')
    (repo / "data").mkdir()
    (repo / "data" / "a.csv").write_text("a")
    snap(repo, "one")
    (repo / "data" / "b.csv").write_text("b")
    snap(repo, "two")
    kept = subprocess.run([NBVERSION, "restore", "HEAD~1"], check=False, cwd=repo, capture_output=True, text=True)
    assert kept.returncode == 0 and "kept 1 file in data/" in kept.stdout and (repo / "data" / "b.csv").exists()
    removed = subprocess.run([NBVERSION, "restore", "HEAD~1", "--exact"], check=False, cwd=repo, capture_output=True, text=True)
    assert removed.returncode == 0, removed.stderr
    assert "removed 1 file" in removed.stdout and not (repo / "data" / "b.csv").exists()
    nbversion.restore("HEAD", {}, repo=repo)
    ns = {"v": 5}
    nbversion.restore("HEAD~1", ns, repo=repo, files_only=True, exact=True)
    assert ns == {"v": 5} and not (repo / "data" / "b.csv").exists()


def test_empty_files_and_unicode_names_round_trip(repo: Path) -> None:
    names = ["empty.csv", "naïve café.csv", "データ/表 1.csv", "emoji 🎉.txt", "sub dir/ spaced .csv"]
    for name in names:
        (repo / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / "data" / name).write_bytes(b"" if "empty" in name or "🎉" in name else name.encode())
    (repo / "vide.txt").write_bytes(b"")
    snap(repo, "odd names", files=["data", "vide.txt"])
    before = {p: (p.read_bytes() if not p.is_symlink() else os.readlink(p)) for p in (repo / "data").rglob("*") if not p.is_dir()}
    for path in before:
        path.unlink()
    (repo / "vide.txt").unlink()
    nbversion.restore("HEAD", {}, repo=repo)
    assert {p: (p.read_bytes() if not p.is_symlink() else os.readlink(p)) for p in (repo / "data").rglob("*") if not p.is_dir()} == before
    assert (repo / "vide.txt").read_bytes() == b""


def no_temp_files(repo: Path) -> bool:
    return not [p for p in repo.rglob("*") if ".nbversion-" in p.name and p.name.endswith(".tmp")]
