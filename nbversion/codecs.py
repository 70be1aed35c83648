"""Values to bytes and back. The codec is chosen by the value's type and recorded.

=========  ====================================================  ==========================
codec      used for                                               on restore
=========  ====================================================  ==========================
``npy``    NumPy arrays without Python objects (no pickle)        ``np.load``-compatible file
``npy-chunks`` the same, 16 MiB and more: 4 MiB parts + a manifest  parts read into one array
``arrow``  pandas DataFrames whose columns Arrow keeps exactly    Arrow IPC file
``frame``  the same, 8 MiB and more: one object per column         columns put side by side
``json``   plain ``None``/bool/int/float/str and lists/dicts      JSON text
``pickle`` NumPy array subclasses (``np.matrix``, ...)            ``pickle.loads``
``joblib`` everything else that can be pickled                    ``joblib.load``
``source`` functions and classes defined in the notebook          source text (not restored)
=========  ====================================================  ==========================

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
refuses an array of Python objects (which only a pickle can hold), ``arrow`` needs a pyarrow
that does not unpickle extension types, ``json`` and ``source`` are text.
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
RUNS_CODE = frozenset({"pickle", "joblib"})


def type_name(value: Any) -> str:
    """Return ``module.QualName`` of the value's type (just the name for builtins)."""
    cls = type(value)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def choose(value: Any) -> str:
    """Return the name of the codec that will store *value*."""
    if _is_plain_array(value):
        return "npy"
    if _is_array_subclass(value):
        return "pickle"  # joblib gives np.matrix back as a plain ndarray
    if _is_arrow_frame(value):
        return "arrow"
    try:
        if _is_json_plain(value, [0]):
            return "json"
    except RecursionError:  # a list that contains itself, or nesting deeper than JSON goes
        pass
    return "joblib"


def encode(value: Any, store: ObjectStore, *, probe: bool = True) -> tuple[str, PutResult]:
    """Store *value* and return its codec and where it went.

    :param probe: the value is probably stored already (an earlier snapshot had it): hash
        it before deciding to write. ``False`` writes and hashes a new value in one pass.
    :raises EncodeError: when the value cannot be serialized (open files, locks, ...).
    :raises ObjectError: when the store itself fails (disk full, ...): not the value's fault.
    """
    codec = choose(value)
    try:
        if codec == "npy" and value.nbytes >= CHUNKED_MIN and (value.flags.c_contiguous or value.flags.f_contiguous):
            return "npy-chunks", _put_chunked_npy(value, store, probe)
        if codec == "npy":
            size = len(_npy_header(value)) + value.nbytes
            return codec, store.put_buffers(lambda: _npy_buffers(value), probe=probe, size=size)
        if codec == "arrow" and _is_column_frame(value):
            return "frame", _put_frame(value, store, probe)
        if codec == "arrow":
            try:
                return codec, store.put_stream(lambda file: _write_arrow(value, file))
            except ObjectError:
                raise
            except Exception:
                codec = "joblib"  # Arrow refused a column after all: pickle it exactly
        if codec == "json":
            try:
                text = json.dumps(value, ensure_ascii=False).encode()
            except (ValueError, RecursionError):  # ints over the digit limit, lone surrogates
                codec = "joblib"
            else:
                return codec, store.put_bytes(text)
        if codec == "pickle":
            return codec, store.put_stream(lambda file: pickle.dump(value, file, protocol=5))
        import joblib  # imported when needed: it brings numpy along

        return "joblib", store.put_stream(lambda file: joblib.dump(value, file))
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
    for member in vars(cls).values():
        code = getattr(getattr(member, "__func__", member), "__code__", None)
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
    data = store.read_bytes(object_id)
    try:
        if codec == "json":
            return json.loads(data)
        if codec == "arrow":
            import pyarrow as pa

            _check_safe_pyarrow(pa.__version__)
            return pa.ipc.open_file(pa.py_buffer(data)).read_all().to_pandas()
        if codec == "joblib":
            import joblib

            return joblib.load(io.BytesIO(data))
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
    if np is None or type(value) is not np.ndarray or value.dtype.hasobject:
        return False
    try:
        _npy_header(value)
    except (UnicodeEncodeError, EncodeError):  # field names beyond latin-1: pickle instead
        return False
    return True


def _is_array_subclass(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.ndarray) and type(value) is not np.ndarray


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


# -- frame: a DataFrame column by column ----------------------------------------------------


def _plain_column(pd: Any, values: Any) -> bool:
    np = sys.modules["numpy"]
    return isinstance(values, np.ndarray) and values.ndim == 1 and _is_plain_array(values)


def _is_column_frame(value: Any) -> bool:
    """Whether *value* (an Arrow-exact DataFrame) is big enough, and its index simple enough,
    to be stored column by column."""
    pd = sys.modules["pandas"]
    if value.memory_usage(index=True, deep=False).sum() < FRAME_MIN:
        return False
    if value.columns.name is not None and not isinstance(value.columns.name, str):
        return False  # the manifest keeps names as JSON strings
    index = value.index
    if isinstance(index, pd.RangeIndex):
        return index.name is None or isinstance(index.name, str)
    return (
        not isinstance(index, pd.MultiIndex)
        and (index.name is None or isinstance(index.name, str))
        and isinstance(index.dtype, sys.modules["numpy"].dtype)
        and _plain_column(pd, index.to_numpy())
        and getattr(index, "freq", None) is None
    )


def _put_frame(frame: Any, store: ObjectStore, probe: bool) -> Manifest:
    """Store each column as its own value (``npy``/``npy-chunks``, else one-column Arrow),
    then a manifest naming them in order with the index."""
    pd = sys.modules["pandas"]
    parts: list[tuple[str, str, int]] = []
    new_bytes = 0

    def put(label: str, value: Any) -> dict[str, Any]:
        nonlocal new_bytes
        if _plain_column(pd, value):
            codec, stored = encode(value, store, probe=probe)
        else:
            single = pd.DataFrame({"values": value}, copy=False)
            codec, stored = "arrow", store.put_stream(lambda file: _write_arrow(single, file))
        parts.append((label, stored.object_id, stored.size))
        if isinstance(stored, Manifest):
            parts.extend((f"{label} {part}", part_id, size) for part, part_id, size in stored.parts)
            new_bytes += stored.new_bytes
        elif stored.new:
            new_bytes += stored.size
        return {"codec": codec, "object": stored.object_id}

    columns = []
    for name in frame.columns:
        series = frame[name]
        values = series.to_numpy() if isinstance(series.dtype, sys.modules["numpy"].dtype) else series.reset_index(drop=True)
        columns.append({"name": name, **put(f"column {name!r}", values)})
    index = frame.index
    if isinstance(index, pd.RangeIndex):
        index_spec: dict[str, Any] = {"range": [index.start, index.stop, index.step], "name": index.name}
    else:
        index_spec = {"name": index.name, **put("index", index.to_numpy())}
    manifest = {"format": "frame/1", "columns": columns, "index": index_spec, "columns_name": frame.columns.name}
    stored = store.put_bytes(json.dumps(manifest).encode())
    return Manifest(
        stored.object_id, stored.size, stored.new, parts=tuple(parts),
        new_bytes=new_bytes + (stored.size if stored.new else 0),
        value_size=int(frame.memory_usage(index=True, deep=False).sum()),
    )


def _read_frame(store: ObjectStore, object_id: str) -> Any:
    """Put a stored frame's columns back side by side (no copy of the columns)."""
    import pandas as pd

    try:
        manifest = json.loads(store.read_bytes(object_id))
        specs = [(column["name"], column["codec"], check_object_id(column["object"])) for column in manifest["columns"]]
        index_spec = manifest["index"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptObject(f"object {object_id} is not a valid frame manifest: {exc}") from None
    if any(codec not in ("npy", "npy-chunks", "arrow") for _, codec, _ in specs):
        raise CorruptObject(f"object {object_id}: a frame's column may only be npy or arrow")

    def load(codec: str, part_id: str) -> Any:
        value = decode(codec, part_id, store)
        return value["values"].array if codec == "arrow" else value

    columns = {name: load(codec, part_id) for name, codec, part_id in specs}
    if "range" in index_spec:
        index = pd.RangeIndex(*index_spec["range"], name=index_spec.get("name"))
    else:
        if index_spec.get("codec") not in ("npy", "npy-chunks"):
            raise CorruptObject(f"object {object_id}: a frame's index may only be npy")
        index = pd.Index(load(index_spec["codec"], check_object_id(index_spec["object"])), name=index_spec.get("name"), copy=False)
    try:
        frame = pd.DataFrame(columns, index=index, copy=False)
        frame.columns.name = manifest.get("columns_name")
    except (TypeError, ValueError) as exc:
        raise DecodeError(f"object {object_id}: its columns do not make a frame: {exc}") from None
    return frame


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


def _is_arrow_frame(value: Any) -> bool:
    """Whether *value* is a DataFrame that Arrow stores and gives back exactly."""
    pd = sys.modules.get("pandas")
    if pd is None or type(value) is not pd.DataFrame:
        return False
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    columns = value.columns
    if (
        isinstance(columns, pd.MultiIndex)
        or not columns.is_unique
        or not all(type(c) is str for c in columns)
        or not (columns.name is None or type(columns.name) is str)  # Arrow gives a tuple back as a list
        or value.attrs
    ):
        return False
    if getattr(value.index, "freq", None) is not None:
        return False  # Arrow does not keep a DatetimeIndex's freq
    index_levels = (
        [value.index.get_level_values(i) for i in range(value.index.nlevels)]
        if isinstance(value.index, pd.MultiIndex)
        else [value.index]
    )
    if isinstance(value.index, pd.RangeIndex):
        index_levels = []
    return all(_arrow_exact(pd, level, index=True) for level in index_levels) and all(
        _arrow_exact(pd, value[c]) for c in columns
    )


def _arrow_exact(pd: Any, series: Any, index: bool = False) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.SparseDtype):
        return False
    if index and isinstance(dtype, pd.api.extensions.ExtensionDtype) and not isinstance(
        dtype, (pd.StringDtype, pd.CategoricalDtype, pd.DatetimeTZDtype)
    ):
        return False  # nullable Int64/Float64/boolean indexes come back as numpy dtypes
    if isinstance(dtype, pd.CategoricalDtype):
        return _arrow_exact(pd, pd.Series(dtype.categories), index)
    if isinstance(dtype, pd.StringDtype):
        # Arrow gives strings back as pyarrow-backed; an index always with NaN for missing.
        return dtype.storage == "pyarrow" and (not index or dtype.na_value is not pd.NA)
    if isinstance(dtype, pd.DatetimeTZDtype):
        return True
    return getattr(dtype, "kind", None) in _ARROW_KINDS  # object ("O") columns never


def _write_arrow(frame: Any, file: Any) -> None:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=None)
    with pa.ipc.new_file(pa.PythonFile(file, mode="w"), table.schema) as writer:
        writer.write_table(table)


# -- json -----------------------------------------------------------------------------------


def _is_json_plain(value: Any, count: list[int]) -> bool:
    """Whether *value* survives a JSON round trip unchanged (exact types, str keys)."""
    count[0] += 1
    if count[0] > JSON_MAX_ITEMS:
        return False
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return True
    if kind is list:
        return all(_is_json_plain(v, count) for v in value)
    if kind is dict:
        return all(type(k) is str and _is_json_plain(v, count) for k, v in value.items())
    return False
