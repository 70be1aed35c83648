"""The catalog's schema, as an ordered list of recorded migrations.

Each migration runs once, in order, inside the transaction that opens a catalog for writing.
``PRAGMA user_version`` holds the number of the last one applied, and the
``nbversion_migrations`` table records when each ran. A catalog whose ``user_version`` is
higher than the last migration here was written by a newer nbversion: it is refused, never
downgraded.

The public tables and views are documented column by column in ``docs/schema.md``; a test
fails when the two drift apart.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import CatalogError


@dataclass(frozen=True)
class Migration:
    """One schema change: a number, a name for people, and the SQL that makes it."""

    number: int
    name: str
    sql: str


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "core tables",
        """
        CREATE TABLE snapshots (
            id TEXT PRIMARY KEY,
            parent TEXT REFERENCES snapshots(id),
            created_at TEXT NOT NULL,
            message TEXT NOT NULL,
            notebook TEXT,
            git_commit TEXT,
            git_branch TEXT,
            git_dirty INTEGER,
            nbversion_version TEXT NOT NULL,
            python_version TEXT NOT NULL
        );
        CREATE TABLE objects (
            id TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            first_snapshot_id TEXT REFERENCES snapshots(id)
        );
        CREATE TABLE artifacts (
            snapshot_id TEXT NOT NULL REFERENCES snapshots(id),
            kind TEXT NOT NULL CHECK (kind IN ('code', 'data', 'model', 'other')),
            source TEXT NOT NULL
                CHECK (source IN ('variable', 'file', 'git', 'notebook', 'environment')),
            name TEXT NOT NULL,
            path TEXT,
            type TEXT NOT NULL,
            codec TEXT NOT NULL,
            object_id TEXT REFERENCES objects(id),
            size INTEGER NOT NULL,
            summary TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (snapshot_id, source, name)
        );
        CREATE INDEX artifacts_object_id ON artifacts(object_id);
        CREATE TABLE metrics (
            snapshot_id TEXT NOT NULL REFERENCES snapshots(id),
            name TEXT NOT NULL,
            value REAL,
            PRIMARY KEY (snapshot_id, name)
        );
        CREATE INDEX metrics_name_value ON metrics(name, value);
        CREATE TABLE tags (
            name TEXT PRIMARY KEY,
            snapshot_id TEXT NOT NULL REFERENCES snapshots(id),
            created_at TEXT NOT NULL
        );
        CREATE INDEX tags_snapshot_id ON tags(snapshot_id);
        CREATE TABLE skipped (
            snapshot_id TEXT NOT NULL REFERENCES snapshots(id),
            name TEXT NOT NULL,
            type TEXT NOT NULL,
            reason TEXT NOT NULL,
            PRIMARY KEY (snapshot_id, name)
        );
        """,
    ),
    Migration(
        2,
        "code, files and environment",
        """
        CREATE TABLE environments (
            id TEXT PRIMARY KEY,
            python_version TEXT NOT NULL,
            platform TEXT NOT NULL
        );
        CREATE TABLE packages (
            environment_id TEXT NOT NULL REFERENCES environments(id),
            name TEXT NOT NULL,
            version TEXT NOT NULL,
            PRIMARY KEY (environment_id, name)
        );
        ALTER TABLE snapshots ADD COLUMN environment_id TEXT REFERENCES environments(id);
        CREATE TABLE tree_entries (
            tree_id TEXT NOT NULL REFERENCES objects(id),
            path TEXT NOT NULL,
            object_id TEXT NOT NULL REFERENCES objects(id),
            size INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('code', 'data', 'model', 'other')),
            PRIMARY KEY (tree_id, path)
        );
        CREATE INDEX tree_entries_object_id ON tree_entries(object_id);
        CREATE VIEW snapshot_packages AS
            SELECT s.id AS snapshot_id, p.name, p.version
            FROM snapshots s JOIN packages p ON p.environment_id = s.environment_id;
        CREATE VIEW snapshot_files AS
            SELECT a.snapshot_id, a.path, a.object_id, a.size, a.kind
            FROM artifacts a WHERE a.source = 'file' AND a.codec = 'file'
            UNION ALL
            SELECT a.snapshot_id, t.path, t.object_id, t.size, t.kind
            FROM artifacts a JOIN tree_entries t ON t.tree_id = a.object_id
            WHERE a.source = 'file' AND a.codec = 'tree';
        """,
    ),
    Migration(
        3,
        "views for common questions",
        """
        CREATE VIEW snapshot_log AS
            SELECT s.id, s.created_at, s.message, s.parent, s.git_commit, s.git_branch, s.git_dirty,
                s.notebook,
                (SELECT group_concat(name, ', ') FROM tags t WHERE t.snapshot_id = s.id) AS tags,
                (SELECT count(*) FROM artifacts a WHERE a.snapshot_id = s.id AND a.source = 'variable') AS variables,
                (SELECT count(*) FROM snapshot_files f WHERE f.snapshot_id = s.id) AS files,
                (SELECT count(*) FROM metrics m WHERE m.snapshot_id = s.id) AS metrics,
                (SELECT count(*) FROM skipped k WHERE k.snapshot_id = s.id) AS skipped,
                (SELECT coalesce(sum(o.size), 0) FROM objects o WHERE o.first_snapshot_id = s.id) AS new_bytes
            FROM snapshots s;
        CREATE VIEW snapshot_metrics AS
            SELECT s.id AS snapshot_id, s.created_at, s.message,
                (SELECT group_concat(name, ', ') FROM tags t WHERE t.snapshot_id = s.id) AS tags,
                m.name, m.value
            FROM metrics m JOIN snapshots s ON s.id = m.snapshot_id;
        CREATE VIEW latest_metrics AS
            SELECT m.name, m.value, m.snapshot_id, s.created_at, s.message
            FROM metrics m JOIN snapshots s ON s.id = m.snapshot_id
            WHERE m.snapshot_id = (
                SELECT m2.snapshot_id FROM metrics m2 WHERE m2.name = m.name ORDER BY m2.snapshot_id DESC LIMIT 1
            );
        CREATE VIEW artifact_summaries AS
            SELECT a.snapshot_id, a.source, a.kind, a.name, a.path,
                CASE WHEN instr(a.type, '.') THEN replace(a.type, rtrim(a.type, replace(a.type, '.', '')), '')
                     ELSE a.type END AS type,
                a.codec, a.size, a.object_id,
                trim(
                    coalesce('shape ' || replace(replace(replace(json_extract(a.summary, '$.shape'), '[', ''), ']', ''), ',', 'x') || ' ', '')
                    || coalesce(json_extract(a.summary, '$.dtype') || ' ', '')
                    || coalesce(json_extract(a.summary, '$.class') || ' ', '')
                    || coalesce('= ' || json_extract(a.summary, '$.value') || ' ', '')
                    || coalesce('length ' || json_extract(a.summary, '$.length') || ' ', '')
                    || coalesce(json_extract(a.summary, '$.files') || ' files ', '')
                    || coalesce(json_extract(a.summary, '$.preview'), '')
                ) AS summary
            FROM artifacts a;
        CREATE VIEW lineage AS
            WITH items AS (
                SELECT snapshot_id, 'variable' AS source, name, object_id, kind
                FROM artifacts WHERE source = 'variable'
                UNION ALL
                SELECT snapshot_id, 'file', path, object_id, kind FROM snapshot_files
            )
            SELECT m.snapshot_id, m.source AS model_source, m.name AS model,
                m.object_id AS model_object_id,
                d.source AS input_source, d.name AS input, d.object_id AS input_object_id
            FROM items m
            JOIN objects o ON o.id = m.object_id AND o.first_snapshot_id = m.snapshot_id
            JOIN items d ON d.snapshot_id = m.snapshot_id AND d.kind = 'data'
            WHERE m.kind = 'model';
        """,
    ),
    Migration(
        4,
        "index for bytes added per snapshot",
        """
        CREATE INDEX objects_first_snapshot_id ON objects(first_snapshot_id);
        """,
    ),
    Migration(
        5,
        "auto snapshots",
        """
        ALTER TABLE snapshots ADD COLUMN auto INTEGER NOT NULL DEFAULT 0 CHECK (auto IN (0, 1));
        DROP VIEW snapshot_log;
        CREATE VIEW snapshot_log AS
            SELECT s.id, s.created_at, s.message, s.parent, s.git_commit, s.git_branch, s.git_dirty,
                s.notebook, s.auto,
                (SELECT group_concat(name, ', ') FROM tags t WHERE t.snapshot_id = s.id) AS tags,
                (SELECT count(*) FROM artifacts a WHERE a.snapshot_id = s.id AND a.source = 'variable') AS variables,
                (SELECT count(*) FROM snapshot_files f WHERE f.snapshot_id = s.id) AS files,
                (SELECT count(*) FROM metrics m WHERE m.snapshot_id = s.id) AS metrics,
                (SELECT count(*) FROM skipped k WHERE k.snapshot_id = s.id) AS skipped,
                (SELECT coalesce(sum(o.size), 0) FROM objects o WHERE o.first_snapshot_id = s.id) AS new_bytes
            FROM snapshots s;
        """,
    ),
]

LATEST = MIGRATIONS[-1].number


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the number of the last migration applied to *conn*'s database."""
    return conn.execute("PRAGMA user_version").fetchone()[0]


def check_version(conn: sqlite3.Connection, path: str) -> int:
    """Return the schema version, refusing a catalog written by a newer nbversion.

    :raises CatalogError: when the catalog's schema is newer than this nbversion knows.
    """
    version = schema_version(conn)
    if version > LATEST:
        raise CatalogError(
            f"catalog {path} has schema version {version}, newer than this nbversion "
            f"understands ({LATEST}): upgrade nbversion to use it"
        )
    return version


def migrate(conn: sqlite3.Connection, path: str) -> list[Migration]:
    """Apply every migration *conn* lacks, in one ``BEGIN IMMEDIATE`` transaction.

    Safe to call from several processes at once: the version is re-read after the write lock
    is taken, so each migration runs exactly once.

    :returns: the migrations that were applied (empty when the schema was current).
    :raises CatalogError: when the catalog is newer than this nbversion.
    """
    if check_version(conn, path) == LATEST:
        return []
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = check_version(conn, path)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS nbversion_migrations ("
            "number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        applied = []
        for migration in MIGRATIONS:
            if migration.number <= current:
                continue
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO nbversion_migrations (number, name, applied_at) VALUES (?, ?, ?)",
                (migration.number, migration.name, datetime.now(timezone.utc).isoformat()),
            )
            conn.execute(f"PRAGMA user_version = {migration.number:d}")
            applied.append(migration)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied


def _statements(sql: str) -> list[str]:
    """Split a migration's SQL into complete statements (``executescript`` would commit)."""
    statements, current = [], ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
