"""A content-addressed, write-once object store over any fsspec filesystem.

An object's id is the BLAKE3 hash of its bytes (64 hex digits); it lives at
``<root>/<first two digits>/<the other 62>``. Objects are written to a temporary name and
renamed into place, so a reader never sees a partial object under its final name; an object
that is already present is never written again. Every read re-hashes the bytes and refuses
them, naming the object, if they do not match the id.

Change detection: before a buffer-backed value (an array) is BLAKE3-hashed, its bytes get a
128-bit XXH3 fingerprint, about four times faster. A process-local memo maps fingerprints of
bytes already stored to their BLAKE3 ids, so an unchanged array costs one fingerprint and a
``stat``. Ids are always BLAKE3, and every read is verified against them.

Example::

    store = ObjectStore.local(".nbversion/objects")
    put = store.put_bytes(b"hello")
    assert store.read_bytes(put.object_id) == b"hello"
"""

from __future__ import annotations

import errno
import io
import os
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO, Any

import blake3
import fsspec
import xxhash

from .errors import CorruptObject, InvalidObjectId, MissingObject, StoreWriteError

Buffer = bytes | bytearray | memoryview

_OBJECT_ID_RE = re.compile(r"^[0-9a-f]{64}$")

#: Bytes read or written per call when streaming.
CHUNK_SIZE = 16 * 1024 * 1024

#: Buffers at least this large are hashed on another thread while they are written or
#: read, so hashing costs (almost) no time of its own.
OVERLAP_MIN = 1024 * 1024

_overlap_pool: ThreadPoolExecutor | None = None

#: Who to tell about bytes moved (a progress bar), set by :func:`reporting` for a block.
_progress: ContextVar[Callable[[int], Any] | None] = ContextVar("nbversion_progress", default=None)


@contextmanager
def reporting(update: Callable[[int], Any]) -> Iterator[None]:
    """Call *update(n)* for every *n* bytes written or read by stores in this block."""
    token = _progress.set(update)
    try:
        yield
    finally:
        _progress.reset(token)


def _moved(n: int) -> None:
    update = _progress.get()
    if update is not None:
        update(n)


#: Fingerprints of bytes stored by this process -> their object ids (most recent last).
_fingerprints: OrderedDict[bytes, str] = OrderedDict()
_memo_lock = threading.Lock()
FINGERPRINT_MEMO_SIZE = 100_000


def fingerprint(buffers: Iterable[Buffer]) -> bytes:
    """Return the XXH3-128 fingerprint of the concatenated *buffers* (change detection only)."""
    hasher = xxhash.xxh3_128()
    for buffer in buffers:
        hasher.update(buffer)
    return hasher.digest()


def _remember(print_: bytes, object_id: str) -> None:
    _fingerprints[print_] = object_id
    _fingerprints.move_to_end(print_)
    while len(_fingerprints) > FINGERPRINT_MEMO_SIZE:
        _fingerprints.popitem(last=False)


def _hash_beside(update: Callable[[Buffer], Any], data: Buffer, io_call: Callable[[], Any]) -> Any:
    """Run *io_call* while *update(data)* hashes on another thread; return its result."""
    global _overlap_pool
    if memoryview(data).nbytes < OVERLAP_MIN:
        result = io_call()
        update(data)
        return result
    if _overlap_pool is None:
        _overlap_pool = ThreadPoolExecutor(1, thread_name_prefix="nbversion-hash")
    future = _overlap_pool.submit(update, data)
    try:
        return io_call()
    finally:
        future.result()


#: Whether this process is a fork of one that may have started helper threads (see below).
_forked = False


def _after_fork_in_child() -> None:
    """A forked child has none of its parent's threads, but would still think it has: the
    hashing thread pool would take work and never run it. Start afresh, and hash on this
    thread only (BLAKE3's Rayon worker pool is not fork-safe either)."""
    global _overlap_pool, _forked
    _overlap_pool = None
    _forked = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def new_hasher() -> Any:
    """Return a BLAKE3 hasher that spreads large inputs over every core."""
    return blake3.blake3(max_threads=1 if _forked else blake3.blake3.AUTO)


def _beside_io_hasher() -> Any:
    """A one-thread BLAKE3 hasher, for hashing beside I/O: the I/O needs the other core."""
    return blake3.blake3(max_threads=1)


def hash_buffers(buffers: Iterable[Buffer]) -> str:
    """Return the object id the concatenation of *buffers* would have."""
    hasher = new_hasher()
    for buffer in buffers:
        hasher.update(buffer)
    return hasher.hexdigest()


def check_object_id(object_id: str) -> str:
    """Return *object_id* if it is well formed, so it can safely become a path.

    :raises InvalidObjectId: for anything but 64 lowercase hex digits.
    """
    if not isinstance(object_id, str) or not _OBJECT_ID_RE.match(object_id):
        raise InvalidObjectId(f"object id {object_id!r} is not valid (want 64 hex digits)")
    return object_id


@dataclass(frozen=True)
class PutResult:
    """What storing some bytes did: their id, their size, and whether they were new."""

    object_id: str
    size: int
    new: bool


def _mtime(info: dict[str, Any]) -> float:
    """A listing entry's modification time as a POSIX timestamp (filesystems name it apart)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        return value.timestamp() if hasattr(value, "timestamp") else float(value)
    return 0.0


def _preallocate(file: Any, size: int) -> None:
    """Reserve *size* bytes for a local file; a no-op where that is not possible."""
    try:
        fd = file.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StoreWriteError(f"cannot store {size} bytes: {exc.strerror}") from exc
        # Filesystems without fallocate (some network mounts) simply grow the file.


class _HashingWriter:
    """A write-only file that hashes (and optionally fingerprints) and counts what it writes.

    Bytes that could change while they are written (a view of a live array) are first copied
    into a private buffer, a chunk at a time, so the bytes hashed are exactly the bytes
    written even if another thread mutates the value meanwhile.
    """

    def __init__(self, file: IO[bytes], fingerprint: bool = False) -> None:
        self._file = file
        self.hasher = _beside_io_hasher()
        self.printer = xxhash.xxh3_128() if fingerprint else None
        self.size = 0
        self._private = bytearray()

    def _update(self, data: Buffer) -> None:
        self.hasher.update(data)
        if self.printer is not None:
            self.printer.update(data)

    def _write_raw(self, data: Buffer) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise StoreWriteError(f"cannot write to the object store: {exc}") from exc

    def write(self, data: Buffer) -> int:
        if isinstance(data, bytes):
            _hash_beside(self._update, data, lambda: self._write_raw(data))
            self.size += len(data)
            _moved(len(data))
            return len(data)
        view = memoryview(data).cast("B")
        for start in range(0, view.nbytes, CHUNK_SIZE):
            piece = view[start : start + CHUNK_SIZE]
            if len(self._private) < piece.nbytes:
                self._private = bytearray(min(CHUNK_SIZE, max(piece.nbytes, 2 * len(self._private))))
            private = memoryview(self._private)[: piece.nbytes]
            private[:] = piece
            _hash_beside(self._update, private, lambda: self._write_raw(private))  # noqa: B023
            _moved(piece.nbytes)
        self.size += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        self._file.flush()

    def tell(self) -> int:
        return self.size

    @property
    def closed(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False


class VerifiedReader:
    """A read-only file over one object that hashes what is read.

    Call :meth:`verify` once everything is read: it reads any rest and raises
    :class:`CorruptObject` if the bytes do not hash to the object's id.
    """

    def __init__(self, file: IO[bytes], object_id: str) -> None:
        self._file = file
        self.object_id = object_id
        self._hasher = _beside_io_hasher()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._file.read(n)
        self._hasher.update(data)
        self.size += len(data)
        _moved(len(data))
        return data

    def readinto(self, buffer: Buffer) -> int:
        view = memoryview(buffer).cast("B")
        total = 0
        pending: memoryview | None = None  # read, not yet hashed: hashed during the next read
        while total < view.nbytes:
            chunk = view[total : total + CHUNK_SIZE]
            if pending is None:
                n = self._file.readinto(chunk)
            else:
                n = _hash_beside(self._hasher.update, pending, lambda: self._file.readinto(chunk))
            pending = chunk[:n] if n else None
            if not n:
                break
            total += n
            _moved(n)
        if pending is not None:
            self._hasher.update(pending)
        self.size += total
        return total

    def readable(self) -> bool:
        return True

    def copy_to(self, out: IO[bytes]) -> int:
        """Copy the rest of the object into *out*, hashing on another thread while this one
        reads and writes (two buffers take turns); call :meth:`verify` afterwards."""
        global _overlap_pool
        if _overlap_pool is None:
            _overlap_pool = ThreadPoolExecutor(1, thread_name_prefix="nbversion-hash")
        buffers = [memoryview(bytearray(CHUNK_SIZE)), memoryview(bytearray(CHUNK_SIZE))]
        hashing = None
        total, turn = 0, 0
        try:
            while True:
                view = buffers[turn]
                n = self._file.readinto(view)
                if hashing is not None:
                    hashing.result()  # the other buffer is free again
                    hashing = None
                if not n:
                    break
                hashing = _overlap_pool.submit(self._hasher.update, view[:n])
                out.write(view[:n])
                total += n
                _moved(n)
                turn ^= 1
        finally:
            if hashing is not None:
                hashing.result()
        self.size += total
        return total

    def verify(self) -> None:
        """Read whatever is left and check the hash of the whole object."""
        while True:
            rest = self._file.read(CHUNK_SIZE)
            if not rest:
                break
            self._hasher.update(rest)
            self.size += len(rest)
        actual = self._hasher.hexdigest()
        if actual != self.object_id:
            raise CorruptObject(
                f"object {self.object_id} is corrupt: its {self.size} bytes hash to "
                f"{actual[:16]}..., not to its id"
            )

    def truncated(self) -> CorruptObject:
        """The error to raise when the object ended before its format said it would."""
        return CorruptObject(f"object {self.object_id} is corrupt: it is truncated")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> VerifiedReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ObjectStore:
    """Content-addressed blobs under *root* on the fsspec filesystem *fs*.

    :param fs: any fsspec filesystem (local, memory, s3, ...).
    :param root: the directory on *fs* that holds the objects.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self._tmp = f"{self.root}/tmp"
        self._local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))

    @classmethod
    def local(cls, root: str) -> ObjectStore:
        """Return a store in the local directory *root*."""
        return cls(fsspec.filesystem("file"), str(root))

    def __repr__(self) -> str:
        return f"ObjectStore({self.fs.protocol!r}, {self.root!r})"

    def path(self, object_id: str) -> str:
        """Return where the object with *object_id* lives (after validating the id)."""
        check_object_id(object_id)
        return f"{self.root}/{object_id[:2]}/{object_id[2:]}"

    def exists(self, object_id: str) -> bool:
        """Return whether the object is present (its bytes are not checked)."""
        return self.fs.exists(self.path(object_id))

    def reuse(self, object_id: str) -> bool:
        """Whether the object is present, and if so mark it as just used (its modification
        time), so ``gc``'s grace period protects it while a snapshot that reuses it commits."""
        if not self._local:
            return self.exists(object_id)
        try:
            os.utime(self.path(object_id))
        except FileNotFoundError:
            return False
        except OSError:
            return os.path.exists(self.path(object_id))  # a read-only store: present is enough
        return True

    def all_exist(self, object_ids: Iterable[str]) -> bool:
        """Whether every one of *object_ids* is present (a plain ``stat`` each on local disks)."""
        if self._local:
            return all(os.path.exists(self.path(object_id)) for object_id in object_ids)
        return all(self.exists(object_id) for object_id in object_ids)

    # -- writing ---------------------------------------------------------------------------

    def put_bytes(self, data: Buffer) -> PutResult:
        """Store *data* and return its id."""
        return self.put_buffers(lambda: [data])

    def put_buffers(
        self, buffers: Callable[[], Iterable[Buffer]], *, probe: bool = True, size: int | None = None
    ) -> PutResult:
        """Store the concatenation of the buffers that *buffers()* yields.

        Bytes this process stored before (same fingerprint, object still present) cost one
        fingerprint and nothing else. Otherwise, with *probe* (for values that are probably
        stored already), the buffers are hashed first, without copying, and written only
        when the store lacks that object; the write pass hashes again, so what is stored
        always matches its id even if the value changed between the passes. Without
        *probe* (a value that is probably new) they are written and hashed in one pass, and
        the write is discarded if the object exists. *size*, the total if known, lets a
        local file be allocated in one go.
        """
        if not probe:
            return self.put_stream(
                lambda file: [file.write(b) for b in buffers()], size=size, fingerprint=True
            )
        print_ = fingerprint(buffers())
        known = _fingerprints.get(print_)
        if known is not None and self.reuse(known):
            return PutResult(known, sum(memoryview(b).nbytes for b in buffers()), False)
        object_id = hash_buffers(buffers())
        if self.reuse(object_id):
            _remember(print_, object_id)
            return PutResult(object_id, sum(memoryview(b).nbytes for b in buffers()), False)

        def write_all(file: IO[bytes]) -> None:
            for buffer in buffers():
                file.write(buffer)

        put = self.put_stream(write_all, size=size)
        if put.object_id == object_id:
            _remember(print_, object_id)
        # Otherwise the value changed between the two passes (another thread wrote to it):
        # what was stored is what was written, under its own correct id.
        return put

    def put_stream(
        self, write: Callable[[IO[bytes]], Any], *, size: int | None = None, fingerprint: bool = False
    ) -> PutResult:
        """Store whatever *write(file)* writes to the file it is given, and return its id.

        The bytes go to a temporary object first; it is renamed to its id when complete, or
        removed if that id is already stored or *write* raises. *size*, when known, is
        allocated up front on local disks (as ``numpy.save`` does): fewer, larger extents,
        and an early "disk full". With *fingerprint*, the bytes' fingerprint is memoized
        too, so storing them again costs only a fingerprint.
        """
        tmp = f"{self._tmp}/{uuid.uuid4().hex}.tmp"
        try:
            with self._writing():
                self.fs.makedirs(self._tmp, exist_ok=True)
                file = self.fs.open(tmp, "wb")
            with file:
                if size:
                    _preallocate(file, size)
                writer = _HashingWriter(file, fingerprint)
                write(writer)
                if size and writer.size < size:
                    with self._writing():
                        file.truncate(writer.size)  # less came than was allocated
            object_id = writer.hasher.hexdigest()
            if writer.printer is not None:
                _remember(writer.printer.digest(), object_id)
            final = self.path(object_id)
            with self._writing():
                if self.reuse(object_id):
                    self.fs.rm_file(tmp)
                    return PutResult(object_id, writer.size, False)
                self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
                self.fs.mv(tmp, final)
            return PutResult(object_id, writer.size, True)
        except BaseException:
            self._discard(tmp)
            raise

    def put_chunk(self, piece: Buffer, *, probe: bool = True) -> PutResult:
        """Store one chunk of a large value, whole, from the calling thread.

        Made to run on several threads at once (each hashes its own chunk; BLAKE3 and file
        writes release the GIL). With *probe*, an unchanged chunk this process stored before
        costs a fingerprint and a ``stat``. The bytes are first copied, so what is hashed is
        exactly what is written even if the value changes meanwhile.
        """
        if probe:
            print_ = fingerprint([piece])  # outside the lock: the threads fingerprint at once
            with _memo_lock:
                known = _fingerprints.get(print_)
            if known is not None and self.reuse(known):
                return PutResult(known, memoryview(piece).nbytes, False)
        data = bytes(piece)
        object_id = blake3.blake3(data, max_threads=1).hexdigest()
        print_ = fingerprint([data])
        with _memo_lock:
            _remember(print_, object_id)
        final = self.path(object_id)
        if self.reuse(object_id):
            return PutResult(object_id, len(data), False)
        tmp = f"{self._tmp}/{uuid.uuid4().hex}.tmp"
        try:
            with self._writing():
                self.fs.makedirs(self._tmp, exist_ok=True)
                with self.fs.open(tmp, "wb") as file:
                    file.write(data)
                self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
                self.fs.mv(tmp, final)
        except BaseException:
            self._discard(tmp)
            raise
        _moved(len(data))
        return PutResult(object_id, len(data), True)

    def _discard(self, tmp: str) -> None:
        """Remove a temporary file after a failed write, if it is there."""
        try:
            if self.fs.exists(tmp):
                self.fs.rm_file(tmp)
        except OSError:
            pass  # the original error matters more; a stray temp file is only clutter

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Report the store's own I/O failures as :class:`StoreWriteError`, naming the store."""
        try:
            yield
        except OSError as exc:
            raise StoreWriteError(f"cannot write to the object store {self.root}: {exc}") from exc

    def put_file(self, path: str | os.PathLike[str]) -> PutResult:
        """Store the contents of the local file at *path*, streamed in chunks."""

        def copy(file: IO[bytes]) -> None:
            with open(path, "rb") as source:
                while data := source.read(CHUNK_SIZE):
                    file.write(data)

        return self.put_stream(copy, size=os.path.getsize(path))

    # -- listing and removing ------------------------------------------------------------

    def iter_objects(self) -> Iterator[tuple[str, int, float]]:
        """Yield ``(object id, size, modification time)`` of every object in the store."""
        try:
            fanout = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return
        for directory in fanout:
            prefix = directory.rstrip("/").rsplit("/", 1)[-1]
            if len(prefix) != 2 or not all(c in "0123456789abcdef" for c in prefix):
                continue  # tmp/ and anything that is not a fan-out directory
            for info in self.fs.ls(directory, detail=True):
                object_id = prefix + info["name"].rstrip("/").rsplit("/", 1)[-1]
                if _OBJECT_ID_RE.match(object_id):
                    yield object_id, info.get("size", 0), _mtime(info)

    def iter_temporary(self) -> Iterator[tuple[str, float]]:
        """Yield ``(path, modification time)`` of temporary files (writes in progress or abandoned)."""
        try:
            entries = self.fs.ls(self._tmp, detail=True)
        except FileNotFoundError:
            return
        for info in entries:
            yield info["name"], _mtime(info)

    def delete(self, object_id: str) -> None:
        """Remove one object (used by gc only)."""
        with self._writing():
            self.fs.rm_file(self.path(object_id))

    # -- reading ---------------------------------------------------------------------------

    def open(self, object_id: str) -> VerifiedReader:
        """Open an object for reading; call ``verify()`` on the reader when done.

        :raises MissingObject: when the store has no such object.
        """
        path = self.path(object_id)
        try:
            file = self.fs.open(path, "rb")
        except FileNotFoundError:
            raise MissingObject(f"object {object_id} is missing from {self.root}") from None
        return VerifiedReader(file, object_id)

    def problem(self, object_id: str) -> str | None:
        """Re-hash one object: ``None`` when intact, else ``"missing"`` or ``"corrupt"``."""
        try:
            with self.open(object_id) as reader:
                reader.verify()
        except MissingObject:
            return "missing"
        except CorruptObject:
            return "corrupt"
        return None

    def read_bytes(self, object_id: str) -> bytes:
        """Return the object's bytes, verified against its id.

        :raises MissingObject: when the store has no such object.
        :raises CorruptObject: when the bytes do not hash to the id.
        """
        with self.open(object_id) as reader:
            data = reader.read()
            reader.verify()
        return data


class _Discard:
    """A file that keeps nothing (what :class:`IdOnlyStore` "writes" to)."""

    def write(self, data: Buffer) -> int:
        return memoryview(data).nbytes

    def flush(self) -> None:
        pass


class IdOnlyStore(ObjectStore):
    """Answers "which object id would this value get?" without writing anything: the codecs
    run as usual, every put only hashes (or, for bytes this process stored before, looks the
    fingerprint up). Used to tell, exactly, whether a variable still holds what a snapshot has.
    """

    def __init__(self) -> None:
        super().__init__(fsspec.filesystem("memory"), "/nbversion-id-only")

    def exists(self, object_id: str) -> bool:
        return True  # so the put_* fast paths answer from the memo without a write

    def put_buffers(
        self, buffers: Callable[[], Iterable[Buffer]], *, probe: bool = True, size: int | None = None
    ) -> PutResult:
        print_ = fingerprint(buffers())
        known = _fingerprints.get(print_)
        total = sum(memoryview(b).nbytes for b in buffers())
        return PutResult(known if known is not None else hash_buffers(buffers()), total, False)

    def put_chunk(self, piece: Buffer, *, probe: bool = True) -> PutResult:
        known = _fingerprints.get(fingerprint([piece]))
        object_id = known if known is not None else blake3.blake3(piece, max_threads=1).hexdigest()
        return PutResult(object_id, memoryview(piece).nbytes, False)

    def put_stream(
        self, write: Callable[[IO[bytes]], Any], *, size: int | None = None, fingerprint: bool = False
    ) -> PutResult:
        writer = _HashingWriter(_Discard())  # type: ignore[arg-type]
        write(writer)
        return PutResult(writer.hasher.hexdigest(), writer.size, False)
