"""Write a snapshot's files back into the work tree, safely.

Every file is loaded and verified into a temporary file beside its target (with its recorded
permission bits, or a symbolic link with its recorded target) before any target is touched;
then each is renamed into place, so no link is ever written through. Nothing is written
outside the repository root: paths that are absolute or contain ``..`` are refused by name,
and so is any path that leads through a symlink out of the root or into a ``.git`` or
``.nbversion`` directory, a link whose target would lead there, and a directory manifest that
is not well formed. A file whose current content no snapshot holds is never overwritten, nor
removed (``exact``), unless the caller forces it.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from stat import S_IMODE, S_ISDIR, S_ISLNK, S_ISREG
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

from .capture import files as capture_files
from .catalog import Catalog, StatCache
from .errors import UsageProblem
from .store import CHUNK_SIZE, ObjectStore, hash_buffers, new_hasher

#: How many symbolic links one target may pass through (as Linux's MAXSYMLINKS).
_MAX_HOPS = 40


@dataclass(frozen=True)
class PlannedFile:
    """One file to restore: where it goes and which object it gets."""

    path: str
    object_id: str
    size: int
    #: its permission bits; ``None`` for a record made before modes were kept (the umask decides)
    mode: int | None = None
    #: a symbolic link, whose object holds the target's text
    link: bool = False
    #: the tracked directory it belongs to (``None`` for a tracked file)
    tree: str | None = None

    def same_contents(self, other: PlannedFile) -> bool:
        return (self.object_id, self.mode, self.link) == (other.object_id, other.mode, other.link)


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
        resolved = Path(os.path.realpath(target))  # a loop leads nowhere: the link is renamed over
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
            summary = artifact.get("summary")
            entry = {key: artifact[key] for key in ("path", "object_id", "size")}
            if isinstance(summary, dict) and "mode" in summary:
                entry["mode"] = summary["mode"]
            planned.append(_planned(entry, f"file {artifact['path']!r}: its catalog row"))
        elif artifact["codec"] == "tree":
            what = f"directory {artifact['path']!r}: its manifest {artifact['object_id']}"
            try:
                entries = json.loads(store.read_bytes(artifact["object_id"]))
            except ValueError as exc:
                raise UsageProblem(f"refusing to restore {what} is malformed ({exc})") from None
            if not isinstance(entries, list):
                raise UsageProblem(f"refusing to restore {what} is malformed (not a list)")
            tree = artifact["path"] if isinstance(artifact["path"], str) else None
            planned.extend(_planned(entry, what, tree) for entry in entries)
    return _without_conflicts(planned)


def _planned(entry: Any, what: str, tree: str | None = None) -> PlannedFile:
    """A manifest entry or file artifact as a :class:`PlannedFile`, if it is well formed."""
    try:
        path, object_id, size = entry["path"], entry["object_id"], entry["size"]
    except (KeyError, TypeError, IndexError):
        path = object_id = size = None
    if not (isinstance(path, str) and isinstance(object_id, str) and type(size) is int and size >= 0):
        raise UsageProblem(f"refusing to restore {what} is malformed (an entry lacks a path, object id or size)")
    kind, mode = entry.get("type"), entry.get("mode")
    if kind not in (None, capture_files.SYMLINK):
        raise UsageProblem(f"refusing to restore {what} is malformed (entry {path!r} has an unknown type {kind!r})")
    if mode is not None and not (type(mode) is int and 0 <= mode <= 0o777):
        raise UsageProblem(f"refusing to restore {what} is malformed (entry {path!r} has a mode that is not permission bits)")
    if kind == capture_files.SYMLINK:
        return PlannedFile(path, object_id, size, link=True, tree=tree)
    return PlannedFile(path, object_id, size, mode, tree=tree)


def _without_conflicts(planned: list[PlannedFile]) -> list[PlannedFile]:
    """*planned* without repeats; refuse paths that cannot all be written."""
    by_path: dict[str, PlannedFile] = {}
    for file in planned:
        if not by_path.setdefault(file.path, file).same_contents(file):
            raise UsageProblem(f"refusing to restore file {file.path!r}: the snapshot names it twice, with different contents")
    for path in by_path:
        parts = path.split("/")
        for end in range(1, len(parts)):
            if (prefix := "/".join(parts[:end])) in by_path:
                raise UsageProblem(f"refusing to restore file {path!r}: {prefix!r} is a file in the same snapshot")
    return list(by_path.values())


def untracked_in_trees(root: Path, artifacts: list[dict[str, Any]], planned: list[PlannedFile]) -> dict[str, list[str]]:
    """For each tracked directory of a snapshot (its *artifacts*), the files and links in it
    now that the snapshot does not have, as a snapshot would see them (what a snapshot passes
    over — a link leading out, a name that is not UTF-8 — is not counted)."""
    have = {file.path for file in planned}  # grows: a directory tracked inside another counts once
    found: dict[str, list[str]] = {}
    for artifact in artifacts:
        tree = artifact["path"]
        if artifact["codec"] != "tree" or not isinstance(tree, str):
            continue
        try:
            directory = safe_target(root, tree)
        except UsageProblem:
            continue  # any file the manifest names there is refused by name
        if os.path.islink(directory) or not os.path.isdir(directory):
            continue
        extra = [entry.path for entry in capture_files.walk(root, tree) if entry.path not in have]
        have.update(extra)
        if extra:
            found[tree] = extra
    return found


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

    def __init__(
        self, root: Path, work: list[tuple[PlannedFile, Path, str | None]], remove: Sequence[tuple[str, Path, str]] = (),
    ) -> None:
        self.paths = [planned.path for planned, _, _ in work]
        #: the files and links :meth:`commit` removes (``exact``)
        self.removed = [path for path, _, _ in remove]
        self._root = root
        self._staged: list[tuple[str, Path]] = []
        self._work = work
        self._remove = list(remove)

    def stage(self, store: ObjectStore) -> None:
        made: set[Path] = set()
        for planned, target, link in self._work:
            if target.parent not in made:
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:  # a file where the snapshot has a directory
                    raise UsageProblem(
                        f"refusing to restore file {planned.path!r}: cannot make its directory ({exc.strerror})"
                    ) from None
                made.add(target.parent)
            temp = f"{target.parent}/.{target.name}.nbversion-{uuid.uuid4().hex[:8]}.tmp"
            self._staged.append((temp, target))
            if link is not None:
                os.symlink(link, temp)  # the link itself; renamed over whatever is there
            else:
                _write_verified(store, planned, temp)

    def commit(self) -> list[str]:
        """Rename every staged file into place, then remove what *remove* named and the
        directories that leaves empty (run it under :func:`interrupts.deferred`, so a Ctrl-C
        cannot stop it halfway); return the paths that changed."""
        while self._staged:
            temp, target = self._staged[-1]
            os.replace(temp, target)
            self._staged.pop()
        while self._remove:
            _, target, tree = self._remove[-1]
            with contextlib.suppress(FileNotFoundError):
                os.unlink(target)  # a link itself, never what it points to
            parent, top = target.parent, self._root.joinpath(*tree.split("/"))
            while parent != top and top in parent.parents:
                try:
                    os.rmdir(parent)  # only if now empty
                except OSError:
                    break
                parent = parent.parent
            self._remove.pop()
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
    remove: dict[str, list[str]] | None = None,
) -> StagedFiles:
    """Check *files* can be written into the work tree and stage them beside their targets.

    :param remove: tracked directory -> files and links in it to remove (``exact``), as
        :func:`untracked_in_trees` found them.
    :raises UsageProblem: for unsafe paths or link targets, or files with unsaved work to
        overwrite or remove (unless *force*).
    :raises ObjectError: when an object is missing or corrupt (nothing is staged then).
    """
    checked: dict[str, Path] = {}
    targets = [(planned, safe_target(root, planned.path, checked)) for planned in files]
    links = _check_links(root, store, targets, checked)
    work: list[tuple[PlannedFile, Path, str | None]] = []
    unsaved: list[str] = []

    def held(current: str | None) -> bool:
        """Whether a snapshot holds this current content (or it may go anyway)."""
        return force or current is None or catalog.object_is_referenced(current)

    for planned, target in targets:
        link = links.get(planned.path)
        try:
            stat = os.lstat(target)
        except FileNotFoundError:
            work.append((planned, target, link))
            continue
        if S_ISDIR(stat.st_mode):
            raise UsageProblem(f"refusing to restore file {planned.path!r}: a directory is in its place")
        current = _current_object_id(target, planned.path, stat, cache)
        if current == planned.object_id:
            if link is not None and S_ISLNK(stat.st_mode) and os.readlink(target) == link:
                continue
            if not planned.link and S_ISREG(stat.st_mode) and planned.mode in (None, S_IMODE(stat.st_mode)):
                continue
        elif not held(current):
            unsaved.append(planned.path)
        work.append((planned, target, link))
    removing: list[tuple[str, Path, str]] = []
    for tree, paths in (remove or {}).items():
        for path in paths:
            target = safe_target(root, path, checked)
            try:
                stat = os.lstat(target)
            except FileNotFoundError:
                continue
            if S_ISREG(stat.st_mode) or S_ISLNK(stat.st_mode):
                if not held(_current_object_id(target, path, stat, cache)):
                    unsaved.append(path)
                removing.append((path, target, tree))
    cache.save()
    if unsaved:
        shown = ", ".join(unsaved[:5]) + (f" and {len(unsaved) - 5} more" if len(unsaved) > 5 else "")
        raise UsageProblem(
            f"not restoring files: {shown} ha{'s' if len(unsaved) == 1 else 've'} changes no snapshot "
            "holds; snapshot first (%snapshot \"...\" --files PATH) or restore with --force"
        )
    staged = StagedFiles(root, work, removing)
    try:
        staged.stage(store)
    except BaseException:
        staged.__exit__(None, None, None)
        raise
    return staged


def _current_object_id(target: Path, relative: str, stat: os.stat_result, cache: StatCache) -> str | None:
    """The object id of what is at *target* now: a file's bytes, a link's target text
    (``None`` for anything else)."""
    if S_ISREG(stat.st_mode):
        return file_object_id(target, relative, cache)
    if S_ISLNK(stat.st_mode):
        return hash_buffers([os.fsencode(os.readlink(target))])
    return None


def _check_links(
    root: Path, store: ObjectStore, targets: list[tuple[PlannedFile, Path]], checked: dict[str, Path]
) -> dict[str, str]:
    """Read (verified) the target of every link in *targets* and refuse, by name, one that is
    absolute or would lead outside the repository or into ``.git``/``.nbversion`` once
    everything is restored (the catalog is not trusted: its links are resolved as they will
    be, through the restored links and the work tree's own); refuse a file that would be
    written through a link inside a tracked directory, or twice through links.
    Return path -> target of the links."""
    real_root = checked.get("") or root.resolve()
    physical: dict[str, PlannedFile] = {}  # where each file lands -> it
    overlay: dict[str, str | None] = {}  # where each file lands -> its link target (None: a file)
    links: dict[str, str] = {}
    below: dict[str, bool] = {}  # directory -> whether it is a symbolic link
    for planned, target in targets:
        parts = planned.path.split("/")
        if planned.tree is not None and planned.path.startswith(planned.tree + "/"):
            for end in range(len(planned.tree.split("/")) + 1, len(parts)):
                directory = "/".join(parts[:end])
                if directory not in below:
                    below[directory] = os.path.islink(root / directory)
                if below[directory]:
                    raise UsageProblem(
                        f"refusing to restore file {planned.path!r}: {directory!r} is a symbolic link now, where the "
                        "snapshot has a directory (remove the link first)"
                    )
        lands = _lands(checked, planned.path)
        if (other := physical.setdefault(lands, planned)) is not planned and not other.same_contents(planned):
            raise UsageProblem(
                f"refusing to restore file {planned.path!r}: it is {other.path!r} through a symbolic link, "
                "and the snapshot has other contents for each"
            )
        if planned.link:
            links[planned.path] = _link_target(store, planned)
        overlay[lands] = links.get(planned.path)
    for planned, target in targets:
        if not planned.link:
            continue
        destination = _destination(os.path.dirname(_lands(checked, planned.path)), links[planned.path], overlay)
        if destination is None:
            continue  # a loop of links: it leads nowhere
        inside = destination == str(real_root) or destination.startswith(str(real_root).rstrip("/") + "/")
        if not inside:
            raise UsageProblem(
                f"refusing to restore link {planned.path!r}: its target {links[planned.path]!r} leads outside the repository"
            )
        if (private := _private(Path(destination).relative_to(real_root).parts)) is not None:
            raise UsageProblem(f"refusing to restore link {planned.path!r}: its target {links[planned.path]!r} leads into {private}/")
    return links


def _lands(checked: dict[str, Path], path: str) -> str:
    """Where *path* (passed by :func:`safe_target`, which filled *checked*) lands: its
    directories resolved, not its last component."""
    parent, _, name = path.rpartition("/")
    return os.path.join(checked[parent], name)


def _link_target(store: ObjectStore, planned: PlannedFile) -> str:
    """The target text of the link *planned*, read verified, if it is a relative path."""
    data = store.read_bytes(planned.object_id)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageProblem(f"refusing to restore link {planned.path!r}: its target is not valid UTF-8") from None
    if not text or "\0" in text:
        raise UsageProblem(f"refusing to restore link {planned.path!r}: its target {text!r} is not a path")
    if text.startswith("/"):
        raise UsageProblem(f"refusing to restore link {planned.path!r}: its target {text!r} is an absolute path")
    return text


def _destination(start: str, target: str, overlay: dict[str, str | None]) -> str | None:
    """Where a link in the directory *start* (a resolved path) to *target* leads, resolving
    every link on the way as it will be after the restore (*overlay*: path -> the target of
    a link being restored there, or ``None`` for a file being restored there), else as it is
    now, like ``realpath``. ``None`` for a loop."""
    path = start
    pending = list(reversed(target.split("/")))
    hops = 0
    while pending:
        name = pending.pop()
        if name in ("", "."):
            continue
        if name == "..":
            path = os.path.dirname(path)
            continue
        candidate = os.path.join(path, name)
        if candidate in overlay:
            link = overlay[candidate]
        else:
            try:
                link = os.readlink(candidate)
            except OSError:  # not a link, or not there
                link = None
        if link is None:
            path = candidate
            continue
        hops += 1
        if hops > _MAX_HOPS:
            return None
        if link.startswith("/"):
            path = "/"
        pending.extend(reversed(link.split("/")))
    return path


def _write_verified(store: ObjectStore, planned: PlannedFile, temp: str) -> None:
    """Copy one object into the new file *temp*, verifying every byte against its id, and
    give it the planned mode (it is never more open than that, nor than 0600, meanwhile)."""
    if planned.size <= CHUNK_SIZE:
        data = store.read_bytes(planned.object_id)
        with _create(temp, planned.mode) as out:
            out.write(data)
            _set_mode(out, planned.mode)
        return
    with store.open(planned.object_id) as reader, _create(temp, planned.mode) as out:
        with contextlib.suppress(OSError):
            os.posix_fallocate(out.fileno(), 0, planned.size)  # as numpy.save does: faster writes
        written = reader.copy_to(out)
        reader.verify()
        out.truncate(written)
        _set_mode(out, planned.mode)


def _create(temp: str, mode: int | None) -> IO[bytes]:
    """A new file (never an existing one, nor through a link) to write; a record without a
    mode gets what the umask gives, as before modes were kept."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    return open(os.open(temp, flags, 0o666 if mode is None else mode & 0o600), "wb")


def _set_mode(out: IO[bytes], mode: int | None) -> None:
    if mode is not None:
        os.fchmod(out.fileno(), mode)
