"""A flipped byte, a truncated object, a missing object — here and on a remote (a shared
directory and a real S3 server on localhost): ``check`` names the object and the snapshots
it breaks; restore refuses exactly what is affected and everything else still restores."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _invariants import assert_objects_whole, catalog_rows
from IPython.core.error import UsageError

import nbversion
from nbversion.project import Project
from nbversion.remote import Remotes

NBVERSION = str(Path(sys.executable).parent / "nbversion")


def damage(store: Any, object_id: str, fault: str) -> None:
    """Do *fault* to one object of *store* (any fsspec filesystem)."""
    path = store.path(object_id)
    if fault == "missing":
        store.fs.rm_file(path)
        return
    data = bytearray(store.fs.cat_file(path))
    if fault == "flipped byte":
        data[len(data) // 2] ^= 0x01
    else:  # truncated
        data = data[: len(data) // 2]
    store.fs.pipe_file(path, bytes(data))


def history(shell: Any, repo: Path) -> dict[str, str]:
    """Two snapshots: 'one' has weights (only it) and shared; 'two' has shared and other."""
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_text("a,b\n" + "1,2\n" * 10_000)
    shell.run_cell(
        "import numpy as np\nweights = np.arange(300_000.0)\nshared = np.ones(1000)\nparams = {'lr': 0.1}"
    )
    shell.run_cell('%snapshot "one" --tag one --files data')
    shell.run_cell("del weights\nother = np.zeros(5000)")
    shell.run_cell('%snapshot "two" --tag two')
    ids = dict(catalog_rows(repo, "SELECT name, object_id FROM artifacts WHERE source = 'variable'"))
    ids["train.csv"] = catalog_rows(repo, "SELECT object_id FROM snapshot_files WHERE path = 'data/train.csv'")[0][0]
    return ids


@pytest.mark.parametrize("fault", ["flipped byte", "truncated", "missing"])
@pytest.mark.parametrize("where", ["local", "directory remote", "s3 remote"])
def test_damage_is_named_and_only_the_affected_snapshot_refuses(
    shell: Any, repo: Path, tmp_path: Path, request: pytest.FixtureRequest, fault: str, where: str
) -> None:
    ids = history(shell, repo)
    store = Project(repo).store
    remote_args: list[str] = []
    if where != "local":
        url = str(tmp_path / "shared") if where == "directory remote" else request.getfixturevalue("s3_bucket") + "/objects"
        nbversion.remote_add("team", url, repo=repo)
        nbversion.push(repo=repo)
        shutil.rmtree(repo / ".nbversion" / "objects")  # as a fresh clone: everything comes from the remote
        store = Remotes.load(repo / ".nbversion").store(None, repo)
        remote_args = ["--remote", "team"]
    damage(store, ids["weights"], fault)

    check = subprocess.run([NBVERSION, "check", *remote_args], cwd=repo, capture_output=True, text=True, check=False)
    assert check.returncode == 1
    problems = [line for line in check.stdout.splitlines() if line.startswith("  ")]
    assert len(problems) == 1, check.stdout
    line = problems[0]
    assert ids["weights"] in line and ("missing" if fault == "missing" else "corrupt") in line
    one = catalog_rows(repo, "SELECT id FROM snapshots WHERE message = 'one'")[0][0]
    assert "1 snapshot:" in line and one[:10] in line

    shell.run_cell("weights = 'untouched'")
    with pytest.raises(UsageError) as refused:
        shell.run_cell("%restore one --force")
    message = str(refused.value)
    assert "\n" not in message and ids["weights"] in message
    assert shell.user_ns["weights"] == "untouched"  # all or nothing: not even 'shared' changed
    # What the damage does not touch restores: the other snapshot, and one's other variables.
    shell.run_cell("%restore two --exact")
    assert set(shell.user_ns) >= {"shared", "other", "params"} and "weights" not in shell.user_ns
    shell.run_cell("%restore one --vars shared params")
    assert shell.user_ns["params"] == {"lr": 0.1}
    if where != "local":  # damaged remote bytes never enter the local store
        assert_objects_whole(repo)
        local = Path(repo / ".nbversion" / "objects" / ids["weights"][:2] / ids["weights"][2:])
        assert not local.exists()
