"""notebooks/tutorial.ipynb, run from start to finish by nbclient in a real kernel, in a fresh git
repository: experiments, SQL, restore, commit, push, clone, pull and restore in the clone."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT, git, query

TAGS = {"baseline", "bigrams", "more-data", "clean-labels", "long-reviews", "strong-reg"}


def outputs(notebook: nbformat.NotebookNode) -> str:
    return "\n".join(
        o.get("text", "") or o.get("data", {}).get("text/plain", "")
        for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
    )


def stored_file(repo: Path, snapshot_id: str, path: str) -> bytes:
    """The bytes snapshot *snapshot_id* holds for tracked file *path*, read from the object store."""
    ((object_id,),) = query(
        repo, "SELECT object_id FROM snapshot_files WHERE snapshot_id = ? AND path = ?", snapshot_id, path
    )
    return (repo / ".nbversion" / "objects" / object_id[:2] / object_id[2:]).read_bytes()


def test_tutorial_runs_from_start_to_finish(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No git identity from this machine: the notebook must give its repository one by itself.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    shutil.copy(ROOT / "notebooks" / "tutorial.ipynb", repo)
    notebook = nbformat.read(ROOT / "notebooks" / "tutorial.ipynb", as_version=4)
    # Raises CellExecutionError, naming the cell, if any cell fails.
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(repo)}}).execute()
    # `!` commands do not fail a cell: anything on stderr (git, the nbversion CLI, a warning) does.
    stderr = [o.text for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.get("name") == "stderr"]
    assert not stderr, stderr
    text = outputs(notebook)

    # Six experiments, one snapshot each, and the best by SQL is the cleaned data.
    assert {t for (t,) in query(repo, "SELECT name FROM tags")} == TAGS
    assert query(repo, "SELECT count(*) FROM snapshots") == [(6,)]
    ((best_id, best_tag, best_accuracy),) = query(
        repo,
        "SELECT s.id, t.name, m.value FROM metrics m JOIN snapshots s ON s.id = m.snapshot_id"
        " JOIN tags t ON t.snapshot_id = s.id WHERE m.name = 'accuracy' ORDER BY m.value DESC LIMIT 1",
    )
    assert best_tag == "clean-labels"
    assert query(repo, "SELECT count(*) FROM metrics WHERE name = 'accuracy' AND value = ?", best_accuracy) == [(1,)]

    # %restore brought back the best model and its data: the accuracy is the catalog's again.
    restored = re.search(r"restored model on the restored data: ([\d.]+); best in the catalog: ([\d.]+)", text)
    assert restored and restored[1] == restored[2] == f"{best_accuracy:.4f}"
    train_csv = (repo / "data" / "train.csv").read_bytes()
    assert train_csv == stored_file(repo, best_id, "data/train.csv")
    assert train_csv != stored_file(repo, query(repo, "SELECT max(id) FROM snapshots")[0][0], "data/train.csv")

    # The catalog was committed (the work tree is clean) and the objects pushed to the directory remote.
    assert len(git(repo, "log", "--format=%H").split()) == 2
    assert git(repo, "status", "--porcelain") == ""
    committed = git(repo, "ls-files", ".nbversion").split()
    assert committed == [".nbversion/.gitignore", ".nbversion/catalog.db", ".nbversion/remotes.json"]
    pushed = [p for p in (tmp_path / "team-share").rglob("*") if p.is_file()]
    assert len(pushed) == query(repo, "SELECT count(*) FROM objects")[0][0]

    # The clone pulled and restored the same model and data: same predictions, same accuracy.
    clone = tmp_path / "teammate"
    assert query(clone, "SELECT count(*) FROM snapshots") == [(6,)]
    assert (clone / "data" / "train.csv").read_bytes() == train_csv
    teammate = re.search(r"teammate's accuracy: ([\d.]+); same predictions as ours: (\w+)", text)
    assert teammate and teammate[1] == f"{best_accuracy:.4f}" and teammate[2] == "True"
    assert "is trusted on this machine" in text
