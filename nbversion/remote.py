"""Remotes: where a team's object bytes live — any fsspec URL (a shared directory, ``s3://``,
``gs://``, ...) — and moving objects there and back.

The list of remotes is committed with the catalog (``.nbversion/remotes.json``), so a clone
knows where to pull from; credentials are never stored by nbversion (fsspec and boto find them
the usual ways: environment, ``~/.aws``, instance roles). Every object is verified against its
id on the way in *and* on the way out: a corrupt local object is never pushed, a corrupt remote
object is never accepted.

Which remotes are *trusted* (their pickles load without ``--trust``) is not in that committed
file, where anyone who can push could plant it: it is machine-local, in ``.nbversion/state.db``
(:class:`nbversion.catalog.StatCache`), keyed by :meth:`Remotes.location`. A transfer reports
the ids it copied (:attr:`Transfer.copied_ids`) so the caller can record where they came from.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CorruptObject, MissingObject, UsageProblem
from .store import CHUNK_SIZE, ObjectStore, new_hasher

REMOTES_FILE = "remotes.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")

#: Transfers run this many objects at a time (network stores like many requests in flight).
JOBS = 8


@dataclass
class Remotes:
    """The configured remotes of a repository and which one is the default."""

    path: Path
    urls: dict[str, str] = field(default_factory=dict)
    default: str | None = None

    @classmethod
    def load(cls, nbversion_dir: Path) -> Remotes:
        path = nbversion_dir / REMOTES_FILE
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text())
            return cls(path, dict(data.get("remotes", {})), data.get("default"))
        except (ValueError, AttributeError) as exc:
            raise UsageProblem(f"{path} cannot be read: {exc}") from None

    def save(self) -> None:
        self.path.parent.mkdir(exist_ok=True)
        self.path.write_text(json.dumps({"default": self.default, "remotes": self.urls}, indent=2) + "\n")

    def add(self, name: str, url: str, *, default: bool = False) -> None:
        """Add a remote (the first one becomes the default).

        :raises UsageProblem: a bad or taken name, or a URL no fsspec filesystem handles.
        """
        if not _NAME_RE.match(name):
            raise UsageProblem(f"remote name {name!r} is not valid: use letters, digits, '_', '-', '.'")
        if name in self.urls:
            raise UsageProblem(f"remote {name!r} exists already ({self.urls[name]}); remove it first")
        if urllib.parse.urlsplit(url).password is not None:  # user:password@host (a user alone is fine)
            raise UsageProblem(
                f"remote URL for {name!r} has credentials in it, and remotes.json is committed: "
                "give them to fsspec/boto the usual way (environment, ~/.aws, a profile) instead"
            )
        _filesystem(url, self.path.parent.parent)  # fail now, not at the first push
        self.urls[name] = url
        if default or self.default is None:
            self.default = name

    def remove(self, name: str) -> None:
        if name not in self.urls:
            raise UsageProblem(f"remote {name!r} does not exist")
        del self.urls[name]
        if self.default == name:
            self.default = next(iter(self.urls), None)

    def location(self, name: str, root: Path) -> str:
        """The URL of remote *name* as trust is keyed by: a directory made absolute.

        :raises UsageProblem: when there is no such remote.
        """
        if name not in self.urls:
            raise UsageProblem(f"remote {name!r} does not exist")
        return _absolute(self.urls[name], root)

    def store(self, name: str | None, root: Path) -> ObjectStore:
        """The object store of remote *name* (default: the default remote).

        :raises UsageProblem: when there is no such remote, or none at all.
        """
        name = name or self.default
        if name is None:
            raise UsageProblem("no remote is configured: nbversion remote add NAME URL")
        if name not in self.urls:
            raise UsageProblem(f"remote {name!r} does not exist")
        fs, path = _filesystem(self.urls[name], root)
        return ObjectStore(fs, path)


def _absolute(url: str, root: Path) -> str:
    if "://" not in url and not os.path.isabs(url):
        return str((root / url).resolve())  # a relative directory is relative to the repository
    return url


def _filesystem(url: str, root: Path) -> tuple[Any, str]:
    import fsspec

    url = _absolute(url, root)
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise UsageProblem(f"remote URL {url!r} cannot be used: {exc}") from None
    return fs, path


@dataclass
class Transfer:
    """What a push or a pull moved."""

    copied: int = 0
    copied_bytes: int = 0
    present: int = 0
    missing: list[str] = field(default_factory=list)  # ids the source does not have
    copied_ids: list[str] = field(default_factory=list)  # ids copied into the target, which lacked them


def copy_object(source: ObjectStore, target: ObjectStore, object_id: str, size: int | None = None) -> int:
    """Copy one object, re-hashing it as it goes; return the bytes copied.

    :raises MissingObject: when *source* lacks it.
    :raises CorruptObject: when its bytes do not hash to its id (nothing is kept then).
    """
    path = source.path(object_id)
    try:
        file = source.fs.open(path, "rb")
    except FileNotFoundError:
        raise MissingObject(f"object {object_id} is missing from {source.root}") from None

    def copy(out: Any) -> None:
        with file:
            while data := file.read(CHUNK_SIZE):
                out.write(data)

    put = target.put_stream(copy, size=size)
    if put.object_id != object_id:
        if put.new:
            target.delete(put.object_id)
        raise CorruptObject(f"object {object_id} is corrupt in {source.root}: its bytes hash to {put.object_id[:16]}...")
    return put.size


def transfer(
    source: ObjectStore,
    target: ObjectStore,
    objects: dict[str, int],
    *,
    present: Iterable[str] | None = None,
    progress: Callable[[int], Any] | None = None,
) -> Transfer:
    """Copy every object of *objects* (id -> size) that *target* lacks, several at a time.

    Between a local store and a network one (S3, GCS, ...), objects move in batches through
    fsspec's concurrent ``put``/``get``: each object is verified locally (before upload,
    after download), and a download lands under its final name only once verified. A network
    store's single PUT is atomic, so an interrupted push leaves nothing partial there either.
    Re-running after a failure copies only what is still missing.
    """
    known = set(present) if present is not None else None
    todo = [oid for oid in sorted(objects) if (oid not in known if known is not None else not target.exists(oid))]
    result = Transfer(present=len(objects) - len(todo))
    if source._local and not target._local:
        return _push_batches(source, target, todo, objects, result, progress)
    if target._local and not source._local:
        return _pull_batches(source, target, todo, objects, result, progress)

    def one(object_id: str) -> tuple[str, int | None]:
        try:
            size = copy_object(source, target, object_id, objects[object_id] or None)
        except MissingObject:
            return object_id, None
        if progress is not None:
            progress(size)
        return object_id, size

    with ThreadPoolExecutor(JOBS) as pool:
        for object_id, size in pool.map(one, todo):
            if size is None:
                result.missing.append(object_id)
            else:
                result.copied_ids.append(object_id)
                result.copied += 1
                result.copied_bytes += size
    return result


def listing(store: ObjectStore) -> set[str]:
    """Every object id in *store*, from one listing (far cheaper than asking one by one)."""
    return {object_id for object_id, _, _ in store.iter_objects()}


#: Objects per fsspec batch call (one progress step), and requests in flight within one.
#: fsspec's default (1,280 in flight) is slower than a few dozen against the servers we
#: measured: 3,000 4 KiB objects to a localhost S3, 32 in flight: 1.3x the PUTs/s, 1.5x the GETs/s.
BATCH = 1000
IN_FLIGHT = 32
#: Objects this large are pulled one at a time as a stream, hashed as they are written: for one
#: 512 MiB object from a localhost S3, 10% faster than downloading first and hashing after.
STREAM_MIN = 64 * 1024 * 1024


def _batching(store: ObjectStore) -> dict[str, int]:
    """fsspec's batch_size for async filesystems (the sync ones take no such argument)."""
    from fsspec.asyn import AsyncFileSystem

    return {"batch_size": IN_FLIGHT} if isinstance(store.fs, AsyncFileSystem) else {}


def _push_batches(
    source: ObjectStore, target: ObjectStore, todo: list[str], sizes: dict[str, int], result: Transfer,
    progress: Callable[[int], Any] | None,
) -> Transfer:
    with ThreadPoolExecutor(JOBS) as pool:
        verdicts = list(pool.map(source.problem, todo))
    corrupt = [oid for oid, verdict in zip(todo, verdicts) if verdict == "corrupt"]
    if corrupt:
        raise CorruptObject(f"object {corrupt[0]} is corrupt here: not pushed (nbversion check lists all)")
    result.missing = [oid for oid, verdict in zip(todo, verdicts) if verdict == "missing"]
    good = [oid for oid, verdict in zip(todo, verdicts) if verdict is None]
    for start in range(0, len(good), BATCH):
        batch = good[start : start + BATCH]
        target.fs.put([source.path(oid) for oid in batch], [target.path(oid) for oid in batch], **_batching(target))
        moved = sum(os.path.getsize(source.path(oid)) for oid in batch)
        result.copied_ids += batch
        result.copied += len(batch)
        result.copied_bytes += moved
        if progress is not None:
            progress(moved)
    return result


def _pull_batches(
    source: ObjectStore, target: ObjectStore, todo: list[str], sizes: dict[str, int], result: Transfer,
    progress: Callable[[int], Any] | None,
) -> Transfer:
    import uuid

    available = {object_id: size for object_id, size, _ in source.iter_objects()}
    result.missing = [oid for oid in todo if oid not in available]
    wanted = [oid for oid in todo if oid in available and available[oid] < STREAM_MIN]
    tmp = Path(target.root) / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    corrupt: list[str] = []
    for object_id in (oid for oid in todo if available.get(oid, 0) >= STREAM_MIN):
        # Large objects stream in, hashed while they are written (not read twice).
        try:
            size = copy_object(source, target, object_id, available[object_id])
        except CorruptObject:
            corrupt.append(object_id)
            continue
        result.copied_ids.append(object_id)
        result.copied += 1
        result.copied_bytes += size
        if progress is not None:
            progress(size)
    for start in range(0, len(wanted), BATCH):
        batch = wanted[start : start + BATCH]
        temps = [str(tmp / f"{uuid.uuid4().hex}.pull") for _ in batch]
        try:
            source.fs.get([source.path(oid) for oid in batch], temps, **_batching(source))

            def settle(pair: tuple[str, str]) -> int:
                object_id, temp = pair
                hasher = new_hasher()
                with open(temp, "rb") as file:
                    while data := file.read(CHUNK_SIZE):
                        hasher.update(data)
                if hasher.hexdigest() != object_id:
                    corrupt.append(object_id)
                    return 0
                final = Path(target.path(object_id))
                final.parent.mkdir(parents=True, exist_ok=True)
                size = os.path.getsize(temp)
                os.replace(temp, final)
                result.copied_ids.append(object_id)
                return size

            with ThreadPoolExecutor(JOBS) as pool:
                moved = list(pool.map(settle, zip(batch, temps)))
        finally:
            for temp in temps:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
        result.copied += sum(1 for size in moved if size)
        result.copied_bytes += sum(moved)
        if progress is not None:
            progress(sum(moved))
    if corrupt:
        raise CorruptObject(f"object {corrupt[0]} is corrupt in {source.root}: not accepted")
    return result
