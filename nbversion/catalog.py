"""The SQLite catalog: one file, ``.nbversion/catalog.db``, that records every snapshot.

The catalog is plain SQLite so anyone can open it with standard tools. This module is the
only one that writes SQL. Writes happen in ``BEGIN IMMEDIATE`` transactions, so a snapshot's
rows appear all together or not at all, and concurrent kernels wait for each other
(``busy_timeout``) instead of failing.

Example::

    with Catalog.open(".nbversion/catalog.db") as catalog:
        snapshot_id = catalog.resolve("HEAD~1")
        for artifact in catalog.artifacts(snapshot_id):
            print(artifact["name"], artifact["type"])
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from . import migrations
from .errors import AmbiguousRef, CatalogError, RefNotFound, TagExists, UsageProblem

#: How long a writer waits for another kernel's write lock before giving up.
BUSY_TIMEOUT_SECONDS = 60.0

#: Characters shown for a snapshot id, like git's abbreviated hashes.
SHORT_ID_LENGTH = 10

#: The shortest id prefix accepted as a ref.
MIN_PREFIX_LENGTH = 4

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_HEAD_RE = re.compile(r"^HEAD(?:~(\d+)|(\^+))?$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,99}$")

_id_lock = threading.Lock()
_last_ms = 0


def new_id(now_ms: int | None = None) -> str:
    """Return a new snapshot id: a lowercase ULID (26 Crockford base-32 characters).

    The first 10 characters are the creation time in milliseconds, so ids sort by time; the
    other 16 are random, so ids made in two clones never collide and catalogs merge by union.
    One process never gives two ids the same millisecond, so within it ids strictly increase
    and their short forms (:func:`short_id`) differ.
    """
    global _last_ms
    with _id_lock:
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        # Never reuse a millisecond: ids stay increasing, and their short forms distinct.
        ms = max(ms, _last_ms + 1)
        _last_ms = ms
    value = (ms << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def id_time(snapshot_id: str) -> datetime:
    """Return the creation time encoded in a snapshot id."""
    ms = 0
    for char in snapshot_id[:10]:
        ms = ms * 32 + _CROCKFORD.index(char)
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def short_id(snapshot_id: str) -> str:
    """Return the abbreviated form of *snapshot_id* shown to people."""
    return snapshot_id[:SHORT_ID_LENGTH]


def check_tag_name(tag: str) -> str:
    """Return *tag* if it can name a snapshot, else raise naming it.

    :raises UsageProblem: for names that would be confused with refs or options.
    """
    if not _TAG_RE.match(tag) or _HEAD_RE.match(tag):
        raise UsageProblem(
            f"tag {tag!r} is not a valid tag name: use letters, digits, '_', '-', '.', '/' "
            "(not starting with '-' and not HEAD)"
        )
    return tag


@dataclass
class Artifact:
    """One thing a snapshot holds: a variable, a file, the git state, ...

    ``object_id`` names the blob in the object store holding its bytes (``None`` when the
    artifact has no bytes); ``summary`` is what a person wants to see without loading it.
    """

    kind: str
    source: str
    name: str
    type: str
    codec: str
    object_id: str | None
    size: int
    summary: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    new: bool = False


@dataclass
class Skipped:
    """A variable a snapshot could not keep, and why."""

    name: str
    type: str
    reason: str


class Catalog:
    """An open catalog file. Use :meth:`open` and close it (it is a context manager).

    :param path: the catalog file, created with its schema when missing.
    :param readonly: open with ``mode=ro``; no migration, no write can happen.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        try:
            if readonly:
                if not self.path.exists():
                    raise CatalogError(f"catalog {self.path} does not exist")
                conn = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, isolation_level=None,
                    timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False,
                )
            else:
                conn = sqlite3.connect(
                    self.path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS,
                    check_same_thread=False,
                )
        except sqlite3.Error as exc:
            raise CatalogError(f"catalog {self.path} cannot be opened: {exc}") from None
        self.conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            if readonly:
                migrations.check_version(conn, str(self.path))
            else:
                if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                    raise CatalogError(f"catalog {self.path} cannot be put in WAL mode")
                conn.execute("PRAGMA synchronous = NORMAL")
                migrations.migrate(conn, str(self.path))
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise CatalogError(f"catalog {self.path} is not a usable SQLite database: {exc}") from None
        except BaseException:
            conn.close()
            raise
        self.db = sqlite_utils.Database(conn)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False) -> Catalog:
        """Open (and create or migrate, unless *readonly*) the catalog at *path*."""
        return cls(path, readonly=readonly)

    def close(self) -> None:
        """Close the connection. The catalog object is unusable afterwards."""
        self.conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one ``BEGIN IMMEDIATE`` transaction: all of it, or none of it."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def add_snapshot(
        self,
        *,
        snapshot_id: str,
        message: str,
        parent: str | None,
        artifacts: Sequence[Artifact],
        metrics: dict[str, float | None],
        skipped: Sequence[Skipped] = (),
        tag: str | None = None,
        notebook: str | None = None,
        git: dict[str, Any] | None = None,
        nbversion_version: str,
        python_version: str,
    ) -> None:
        """Record one snapshot and everything it holds, in one transaction.

        The blobs the artifacts name must already be in the object store.

        :raises TagExists: when *tag* already names a snapshot (nothing is written).
        """
        git = git or {}
        created_at = id_time(snapshot_id).isoformat()
        with self.transaction() as conn:
            if parent is not None and not self._exists(parent):
                parent = None
            if tag is not None:
                self._check_tag_free(tag)
            conn.execute(
                "INSERT INTO snapshots (id, parent, created_at, message, notebook, git_commit,"
                " git_branch, git_dirty, nbversion_version, python_version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    snapshot_id, parent, created_at, message, notebook, git.get("commit"),
                    git.get("branch"), git.get("dirty"), nbversion_version, python_version,
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO objects (id, size, created_at, first_snapshot_id)"
                " VALUES (?, ?, ?, ?)",
                [
                    (a.object_id, a.size, created_at, snapshot_id)
                    for a in artifacts
                    if a.object_id is not None
                ],
            )
            conn.executemany(
                "INSERT INTO artifacts (snapshot_id, kind, source, name, path, type, codec,"
                " object_id, size, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        snapshot_id, a.kind, a.source, a.name, a.path, a.type, a.codec,
                        a.object_id, a.size, json.dumps(a.summary, default=repr),
                    )
                    for a in artifacts
                ],
            )
            conn.executemany(
                "INSERT INTO metrics (snapshot_id, name, value) VALUES (?, ?, ?)",
                [(snapshot_id, name, value) for name, value in metrics.items()],
            )
            conn.executemany(
                "INSERT INTO skipped (snapshot_id, name, type, reason) VALUES (?, ?, ?, ?)",
                [(snapshot_id, s.name, s.type, s.reason) for s in skipped],
            )
            if tag is not None:
                conn.execute(
                    "INSERT INTO tags (name, snapshot_id, created_at) VALUES (?, ?, ?)",
                    (tag, snapshot_id, created_at),
                )
        self.checkpoint()

    def checkpoint(self) -> None:
        """Fold the WAL into the main file so the ``.db`` that git commits is complete."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- reading ---------------------------------------------------------------------------

    def check_tag_free(self, tag: str) -> None:
        """Raise :class:`TagExists` if *tag* already names a snapshot."""
        self._check_tag_free(tag)

    def _check_tag_free(self, tag: str) -> None:
        row = self.conn.execute("SELECT snapshot_id FROM tags WHERE name = ?", (tag,)).fetchone()
        if row is not None:
            raise TagExists(f"tag {tag!r} already names snapshot {short_id(row[0])}")

    def _exists(self, snapshot_id: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM snapshots WHERE id = ?", (snapshot_id,))
        return row.fetchone() is not None

    def head(self) -> str | None:
        """Return the id of the newest snapshot, or ``None`` when there is none."""
        row = self.conn.execute("SELECT id FROM snapshots ORDER BY id DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def resolve(self, ref: str) -> str:
        """Return the full snapshot id that *ref* names.

        A ref is ``HEAD`` (the newest snapshot), ``HEAD~N`` or ``HEAD^`` (N snapshots
        before it, in time order), a tag, or a unique prefix of an id (at least
        :data:`MIN_PREFIX_LENGTH` characters).

        :raises RefNotFound: when nothing matches.
        :raises AmbiguousRef: when an id prefix matches more than one snapshot.
        """
        ref = ref.strip()
        if not ref:
            raise RefNotFound("an empty ref names no snapshot")
        head = _HEAD_RE.match(ref)
        if head:
            back = int(head.group(1)) if head.group(1) else len(head.group(2) or "")
            row = self.conn.execute(
                "SELECT id FROM snapshots ORDER BY id DESC LIMIT 1 OFFSET ?", (back,)
            ).fetchone()
            if row is None:
                total = self.count()
                if total == 0:
                    raise RefNotFound(f"ref {ref!r} names no snapshot: there are no snapshots yet")
                raise RefNotFound(f"ref {ref!r} names no snapshot: there are only {total}")
            return row[0]
        row = self.conn.execute("SELECT snapshot_id FROM tags WHERE name = ?", (ref,)).fetchone()
        if row is not None:
            return row[0]
        prefix = ref.lower()
        if len(prefix) >= MIN_PREFIX_LENGTH and all(c in _CROCKFORD for c in prefix):
            rows = self.conn.execute(
                "SELECT id FROM snapshots WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
                (prefix, prefix + "~"),
            ).fetchall()
            if len(rows) == 1:
                return rows[0][0]
            if len(rows) > 1:
                shown = ", ".join(short_id(r[0]) for r in rows[:5])
                more = ", ..." if len(rows) > 5 else ""
                raise AmbiguousRef(
                    f"ref {ref!r} is ambiguous: it starts {shown}{more}; use more characters"
                )
        raise RefNotFound(f"snapshot {ref!r} not found")

    def count(self) -> int:
        """Return how many snapshots the catalog holds."""
        return self.conn.execute("SELECT count(*) FROM snapshots").fetchone()[0]

    def snapshot(self, snapshot_id: str) -> dict[str, Any]:
        """Return the ``snapshots`` row of *snapshot_id*, with its ``tags`` as a list."""
        cursor = self.conn.execute("SELECT * FROM snapshots WHERE id = ?", (snapshot_id,))
        row = cursor.fetchone()
        if row is None:
            raise RefNotFound(f"snapshot {snapshot_id!r} not found")
        record = dict(zip([c[0] for c in cursor.description], row))
        record["tags"] = [
            r[0]
            for r in self.conn.execute(
                "SELECT name FROM tags WHERE snapshot_id = ? ORDER BY name", (snapshot_id,)
            )
        ]
        return record

    def artifacts(self, snapshot_id: str, source: str | None = None) -> list[dict[str, Any]]:
        """Return the artifacts of a snapshot (optionally of one *source*), summaries decoded."""
        sql = "SELECT * FROM artifacts WHERE snapshot_id = ?"
        params: list[Any] = [snapshot_id]
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        rows = list(self.db.query(sql + " ORDER BY source, name", params))
        for row in rows:
            row["summary"] = json.loads(row["summary"])
        return rows

    def log(self, limit: int | None = 20) -> list[dict[str, Any]]:
        """Return the newest snapshots first, each with counts of what it holds.

        Each row has the ``snapshots`` columns plus ``tags`` (comma-separated), ``variables``,
        ``metrics``, ``skipped`` and ``new_bytes`` (bytes first stored by that snapshot).
        """
        sql = """
            WITH page AS (SELECT * FROM snapshots ORDER BY id DESC LIMIT :limit)
            SELECT page.*,
                (SELECT group_concat(name, ', ') FROM tags WHERE snapshot_id = page.id) AS tags,
                (SELECT count(*) FROM artifacts WHERE snapshot_id = page.id) AS artifacts,
                (SELECT count(*) FROM metrics WHERE snapshot_id = page.id) AS metrics,
                (SELECT count(*) FROM skipped WHERE snapshot_id = page.id) AS skipped,
                (SELECT coalesce(sum(size), 0) FROM objects
                    WHERE first_snapshot_id = page.id) AS new_bytes
            FROM page ORDER BY id DESC
        """
        return list(self.db.query(sql, {"limit": -1 if limit is None else limit}))
