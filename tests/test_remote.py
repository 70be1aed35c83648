"""Remotes over fsspec: a shared directory and a real S3-compatible server on localhost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

import nbversion
from conftest import git, query
from nbversion.errors import MissingObject

NBVERSION = str(Path(sys.executable).parent / "nbversion")


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NBVERSION, *args], cwd=repo, capture_output=True, text=True)


def make_history(repo: Path) -> dict:
    (repo / "data").mkdir(exist_ok=True)
    for i in range(20):
        (repo / "data" / f"{i:02d}.csv").write_text(f"x,{i}\n" * 100)
    values = {"weights": np.random.default_rng(1).random((300, 300)), "params": {"lr": 0.1}, "accuracy": 0.91}
    nbversion.snapshot("trained", dict(values), files=["data"], tag="good", repo=repo)
    return values


@pytest.mark.parametrize("kind", ["directory", "s3"])
def test_push_pull_and_restore_everything_back(repo: Path, tmp_path: Path, kind: str, request) -> None:
    url = str(tmp_path / "shared") if kind == "directory" else request.getfixturevalue("s3_bucket")
    values = make_history(repo)
    assert cli(repo, "remote", "add", "team", url).returncode == 0
    status = cli(repo, "status").stdout
    assert "not pushed to team" in status and "0 not pushed" not in status
    pushed = cli(repo, "push")
    assert pushed.returncode == 0 and "pushed 24 objects" in pushed.stdout, pushed.stderr
    assert "pushed 0 objects" in cli(repo, "push").stdout  # idempotent
    assert "0 not pushed" in cli(repo, "status").stdout
    assert cli(repo, "check", "--remote").returncode == 0

    # Lose everything local; restore fetches from the default remote by itself.
    import shutil

    shutil.rmtree(repo / ".nbversion" / "objects")
    shutil.rmtree(repo / "data")
    ns: dict = {}
    nbversion.restore("good", ns, repo=repo)
    np.testing.assert_array_equal(ns["weights"], values["weights"])
    assert ns["params"] == {"lr": 0.1} and ns["accuracy"] == 0.91
    assert (repo / "data" / "07.csv").read_text() == "x,7\n" * 100
    assert cli(repo, "check").returncode == 0


def test_clone_pull_and_restore_in_a_real_kernel(repo: Path, tmp_path: Path) -> None:
    values = make_history(repo)
    cli(repo, "remote", "add", "team", str(tmp_path / "shared"))
    assert cli(repo, "push").returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "work and its catalog")
    clone = tmp_path / "teammate"
    git(tmp_path, "clone", "-q", str(repo), "teammate")
    assert (clone / ".nbversion" / "remotes.json").exists() and not (clone / ".nbversion" / "objects").exists()
    pulled = cli(clone, "pull", "good")
    assert pulled.returncode == 0 and "pulled 24 objects" in pulled.stdout
    notebook = new_notebook(cells=[
        new_code_cell("%load_ext nbversion"),
        new_code_cell("%restore good"),
        new_code_cell("print(weights.shape, float(weights.sum()), params, accuracy)"),
    ])
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(clone)}}).execute()
    out = notebook.cells[2].outputs[0]["text"]
    assert out.strip() == f"(300, 300) {float(values['weights'].sum())} {{'lr': 0.1}} 0.91"
    assert (clone / "data" / "19.csv").read_text() == "x,19\n" * 100


def test_interrupted_push_then_push_again_leaves_the_remote_consistent(repo: Path, tmp_path: Path, monkeypatch) -> None:
    from nbversion import remote as remote_module

    make_history(repo)
    nbversion.remote_add("team", str(tmp_path / "shared"), repo=repo)
    real = remote_module.copy_object
    calls = {"n": 0}

    def flaky(source, target, object_id, size=None):
        calls["n"] += 1
        if calls["n"] == 5:  # the network drops in the middle of an upload
            def broken(out):
                out.write(b"partial bytes")
                raise ConnectionError("connection reset by peer")
            target.put_stream(broken)
        return real(source, target, object_id, size)

    monkeypatch.setattr(remote_module, "copy_object", flaky)
    with pytest.raises(ConnectionError):
        nbversion.push(repo=repo)
    monkeypatch.undo()
    shared = tmp_path / "shared"
    assert not [p for p in shared.rglob("*") if p.is_file() and p.parent.name == "tmp"]  # no partial object
    check = nbversion.check(remote="team", repo=repo)
    assert not check.ok and all(problem == "is missing" for _, problem, _ in check.problems)
    again = nbversion.push(repo=repo)
    assert "already there" in again
    assert nbversion.check(remote="team", repo=repo).ok


@pytest.mark.parametrize("kind", ["directory", "s3"])
def test_corrupt_remote_object_is_never_accepted(repo: Path, tmp_path: Path, kind: str, request) -> None:
    url = str(tmp_path / "shared") if kind == "directory" else request.getfixturevalue("s3_bucket")
    make_history(repo)
    nbversion.remote_add("team", url, repo=repo)
    nbversion.push(repo=repo)
    (object_id,) = query(repo, "SELECT object_id FROM artifacts WHERE name = 'weights'")[0]
    from nbversion.remote import Remotes

    remote = Remotes.load(repo / ".nbversion").store(None, repo)
    data = bytearray(remote.fs.cat_file(remote.path(object_id)))
    data[500] ^= 1
    remote.fs.pipe_file(remote.path(object_id), bytes(data))
    (repo / ".nbversion" / "objects" / object_id[:2] / object_id[2:]).unlink()
    with pytest.raises(nbversion.errors.CorruptObject, match=object_id):
        nbversion.restore("good", {}, repo=repo)
    assert not (repo / ".nbversion" / "objects" / object_id[:2] / object_id[2:]).exists()


def test_remote_config_errors_are_one_line(repo: Path) -> None:
    make_history(repo)
    assert "no remote is configured" in cli(repo, "push").stderr
    assert cli(repo, "remote", "add", "bad name", "/tmp/x").stderr.count("\n") == 1
    assert "Protocol not known" in cli(repo, "remote", "add", "x", "nosuch://bucket").stderr
    cli(repo, "remote", "add", "one", "/tmp/nbv-one")
    assert "exists already" in cli(repo, "remote", "add", "one", "/tmp/nbv-two").stderr
    assert "does not exist" in cli(repo, "remote", "remove", "two").stderr
    assert "removed remote one" in cli(repo, "remote", "remove", "one").stdout
    (repo / ".nbversion" / "objects").rename(repo / ".nbversion" / "gone")
    with pytest.raises(MissingObject, match="no remote is configured"):
        nbversion.restore("good", {}, repo=repo)


def test_gc_on_a_remote_needs_confirmation(repo: Path, tmp_path: Path) -> None:
    import time

    make_history(repo)
    nbversion.remote_add("team", str(tmp_path / "shared"), repo=repo)
    nbversion.push(repo=repo)
    from nbversion.remote import Remotes

    remote = Remotes.load(repo / ".nbversion").store(None, repo)
    stray = remote.put_bytes(b"an object no snapshot references")
    old = time.time() - 7200
    os.utime(remote.path(stray.object_id), (old, old))
    refused = cli(repo, "gc", "--remote")  # no terminal to ask, no --yes: refuse
    assert refused.returncode == 2 and "needs --yes" in refused.stderr and "would remove 1" in refused.stderr
    assert remote.exists(stray.object_id)
    done = cli(repo, "gc", "--remote", "--yes")
    assert done.returncode == 0 and "removed 1 unreferenced object" in done.stdout
    assert not remote.exists(stray.object_id) and nbversion.check(remote="team", repo=repo).ok


def test_kernel_keeps_working_when_git_swaps_the_catalog(shell, repo: Path) -> None:
    shell.run_cell("v = 1")
    shell.run_cell("%snapshot first")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "catalog with one snapshot")
    shell.run_cell("v = 2")
    shell.run_cell("%snapshot second")
    git(repo, "stash", "-q")  # git puts the committed catalog back in place of the live one
    assert query(repo, "SELECT message FROM snapshots") == [("first",)]
    shell.run_cell("v = 3")
    shell.run_cell("%snapshot third")  # written to the file now on disk, not a stale handle
    assert [m for (m,) in query(repo, "SELECT message FROM snapshots ORDER BY id")] == ["first", "third"]
    shell.run_cell("%restore HEAD~1")
    assert shell.user_ns["v"] == 1


def test_a_remote_url_with_credentials_is_refused(repo: Path) -> None:
    refused = cli(repo, "remote", "add", "team", "s3://AKIAEXAMPLE:secret@bucket/objects")
    assert refused.returncode != 0 and "has credentials in it" in refused.stderr
    assert not (repo / ".nbversion" / "remotes.json").exists() or "secret" not in (repo / ".nbversion" / "remotes.json").read_text()
