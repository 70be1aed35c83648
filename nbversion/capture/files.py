"""Capture tracked files and directories: ``[tool.nbversion] track`` and ``--files``.

A tracked file becomes one artifact. A tracked directory becomes one ``tree`` artifact whose
object is a manifest (JSON: path, object id, size, kind of every file under it); the catalog
also lists a new manifest's entries in ``tree_entries``. Unchanged files cost a ``stat``
(the :class:`~nbversion.catalog.StatCache`), and an unchanged directory adds no new object.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..catalog import Artifact, StatCache
from ..config import Config
from ..errors import UsageProblem
from ..store import ObjectStore, PutResult

#: Directories never walked into.
SKIP_DIRS = frozenset({".git", ".nbversion", "__pycache__", ".ipynb_checkpoints", ".venv", "node_modules"})


@dataclass
class CapturedFiles:
    """Tracked files' artifacts, the entries of their trees, and what was passed over."""

    artifacts: list[Artifact] = field(default_factory=list)
    tree_entries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
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
        if not (root / relative).exists():
            raise UsageProblem(f"file {path!r} does not exist")
        targets[relative] = None
    for relative in targets:
        full = root / relative
        if full.is_dir():
            _capture_tree(root, relative, store, config, cache, result)
        elif full.is_file():
            entry = _store_file(root, relative, store, cache)
            if entry is None:
                continue
            put, size = entry
            result.paths.add(relative)
            result.artifacts.append(
                Artifact(
                    kind=config.kind_of_file(relative), source="file", name=relative, path=relative,
                    type="file", codec="file", object_id=put.object_id, size=size,
                    new_bytes=size if put.new else 0,
                )
            )
    cache.save()
    return result


def _expand(root: Path, pattern: str) -> list[str]:
    if os.path.isabs(pattern) or ".." in PurePosixPath(pattern).parts:
        raise UsageProblem(f"tracked path {pattern!r} must be relative to the repository, without '..'")
    if any(c in pattern for c in "*?["):
        matches = sorted(glob.glob(pattern, root_dir=root, recursive=True))
        return [m for m in matches if not any(part in SKIP_DIRS for part in PurePosixPath(m).parts)]
    return [pattern.rstrip("/")] if (root / pattern).exists() else []


def _store_file(root: Path, relative: str, store: ObjectStore, cache: StatCache) -> tuple[Any, int] | None:
    full = root / relative
    stat = full.lstat()
    object_id = cache.lookup(relative, stat)
    if object_id is not None and store.exists(object_id):
        return PutResult(object_id, stat.st_size, False), stat.st_size
    put = store.put_file(full)
    after = full.lstat()
    if (after.st_size, after.st_mtime_ns) == (stat.st_size, stat.st_mtime_ns):
        cache.record(relative, stat, put.object_id)  # never cache a file that moved under us
    return put, put.size


def _capture_tree(
    root: Path, relative: str, store: ObjectStore, config: Config, cache: StatCache, result: CapturedFiles
) -> None:
    entries = []
    new_bytes = 0
    for directory, dirnames, filenames in os.walk(root / relative):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not os.path.islink(os.path.join(directory, d)))
        for filename in sorted(filenames):
            full = Path(directory) / filename
            if full.is_symlink() or not full.is_file():
                continue
            path = full.relative_to(root).as_posix()
            put, size = _store_file(root, path, store, cache)  # type: ignore[misc]
            new_bytes += size if put.new else 0
            entries.append({"path": path, "object_id": put.object_id, "size": size, "kind": config.kind_of_file(path)})
            result.paths.add(path)
    manifest = store.put_bytes(json.dumps(entries, separators=(",", ":")).encode())
    kinds = Counter(e["kind"] for e in entries)
    kind = config.kind_of_file(relative + "/x") if not kinds else kinds.most_common(1)[0][0]
    total = sum(e["size"] for e in entries)
    result.tree_entries[manifest.object_id] = entries
    result.artifacts.append(
        Artifact(
            kind=kind, source="file", name=relative, path=relative, type="directory", codec="tree",
            object_id=manifest.object_id, size=total, object_size=manifest.size,
            new_bytes=new_bytes + (manifest.size if manifest.new else 0),
            summary={"files": len(entries), "bytes": total, "kinds": dict(kinds)},
        )
    )
