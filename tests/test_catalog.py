"""The SQLite catalog: schema, migrations, refs, ids, atomic writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nbversion import migrations
from nbversion.catalog import Artifact, Catalog, id_time, new_id, short_id
from nbversion.errors import AmbiguousRef, CatalogError, RefNotFound, TagExists, UsageProblem
from nbversion.project import Project, find_root


def add(catalog: Catalog, message: str = "m", tag: str | None = None, snapshot_id: str | None = None) -> str:
    snapshot_id = snapshot_id or new_id()
    catalog.add_snapshot(
        snapshot_id=snapshot_id, message=message, parent=catalog.head(), artifacts=[],
        metrics={}, tag=tag, nbversion_version="test", python_version="3",
    )
    return snapshot_id


@pytest.fixture
def catalog(tmp_path: Path):
    with Catalog.open(tmp_path / "catalog.db") as cat:
        yield cat


def test_new_catalog_is_wal_and_migrated(catalog: Catalog) -> None:
    assert catalog.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert migrations.schema_version(catalog.conn) == migrations.LATEST
    assert {"snapshots", "artifacts", "objects", "metrics", "tags", "skipped"} <= set(catalog.db.table_names())
    applied = catalog.conn.execute("SELECT number FROM nbversion_migrations").fetchall()
    assert [r[0] for r in applied] == [m.number for m in migrations.MIGRATIONS]


def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    Catalog.open(path).close()
    with Catalog.open(path) as again:
        assert again.conn.execute("SELECT count(*) FROM nbversion_migrations").fetchone()[0] == len(migrations.MIGRATIONS)


def test_catalog_from_newer_version_is_refused_not_downgraded(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    Catalog.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    conn.close()
    with pytest.raises(CatalogError, match="upgrade nbversion"):
        Catalog.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.LATEST + 1
    conn.close()


def test_non_sqlite_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    path.write_bytes(b"this is not a database, it is a grocery list" * 100)
    with pytest.raises(CatalogError, match="c.db"):
        Catalog.open(path)
    assert path.read_bytes().startswith(b"this is not a database")


def test_ids_are_unique_time_sortable_and_decode_to_their_time() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    assert ids == sorted(ids)
    assert all(len(i) == 26 for i in ids)
    assert len({short_id(i) for i in ids}) == 2000
    assert abs(id_time(ids[0]).timestamp() - id_time(ids[-1]).timestamp()) < 5
    assert new_id(now_ms=1) < new_id()  # a clock going backwards never reorders one process


def test_refs_head_tag_and_prefix(catalog: Catalog) -> None:
    first = add(catalog, "one", tag="base")
    second = add(catalog, "two")
    third = add(catalog, "three")
    assert catalog.resolve("HEAD") == third
    assert catalog.resolve("HEAD~1") == second
    assert catalog.resolve("HEAD^") == second
    assert catalog.resolve("HEAD~2") == first
    assert catalog.resolve("base") == first
    assert catalog.resolve(short_id(second)) == second
    assert catalog.resolve(second.upper()) == second
    assert catalog.snapshot(second)["parent"] == first


def test_unknown_and_ambiguous_refs_name_the_ref(catalog: Catalog) -> None:
    with pytest.raises(RefNotFound, match="no snapshots yet"):
        catalog.resolve("HEAD")
    ids = [add(catalog) for _ in range(3)]
    with pytest.raises(RefNotFound, match="'HEAD~7'.*only 3"):
        catalog.resolve("HEAD~7")
    with pytest.raises(RefNotFound, match="'v9' not found"):
        catalog.resolve("v9")
    with pytest.raises(RefNotFound, match="'abc' not found"):
        catalog.resolve("abc")  # shorter than 4 characters is never a prefix
    common = ids[0][:4]
    assert all(i.startswith(common) for i in ids)
    with pytest.raises(AmbiguousRef, match=f"'{common}' is ambiguous"):
        catalog.resolve(common)


def test_tags_are_unique_and_validated(catalog: Catalog) -> None:
    add(catalog, tag="best")
    before = catalog.count()
    with pytest.raises(TagExists, match="'best' already names"):
        add(catalog, tag="best")
    assert catalog.count() == before  # the failed snapshot left no row
    from nbversion.catalog import check_tag_name

    for bad in ["HEAD", "HEAD~1", "-x", "has space", ""]:
        with pytest.raises(UsageProblem, match="not a valid tag"):
            check_tag_name(bad)


def test_snapshot_rows_are_all_or_nothing(catalog: Catalog) -> None:
    artifact = Artifact("data", "variable", "a", "int", "json", "0" * 64, 1)
    with pytest.raises(sqlite3.IntegrityError):
        catalog.add_snapshot(
            snapshot_id=new_id(), message="dup", parent=None, artifacts=[artifact, artifact],
            metrics={"a": 1.0}, nbversion_version="t", python_version="3",
        )
    for table in ("snapshots", "artifacts", "metrics", "objects"):
        assert catalog.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    assert catalog.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_wal_is_checkpointed_after_each_snapshot(catalog: Catalog, tmp_path: Path) -> None:
    add(catalog, "x")
    wal = tmp_path / "catalog.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    # The main file alone (what git commits) holds the snapshot.
    copy = tmp_path / "copy.db"
    copy.write_bytes((tmp_path / "catalog.db").read_bytes())
    conn = sqlite3.connect(copy)
    assert conn.execute("SELECT message FROM snapshots").fetchall() == [("x",)]
    conn.close()


def test_project_root_and_gitignore(repo: Path) -> None:
    sub = repo / "notebooks" / "deep"
    sub.mkdir(parents=True)
    assert find_root(sub) == repo
    project = Project.find(sub)
    with project.open_catalog():
        pass
    assert project.catalog_path == repo / ".nbversion" / "catalog.db"
    ignore = (repo / ".nbversion" / ".gitignore").read_text()
    assert "/objects/" in ignore and "catalog.db-wal" in ignore and "catalog.db-shm" in ignore


def test_outside_git_the_current_directory_is_the_root(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert find_root(plain) == plain.resolve()


def test_head_tilde_forms_and_huge_numbers(catalog: Catalog) -> None:
    first = add(catalog)
    add(catalog)
    assert catalog.resolve("HEAD~") == first
    with pytest.raises(RefNotFound, match="only 2"):
        catalog.resolve("HEAD~99999999999999999999999")


def test_locked_catalog_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbversion.catalog as catalog_module

    path = tmp_path / "c.db"
    Catalog.open(path).close()
    monkeypatch.setattr(catalog_module, "BUSY_TIMEOUT_SECONDS", 0.2)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with Catalog.open(path) as catalog, pytest.raises(CatalogError, match="could not be written: database is locked"):
            add(catalog)
    finally:
        other.execute("ROLLBACK")
        other.close()
    with Catalog.open(path) as catalog:
        assert catalog.count() == 0


def test_checkpoint_with_a_reader_reports_instead_of_waiting(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Catalog.open(path) as catalog:
        add(catalog)
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM snapshots").fetchone()
        try:
            assert catalog.add_snapshot(
                snapshot_id=new_id(), message="while reading", parent=None, artifacts=[], metrics={},
                nbversion_version="t", python_version="3",
            ) is False
        finally:
            reader.execute("COMMIT")
            reader.close()
        assert catalog.checkpoint() is True
