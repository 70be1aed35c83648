"""docs/schema.md documents every table and column of the real schema, and its SQL runs."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import ROOT
from nbversion.catalog import Catalog

DOC = ROOT / "docs" / "schema.md"


def documented() -> dict[str, list[tuple[str, str]]]:
    tables: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in DOC.read_text().splitlines():
        heading = re.match(r"^## (\w+)(?: \(view\))?$", line)
        if heading:
            current = heading.group(1) if heading.group(1) != "Examples" else None
            if current:
                tables[current] = []
            continue
        row = re.match(r"^\| (\w+) \| (\w+) \| .+ \|$", line)
        if current and row and row.group(1) != "column":
            tables[current].append((row.group(1), row.group(2)))
    return tables


def test_every_table_view_and_column_is_documented(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.db") as catalog:
        actual = {
            name: [(c.name, c.type) for c in catalog.db[name].columns]
            for name in [*catalog.db.table_names(), *catalog.db.view_names()]
            if not name.startswith("sqlite_")
        }
    docs = documented()
    assert docs.keys() == actual.keys()
    for name, columns in actual.items():
        # Computed view columns have no declared type in SQLite: the doc still names one.
        assert [(c, t) for c, t in docs[name]] == [
            (c, t or dict(docs[name]).get(c, "")) for c, t in columns
        ], name


def test_examples_in_the_doc_run(tmp_path: Path) -> None:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)
    assert blocks
    with Catalog.open(tmp_path / "c.db") as catalog:
        for sql in blocks:
            catalog.conn.execute(sql).fetchall()
