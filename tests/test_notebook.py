"""End to end: notebooks executed by nbclient in a real Jupyter kernel."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from conftest import ROOT


def execute(cells: list, cwd: Path) -> nbformat.NotebookNode:
    """Run *cells* (source strings or cells) in a fresh kernel in *cwd*; return the notebook."""
    notebook = new_notebook(cells=[c if isinstance(c, nbformat.NotebookNode) else new_code_cell(c) for c in cells])
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


def text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.outputs)


def test_quickstart_notebook_runs_and_restores(repo: Path) -> None:
    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    shutil.copy(ROOT / "notebooks" / "quickstart.ipynb", repo)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(repo)}}).execute()
    outputs = "\n".join(text(c) for c in notebook.cells if c.cell_type == "code")
    assert '(base) "baseline logistic regression"' in outputs
    assert "restored" in outputs and "accuracy after restore" in outputs
    conn = sqlite3.connect(repo / ".nbversion" / "catalog.db")
    try:
        assert conn.execute("SELECT count(*) FROM snapshots").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM metrics WHERE name = 'accuracy'").fetchone()[0] == 2
    finally:
        conn.close()


def test_round_trip_in_a_kernel_and_restore_into_a_fresh_kernel(repo: Path) -> None:
    make = (
        "import numpy as np, pandas as pd\n"
        "from sklearn.ensemble import RandomForestClassifier\n"
        "rng = np.random.default_rng(7)\n"
        "X = rng.normal(size=(500, 6)); y = (X[:, 0] + X[:, 1] > 0).astype(int)\n"
        "df = pd.DataFrame({'f': rng.random(100), 'g': np.arange(100)})\n"
        "model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)\n"
        "config = {'depth': 3, 'lr': 0.1, 'layers': [8, 4]}\n"
        "scores = [0.1, 0.2]\n"
        "accuracy = model.score(X, y)\n"
        "expected = model.predict_proba(X)\n"
    )
    first = execute(
        [
            "%load_ext nbversion",
            make,
            '%snapshot "in kernel" --tag k1',
            "X[:] = 0; del df, model; config.clear(); accuracy = -1",
            "%restore k1",
            "assert model.predict_proba(X).tolist() == expected.tolist()\n"
            "assert df['g'].tolist() == list(range(100))\n"
            "assert config == {'depth': 3, 'lr': 0.1, 'layers': [8, 4]} and accuracy > 0.9\n"
            "print('in-kernel restore ok')",
        ],
        repo,
    )
    assert "in-kernel restore ok" in text(first.cells[-1])

    second = execute(
        [
            "%load_ext nbversion",
            "%restore k1",
            make.replace("X = ", "X_fresh = ").replace("model = ", "model_fresh = ")
            + "assert np.array_equal(X, X_fresh)\n"
            "assert model.predict_proba(X).tolist() == model_fresh.predict_proba(X).tolist()\n"
            "print('fresh-kernel restore ok')",
        ],
        repo,
    )
    assert "restored" in text(second.cells[1])
    assert "fresh-kernel restore ok" in text(second.cells[2])


def test_errors_in_a_kernel_are_one_line_usage_errors(repo: Path) -> None:
    bad = new_code_cell("%restore nope", metadata={"tags": ["raises-exception"]})
    notebook = execute(["%load_ext nbversion", "value = 1", '%snapshot "one"', bad, "print(value)"], repo)
    outputs = notebook.cells[3].outputs
    # IPython prints a UsageError as one line on stderr: no traceback, no error output.
    assert [(o.output_type, o.get("name"), o.get("text")) for o in outputs] == [
        ("stream", "stderr", "UsageError: snapshot 'nope' not found\n")
    ]
    assert text(notebook.cells[4]).strip() == "1"
