"""Write a snapshot's files back into the work tree, safely.

Every file is loaded and verified into a temporary file beside its target before any target
is touched; then each is renamed into place. Nothing is written outside the repository root:
paths that are absolute or contain ``..`` are refused by name, and so is any path that leads
through a symlink out of the root or into a ``.git`` or ``.nbversion`` directory, and a
directory manifest that is not well formed. A file whose current content no snapshot holds is never
overwritten unless the caller forces it.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR, S_ISREG
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

from .catalog import Catalog, StatCache
from .errors import UsageProblem
from .store import CHUNK_SIZE, ObjectStore, new_hasher


@dataclass(frozen=True)
class PlannedFile:
    """One file to restore: where it goes and which object it gets."""

    path: str
    object_id: str
    size: int


def safe_target(root: Path, path: str, _checked: dict[str, Path] | None = None) -> Path:
    """Return where *path* (from the catalog) lands under *root*, or refuse it by name.

    *_checked* caches the directories already found safe, for restoring many files.

    :raises UsageProblem: for an absolute path, a ``..`` component, or a symlink that leads
        outside the root.
    """
    if not path or "\0" in path or path.startswith("/") or os.path.isabs(path):
        raise UsageProblem(f"refusing to restore file {path!r}: not a plain path inside the repository")
    parts = path.split("/")
    if ".." in parts or "" in parts or "." in parts:
        raise UsageProblem(f"refusing to restore file {path!r}: not a plain path inside the repository")
    if (inside := _private(parts)) is not None:
        raise UsageProblem(f"refusing to restore file {path!r}: it is inside {inside}/")
    checked = {} if _checked is None else _checked
    real_root = checked.get("") or root.resolve()
    checked[""] = real_root
    parent = "/".join(parts[:-1])
    if parent not in checked:
        try:
            resolved = (root / parent).resolve() if parent else real_root
        except (RuntimeError, OSError) as exc:  # a symlink loop
            raise UsageProblem(f"refusing to restore file {path!r}: {exc}") from None
        if resolved != real_root and real_root not in resolved.parents:
            raise UsageProblem(f"refusing to restore file {path!r}: it leads outside the repository through a symlink")
        if (inside := _private(resolved.relative_to(real_root).parts)) is not None:
            raise UsageProblem(f"refusing to restore file {path!r}: it is inside {inside}/ through a symlink")
        checked[parent] = resolved
    target = root.joinpath(*parts)
    if os.path.islink(target):
        try:
            resolved = target.resolve()
        except (RuntimeError, OSError) as exc:
            raise UsageProblem(f"refusing to restore file {path!r}: {exc}") from None
        if resolved != real_root and real_root not in resolved.parents:
            raise UsageProblem(f"refusing to restore file {path!r}: it leads outside the repository through a symlink")
    return target


def _private(parts: Sequence[str]) -> str | None:
    """The directory of *parts* nbversion never writes into: any ``.git`` (its config and hooks
    can run commands, a nested repository's too), or the root's ``.nbversion``."""
    if ".git" in parts:
        return ".git"
    return ".nbversion" if parts and parts[0] == ".nbversion" else None


def plan(catalog: Catalog, store: ObjectStore, artifacts: list[dict[str, Any]]) -> list[PlannedFile]:
    """Expand a snapshot's file artifacts (files and directory manifests) into files.

    :raises UsageProblem: for a manifest that is not one, or paths that cannot all be files
        (one twice with different contents, a file where another needs a directory).
    """
    planned: list[PlannedFile] = []
    for artifact in artifacts:
        if artifact["codec"] == "file" and artifact["object_id"]:
            planned.append(_planned(artifact, f"file {artifact['path']!r}: its catalog row"))
        elif artifact["codec"] == "tree":
            what = f"directory {artifact['path']!r}: its manifest {artifact['object_id']}"
            try:
                entries = json.loads(store.read_bytes(artifact["object_id"]))
            except ValueError as exc:
                raise UsageProblem(f"refusing to restore {what} is malformed ({exc})") from None
            if not isinstance(entries, list):
                raise UsageProblem(f"refusing to restore {what} is malformed (not a list)")
            planned.extend(_planned(entry, what) for entry in entries)
    return _without_conflicts(planned)


def _planned(entry: Any, what: str) -> PlannedFile:
    """A manifest entry or file artifact as a :class:`PlannedFile`, if it is well formed."""
    try:
        path, object_id, size = entry["path"], entry["object_id"], entry["size"]
    except (KeyError, TypeError, IndexError):
        path = object_id = size = None
    if isinstance(path, str) and isinstance(object_id, str) and type(size) is int and size >= 0:
        return PlannedFile(path, object_id, size)
    raise UsageProblem(f"refusing to restore {what} is malformed (an entry lacks a path, object id or size)")


def _without_conflicts(planned: list[PlannedFile]) -> list[PlannedFile]:
    """*planned* without repeats; refuse paths that cannot all be written."""
    by_path: dict[str, PlannedFile] = {}
    for file in planned:
        if by_path.setdefault(file.path, file).object_id != file.object_id:
            raise UsageProblem(f"refusing to restore file {file.path!r}: the snapshot names it twice, with different contents")
    for path in by_path:
        parts = path.split("/")
        for end in range(1, len(parts)):
            if (prefix := "/".join(parts[:end])) in by_path:
                raise UsageProblem(f"refusing to restore file {path!r}: {prefix!r} is a file in the same snapshot")
    return list(by_path.values())


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


class StagedFiles:
    """Files loaded and verified into temporary files beside their targets, ready to be
    renamed into place by :meth:`commit`. Use it as a context manager: whatever was not
    committed is removed on the way out."""

    def __init__(self, work: list[tuple[PlannedFile, Path]]) -> None:
        self.paths = [planned.path for planned, _ in work]
        self._staged: list[tuple[str, Path]] = []
        self._work = work

    def stage(self, store: ObjectStore) -> None:
        made: set[Path] = set()
        for planned, target in self._work:
            if target.parent not in made:
                target.parent.mkdir(parents=True, exist_ok=True)
                made.add(target.parent)
            temp = f"{target.parent}/.{target.name}.nbversion-{uuid.uuid4().hex[:8]}.tmp"
            self._staged.append((temp, target))
            _write_verified(store, planned, temp)

    def commit(self) -> list[str]:
        """Rename every staged file into place (run it under :func:`interrupts.deferred`,
        so a Ctrl-C cannot stop it halfway); return the paths that changed."""
        while self._staged:
            temp, target = self._staged[-1]
            os.replace(temp, target)
            self._staged.pop()
        return self.paths

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for temp, _ in self._staged:  # only what was not renamed into place
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)


def stage_files(
    root: Path,
    catalog: Catalog,
    store: ObjectStore,
    cache: StatCache,
    files: list[PlannedFile],
    *,
    force: bool = False,
) -> StagedFiles:
    """Check *files* can be written into the work tree and stage them beside their targets.

    :raises UsageProblem: for unsafe paths, or files with unsaved work (unless *force*).
    :raises ObjectError: when an object is missing or corrupt (nothing is staged then).
    """
    work: list[tuple[PlannedFile, Path]] = []
    unsaved: list[str] = []
    checked: dict[str, Path] = {}
    for planned in files:
        target = safe_target(root, planned.path, checked)
        try:
            stat = os.lstat(target)
        except FileNotFoundError:
            work.append((planned, target))
            continue
        if S_ISDIR(stat.st_mode):
            raise UsageProblem(f"refusing to restore file {planned.path!r}: a directory is in its place")
        if S_ISREG(stat.st_mode):
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
    staged = StagedFiles(work)
    try:
        staged.stage(store)
    except BaseException:
        staged.__exit__(None, None, None)
        raise
    return staged


def _write_verified(store: ObjectStore, planned: PlannedFile, temp: str) -> None:
    """Copy one object into the file *temp*, verifying every byte against its id."""
    if planned.size <= CHUNK_SIZE:
        data = store.read_bytes(planned.object_id)
        with open(temp, "wb") as out:
            out.write(data)
        return
    with store.open(planned.object_id) as reader, open(temp, "wb") as out:
        with contextlib.suppress(OSError):
            os.posix_fallocate(out.fileno(), 0, planned.size)  # as numpy.save does: faster writes
        written = reader.copy_to(out)
        reader.verify()
        out.truncate(written)
