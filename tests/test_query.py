"""Querying the catalog: %nbsql, nbversion sql, the documented views and the cookbook, all
against a catalog made by a real notebook run."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from IPython.core.error import UsageError
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

import nbversion
from conftest import ROOT, git

NBVERSION = str(Path(sys.executable).parent / "nbversion")

NOTEBOOK = [
    "%load_ext nbversion",
    "import numpy as np\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "rng = np.random.default_rng(0)\n"
    "X = rng.normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)\n"
    "np.savetxt('data/train.csv', X, delimiter=',')\n"
    "model = LogisticRegression(C=1.0).fit(X, y)\n"
    "accuracy = model.score(X, y)",
    '%snapshot "baseline" --tag base',
    "model = LogisticRegression(C=0.01).fit(X, y)\naccuracy = model.score(X, y) - 0.1\nnote = 'weaker'",
    '%snapshot "regularized"',
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository whose catalog a real kernel filled: two snapshots, a model, a data file."""
    repo = tmp_path_factory.mktemp("query") / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "data").mkdir()
    (repo / "pyproject.toml").write_text('[tool.nbversion]\ntrack = ["data"]\n')
    git(repo, "add", "pyproject.toml")
    git(repo, "commit", "-qm", "start")
    notebook = new_notebook(cells=[new_code_cell(c) for c in NOTEBOOK])
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(repo)}}).execute()
    return repo


def sql_blocks(doc: str) -> list[str]:
    return re.findall(r"```sql\n(.*?)```", (ROOT / "docs" / doc).read_text(), re.S)


@pytest.mark.parametrize("doc", ["schema.md", "queries.md"])
def test_every_documented_query_runs_on_a_real_catalog(built: Path, doc: str) -> None:
    blocks = sql_blocks(doc)
    assert len(blocks) >= 5
    for sql in blocks:
        nbversion.query(sql, repo=built)  # raises if any query is broken


def test_cookbook_answers_are_right(built: Path) -> None:
    q = lambda sql: nbversion.query(sql, repo=built).dicts()  # noqa: E731
    blocks = sql_blocks("queries.md")
    best = q(blocks[0])
    assert best[0]["message"] == "baseline" and best[0]["accuracy"] > best[1]["accuracy"]
    changed = {r["variable"]: r["change"] for r in q(blocks[1])}
    assert changed == {"accuracy": "changed", "model": "changed", "note": "added"}
    assert [r["name"] for r in q(blocks[2])] == ["accuracy"]
    same_data = q(blocks[3])
    assert [r["path"] for r in same_data] == ["data/train.csv", "data/train.csv"]
    lineage = q(blocks[4])
    assert {(r["model"], r["input"]) for r in lineage} >= {("model", "X"), ("model", "data/train.csv")}
    growth = q(blocks[5])
    assert growth[-1]["total_bytes"] == sum(r["new_bytes"] for r in growth) > 0
    assert len(q(blocks[6])) == 2
    import sklearn

    assert {r["version"] for r in q(blocks[7])} == {sklearn.__version__}


def test_views_answer_common_questions(built: Path) -> None:
    log = nbversion.query("SELECT message, tags, variables, files FROM snapshot_log ORDER BY id", repo=built).dicts()
    assert log[0] == {"message": "baseline", "tags": "base", "variables": 5, "files": 1}
    latest = nbversion.query("SELECT name, message FROM latest_metrics", repo=built).dicts()
    assert {"name": "accuracy", "message": "regularized"} in latest
    summary = nbversion.query(
        "SELECT summary FROM artifact_summaries WHERE name = 'X' LIMIT 1", repo=built
    )[0][0]
    assert summary.startswith("shape 200x3 float64")


@pytest.fixture
def sql_shell(shell, built: Path, monkeypatch):
    monkeypatch.chdir(built)
    return shell


def catalog_digest(repo: Path) -> str:
    return hashlib.sha256((repo / ".nbversion" / "catalog.db").read_bytes()).hexdigest()


def test_nbsql_line_cell_params_and_dataframe(sql_shell, built: Path) -> None:
    result = sql_shell.run_line_magic("nbsql", "SELECT message FROM snapshots ORDER BY id")
    assert [r[0] for r in result] == ["baseline", "regularized"]
    assert "<table>" in result._repr_html_() and "baseline" in repr(result)
    frame = result.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and list(frame["message"]) == ["baseline", "regularized"]

    sql_shell.run_cell("wanted = 'accuracy'\nr = %nbsql SELECT count(*) FROM metrics WHERE name = :wanted")
    assert sql_shell.user_ns["r"][0][0] == 2
    sql_shell.run_cell("%%nbsql -o best --df\nSELECT message FROM snapshot_metrics\nWHERE name = :wanted ORDER BY value DESC LIMIT 1")
    assert isinstance(sql_shell.user_ns["best"], pd.DataFrame)
    assert sql_shell.user_ns["best"]["message"][0] == "baseline"
    sql_shell.run_cell("%config NbversionMagics.dataframe = True")
    assert isinstance(sql_shell.run_line_magic("nbsql", "SELECT 1 AS one"), pd.DataFrame)
    sql_shell.run_cell("%config NbversionMagics.dataframe = False")


def test_no_variable_expansion_in_sql(sql_shell) -> None:
    sql_shell.run_cell("x = 'message'")
    result = sql_shell.run_line_magic("nbsql", "SELECT '$x {x}' AS text")
    assert result[0][0] == "$x {x}"


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE snapshots",
        "DELETE FROM metrics",
        "INSERT INTO tags (name, snapshot_id, created_at) VALUES ('t', 'x', 'y')",
        "UPDATE snapshots SET message = 'hacked'",
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA user_version = 99",
        "PRAGMA journal_mode = DELETE",
        "CREATE TABLE evil (x)",
        "VACUUM",
        "SELECT 1; DROP TABLE snapshots",
    ],
)
def test_writes_are_refused_in_one_line_and_change_nothing(sql_shell, built: Path, statement: str) -> None:
    before = catalog_digest(built)
    with pytest.raises(UsageError) as info:
        sql_shell.run_cell(f"%nbsql {statement}")
    assert type(info.value) is UsageError and "\n" not in str(info.value)
    assert catalog_digest(built) == before
    assert nbversion.query("SELECT count(*) FROM snapshots", repo=built)[0][0] == 2


def test_missing_parameter_and_bad_sql_are_named(sql_shell) -> None:
    with pytest.raises(UsageError, match="parameter :ghost has no value"):
        sql_shell.run_cell("%nbsql SELECT :ghost")
    with pytest.raises(UsageError, match="no such table: nope"):
        sql_shell.run_cell("%nbsql SELECT * FROM nope")


def test_cli_sql_formats_and_params(built: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([NBVERSION, "sql", *args], cwd=built, capture_output=True, text=True)

    table = run("SELECT message FROM snapshots ORDER BY id")
    assert table.returncode == 0 and table.stdout.splitlines()[0].strip() == "message"
    csv = run("SELECT name, value > :v AS high FROM metrics ORDER BY snapshot_id", "-p", "v=0.5", "-f", "csv")
    assert csv.stdout.splitlines() == ["name,high", "accuracy,1", "accuracy,1"]
    rows = json.loads(run("SELECT message FROM snapshots ORDER BY id", "--format", "json").stdout)
    assert rows == [{"message": "baseline"}, {"message": "regularized"}]
    refused = run("DELETE FROM snapshots")
    assert refused.returncode == 2 and refused.stderr.startswith("nbversion: error: only read queries")


def test_standard_tools_open_the_catalog(built: Path) -> None:
    catalog = built / ".nbversion" / "catalog.db"
    sqlite_utils = str(Path(sys.executable).parent / "sqlite-utils")
    tables = json.loads(subprocess.run([sqlite_utils, "tables", str(catalog), "--counts"], capture_output=True, text=True, check=True).stdout)
    counts = {t["table"]: t["count"] for t in tables}
    assert counts["snapshots"] == 2 and counts["metrics"] == 2
    views = subprocess.run([sqlite_utils, "views", str(catalog)], capture_output=True, text=True, check=True).stdout
    assert "snapshot_log" in views and "lineage" in views
    fks = subprocess.run(
        [sqlite_utils, "query", str(catalog), "SELECT * FROM pragma_foreign_key_list('artifacts')"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert '"table": "snapshots"' in fks and '"table": "objects"' in fks


def test_datasette_lists_tables_and_views_and_links_foreign_keys(built: Path) -> None:
    import asyncio

    from datasette.app import Datasette

    async def browse() -> tuple[dict, dict, str]:
        ds = Datasette([str(built / ".nbversion" / "catalog.db")])
        database = (await ds.client.get("/catalog.json")).json()
        rows = (await ds.client.get(
            "/catalog/artifacts.json?_shape=objects&_labels=on&_json=summary&source=variable&name=X"
        )).json()
        page = (await ds.client.get("/catalog/artifacts")).text
        return database, rows, page

    database, rows, page = asyncio.run(browse())
    assert {"snapshots", "artifacts", "objects", "metrics", "tags"} <= {t["name"] for t in database["tables"]}
    assert {"snapshot_log", "lineage", "artifact_summaries"} <= {v["name"] for v in database["views"]}
    row = rows["rows"][0]
    assert row["summary"]["shape"] == [200, 3]  # JSON summaries come back as JSON
    assert set(row["snapshot_id"]) == {"value", "label"}  # a foreign key, expanded
    assert 'href="/catalog/snapshots/' in page and 'href="/catalog/objects/' in page


def test_odd_repository_paths_and_parameters(tmp_path: Path, monkeypatch) -> None:
    repo = tmp_path / "proj#1?x"
    repo.mkdir()
    git(repo, "init", "-q")
    nbversion.snapshot("odd path", {"v": 1}, repo=repo)
    assert nbversion.query("SELECT message FROM snapshots", repo=repo)[0][0] == "odd path"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proj#1?x"]  # no stray database beside it
    import numpy as np

    from nbversion.errors import UsageProblem

    with pytest.raises(UsageProblem, match="parameter cannot be used"):
        nbversion.query("SELECT :big", {"big": 2**70}, repo=repo)
    assert nbversion.query("SELECT :n", {"n": np.int64(3).item()}, repo=repo)[0][0] == 3
    with pytest.raises(UsageProblem, match="refused"):
        nbversion.query("SELECT fts3_tokenizer('simple')", repo=repo)
