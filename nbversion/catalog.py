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
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import migrations
from .errors import AmbiguousRef, CatalogError, RefNotFound, TagExists, UsageProblem

#: How long a writer waits for another kernel's write lock before giving up.
BUSY_TIMEOUT_SECONDS = 60.0

#: Characters shown for a snapshot id, like git's abbreviated hashes.
SHORT_ID_LENGTH = 10

#: The shortest id prefix accepted as a ref.
MIN_PREFIX_LENGTH = 4

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_HEAD_RE = re.compile(r"^HEAD(?:~(\d*)|(\^+))?$")
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


def _summary_json(summary: dict[str, Any]) -> str:
    """*summary* as JSON; a summary that cannot be written (an int of 5,000 digits, nesting
    deeper than JSON goes) never fails the snapshot: it says so instead."""
    try:
        return json.dumps(summary, default=repr)
    except (ValueError, TypeError, RecursionError) as exc:
        return json.dumps({"error": f"summary not kept: {type(exc).__name__}"})


def is_text(text: str) -> bool:
    """Whether *text* can be stored as UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    artifact has no bytes); ``size`` is the bytes it stands for (a directory: all its files),
    ``object_size`` the size of that one blob when different (a directory's manifest);
    ``new_bytes`` what storing it added to the store; ``summary`` is what a person wants to
    see without loading it.
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
    new_bytes: int = 0
    object_size: int | None = None


@dataclass
class Skipped:
    """A variable a snapshot could not keep, and why."""

    name: str
    type: str
    reason: str


#: SQLite result codes that mean "may not write here" rather than "not a database":
#: SQLITE_PERM, SQLITE_READONLY (and its extended codes), SQLITE_CANTOPEN.
_NOT_WRITABLE = frozenset({3, 8, 14})


def _unusable(path: Path, what: str, exc: sqlite3.Error) -> str:
    """The one-line reason the catalog at *path* cannot be used."""
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _NOT_WRITABLE:
        return f"catalog {path} cannot be written ({exc}): is {path.parent} or the file read-only?"
    return f"catalog {path} {what}: {exc}"


def _create(path: Path) -> None:
    """Make a missing catalog whole beside *path*, then link it into place.

    So a catalog nbversion made is never seen empty or half made by another process, and an
    empty file at *path* is never ours to fill: it is refused, and left as it is.
    """
    if path.exists():
        return
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.new")
    try:
        conn = sqlite3.connect(temp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            migrations.migrate(conn, str(path))
        finally:
            conn.close()  # the last connection folds the WAL in: the file is complete
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        except OSError:
            pass  # no hard links on this file system: SQLite creates it in place instead
    finally:
        for suffix in ("", "-wal", "-shm"):
            with suppress(FileNotFoundError):
                os.unlink(f"{temp}{suffix}")


def _summary(text: Any) -> dict[str, Any]:
    """An artifact's summary, or ``{}`` when the column does not hold a JSON object."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class Catalog:
    """An open catalog file. Use :meth:`open` and close it (it is a context manager).

    :param path: the catalog file, created with its schema when missing.
    :param readonly: open with ``mode=ro``; no migration, no write can happen.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        try:
            if self.path.exists() and self.path.stat().st_size == 0:  # never one of ours: see _create
                raise CatalogError(
                    f"catalog {self.path} is an empty file, not an nbversion catalog: "
                    "restore it from git, or remove it to start a new one"
                )
            if readonly:
                if not self.path.exists():
                    raise CatalogError(f"catalog {self.path} does not exist")
                conn = sqlite3.connect(
                    f"file:{urllib.parse.quote(str(self.path.resolve()))}?mode=ro", uri=True, isolation_level=None,
                    timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False,
                )
            else:
                _create(self.path)
                conn = sqlite3.connect(
                    self.path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS,
                    check_same_thread=False,
                )
        except sqlite3.Error as exc:
            raise CatalogError(_unusable(self.path, "cannot be opened", exc)) from None
        self.conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            if readonly:
                migrations.check_version(conn, str(self.path))
            else:
                # Before anything writes (even the journal mode): a newer catalog stays as it is.
                migrations.check_version(conn, str(self.path))
                if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                    raise CatalogError(f"catalog {self.path} cannot be put in WAL mode")
                conn.execute("PRAGMA synchronous = NORMAL")
                migrations.migrate(conn, str(self.path))
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise CatalogError(_unusable(self.path, "is not a usable SQLite database", exc)) from None
        except BaseException:
            conn.close()
            raise
        self._db: Any = None

    @property
    def db(self) -> Any:
        """A :class:`sqlite_utils.Database` over the same connection, for introspection.

        Imported on first use: it brings pandas along, too slow for every command line.
        """
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    def _query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, params)
        columns = [c[0] for c in cursor.description]
        return [dict(zip(columns, row)) for row in cursor.fetchall()]

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
        """Run the block in one ``BEGIN IMMEDIATE`` transaction: all of it, or none of it.

        :raises CatalogError: when SQLite fails (locked past the busy timeout, disk full,
            read-only file); nothing of the block is kept.
        """
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                if self.conn.in_transaction:  # SQLite may have rolled back already
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise CatalogError(f"catalog {self.path} could not be written: {exc}") from None

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
        environment: Any = None,
        tree_entries: dict[str, Any] | None = None,
        nbversion_version: str,
        python_version: str,
        auto: bool = False,
    ) -> bool:
        """Record one snapshot and everything it holds, in one transaction.

        The blobs the artifacts (and the *tree_entries*: manifest id -> its files, or a
        function returning them) name must already be in the object store. *environment* is a
        :class:`~nbversion.capture.environment.Environment`.

        :returns: whether the WAL was checkpointed (see :meth:`checkpoint`).
        :raises TagExists: when *tag* already names a snapshot (nothing is written).
        """
        git = git or {}
        tree_entries = tree_entries or {}
        created_at = id_time(snapshot_id).isoformat()
        objects = {a.object_id: a.size if a.object_size is None else a.object_size for a in artifacts if a.object_id}
        with self.transaction() as conn:
            if parent is not None and not self._exists(parent):
                parent = None
            if tag is not None:
                self.check_tag_free(tag)
            if environment is not None:
                known = conn.execute("SELECT 1 FROM environments WHERE id = ?", (environment.id,)).fetchone()
                if known is None:
                    conn.execute(
                        "INSERT INTO environments (id, python_version, platform) VALUES (?, ?, ?)",
                        (environment.id, environment.python_version, environment.platform),
                    )
                    conn.executemany(
                        "INSERT INTO packages (environment_id, name, version) VALUES (?, ?, ?)",
                        [(environment.id, name, version) for name, version in environment.packages],
                    )
            conn.execute(
                "INSERT INTO snapshots (id, parent, created_at, message, notebook, git_commit,"
                " git_branch, git_dirty, nbversion_version, python_version, environment_id, auto)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    snapshot_id, parent, created_at, message, notebook, git.get("commit"),
                    git.get("branch"), git.get("dirty"), nbversion_version, python_version,
                    environment.id if environment is not None else None, int(auto),
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO objects (id, size, created_at, first_snapshot_id)"
                " VALUES (?, ?, ?, ?)",
                [(object_id, size, created_at, snapshot_id) for object_id, size in objects.items()],
            )
            for tree_id, entries in tree_entries.items():
                if conn.execute("SELECT 1 FROM tree_entries WHERE tree_id = ? LIMIT 1", (tree_id,)).fetchone():
                    continue  # an unchanged directory: its entries and objects are recorded already
                if callable(entries):
                    entries = entries()
                conn.executemany(
                    "INSERT OR IGNORE INTO objects (id, size, created_at, first_snapshot_id) VALUES (?, ?, ?, ?)",
                    [(e["object_id"], e["size"], created_at, snapshot_id) for e in entries],
                )
                conn.executemany(
                    "INSERT INTO tree_entries (tree_id, path, object_id, size, kind) VALUES (?, ?, ?, ?, ?)",
                    [(tree_id, e["path"], e["object_id"], e["size"], e["kind"]) for e in entries],
                )
            conn.executemany(
                "INSERT INTO artifacts (snapshot_id, kind, source, name, path, type, codec,"
                " object_id, size, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        snapshot_id, a.kind, a.source, a.name, a.path, a.type, a.codec,
                        a.object_id, a.size, _summary_json(a.summary),
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
        return self.checkpoint()

    def checkpoint(self) -> bool:
        """Fold the WAL into the main file so the ``.db`` that git commits is complete.

        Waits at most a couple of seconds for other connections' reads to finish.

        :returns: whether the main file now holds everything.
        """
        self.conn.execute("PRAGMA busy_timeout = 2000")
        try:
            busy, _, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                busy, log, done = self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                return log == done
            return True
        except sqlite3.Error:
            return False
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")

    # -- reading ---------------------------------------------------------------------------

    def check_tag_free(self, tag: str) -> None:
        """Raise :class:`TagExists` if *tag* already names a snapshot."""
        row = self.conn.execute("SELECT snapshot_id FROM tags WHERE name = ?", (tag,)).fetchone()
        if row is not None:
            raise TagExists(f"tag {tag!r} already names snapshot {short_id(row[0])}")

    def _exists(self, snapshot_id: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM snapshots WHERE id = ?", (snapshot_id,))
        return row.fetchone() is not None

    def object_is_referenced(self, object_id: str) -> bool:
        """Whether any snapshot holds *object_id* (as an artifact or inside a directory)."""
        return bool(
            self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM artifacts WHERE object_id = :o)"
                " OR EXISTS (SELECT 1 FROM tree_entries WHERE object_id = :o)",
                {"o": object_id},
            ).fetchone()[0]
        )

    def referenced_objects(self, snapshot_ids: Sequence[str] | None = None) -> dict[str, int]:
        """Return every object the given snapshots (default: all) need, with its size: their
        artifacts' objects and the objects their manifests list (a directory's files, a
        large value's parts)."""
        if snapshot_ids is None:
            rows = self.conn.execute(
                "SELECT a.object_id, coalesce(o.size, a.size) FROM artifacts a LEFT JOIN objects o ON o.id = a.object_id"
                " WHERE a.object_id IS NOT NULL"
                " UNION SELECT object_id, size FROM tree_entries"
            )
            return {object_id: size for object_id, size in rows}
        found: dict[str, int] = {}
        for snapshot_id in snapshot_ids:
            rows = self.conn.execute(
                "SELECT a.object_id, coalesce(o.size, a.size) FROM artifacts a LEFT JOIN objects o ON o.id = a.object_id"
                " WHERE a.snapshot_id = :s AND a.object_id IS NOT NULL"
                " UNION SELECT t.object_id, t.size FROM artifacts a JOIN tree_entries t ON t.tree_id = a.object_id"
                " WHERE a.snapshot_id = :s",
                {"s": snapshot_id},
            )
            found.update(rows)
        return found

    def parts_of(self, object_ids: Iterable[str]) -> list[str]:
        """The objects the manifests among *object_ids* list (a large array's parts)."""
        found: list[str] = []
        for object_id in set(object_ids):
            found += [r[0] for r in self.conn.execute("SELECT object_id FROM tree_entries WHERE tree_id = ?", (object_id,))]
        return found

    def all_object_ids(self) -> set[str]:
        """Every object id the ``objects`` table records."""
        return {r[0] for r in self.conn.execute("SELECT id FROM objects")}

    def snapshots_using(self, object_id: str) -> list[str]:
        """Return the ids of the snapshots that need *object_id*, oldest first."""
        rows = self.conn.execute(
            "SELECT snapshot_id FROM artifacts WHERE object_id = :o"
            " UNION SELECT a.snapshot_id FROM artifacts a JOIN tree_entries t ON t.tree_id = a.object_id"
            " WHERE t.object_id = :o ORDER BY 1",
            {"o": object_id},
        )
        return [r[0] for r in rows]

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
        if not is_text(ref):  # a lone surrogate: no tag or id has one
            raise RefNotFound(f"snapshot {ref!r} not found")
        head = _HEAD_RE.match(ref)
        if head:
            tilde, carets = head.group(1), head.group(2)
            if tilde and len(tilde.lstrip("0")) > 18:
                back = 2**62  # past the end either way; int() of 5,000 digits would raise
            else:
                back = (int(tilde) if tilde else 1) if tilde is not None else len(carets or "")
            back = min(back, 2**62)  # SQLite integers are 64-bit
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

    def skipped_rows(self, snapshot_id: str) -> list[tuple[str, str, str]]:
        """Return ``(name, type, reason)`` of each variable *snapshot_id* could not keep."""
        rows = self.conn.execute(
            "SELECT name, type, reason FROM skipped WHERE snapshot_id = ? ORDER BY name", (snapshot_id,)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def metrics(self, snapshot_id: str) -> dict[str, float | None]:
        """Return the metrics of *snapshot_id* by name."""
        rows = self.conn.execute(
            "SELECT name, value FROM metrics WHERE snapshot_id = ? ORDER BY name", (snapshot_id,)
        )
        return dict(rows.fetchall())

    def files(self, snapshot_id: str) -> dict[str, tuple[str, int]]:
        """Return every tracked file of *snapshot_id* (alone or in a directory): path -> (object id, size)."""
        rows = self.conn.execute(
            "SELECT path, object_id, size FROM snapshot_files WHERE snapshot_id = ?", (snapshot_id,)
        )
        return {path: (object_id, size) for path, object_id, size in rows}

    def environment(self, environment_id: str | None) -> dict[str, Any] | None:
        """Return an environment's Python, platform and number of packages."""
        if environment_id is None:
            return None
        row = self.conn.execute(
            "SELECT python_version, platform, (SELECT count(*) FROM packages WHERE environment_id = e.id)"
            " FROM environments e WHERE id = ?",
            (environment_id,),
        ).fetchone()
        return None if row is None else {"python_version": row[0], "platform": row[1], "packages": row[2]}

    def artifacts(self, snapshot_id: str, source: str | None = None) -> list[dict[str, Any]]:
        """Return the artifacts of a snapshot (optionally of one *source*), summaries decoded."""
        sql = "SELECT * FROM artifacts WHERE snapshot_id = ?"
        params: list[Any] = [snapshot_id]
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        rows = self._query(sql + " ORDER BY source, name", params)
        for row in rows:
            row["summary"] = _summary(row["summary"])
        return rows

    def auto_beyond(self, keep: int) -> list[str]:
        """The untagged auto snapshots older than the newest *keep*, newest first."""
        rows = self.conn.execute(
            "SELECT id FROM snapshots WHERE auto = 1 AND id NOT IN (SELECT snapshot_id FROM tags)"
            " ORDER BY id DESC LIMIT -1 OFFSET ?",
            (keep,),
        )
        return [r[0] for r in rows]

    def prune_auto(self, keep: int) -> list[str]:
        """Delete all but the newest *keep* auto snapshots (never a tagged one), with their
        rows, and forget the objects nothing references any more (``gc`` then removes their
        files). A child of a deleted snapshot gets the deleted one's parent.

        :returns: the ids deleted.
        """
        with self.transaction() as conn:
            doomed = self.auto_beyond(keep)
            for snapshot_id in sorted(doomed, reverse=True):  # newest first: parents stay valid
                conn.execute(
                    "UPDATE snapshots SET parent = (SELECT parent FROM snapshots WHERE id = :s) WHERE parent = :s",
                    {"s": snapshot_id},
                )
                for table in ("artifacts", "metrics", "skipped"):
                    conn.execute(f"DELETE FROM {table} WHERE snapshot_id = ?", (snapshot_id,))
                conn.execute("UPDATE objects SET first_snapshot_id = NULL WHERE first_snapshot_id = ?", (snapshot_id,))
                conn.execute("DELETE FROM snapshots WHERE id = ?", (snapshot_id,))
            if doomed:
                conn.execute("DELETE FROM tree_entries WHERE tree_id NOT IN (SELECT object_id FROM artifacts WHERE object_id IS NOT NULL)")
                conn.execute(
                    "DELETE FROM objects WHERE id NOT IN (SELECT object_id FROM artifacts WHERE object_id IS NOT NULL)"
                    " AND id NOT IN (SELECT object_id FROM tree_entries) AND id NOT IN (SELECT tree_id FROM tree_entries)"
                )
        self.checkpoint()
        return doomed

    def log(self, limit: int | None = 20, *, auto: bool = True) -> list[dict[str, Any]]:
        """Return the newest snapshots first, each with counts of what it holds.

        Each row has the ``snapshots`` columns plus ``tags`` (comma-separated), ``variables``,
        ``metrics``, ``skipped`` and ``new_bytes`` (bytes first stored by that snapshot).
        Without *auto*, auto snapshots are left out.
        """
        where = "" if auto else "WHERE auto = 0"
        sql = f"""
            WITH page AS (SELECT * FROM snapshots {where} ORDER BY id DESC LIMIT :limit)
            SELECT page.*,
                (SELECT group_concat(name, ', ') FROM tags WHERE snapshot_id = page.id) AS tags,
                (SELECT count(*) FROM artifacts WHERE snapshot_id = page.id) AS artifacts,
                (SELECT count(*) FROM metrics WHERE snapshot_id = page.id) AS metrics,
                (SELECT count(*) FROM skipped WHERE snapshot_id = page.id) AS skipped,
                (SELECT coalesce(sum(size), 0) FROM objects
                    WHERE first_snapshot_id = page.id) AS new_bytes
            FROM page ORDER BY id DESC
        """
        return self._query(sql, {"limit": -1 if limit is None else limit})

    def count_auto(self) -> int:
        return self.conn.execute("SELECT count(*) FROM snapshots WHERE auto = 1").fetchone()[0]


#: PRAGMAs a read query may use: they only describe the schema, whatever their argument...
_DESCRIBING_PRAGMAS = frozenset({
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "database_list", "collation_list", "function_list", "pragma_list",
    "compile_options",
})
#: ... and these, read but never set (``PRAGMA user_version``, not ``= 5``).
_VALUE_PRAGMAS = frozenset({"user_version", "schema_version", "page_count", "page_size", "freelist_count"})


def _read_only_authorizer(action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
    """Allow reading and nothing else, whatever the SQL text says (Datasette's rule)."""
    if action == sqlite3.SQLITE_FUNCTION:
        # fts3_tokenizer reads and registers raw pointers; nothing else a query calls writes.
        return sqlite3.SQLITE_DENY if (arg2 or "").lower() == "fts3_tokenizer" else sqlite3.SQLITE_OK
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        if name in _DESCRIBING_PRAGMAS or (name in _VALUE_PRAGMAS and arg2 is None):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


class ReadOnlyQueryError(UsageProblem):
    """User SQL tried to write, or is not valid SQL."""


def read_query(path: str | os.PathLike[str], sql: str, params: Any = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one read-only statement on the catalog at *path*; return its columns and rows.

    The connection is opened ``mode=ro`` and an authorizer refuses anything but reading, so
    no statement (INSERT, DROP, ATTACH, a writing PRAGMA, ...) can change the catalog.

    :raises ReadOnlyQueryError: for a writing statement, bad SQL, or a missing parameter.
    """
    if not sql.strip():
        raise ReadOnlyQueryError("the query is empty: write a SELECT")
    with Catalog.open(path, readonly=True) as catalog:
        catalog.conn.set_authorizer(_read_only_authorizer)
        try:
            cursor = catalog.conn.execute(sql, params)
            rows = cursor.fetchall()
        except (ValueError, OverflowError) as exc:  # a parameter SQLite cannot take (a huge int, ...)
            raise ReadOnlyQueryError(f"a parameter cannot be used in SQL: {exc}") from None
        except sqlite3.ProgrammingError as exc:
            missing = re.search(r"binding parameter :?(\w+)", str(exc))
            if missing and "supply a value" in str(exc):
                raise ReadOnlyQueryError(f"parameter :{missing.group(1)} has no value (no variable of that name)") from None
            raise ReadOnlyQueryError(f"the query failed: {exc}") from None
        except sqlite3.DatabaseError as exc:
            message = str(exc)
            if "not authorized" in message or "readonly" in message:
                verb = sql.strip().split(None, 1)[0].upper()
                raise ReadOnlyQueryError(
                    f"only read queries run on the catalog ({verb} was refused): use SELECT, WITH or EXPLAIN"
                ) from None
            raise ReadOnlyQueryError(f"the query failed: {message}") from None
        columns = [c[0] for c in cursor.description] if cursor.description else []
    return columns, rows


#: Tables a merge unions, parents first (their rows are immutable once written).
_MERGED_TABLES = ("environments", "packages", "snapshots", "objects", "artifacts", "metrics", "skipped", "tree_entries")


@dataclass
class MergeReport:
    """What :func:`merge_catalogs` did."""

    added: int
    tag_conflicts: list[tuple[str, str, str]]  # (tag, our snapshot, their snapshot)

    def __str__(self) -> str:
        line = f"merged catalogs: {self.added} snapshot{'s' if self.added != 1 else ''} added"
        for tag, ours, theirs in self.tag_conflicts:
            line += (
                f"\ntag {tag!r} names {short_id(ours)} here and {short_id(theirs)} in the other catalog:"
                " kept ours; tag theirs anew to keep both"
            )
        return line


def merge_catalogs(ours: str | os.PathLike[str], theirs: str | os.PathLike[str]) -> MergeReport:
    """Add everything *theirs* has and *ours* lacks into *ours*, in one transaction.

    Snapshot ids are globally unique, so the union is exact: no row is changed, only added.
    A tag that names different snapshots in the two is kept as ours and reported.
    """
    Catalog.open(theirs).close()  # bring theirs to the current schema too
    with Catalog.open(ours) as catalog:
        conn = catalog.conn
        before = catalog.count()
        conn.execute("ATTACH DATABASE ? AS theirs", (str(theirs),))
        try:
            with catalog.transaction():
                conn.execute("PRAGMA defer_foreign_keys = ON")
                for table in _MERGED_TABLES:
                    columns = ", ".join(r[1] for r in conn.execute(f"PRAGMA main.table_info({table})"))
                    conn.execute(
                        f"INSERT OR IGNORE INTO main.{table} ({columns}) SELECT {columns} FROM theirs.{table}"
                    )
                conflicts = [
                    tuple(r)
                    for r in conn.execute(
                        "SELECT t.name, o.snapshot_id, t.snapshot_id FROM theirs.tags t"
                        " JOIN main.tags o ON o.name = t.name WHERE o.snapshot_id != t.snapshot_id ORDER BY t.name"
                    )
                ]
                conn.execute("INSERT OR IGNORE INTO main.tags SELECT * FROM theirs.tags")
        finally:
            conn.execute("DETACH DATABASE theirs")
        if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise CatalogError(f"catalog {ours} failed its integrity check after the merge")
        added = catalog.count() - before
        catalog.checkpoint()
    return MergeReport(added, conflicts)  # type: ignore[arg-type]


# ctime too: a same-size rewrite that restores the mtime (cp -p, rsync -t) still changes it.
_STAT_TABLE = (
    "CREATE TABLE IF NOT EXISTS file_stats (path TEXT PRIMARY KEY, inode INTEGER NOT NULL, size INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, object_id TEXT NOT NULL)"
)


# Trust in pickles (see nbversion.api's "Trust" section): machine-local, never committed.
_TRUST_TABLES = (
    # Pickled objects this machine may load: it made them, or the user restored them with --trust.
    "CREATE TABLE IF NOT EXISTS trusted_objects (object_id TEXT PRIMARY KEY, reason TEXT NOT NULL, at TEXT NOT NULL)",
    # Where each object that came from a remote came from (the first time it came).
    (
        "CREATE TABLE IF NOT EXISTS fetched (object_id TEXT PRIMARY KEY, remote TEXT NOT NULL, url TEXT NOT NULL,"
        " fetched_at TEXT NOT NULL)"
    ),
    # Remotes whose pickles load without --trust, by URL: a committed remotes.json that points
    # a trusted name somewhere else does not carry the trust along.
    "CREATE TABLE IF NOT EXISTS trusted_remotes (url TEXT PRIMARY KEY, name TEXT NOT NULL, trusted_at TEXT NOT NULL)",
)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StatCache:
    """What each file's bytes hashed to, keyed by the file's ``stat``, like DVC's state db.

    An unchanged file (same inode, size and modification time) then costs a ``stat``, not a
    re-hash. It also remembers small machine-local facts between processes (:meth:`recall`),
    and which pickled objects this machine trusts (:meth:`trust_objects`, :meth:`record_fetched`,
    :meth:`trust_remote`). It is machine-local, so it lives beside the catalog in ``state.db``,
    which git ignores. Losing it costs re-hashing, and a ``--trust`` for pickles loaded again.

    :param path: the cache file, created when missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute(_STAT_TABLE)
        except sqlite3.DatabaseError:
            # A damaged cache is only a cache: start a new one.
            self.path.unlink(missing_ok=True)
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
            self.conn.execute(_STAT_TABLE)
        self.conn.execute("CREATE TABLE IF NOT EXISTS memo (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for table in _TRUST_TABLES:
            self.conn.execute(table)
        self._rows: dict[str, tuple[int, int, int, int, str]] | None = None
        self._pending: dict[str, tuple[int, int, int, int, str]] = {}

    def recall(self, key: str) -> Any:
        """Return the JSON value remembered under *key* (``None`` if nothing is)."""
        row = self.conn.execute("SELECT value FROM memo WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def remember(self, key: str, value: Any) -> None:
        """Remember a JSON-able *value* under *key* (for the next process on this machine)."""
        self.conn.execute("INSERT OR REPLACE INTO memo (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def trust_objects(self, object_ids: Iterable[str], reason: str) -> None:
        """Record that these pickled objects may be loaded on this machine.

        :param reason: ``made`` (this machine pickled them) or ``trusted`` (restored with ``--trust``).
        """
        at = _utc_now()
        self.conn.executemany(
            "INSERT OR IGNORE INTO trusted_objects (object_id, reason, at) VALUES (?, ?, ?)",
            [(object_id, reason, at) for object_id in object_ids],
        )

    def is_trusted_object(self, object_id: str) -> bool:
        """Whether :meth:`trust_objects` recorded *object_id*."""
        return self.conn.execute("SELECT 1 FROM trusted_objects WHERE object_id = ?", (object_id,)).fetchone() is not None

    def record_fetched(self, object_ids: Iterable[str], remote: str, url: str) -> None:
        """Record that these objects came from remote *remote* at *url* (kept: the first origin)."""
        at = _utc_now()
        self.conn.executemany(
            "INSERT OR IGNORE INTO fetched (object_id, remote, url, fetched_at) VALUES (?, ?, ?, ?)",
            [(object_id, remote, url, at) for object_id in object_ids],
        )

    def fetched_from(self, object_id: str) -> tuple[str, str] | None:
        """The ``(remote name, URL)`` *object_id* was fetched from, or ``None``."""
        row = self.conn.execute("SELECT remote, url FROM fetched WHERE object_id = ?", (object_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def trust_remote(self, name: str, url: str) -> None:
        """Trust the pickles fetched from *url* (remote *name*) on this machine."""
        self.conn.execute(
            "INSERT OR REPLACE INTO trusted_remotes (url, name, trusted_at) VALUES (?, ?, ?)", (url, name, _utc_now())
        )

    def untrust_remote(self, name: str, url: str | None) -> bool:
        """Stop trusting remote *name* and its *url*; return whether anything was trusted."""
        cursor = self.conn.execute("DELETE FROM trusted_remotes WHERE name = ? OR url = ?", (name, url))
        return cursor.rowcount > 0

    def trusted_remotes(self) -> dict[str, str]:
        """The trusted remotes' URLs, each with the name it had when trusted."""
        return dict(self.conn.execute("SELECT url, name FROM trusted_remotes").fetchall())

    def lookup(self, path: str, stat: os.stat_result) -> str | None:
        """Return the object id of *path* if its stat is the one recorded with it."""
        if self._rows is None:
            self._rows = {
                r[0]: tuple(r[1:])  # type: ignore[misc]
                for r in self.conn.execute("SELECT path, inode, size, mtime_ns, ctime_ns, object_id FROM file_stats")
            }
        row = self._pending.get(path) or self._rows.get(path)
        if row and row[:4] == (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns):
            return row[4]
        return None

    def record(self, path: str, stat: os.stat_result, object_id: str) -> None:
        """Remember that *path*, with this stat, holds *object_id* (saved by :meth:`save`)."""
        self._pending[path] = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, object_id)

    def save(self) -> None:
        """Write what :meth:`record` collected, in one transaction."""
        if not self._pending:
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(
                "INSERT OR REPLACE INTO file_stats (path, inode, size, mtime_ns, ctime_ns, object_id)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(p, *row) for p, row in self._pending.items()],
            )
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        if self._rows is not None:
            self._rows.update(self._pending)
        self._pending.clear()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> StatCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
