"""Write a snapshot's files back into the work tree, safely.

Every file is loaded and verified into a temporary file beside its target before any target
is touched; then each is renamed into place. Nothing is written outside the repository root:
paths that are absolute or contain ``..`` are refused by name, and so is any path that leads
through a symlink out of the root. A file whose current content no snapshot holds is never
overwritten unless the caller forces it.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .catalog import Catalog, StatCache
from .errors import UsageProblem
from .store import CHUNK_SIZE, ObjectStore, new_hasher


@dataclass(frozen=True)
class PlannedFile:
    """One file to restore: where it goes and which object it gets."""

    path: str
    object_id: str
    size: int


def safe_target(root: Path, path: str) -> Path:
    """Return where *path* (from the catalog) lands under *root*, or refuse it by name.

    :raises UsageProblem: for an absolute path, a ``..`` component, or a symlink that leads
        outside the root.
    """
    pure = PurePosixPath(path)
    if not path or "\0" in path or pure.is_absolute() or os.path.isabs(path) or ".." in pure.parts:
        raise UsageProblem(f"refusing to restore file {path!r}: not a plain path inside the repository")
    real_root = root.resolve()
    target = root.joinpath(*pure.parts)
    # Resolve what exists of the path: a symlinked directory (or file) must stay inside.
    resolved = target.resolve()
    if resolved != real_root and real_root not in resolved.parents:
        raise UsageProblem(f"refusing to restore file {path!r}: it leads outside the repository through a symlink")
    return target


def plan(catalog: Catalog, store: ObjectStore, artifacts: list[dict[str, Any]]) -> list[PlannedFile]:
    """Expand a snapshot's file artifacts (files and directory manifests) into files."""
    planned: list[PlannedFile] = []
    for artifact in artifacts:
        if artifact["codec"] == "file" and artifact["object_id"]:
            planned.append(PlannedFile(artifact["path"], artifact["object_id"], artifact["size"]))
        elif artifact["codec"] == "tree":
            entries = json.loads(store.read_bytes(artifact["object_id"]))
            planned.extend(PlannedFile(e["path"], e["object_id"], e["size"]) for e in entries)
    return planned


def file_object_id(path: Path, relative: str, cache: StatCache) -> str:
    """Return the object id the file at *path* would have (the stat cache avoids hashing)."""
    stat = path.stat()
    known = cache.lookup(relative, stat)
    if known is not None:
        return known
    hasher = new_hasher()
    with open(path, "rb") as file:
        while data := file.read(CHUNK_SIZE):
            hasher.update(data)
    object_id = hasher.hexdigest()
    cache.record(relative, stat, object_id)
    return object_id


def restore_files(
    root: Path,
    catalog: Catalog,
    store: ObjectStore,
    cache: StatCache,
    files: list[PlannedFile],
    *,
    force: bool = False,
) -> list[str]:
    """Write *files* into the work tree; return the paths that changed.

    :raises UsageProblem: for unsafe paths, or files with unsaved work (unless *force*).
    :raises ObjectError: when an object is missing or corrupt (nothing is written then).
    """
    work: list[tuple[PlannedFile, Path]] = []
    unsaved: list[str] = []
    for planned in files:
        target = safe_target(root, planned.path)
        if target.is_dir() and not target.is_symlink():
            raise UsageProblem(f"refusing to restore file {planned.path!r}: a directory is in its place")
        if target.is_file() and not target.is_symlink():
            current = file_object_id(target, planned.path, cache)
            if current == planned.object_id:
                continue
            if not force and not catalog.object_is_referenced(current):
                unsaved.append(planned.path)
        work.append((planned, target))
    cache.save()
    if unsaved:
        shown = ", ".join(unsaved[:5]) + (f" and {len(unsaved) - 5} more" if len(unsaved) > 5 else "")
        raise UsageProblem(
            f"not restoring files: {shown} ha{'s' if len(unsaved) == 1 else 've'} changes no snapshot "
            "holds; snapshot first (%snapshot \"...\" --files PATH) or restore with --force"
        )
    staged: list[tuple[Path, Path]] = []
    try:
        for planned, target in work:
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.parent / f".{target.name}.nbversion-{uuid.uuid4().hex[:8]}.tmp"
            staged.append((temp, target))
            with store.open(planned.object_id) as reader, open(temp, "wb") as out:
                while data := reader.read(CHUNK_SIZE):
                    out.write(data)
                reader.verify()
        for temp, target in staged:
            os.replace(temp, target)
    finally:
        for temp, _ in staged:
            temp.unlink(missing_ok=True)
    return [planned.path for planned, _ in work]
