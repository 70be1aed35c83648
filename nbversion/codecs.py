"""Values to bytes and back. The codec is chosen by the value's type and recorded.

=========  ====================================================  ==========================
codec      used for                                               on restore
=========  ====================================================  ==========================
``npy``    NumPy arrays without Python objects (no pickle)        ``np.load``-compatible file
``npy-chunks`` the same, 16 MiB and more: 4 MiB parts + a manifest  parts read into one array
``masked`` NumPy masked arrays of such arrays: ``npy`` parts       ``np.ma.MaskedArray``
``arrow``  pandas DataFrames, Series, Index Arrow keeps exactly   Arrow IPC file + layout
``frame``  DataFrames, 8 MiB and more: one object per column       columns put side by side
``json``   plain ``None``/bool/int/float/str and lists/dicts      JSON text
``pickle`` NumPy array subclasses, dtypes ``.npy`` cannot say     ``pickle.loads``
``joblib`` everything else that can be pickled                    ``joblib.load``
``joblib-group`` variables that share objects, pickled together     one load for the group
``source`` functions and classes defined in the notebook          source text (not restored)
=========  ====================================================  ==========================

Every codec gives back exactly what it was given (DESIGN.md, invariant 8); where one cannot,
the value goes to the next that can, and ``joblib`` last. Arrow keeps pandas' values and
dtypes but not labels and names of other types than ``str`` (``5`` comes back ``'5'``), a
columns Index's class and dtype, ``attrs`` or flags: an ``arrow`` file carries a *layout*
(JSON in its schema metadata, :class:`ArrowPlan`) that puts them back, and a value whose
layout JSON cannot hold exactly is pickled. The choice looks at dtypes and labels, not at
rows (a MultiIndex's codes aside), so it costs about the same for ten rows as for ten million.

Large arrays are streamed from their own buffer into the store: no serialized copy is ever
held in memory, and an array that did not change costs one hash and no write. From
:data:`CHUNKED_MIN` up, an array is stored as fixed-size parts (each its own object, hashed
and written on several threads) listed by a small manifest: changing 1% of a 1 GiB array
stores about 1% new bytes, and restore reads the parts straight into the new array.
Likewise a large DataFrame is stored column by column (``frame``): ``df['a'] *= 2`` stores
column ``a`` again and nothing else.

Loading a ``pickle`` or ``joblib`` value can run any code its bytes name (``__reduce__``), so
these two codecs are :data:`RUNS_CODE`: :func:`decode` loads them, but :mod:`nbversion.api`
first checks that the object is trusted (made on this machine, restored with ``--trust``, or
fetched from a remote trusted on this machine). The other codecs never unpickle: ``npy``
refuses an array of Python objects (which only a pickle can hold), ``masked`` and ``frame``
manifests may only name ``npy`` (and ``arrow``) parts, ``arrow`` needs a pyarrow that does not
unpickle extension types, ``json`` and ``source`` are text.
"""

from __future__ import annotations

import ast
import base64
import contextvars
import inspect
import io
import json
import os
import linecache
import pickle
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import CorruptObject, DecodeError, EncodeError, ObjectError
from .store import CHUNK_SIZE, ObjectStore, PutResult, check_object_id

#: Arrays this large and up are stored in parts (see the module docstring).
CHUNKED_MIN = 16 * 1024 * 1024
#: The size of one part: small enough that a local change stores little, large enough that
#: per-object costs (a file, a rename, a catalog row) stay small: 256 parts per GiB.
PART_SIZE = 4 * 1024 * 1024
#: DataFrames this large and up are stored column by column.
FRAME_MIN = 8 * 1024 * 1024
#: Parts are hashed and written (or read and verified) this many at a time.
PART_WORKERS = max(2, min(8, os.cpu_count() or 2))

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Manifest(PutResult):
    """A value stored as a small manifest object listing its parts (``PutResult`` of the
    manifest itself, plus the parts and what they cost)."""

    parts: tuple[tuple[str, str, int], ...] = ()  # (label, object id, size)
    new_bytes: int = 0  # bytes the parts and the manifest added to the store
    value_size: int = 0  # the bytes the value stands for


def _parallel(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``map`` over a few threads, each call in a copy of the caller's context (progress)."""
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(PART_WORKERS, thread_name_prefix="nbversion-parts") as pool:
        futures = [pool.submit(contextvars.copy_context().run, function, item) for item in items]
        try:
            return [future.result() for future in futures]
        except BaseException:  # Ctrl-C or a failed part: do not start the rest
            for future in futures:
                future.cancel()
            raise

#: Containers up to this many elements are checked for the JSON codec; bigger ones pickle.
JSON_MAX_ITEMS = 10_000

#: The codecs whose loading can run code the bytes name: only trusted objects are loaded.
RUNS_CODE = frozenset({"pickle", "joblib", "joblib-group"})


def type_name(value: Any) -> str:
    """Return ``module.QualName`` of the value's type (just the name for builtins)."""
    cls = type(value)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def choose(value: Any) -> str:
    """Return the name of the codec that will store *value*."""
    return _choose(value)[0]


def _choose(value: Any) -> tuple[str, Any]:
    """The codec for *value*, and for ``arrow`` the plan (:func:`_arrow_plan`)."""
    if _is_plain_array(value):
        return "npy", None
    if _is_plain_masked(value):
        return "masked", None
    if _is_array_subclass(value) or _is_array_with_pickled_dtype(value):
        return "pickle", None  # joblib gives np.matrix back as a plain ndarray
    plan = _arrow_plan(value)
    if plan is not None:
        return "arrow", plan
    try:
        if _is_json_plain(value, [0], set()):
            return "json", None
    except RecursionError:  # nesting deeper than JSON goes
        pass
    return "joblib", None


def encode(
    value: Any, store: ObjectStore, *, probe: bool = True, reached: dict[int, Any] | None = None
) -> tuple[str, PutResult]:
    """Store *value* and return its codec and where it went.

    :param probe: the value is probably stored already (an earlier snapshot had it): hash
        it before deciding to write. ``False`` writes and hashes a new value in one pass.
    :param reached: when given and the value is pickled, the mutable objects the pickle
        holds are added to it by id (:mod:`nbversion.pickling`).
    :raises EncodeError: when the value cannot be serialized (open files, locks, ...).
    :raises ObjectError: when the store itself fails (disk full, ...): not the value's fault.
    """
    codec, plan = _choose(value)
    try:
        if codec == "npy" and value.nbytes >= CHUNKED_MIN and (value.flags.c_contiguous or value.flags.f_contiguous):
            return "npy-chunks", _put_chunked_npy(value, store, probe)
        if codec == "npy":
            size = len(_npy_header(value)) + value.nbytes
            return codec, store.put_buffers(lambda: _npy_buffers(value), probe=probe, size=size)
        if codec == "masked":
            return codec, _put_masked(value, store, probe)
        if codec == "arrow" and _is_column_frame(value):
            return "frame", _put_frame(value, store, probe, plan)
        if codec == "arrow":
            try:
                return codec, store.put_stream(lambda file: _write_arrow(plan, file))
            except ObjectError:
                raise
            except Exception:
                codec = "joblib"  # Arrow refused a column (or warned) after all: pickle it exactly
        if codec == "json":
            try:
                text = json.dumps(value, ensure_ascii=False).encode()
            except (ValueError, RecursionError):  # ints over the digit limit, lone surrogates
                codec = "joblib"
            else:
                return codec, store.put_bytes(text)
        if codec == "pickle":
            return codec, store.put_stream(lambda file: _ExactPickler(file, protocol=5).dump(value))
        from . import pickling  # imported when needed: joblib brings numpy along

        def write(file: Any) -> None:
            pickler = pickling.dump(value, file)
            if reached is not None:
                reached.update(pickler.reached)

        return "joblib", store.put_stream(write)
    except ObjectError:
        raise
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EncodeError(reason) from exc


def encode_source(obj: Any, store: ObjectStore) -> PutResult:
    """Store the source code of a function or class defined in the notebook.

    :raises EncodeError: when its source cannot be found.
    """
    try:
        source = inspect.getsource(obj)
    except (OSError, TypeError):
        source = _class_source(obj) if isinstance(obj, type) else None
    if source is None:
        raise EncodeError("source code not available")
    return store.put_bytes(source.encode())


def _class_source(cls: type) -> str | None:
    """Find a notebook class's source through its methods' cell (``inspect`` cannot on 3.11)."""
    members = []
    for member in vars(cls).values():
        if isinstance(member, property):
            members.extend(f for f in (member.fget, member.fset, member.fdel) if f is not None)
        else:
            members.append(getattr(member, "__func__", member))
    for member in members:
        code = getattr(member, "__code__", None)
        if code is None:
            continue
        lines = linecache.getlines(code.co_filename)
        try:
            tree = ast.parse("".join(lines))
        except SyntaxError:
            return None
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                return "".join(lines[start - 1 : node.end_lineno])
    return None


def decode(codec: str, object_id: str, store: ObjectStore) -> Any:
    """Load the value stored as *object_id* with *codec*, verifying every byte.

    :raises MissingObject: when the object is not in the store.
    :raises CorruptObject: when its bytes do not match its id.
    :raises DecodeError: when verified bytes do not load (a pickled class that is not defined).
    """
    if codec == "npy":
        return _read_npy(store, object_id)
    if codec == "npy-chunks":
        return _read_chunked_npy(store, object_id)
    if codec == "frame":
        return _read_frame(store, object_id)
    if codec == "masked":
        return _read_masked(store, object_id)
    data = store.read_bytes(object_id)
    try:
        if codec == "json":
            return json.loads(data)
        if codec == "arrow":
            import pyarrow as pa

            _check_safe_pyarrow(pa.__version__)
            return _read_arrow(pa.ipc.open_file(pa.py_buffer(data)).read_all())
        if codec == "joblib":
            import joblib

            # As stored: joblib would turn big-endian arrays little-endian by default.
            return joblib.load(io.BytesIO(data), ensure_native_byte_order=False)
        if codec == "pickle":
            return pickle.loads(data)
        if codec == "source":
            return data.decode()
    except Exception as exc:
        raise DecodeError(f"object {object_id} cannot be loaded as {codec}: {exc}") from exc
    raise DecodeError(f"object {object_id} has codec {codec!r}, unknown to this nbversion")


# -- npy ------------------------------------------------------------------------------------


def _is_plain_array(value: Any) -> bool:
    np = sys.modules.get("numpy")
    if np is None or type(value) is not np.ndarray or value.dtype.hasobject or not _npy_keeps(value.dtype):
        return False
    try:
        _npy_header(value)
    except (UnicodeEncodeError, EncodeError):  # field names beyond latin-1: pickle instead
        return False
    return True


def _npy_keeps(dtype: Any) -> bool:
    """Whether an .npy header says all of *dtype*: it has no place for ``dtype.metadata``
    (NumPy warns and drops it) nor for a structure's ``align=True``."""
    if dtype.metadata or dtype.isalignedstruct:
        return False
    if dtype.fields is not None:
        return all(_npy_keeps(field[0]) for field in dtype.fields.values())
    return dtype.subdtype is None or _npy_keeps(dtype.subdtype[0])


def _is_array_subclass(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.ndarray) and type(value) is not np.ndarray


def _is_array_with_pickled_dtype(value: Any) -> bool:
    """A plain array whose dtype only a pickle keeps whole (metadata, ``align=True``)."""
    np = sys.modules.get("numpy")
    return np is not None and type(value) is np.ndarray and not value.dtype.hasobject and not _npy_keeps(value.dtype)


def _npy_header(array: Any) -> bytes:
    """Return a version 1.0 (or 2.0 when long) ``.npy`` header for *array*."""
    from numpy.lib import format as npformat

    fields = npformat.header_data_from_array_1_0(array)
    text = "{" + "".join(f"'{k}': {fields[k]!r}, " for k in sorted(fields)) + "}"
    for version, length_bytes in (((1, 0), 2), ((2, 0), 4)):
        prefix = 6 + 2 + length_bytes
        padded = text + " " * ((64 - (prefix + len(text) + 1) % 64) % 64) + "\n"
        if len(padded) < 256 ** length_bytes:
            return (
                npformat.magic(*version)
                + len(padded).to_bytes(length_bytes, "little")
                + padded.encode("latin1")
            )
    raise EncodeError("the array's header is too long for the .npy format")


def _npy_buffers(array: Any) -> Iterator[memoryview]:
    """Yield the ``.npy`` file of *array* as buffers, without copying contiguous data."""
    import numpy as np

    yield memoryview(_npy_header(array))
    if array.flags.c_contiguous:
        flat = _byte_view(array)
    elif array.flags.f_contiguous:
        flat = _byte_view(array.T)
    else:
        # Not contiguous: copy one block of rows at a time, never the whole array.
        rows = max(1, CHUNK_SIZE // max(1, array[0:1].nbytes))
        for start in range(0, array.shape[0], rows):
            yield _byte_view(np.ascontiguousarray(array[start : start + rows]))
        return
    for start in range(0, flat.nbytes, CHUNK_SIZE):
        yield flat[start : start + CHUNK_SIZE]


def _byte_view(array: Any) -> memoryview:
    """The bytes of a C-contiguous array, without a copy (works for every dtype)."""
    import numpy as np

    return memoryview(array.reshape(-1).view(np.uint8))


def _read_npy(store: ObjectStore, object_id: str) -> Any:
    import numpy as np
    from numpy.lib import format as npformat

    with store.open(object_id) as reader:
        try:
            version = npformat.read_magic(reader)
            # The header is our own and hash-verified: no need for numpy's size guard.
            read_header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            shape, fortran, dtype = read_header(reader, max_header_size=sys.maxsize)
        except ValueError as exc:
            raise CorruptObject(f"object {object_id} is not a valid .npy file: {exc}") from None
        if dtype.hasobject:
            # Python objects in a .npy file are a pickle; the npy codec never writes one.
            raise DecodeError(
                f"object {object_id} is an .npy file of Python objects (a pickle, which can run code): "
                "not loaded, the npy codec never stores one"
            )
        array = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
        if array.nbytes:
            view = _byte_view(array.T if fortran else array)
            if reader.readinto(view) != array.nbytes:
                raise reader.truncated()
        reader.verify()
    return array


def _put_chunked_npy(array: Any, store: ObjectStore, probe: bool) -> Manifest:
    """Store a contiguous array as :data:`PART_SIZE` parts and a manifest naming them."""
    flat = _byte_view(array if array.flags.c_contiguous else array.T)
    pieces = [flat[start : start + PART_SIZE] for start in range(0, flat.nbytes, PART_SIZE)]
    puts = _parallel(lambda piece: store.put_chunk(piece, probe=probe), pieces)
    manifest = {
        "format": "npy-chunks/1",
        "header": base64.b64encode(_npy_header(array)).decode(),
        "parts": [[put.object_id, put.size] for put in puts],
    }
    stored = store.put_bytes(json.dumps(manifest).encode())
    return Manifest(
        stored.object_id, stored.size, stored.new,
        parts=tuple((f"part {i:06d}", put.object_id, put.size) for i, put in enumerate(puts)),
        new_bytes=sum(put.size for put in puts if put.new) + (stored.size if stored.new else 0),
        value_size=array.nbytes,
    )


def _read_chunked_npy(store: ObjectStore, object_id: str) -> Any:
    """Read the parts a manifest lists straight into one new array, verifying each."""
    import numpy as np
    from numpy.lib import format as npformat

    try:
        manifest = json.loads(store.read_bytes(object_id))
        header = io.BytesIO(base64.b64decode(manifest["header"], validate=True))
        parts = [(check_object_id(part_id), int(size)) for part_id, size in manifest["parts"]]
        version = npformat.read_magic(header)
        read_header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
        shape, fortran, dtype = read_header(header, max_header_size=sys.maxsize)
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptObject(f"object {object_id} is not a valid array manifest: {exc}") from None
    if dtype.hasobject:
        raise DecodeError(f"object {object_id} names an array of Python objects (a pickle): not loaded")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if sum(size for _, size in parts) != nbytes or any(size < 0 for _, size in parts):
        raise CorruptObject(f"object {object_id}: its parts do not add up to the array it describes")
    array = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    view = _byte_view(array.T if fortran else array) if nbytes else memoryview(b"")
    offsets = [0]
    for _, size in parts:
        offsets.append(offsets[-1] + size)

    def read(index: int) -> None:
        part_id, size = parts[index]
        with store.open(part_id) as reader:
            if reader.readinto(view[offsets[index] : offsets[index] + size]) != size:
                raise reader.truncated()
            reader.verify()

    _parallel(read, range(len(parts)))
    return array


# -- parts: a value stored as a manifest of parts (frames, masked arrays) ---------------------


class _Parts:
    """Stores the parts of one value (each with :func:`encode`), then the manifest naming
    them, and adds up what they cost."""

    def __init__(self, store: ObjectStore, probe: bool) -> None:
        self.store, self.probe = store, probe
        self.parts: list[tuple[str, str, int]] = []
        self.new_bytes = 0

    def put(self, label: str, codec: str, stored: PutResult) -> dict[str, Any]:
        self.parts.append((label, stored.object_id, stored.size))
        if isinstance(stored, Manifest):
            self.parts.extend((f"{label} {part}", part_id, size) for part, part_id, size in stored.parts)
            self.new_bytes += stored.new_bytes
        elif stored.new:
            self.new_bytes += stored.size
        return {"codec": codec, "object": stored.object_id}

    def put_array(self, label: str, array: Any) -> dict[str, Any]:
        """Store a plain array (``npy``/``npy-chunks``)."""
        codec, stored = encode(array, self.store, probe=self.probe)
        if codec not in ("npy", "npy-chunks"):
            raise EncodeError(f"{label} is not a plain array")
        return self.put(label, codec, stored)

    def manifest(self, content: dict[str, Any], value_size: int) -> Manifest:
        stored = self.store.put_bytes(json.dumps(content).encode())
        return Manifest(
            stored.object_id, stored.size, stored.new, parts=tuple(self.parts),
            new_bytes=self.new_bytes + (stored.size if stored.new else 0), value_size=value_size,
        )


def _read_manifest(store: ObjectStore, object_id: str, format: str) -> dict[str, Any]:
    try:
        manifest = json.loads(store.read_bytes(object_id))
    except ValueError as exc:
        raise CorruptObject(f"object {object_id} is not a valid {format} manifest: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != format:
        raise CorruptObject(f"object {object_id} is not a {format} manifest")
    return manifest


def _read_array_part(store: ObjectStore, object_id: str, spec: Any) -> Any:
    """Load a part a manifest names, which may only be a plain array (never a pickle)."""
    try:
        codec, part_id = spec["codec"], check_object_id(spec["object"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptObject(f"object {object_id}: a part is not described: {exc}") from None
    if codec not in ("npy", "npy-chunks"):
        raise CorruptObject(f"object {object_id}: a part may only be npy, not {codec!r}")
    return decode(codec, part_id, store)


# -- masked: a NumPy masked array as its data, mask and fill value ----------------------------


def _is_plain_masked(value: Any) -> bool:
    """A masked array whose data, mask and fill value are plain arrays (no pickle needed)."""
    np = sys.modules.get("numpy")
    if np is None or type(value) is not np.ma.MaskedArray or value._baseclass is not np.ndarray:
        return False
    fill = value._fill_value
    return (
        _is_plain_array(value.view(np.ndarray))
        and (value._mask is np.ma.nomask or _is_plain_array(value._mask))
        and (fill is None or _is_plain_array(fill))
    )


def _put_masked(array: Any, store: ObjectStore, probe: bool) -> Manifest:
    """Store a masked array's data, mask (unless ``nomask``) and fill value (unless the
    default) as ``npy`` parts, and ``hard_mask`` in the manifest: NumPy's own pickle drops
    ``hard_mask``, and a file of its own would need a pickle to load."""
    np = sys.modules["numpy"]
    parts = _Parts(store, probe)
    mask, fill = array._mask, array._fill_value
    content = {
        "format": "masked/1",
        "data": parts.put_array("data", array.view(np.ndarray)),
        "mask": None if mask is np.ma.nomask else parts.put_array("mask", mask),
        "fill_value": None if fill is None else parts.put_array("fill value", fill),
        "hard_mask": bool(array._hardmask),
    }
    return parts.manifest(content, array.nbytes)


def _read_masked(store: ObjectStore, object_id: str) -> Any:
    import numpy as np

    manifest = _read_manifest(store, object_id, "masked/1")
    data = _read_array_part(store, object_id, manifest.get("data"))
    mask = np.ma.nomask if manifest.get("mask") is None else _read_array_part(store, object_id, manifest["mask"])
    fill = None if manifest.get("fill_value") is None else _read_array_part(store, object_id, manifest["fill_value"])
    try:
        return np.ma.MaskedArray(
            data, mask=mask, fill_value=fill, hard_mask=manifest.get("hard_mask") is True, copy=False, shrink=False
        )
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"object {object_id}: its parts do not make a masked array: {exc}") from None


# -- pickle: what NumPy's own pickling changes, kept -------------------------------------------


def reduce_exactly(obj: Any) -> Any:
    """A ``reducer_override`` for NumPy array subclasses that NumPy pickles inexactly:
    a masked array's ``hard_mask`` (dropped) and a subclass's byte order (made native when
    loaded). Rebuilt from plain arrays (which keep their dtype) with NumPy's own constructors;
    ``NotImplemented`` for everything else (pickled as usual)."""
    np = sys.modules.get("numpy")
    if np is None or not isinstance(obj, np.ndarray) or type(obj) in (np.ndarray, np.memmap):
        return NotImplemented
    if type(obj) is np.ma.MaskedArray:
        if obj._baseclass is not np.ndarray:
            return NotImplemented
        # MaskedArray(data, mask, dtype, copy, subok, ndmin, fill_value, keep_mask, hard_mask, shrink)
        return np.ma.MaskedArray, (
            obj.view(np.ndarray), obj._mask, None, False, True, 0, obj._fill_value, True, obj._hardmask, False,
        )
    if isinstance(obj, np.ma.MaskedArray):
        return NotImplemented
    plain = obj.view(np.ndarray)
    try:  # a view rebuilds what the subclass keeps (np.matrix): else its own pickling
        rebuilds = vars(plain.view(type(obj))) == vars(obj) if hasattr(obj, "__dict__") else True
    except Exception:
        rebuilds = False
    return (np.ndarray.view, (plain, type(obj))) if rebuilds is True else NotImplemented


class _ExactPickler(pickle.Pickler):
    """``pickle`` with :func:`reduce_exactly`."""

    def reducer_override(self, obj: Any) -> Any:
        return reduce_exactly(obj)


# -- frame: a DataFrame column by column ----------------------------------------------------


def _plain_column(pd: Any, values: Any) -> bool:
    np = sys.modules["numpy"]
    return isinstance(values, np.ndarray) and values.ndim == 1 and _is_plain_array(values)


def _is_column_frame(value: Any) -> bool:
    """Whether *value* (an Arrow-exact DataFrame) is big enough, and its index simple enough,
    to be stored column by column."""
    pd = sys.modules["pandas"]
    if type(value) is not pd.DataFrame or value.memory_usage(index=True, deep=False).sum() < FRAME_MIN:
        return False
    index = value.index
    if isinstance(index, pd.RangeIndex):
        return True
    return (
        type(index) in (pd.Index, pd.DatetimeIndex, pd.TimedeltaIndex)
        and isinstance(index.dtype, sys.modules["numpy"].dtype)
        and _plain_column(pd, index.to_numpy())
        and getattr(index, "freq", None) is None
    )


def _put_frame(frame: Any, store: ObjectStore, probe: bool, plan: ArrowPlan) -> Manifest:
    """Store each column as its own value (``npy``/``npy-chunks``, else one-column Arrow),
    then a manifest naming them in order with the index and the frame's layout."""
    pd = sys.modules["pandas"]
    parts = _Parts(store, probe)

    def put(label: str, value: Any) -> dict[str, Any]:
        if _plain_column(pd, value):
            return parts.put_array(label, value)
        single = pd.DataFrame({"values": value}, copy=False)
        return parts.put(label, "arrow", store.put_stream(lambda file: _write_table(single, file)))

    columns = []
    unique = frame.columns.is_unique
    for position, label in enumerate(frame.columns):  # by position: labels may repeat
        series = frame.iloc[:, position]
        values = series.to_numpy() if isinstance(series.dtype, sys.modules["numpy"].dtype) else series.reset_index(drop=True)
        part = f"column {label!r}" if unique else f"column {position} {label!r}"
        columns.append({"name": str(label), **put(part, values)})  # the layout has the label itself
    index = frame.index
    if isinstance(index, pd.RangeIndex):
        index_spec: dict[str, Any] = {"range": [index.start, index.stop, index.step]}
    else:
        index_spec = put("index", index.to_numpy())
    manifest = {"format": "frame/1", "columns": columns, "index": index_spec, "layout": plan.layout}
    return parts.manifest(manifest, int(frame.memory_usage(index=True, deep=False).sum()))


def _read_frame(store: ObjectStore, object_id: str) -> Any:
    """Put a stored frame's columns back side by side (no copy of the columns)."""
    import pandas as pd

    try:
        manifest = json.loads(store.read_bytes(object_id))
        specs = [(column["name"], column["codec"], check_object_id(column["object"])) for column in manifest["columns"]]
        index_spec = manifest["index"]
        layout = manifest.get("layout")
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptObject(f"object {object_id} is not a valid frame manifest: {exc}") from None
    if any(codec not in ("npy", "npy-chunks", "arrow") for _, codec, _ in specs):
        raise CorruptObject(f"object {object_id}: a frame's column may only be npy or arrow")

    def load(codec: str, part_id: str) -> Any:
        value = decode(codec, part_id, store)
        return value["values"].array if codec == "arrow" else value

    # Keyed by position (labels may repeat); a layout puts the real labels back.
    columns = {i if layout else name: load(codec, part_id) for i, (name, codec, part_id) in enumerate(specs)}
    if "range" in index_spec:
        index = pd.RangeIndex(*index_spec["range"], name=index_spec.get("name"))
    else:
        if index_spec.get("codec") not in ("npy", "npy-chunks"):
            raise CorruptObject(f"object {object_id}: a frame's index may only be npy")
        index = pd.Index(load(index_spec["codec"], check_object_id(index_spec["object"])), name=index_spec.get("name"), copy=False)
    try:
        frame = pd.DataFrame(columns, index=index, copy=False)
        if layout is None:  # written before layouts
            frame.columns.name = manifest.get("columns_name")
            return frame
        return _apply_layout(pd, frame, layout)
    except (TypeError, ValueError, KeyError, _Inexact) as exc:
        raise DecodeError(f"object {object_id}: its columns do not make a frame: {exc}") from None


# -- arrow ----------------------------------------------------------------------------------


def _check_safe_pyarrow(version: str) -> None:
    """Refuse a pyarrow that unpickles extension types found in a file (CVE-2023-47248)."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    release = tuple(int(part or 0) for part in match.groups()) if match else (0, 0, 0)
    if release < (14, 0, 1):
        raise DecodeError(
            f"pyarrow {version} can run code hidden in an Arrow file (CVE-2023-47248): upgrade to 14.0.1 or newer"
        )

_ARROW_KINDS = set("biufmM")
#: The schema metadata key of a pandas value's layout (see :func:`_arrow_plan`).
LAYOUT_KEY = b"nbversion"


@dataclass(frozen=True)
class ArrowPlan:
    """How a pandas value is written to Arrow: *frame* (its columns and index levels with
    plain names Arrow keeps as they are), and *layout*, the JSON that puts the rest back: the
    kind of value, the columns Index, the index names, the Series name, attrs and flags."""

    frame: Any
    layout: dict[str, Any]


class _Inexact(Exception):
    """Something JSON (or Arrow) cannot hold exactly: the value is pickled instead."""


def _arrow_plan(value: Any) -> ArrowPlan | None:
    """The plan to store a DataFrame, Series or Index through Arrow, or ``None`` when Arrow
    would not give it back exactly (then it is pickled). O(columns): rows are not looked at,
    but for a MultiIndex's codes (one vectorized pass)."""
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
        return None
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return None
    kind = type(value)
    try:
        if kind is pd.DataFrame:
            if not all(_arrow_exact(pd, dtype) for dtype in value.dtypes):
                return None
            frame, layout = value, {"kind": "frame", "columns": _axis_spec(pd, value.columns)}
        elif kind is pd.Series:
            if not _arrow_exact(pd, value.dtype):
                return None
            frame, layout = value.to_frame("values"), {"kind": "series", "name": _tag(value.name, set())}
        elif kind in _arrow_indexes(pd):
            frame, layout = pd.DataFrame(index=value), {"kind": "index"}
        else:
            return None
        index = frame.index
        if not _arrow_exact_index(pd, index):
            return None
        layout["names"] = [_tag(name, set()) for name in index.names]
        if type(index) is pd.RangeIndex and frame.shape[1] == 0:
            # An Arrow file of no columns has no rows either: keep how many there were.
            layout["range"] = [index.start, index.stop, index.step]
        if kind is pd.DataFrame or kind is pd.Series:  # an Index has neither
            layout["attrs"] = _tag(value.attrs, set())
            layout["allows_duplicate_labels"] = bool(value.flags.allows_duplicate_labels)
    except (_Inexact, RecursionError):
        return None
    return ArrowPlan(_plain_names(pd, frame), layout) if _layout_json(layout) else None


def _layout_json(layout: dict[str, Any]) -> bytes | None:
    try:
        return json.dumps(layout).encode()
    except ValueError:  # an int over the digit limit
        return None


def _arrow_indexes(pd: Any) -> tuple[type, ...]:
    return (pd.Index, pd.RangeIndex, pd.MultiIndex, pd.DatetimeIndex, pd.TimedeltaIndex, pd.CategoricalIndex)


def _plain_names(pd: Any, frame: Any) -> Any:
    """*frame* with names Arrow keeps: its columns' labels when all are distinct strings
    (else their positions), and no index names (the layout has them)."""
    labels = list(frame.columns)
    if not (all(type(label) is str and not label.startswith("__") for label in labels) and len(set(labels)) == len(labels)):
        labels = [str(position) for position in range(len(labels))]
    plain = frame.set_axis(pd.Index(labels, dtype=object), axis="columns")
    plain.index = plain.index.set_names([None] * plain.index.nlevels)
    plain.attrs = {}
    return plain


def _arrow_exact_index(pd: Any, index: Any) -> bool:
    if type(index) is pd.RangeIndex:
        return True
    if type(index) not in _arrow_indexes(pd) or getattr(index, "freq", None) is not None:
        return False  # Arrow does not keep a DatetimeIndex's freq
    if type(index) is pd.MultiIndex:
        return all(_arrow_exact(pd, level.dtype, index=True) for level in index.levels) and _levels_come_back(index)
    return _arrow_exact(pd, index.dtype, index=True)


def _levels_come_back(index: Any) -> bool:
    """Whether a MultiIndex rebuilt from its values (as Arrow does) has the same levels:
    each level sorted, and every label of it used."""
    np = sys.modules["numpy"]
    for level, codes in zip(index.levels, index.codes):
        if not level.is_monotonic_increasing or not level.is_unique:
            return False
        used = np.zeros(len(level), dtype=bool)
        used[np.asarray(codes)[np.asarray(codes) >= 0]] = True
        if not used.all():
            return False
    return True


def _arrow_exact(pd: Any, dtype: Any, index: bool = False) -> bool:
    if isinstance(dtype, pd.SparseDtype):
        return False
    if index and isinstance(dtype, pd.api.extensions.ExtensionDtype) and not isinstance(
        dtype, (pd.StringDtype, pd.CategoricalDtype, pd.DatetimeTZDtype)
    ):
        return False  # nullable Int64/Float64/boolean indexes come back as numpy dtypes
    if isinstance(dtype, pd.CategoricalDtype):
        return _arrow_exact(pd, dtype.categories.dtype, index)
    if isinstance(dtype, pd.StringDtype):
        # Arrow gives strings back as pyarrow-backed; an index always with NaN for missing.
        return dtype.storage == "pyarrow" and (not index or dtype.na_value is not pd.NA)
    if isinstance(dtype, pd.DatetimeTZDtype):
        return True
    return getattr(dtype, "kind", None) in _ARROW_KINDS  # object ("O") columns never


def _write_arrow(plan: ArrowPlan, file: Any) -> None:
    _write_table(plan.frame, file, {LAYOUT_KEY: json.dumps(plan.layout).encode()})


def _write_table(frame: Any, file: Any, metadata: dict[bytes, bytes] | None = None) -> None:
    """Write *frame* as an Arrow IPC file. A warning from pyarrow means it changed something
    (a name, a type): it is an error here, and the value is pickled instead."""
    import warnings

    import pyarrow as pa

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = pa.Table.from_pandas(frame, preserve_index=None)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    with pa.ipc.new_file(pa.PythonFile(file, mode="w"), table.schema) as writer:
        if table.num_rows == 0 and table.num_columns and all(column.num_chunks for column in table.columns):
            # write_table writes no batch of no rows, and so no categories of a categorical
            writer.write_batch(pa.RecordBatch.from_arrays([c.chunk(0) for c in table.columns], schema=table.schema))
        else:
            writer.write_table(table)


def _read_arrow(table: Any) -> Any:
    """The pandas value an Arrow table holds, with its layout put back (if it has one)."""
    import pandas as pd

    layout = (table.schema.metadata or {}).get(LAYOUT_KEY)
    frame = table.to_pandas()
    if layout is None:  # written before layouts (or by hand): as pandas reads it
        return frame
    try:
        return _apply_layout(pd, frame, json.loads(layout))
    except (ValueError, KeyError, TypeError, _Inexact) as exc:
        raise DecodeError(f"its layout does not fit its table: {exc}") from None


def _apply_layout(pd: Any, frame: Any, layout: dict[str, Any]) -> Any:
    """Give *frame* (as Arrow gave it back) what its layout says: the kind of value, labels,
    names, attrs, flags."""
    kind = layout["kind"]
    names = [_untag(name) for name in layout["names"]]
    if "range" in layout:  # no columns, and so no rows in the file
        frame = pd.DataFrame(index=pd.RangeIndex(*layout["range"]))
    if kind == "index":
        return frame.index.set_names(names)
    frame.index = frame.index.set_names(names)
    if kind == "frame":
        frame.columns = _axis(pd, layout["columns"])
        value = frame
    elif kind == "series":
        value = frame.iloc[:, 0]
        value.name = _untag(layout["name"])
    else:
        raise _Inexact(f"unknown kind {kind!r}")
    value.attrs = _untag(layout["attrs"])
    value.flags.allows_duplicate_labels = layout["allows_duplicate_labels"] is True
    return value


def _axis_spec(pd: Any, axis: Any) -> dict[str, Any]:
    """A columns Index as JSON: a RangeIndex's range, or the labels (each of its exact type)
    with the dtype; :func:`_axis` rebuilds it, checked here to be equal."""
    np = sys.modules["numpy"]
    if type(axis) is pd.RangeIndex:
        spec: dict[str, Any] = {"range": [axis.start, axis.stop, axis.step], "name": _tag(axis.name, set())}
        return spec
    if type(axis) is not pd.Index:
        raise _Inexact("a MultiIndex (or other) columns Index")
    dtype = axis.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biufO":
        dtype_spec: dict[str, Any] = {"numpy": dtype.str}
    elif isinstance(dtype, pd.StringDtype):
        dtype_spec = {"string": dtype.storage, "na": "NA" if dtype.na_value is pd.NA else "nan"}
    else:
        raise _Inexact(f"columns of dtype {dtype}")
    spec = {"labels": [_tag(label, set()) for label in axis.tolist()], "dtype": dtype_spec, "name": _tag(axis.name, set())}
    rebuilt = _axis(pd, spec)
    if not (type(rebuilt) is type(axis) and rebuilt.dtype == axis.dtype and rebuilt.equals(axis)):
        raise _Inexact("columns that do not come back equal")
    return spec


def _axis(pd: Any, spec: dict[str, Any]) -> Any:
    np = sys.modules["numpy"]
    name = _untag(spec["name"])
    if "range" in spec:
        return pd.RangeIndex(*spec["range"], name=name)
    dtype_spec = spec["dtype"]
    if "numpy" in dtype_spec:
        dtype = np.dtype(dtype_spec["numpy"])
        if dtype.kind not in "biufO":
            raise _Inexact(f"columns of dtype {dtype}")
    else:
        dtype = pd.StringDtype(dtype_spec["string"], na_value=pd.NA if dtype_spec["na"] == "NA" else np.nan)
    return pd.Index(_untag(spec["labels"]), dtype=dtype, name=name, tupleize_cols=False)


def _tag(value: Any, seen: set[int]) -> Any:
    """*value* as JSON that :func:`_untag` turns back into exactly *value*: None, bool, int,
    float (NaN, infinities and -0.0 too), str, and tuples, lists and dicts of them (a dict or
    tuple becomes ``{"dict": [[key, value], ...]}`` / ``{"tuple": [...]}``).

    :raises _Inexact: for anything else, or a list or dict met twice (sharing would be lost).
    """
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if kind in (list, dict):
        if id(value) in seen:
            raise _Inexact("an object met twice")
        seen.add(id(value))
    if kind is tuple:
        return {"tuple": [_tag(item, seen) for item in value]}
    if kind is list:
        return [_tag(item, seen) for item in value]
    if kind is dict:
        return {"dict": [[_tag(key, seen), _tag(item, seen)] for key, item in value.items()]}
    raise _Inexact(f"a {kind.__name__}")


def _untag(value: Any) -> Any:
    if isinstance(value, list):
        return [_untag(item) for item in value]
    if isinstance(value, dict):
        if "tuple" in value:
            return tuple(_untag(item) for item in value["tuple"])
        return {_untag(key): _untag(item) for key, item in value["dict"]}
    return value


# -- json -----------------------------------------------------------------------------------


def _is_json_plain(value: Any, count: list[int], seen: set[int]) -> bool:
    """Whether *value* survives a JSON round trip unchanged (exact types, str keys, and no
    list or dict met twice: JSON would give two copies back, or never end on one that
    holds itself)."""
    count[0] += 1
    if count[0] > JSON_MAX_ITEMS:
        return False
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return True
    if kind is not list and kind is not dict:
        return False
    if id(value) in seen:
        return False
    seen.add(id(value))
    if kind is list:
        return all(_is_json_plain(v, count, seen) for v in value)
    return all(type(k) is str and _is_json_plain(v, count, seen) for k, v in value.items())
