"""Capture tracked files and directories: ``[tool.nbversion] track`` and ``--files``.

A tracked file becomes one artifact (its permission bits in the summary's ``mode``). A tracked
directory becomes one ``tree`` artifact whose object is a manifest (JSON: path, object id, size,
kind and ``mode`` of every file under it); the catalog also lists a new manifest's entries in
``tree_entries``. A symbolic link under a tracked directory whose target stays inside the
repository is kept as a link (``"type": "symlink"``, its object the target's text); one that
is absolute or leads out is passed over and said. Unchanged files cost a ``stat`` (the
:class:`~nbversion.catalog.StatCache`), and an unchanged directory adds no new object.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import posixpath
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import xxhash

from . import is_utf8
from ..catalog import Artifact, StatCache
from ..config import Config
from ..errors import UsageProblem
from ..store import ObjectStore, PutResult

#: Directories never walked into.
SKIP_DIRS = frozenset({".git", ".nbversion", "__pycache__", ".ipynb_checkpoints", ".venv", "node_modules"})

#: A manifest entry's ``type`` for a symbolic link (its object holds the target's text).
SYMLINK = "symlink"


def file_mode(stat: os.stat_result) -> int:
    """The permission bits a snapshot records (and a restore gives back) for a file."""
    return stat.st_mode & 0o777


@dataclass(frozen=True)
class Entry:
    """A regular file or a kept symbolic link found under a tracked directory."""

    path: str
    stat: os.stat_result
    #: the link's target, for a symbolic link
    link: str | None = None


@dataclass
class CapturedFiles:
    """Tracked files' artifacts, the entries of their trees, and what was passed over."""

    artifacts: list[Artifact] = field(default_factory=list)
    #: manifest id -> its entries (or a function that reads them, when likely known already)
    tree_entries: dict[str, Any] = field(default_factory=dict)
    paths: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def relative_inside(root: Path, path: str | os.PathLike[str]) -> str:
    """Return *path* (absolute, or relative to the current directory) relative to *root*.

    :raises UsageProblem: when it is not inside *root*.
    """
    resolved = Path(os.path.abspath(path))
    try:
        return resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        raise UsageProblem(f"path {str(path)!r} is outside the repository {root}") from None


def capture(
    root: Path,
    store: ObjectStore,
    config: Config,
    cache: StatCache,
    explicit: list[str] = (),  # type: ignore[assignment]
) -> CapturedFiles:
    """Store the configured and the explicitly named files; return their artifacts.

    :raises UsageProblem: when an explicitly named path does not exist or is outside the repo.
    """
    result = CapturedFiles()
    targets: dict[str, None] = {}
    for pattern in config.track:
        matches = _expand(root, pattern)
        if not matches:
            result.notes.append(f"tracked path {pattern!r} matches nothing")
        targets.update(dict.fromkeys(matches))
    for path in explicit:
        relative = relative_inside(root, path)
        if not os.path.lexists(root / relative):
            raise UsageProblem(f"file {path!r} does not exist")
        targets[_plain(relative, path)] = None
    for relative in targets:
        full = root / relative
        if full.is_symlink():
            result.notes.append(f"{relative} is a symbolic link: not kept (track what it points to)")
        elif full.is_dir():
            _capture_tree(root, relative, store, config, cache, result)
        elif full.is_file():
            stat = os.lstat(full)
            put = _store_file(root, relative, store, cache, stat)
            result.paths.add(relative)
            result.artifacts.append(
                Artifact(
                    kind=config.kind_of_file(relative), source="file", name=relative, path=relative,
                    type="file", codec="file", object_id=put.object_id, size=put.size,
                    new_bytes=put.size if put.new else 0, summary={"mode": file_mode(stat)},
                )
            )
    cache.save()
    return result


def _plain(relative: str, said: str) -> str:
    """The canonical form of a repository-relative path (``./data/`` -> ``data``).

    :raises UsageProblem: for the repository root itself, or a path inside ``.git``/``.nbversion``.
    """
    plain = posixpath.normpath(relative)
    if plain in (".", ""):
        raise UsageProblem(f"cannot track {said!r}, the whole repository: name its data and model directories")
    if plain.split("/", 1)[0] in (".git", ".nbversion"):
        raise UsageProblem(f"cannot track {said!r}: it is inside {plain.split('/', 1)[0]}/")
    return plain


def _expand(root: Path, pattern: str) -> list[str]:
    if os.path.isabs(pattern) or ".." in PurePosixPath(pattern).parts:
        raise UsageProblem(f"tracked path {pattern!r} must be relative to the repository, without '..'")
    if any(c in pattern for c in "*?["):
        matches = sorted(glob.glob(pattern, root_dir=root, recursive=True))
        return [_plain(m, m) for m in matches if not any(part in SKIP_DIRS for part in PurePosixPath(m).parts)]
    return [_plain(pattern, pattern)] if os.path.lexists(root / pattern) else []


def _store_file(
    root: Path, relative: str, store: ObjectStore, cache: StatCache, stat: os.stat_result | None = None,
    check_exists: bool = True,
) -> PutResult:
    """Store one file, unless the stat cache knows its object (then it costs nothing more).

    With *check_exists* off, a cache hit is trusted without looking in the store; the caller
    checks later, when it matters (a directory whose manifest is new).
    """
    full = os.path.join(root, relative)
    stat = stat or os.lstat(full)
    object_id = cache.lookup(relative, stat)
    if object_id is not None and (not check_exists or store.exists(object_id)):
        return PutResult(object_id, stat.st_size, False)
    put = store.put_file(full)
    after = os.lstat(full)
    if (after.st_size, after.st_mtime_ns, after.st_ino) == (stat.st_size, stat.st_mtime_ns, stat.st_ino):
        cache.record(relative, stat, put.object_id)  # never cache a file that changed under us
    return put


def walk(root: Path, relative: str, notes: list[str] | None = None) -> list[Entry]:
    """Every regular file and every kept symbolic link under *relative* (SKIP_DIRS left
    out), sorted by path: what a snapshot of the directory holds.

    A name that is not valid UTF-8 cannot be recorded in the catalog, and a link that is
    absolute or leads out of the repository is not kept: each is passed over and said in
    *notes*. Links are never followed.
    """
    found: list[Entry] = []
    real_root = os.path.realpath(root)
    stack = [relative]
    while stack:
        directory = stack.pop()
        with os.scandir(os.path.join(root, directory)) as entries:
            for entry in entries:
                path = f"{directory}/{entry.name}"
                if not is_utf8(path):
                    if notes is not None:
                        notes.append(f"{path.encode('utf-8', 'surrogateescape')!r}: not valid UTF-8, not kept")
                    continue
                if entry.is_symlink():
                    target = _kept_link(real_root, root, path, notes)
                    if target is not None:
                        found.append(Entry(path, entry.stat(follow_symlinks=False), target))
                elif entry.is_dir(follow_symlinks=False):
                    if entry.name not in SKIP_DIRS:
                        stack.append(path)
                elif entry.is_file(follow_symlinks=False):
                    found.append(Entry(path, entry.stat(follow_symlinks=False)))
    found.sort(key=lambda item: item.path)
    return found


def _kept_link(real_root: str, root: Path, path: str, notes: list[str] | None) -> str | None:
    """The target of the symbolic link *path* if a snapshot keeps it: relative, valid UTF-8,
    and leading (through any other links) to a place inside the repository, not into
    ``.git`` or ``.nbversion``; else ``None``, said in *notes*."""
    full = os.path.join(root, path)
    try:
        target = os.readlink(full)
    except OSError as exc:  # gone since the listing
        why = f"cannot be read ({exc.strerror})"
    else:
        if not is_utf8(target):
            why = "its target is not valid UTF-8"
        elif os.path.isabs(target):
            why = f"its target {target!r} is an absolute path"
        else:
            destination = os.path.realpath(full)
            inside = destination == real_root or destination.startswith(real_root.rstrip("/") + "/")
            parts = PurePosixPath(os.path.relpath(destination, real_root)).parts if inside else ()
            if not inside:
                why = f"its target {target!r} leads outside the repository"
            elif ".git" in parts or parts[:1] == (".nbversion",):
                why = f"its target {target!r} leads into {'.git' if '.git' in parts else '.nbversion'}/"
            else:
                return target
    if notes is not None:
        notes.append(f"{path} is a symbolic link: not kept, {why}")
    return None


def _stat_digest(files: list[Entry]) -> str:
    """A fingerprint of a directory's listing and every file's stat (its mode included) and
    link target: equal means unchanged (by the same rule as the stat cache, for all files
    at once)."""
    listing = "\0".join(
        f"{e.path}\0{e.stat.st_ino}\0{e.stat.st_size}\0{e.stat.st_mtime_ns}\0{e.stat.st_ctime_ns}"
        f"\0{e.stat.st_mode}\0{e.link if e.link is not None else ''}"
        for e in files
    )
    return xxhash.xxh3_128_hexdigest(listing.encode("utf-8", "surrogateescape"))


def _store_entry(root: Path, entry: Entry, store: ObjectStore, cache: StatCache, check_exists: bool = True) -> PutResult:
    """Store one file (see :func:`_store_file`), or a link's target text."""
    if entry.link is not None:
        return store.put_bytes(entry.link.encode("utf-8"))
    return _store_file(root, entry.path, store, cache, entry.stat, check_exists=check_exists)


def _capture_tree(
    root: Path, relative: str, store: ObjectStore, config: Config, cache: StatCache, result: CapturedFiles
) -> None:
    files = walk(root, relative, result.notes)
    digest = _stat_digest(files)
    remembered = cache.recall(f"tree:{relative}")
    if (
        remembered
        and remembered["digest"] == digest
        and store.exists(remembered["artifact"]["object_id"])
        and store.all_exist(remembered["objects"])  # never vouch for objects deleted by hand
    ):
        # Nothing under the directory changed since the last snapshot on this machine.
        artifact = Artifact(**{**remembered["artifact"], "new_bytes": 0})
        result.paths.update(entry.path for entry in files)
        result.artifacts.append(artifact)
        # The catalog lists this manifest's entries already, unless it is a new catalog.
        result.tree_entries[artifact.object_id] = lambda: json.loads(store.read_bytes(artifact.object_id))
        return
    puts = [_store_entry(root, entry, store, cache, check_exists=False) for entry in files]

    def manifest_of(puts: list[PutResult]) -> list[dict[str, Any]]:
        return [
            {
                "path": entry.path, "object_id": put.object_id, "size": put.size, "kind": config.kind_of_file(entry.path),
                **({"type": SYMLINK} if entry.link is not None else {"mode": file_mode(entry.stat)}),
            }
            for entry, put in zip(files, puts)
        ]

    entries = manifest_of(puts)
    manifest = store.put_bytes(json.dumps(entries, separators=(",", ":")).encode())
    vouched = [put.object_id for put in puts if not put.new]
    if not store.all_exist(vouched):
        # The cache vouched for a file whose object is gone (deleted by hand): store it again.
        repaired = [
            put if put.new or store.exists(put.object_id) else _store_entry(root, entry, store, cache)
            for entry, put in zip(files, puts)
        ]
        if repaired != puts:
            puts, entries = repaired, manifest_of(repaired)
            manifest = store.put_bytes(json.dumps(entries, separators=(",", ":")).encode())
    result.paths.update(entry.path for entry in files)
    kinds = Counter(e["kind"] for e in entries)
    kind = config.kind_of_file(relative + "/x") if not kinds else kinds.most_common(1)[0][0]
    total = sum(e["size"] for e in entries)
    new_bytes = sum(put.size for put in puts if put.new)
    result.tree_entries[manifest.object_id] = entries
    artifact = Artifact(
        kind=kind, source="file", name=relative, path=relative, type="directory", codec="tree",
        object_id=manifest.object_id, size=total, object_size=manifest.size,
        new_bytes=new_bytes + (manifest.size if manifest.new else 0),
        summary={"files": len(entries), "bytes": total, "kinds": dict(kinds)},
    )
    result.artifacts.append(artifact)
    if _stat_digest(walk(root, relative)) == digest:  # remember it only if nothing moved while we read
        cache.remember(
            f"tree:{relative}",
            {"digest": digest, "artifact": dataclasses.asdict(artifact), "objects": sorted({e["object_id"] for e in entries})},
        )
