"""The values a notebook holds, and what "given back exactly" means for each of them.

- :func:`values` is a Hypothesis strategy for a variable's value: one small strategy per type
  family (NumPy, pandas, Python builtins, the standard library's value types, SciPy sparse,
  scikit-learn, polars, pyarrow, xarray). ``values(large=True)`` adds, rarely, arrays and
  frames big enough to be stored in parts.
- :func:`assert_exact` is the strict comparison: exact types, dtypes (with their metadata and
  byte order), shapes, labels and names (``5`` is not ``'5'``), ``attrs`` and flags, NaN-aware
  and stride-blind values, ``-0.0`` is not ``0.0``, and the same sharing of sub-objects.
  It raises ``AssertionError`` with one line naming the first difference.
- :data:`FAMILIES` says, for each family, how nbversion stores it (the codec), whether a
  teammate's clone loads it without ``--trust``, what is exact and what is approximated.
  ``scripts/gen_support.py`` writes ``docs/support.md`` from it; ``tests/test_support_doc.py``
  checks every claim by snapshotting the family's example.

Classes a notebook defines live in ``__main__``; the dataclass, Enum and namedtuple here live in
this module instead (pickle finds them by name either way; the session test covers ``__main__``).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import enum
import functools
import math
import pathlib
import types
import warnings
import zoneinfo
from collections import namedtuple
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# -- module-level classes (a notebook's would be in __main__) -------------------------------


@dataclasses.dataclass
class Point:
    x: Any
    y: Any = None


class Color(enum.Enum):
    RED = 1
    GREEN = "green"


Pair = namedtuple("Pair", ["left", "right"])

SMALL_SIDE = 4
LARGE_BYTES = 16 * 1024 * 1024  # codecs.CHUNKED_MIN: arrays from here are stored in parts


# -- NumPy ----------------------------------------------------------------------------------

PLAIN_DTYPES = [
    "?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", ">i4", ">f8",
    "f2", "f4", "f8", "g", "c8", "c16",
    "M8[D]", "M8[s]", "M8[ns]", "M8[5m]", "m8[ms]", "m8[us]", "m8[D]",
    "U3", "S4", ">U2",
]
STRUCTURED_DTYPES = [
    np.dtype([("a", "i4"), ("b", "f8")]),
    np.dtype([("a", "i1"), ("b", "<f8")], align=True),
    np.dtype([("p", [("x", "f4"), ("y", "f4")]), ("n", "U2"), ("m", "M8[s]")]),
    np.dtype({"names": ["a", "b"], "formats": ["i2", "u1"], "offsets": [0, 4], "itemsize": 8}),
    np.dtype([(("title of a", "a"), "i4"), ("v", "i2", (2,))]),
]
METADATA_DTYPES = [
    np.dtype("f8", metadata={"unit": "m"}),
    np.dtype("i4", metadata={"source": ("sensor", 3)}),
]


def _shapes(min_dims: int = 0) -> st.SearchStrategy:
    return hnp.array_shapes(min_dims=min_dims, max_dims=3, min_side=0, max_side=SMALL_SIDE)


def _plain_array(dtype: Any) -> st.SearchStrategy:
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize > 8:  # longdouble: Hypothesis draws float64s
        return hnp.arrays("f8", _shapes()).map(lambda a: a.astype(dtype))
    return hnp.arrays(dtype, _shapes())


def _layout(array: np.ndarray, how: str) -> np.ndarray:
    """The same values in another memory layout: F order, a strided slice, a transpose."""
    if how == "F":
        return np.asfortranarray(array)
    if how == "step" and array.ndim:
        return array[::2]
    if how == "reverse" and array.ndim:
        return array[..., ::-1]
    if how == "T":
        return array.T
    return array


def numpy_arrays() -> st.SearchStrategy:
    """Plain arrays (no Python objects) of every dtype, 0-d to 3-d, in C, F and strided layouts."""
    dtypes = st.sampled_from(PLAIN_DTYPES + STRUCTURED_DTYPES)
    arrays = dtypes.flatmap(_plain_array)
    return st.builds(_layout, arrays, st.sampled_from(["C", "F", "step", "reverse", "T"]))


def object_arrays() -> st.SearchStrategy:
    """Arrays of Python objects (small ints, strs, None)."""
    items = st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none()), max_size=6)

    def build(values: list[Any], two_d: bool) -> np.ndarray:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array.reshape(2, -1) if two_d and len(values) % 2 == 0 else array

    return st.builds(build, items, st.booleans())


def metadata_arrays() -> st.SearchStrategy:
    """Arrays whose dtype carries ``metadata`` (which the .npy format cannot hold)."""
    return st.sampled_from(METADATA_DTYPES).flatmap(lambda dtype: hnp.arrays(dtype, _shapes()))


def masked_arrays() -> st.SearchStrategy:
    """Masked arrays: a mask or ``nomask``, a fill value, soft or hard masks."""

    @st.composite
    def build(draw: st.DrawFn) -> np.ma.MaskedArray:
        dtype = draw(st.sampled_from(["i4", "f8", "?", "U2", "M8[s]"]))
        data = draw(hnp.arrays(dtype, _shapes(min_dims=1)))
        kind = draw(st.sampled_from(["mask", "nomask", "all"]))
        if kind == "mask":
            mask = draw(hnp.arrays("?", data.shape))
        else:
            mask = np.ma.nomask if kind == "nomask" else np.ones(data.shape, bool)
        array = np.ma.MaskedArray(data, mask=mask, hard_mask=draw(st.booleans()))
        if dtype in ("i4", "f8") and draw(st.booleans()):
            array.fill_value = 7
        return array

    return build()


def _matrix(values: Any) -> np.matrix:
    with warnings.catch_warnings():  # "the matrix subclass is not the recommended way"
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.matrix(values)


def array_subclasses() -> st.SearchStrategy:
    return st.builds(_matrix, hnp.arrays(st.sampled_from(["i8", ">f8"]), st.tuples(st.integers(1, 3), st.integers(1, 3))))


def large_arrays() -> st.SearchStrategy:
    """Arrays of 16 MiB and more (stored in parts), C or F ordered, a few bytes set."""

    def build(dtype: str, fortran: bool, seed: int) -> np.ndarray:
        itemsize = np.dtype(dtype).itemsize
        array = np.zeros((LARGE_BYTES // itemsize // 64 + 3, 64), dtype=dtype, order="F" if fortran else "C")
        array.reshape(-1, order="A")[seed % 1000 :: 100_003] = 1
        return array

    return st.builds(build, st.sampled_from(["f8", "u1", "i4", ">i8"]), st.booleans(), st.integers(0, 10**6))


# -- pandas ---------------------------------------------------------------------------------

LABELS = st.one_of(
    st.text(max_size=3),
    st.integers(-3, 3),
    st.sampled_from([("a", 1), (0, 0), "__index_level_0__", 1.5, None]),
)
NAMES = st.sampled_from([None, "k", "", 5, ("a", 1), "__index_level_0__", "a", 0])
TZ = st.sampled_from(["UTC", "Europe/Paris", "Asia/Kolkata"])


def _column(kind: str, n: int, draw: st.DrawFn) -> Any:
    """A column of *n* rows of one kind (its dtype), as pandas builds it."""
    ints = draw(st.lists(st.integers(-100, 100), min_size=n, max_size=n))
    if kind == "int64":
        return np.array(ints, dtype="i8")
    if kind == "uint8":
        return np.array([abs(i) for i in ints], dtype="u1")
    if kind == "float64":
        return np.array(draw(st.lists(st.floats(allow_infinity=True, allow_nan=True), min_size=n, max_size=n)), dtype="f8")
    if kind == "float32":
        return np.array(ints, dtype="f4")
    if kind == "bool":
        return np.array([i > 0 for i in ints])
    if kind == "str":
        return pd.array([str(i) if i % 5 else None for i in ints], dtype="str")
    if kind == "string[python]":
        return pd.array([str(i) if i % 5 else None for i in ints], dtype=pd.StringDtype("python"))
    if kind == "string[pyarrow]":
        return pd.array([str(i) if i % 5 else None for i in ints], dtype=pd.StringDtype("pyarrow"))
    if kind == "Int64":
        return pd.array([i if i % 3 else None for i in ints], dtype="Int64")
    if kind == "boolean":
        return pd.array([i > 0 if i % 3 else None for i in ints], dtype="boolean")
    if kind == "Float64":
        return pd.array([i / 2 if i % 3 else None for i in ints], dtype="Float64")
    if kind == "category":
        return pd.Categorical([("x", "y", "z")[i % 3] for i in ints], categories=["z", "y", "x"], ordered=draw(st.booleans()))
    if kind == "datetime":
        return pd.to_datetime(ints, unit="D").as_unit("s")
    if kind == "datetime-tz":
        return pd.to_datetime(ints, unit="h").tz_localize(draw(TZ))
    if kind == "timedelta":
        return pd.to_timedelta(ints, unit="ms")
    if kind == "object":
        values = np.empty(n, dtype=object)
        values[:] = [(i, "x")[i % 2] for i in ints]
        return values
    raise ValueError(kind)


FLAT_COLUMNS = [
    "int64", "uint8", "float64", "float32", "bool", "str", "string[python]", "string[pyarrow]",
    "Int64", "boolean", "Float64", "category", "datetime", "datetime-tz", "timedelta",
]
COLUMN_KINDS = FLAT_COLUMNS + ["object"]
INDEX_KINDS = ["range", "int64", "str", "datetime-tz", "category", "multi", "float64", "string[pyarrow]"]


def _index(kind: str, n: int, draw: st.DrawFn) -> pd.Index:
    if kind == "range":
        start, step = draw(st.integers(-3, 3)), draw(st.sampled_from([1, 2, -1]))
        return pd.RangeIndex(start, start + step * n, step, name=draw(NAMES))
    if kind == "multi":
        first = _column("str", n, draw)
        second = _column("int64", n, draw)
        names = draw(st.sampled_from([[None, None], [0, 1], ["a", ("b", 2)], ["__index_level_0__", None]]))
        return pd.MultiIndex.from_arrays([first, second], names=names)
    return pd.Index(_column(kind, n, draw), name=draw(NAMES))


def _with_attrs_and_flags(obj: Any, draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        obj.attrs = draw(st.sampled_from([{"source": "sensor"}, {"units": {"a": "m"}, "n": 3}, {5: (1.5, None)}]))
    axes = [obj.index, obj.columns] if isinstance(obj, pd.DataFrame) else [obj.index]
    if all(axis.is_unique for axis in axes) and draw(st.booleans()):
        obj = obj.set_flags(allows_duplicate_labels=False)
    return obj


@st.composite
def data_frames(draw: st.DrawFn, kinds: list[str] = FLAT_COLUMNS + ["object"], n_max: int = 4) -> pd.DataFrame:
    """DataFrames: any column dtype, labels of any hashable type (duplicates too), any index."""
    n = draw(st.integers(0, n_max))
    width = draw(st.integers(0, 3))
    kinds = draw(st.lists(st.sampled_from(kinds), min_size=width, max_size=width))
    labels = draw(st.lists(LABELS, min_size=width, max_size=width))
    index = _index(draw(st.sampled_from(INDEX_KINDS)), n, draw)
    frame = pd.DataFrame({i: _column(kind, n, draw) for i, kind in enumerate(kinds)}, index=index)
    columns_kind = draw(st.sampled_from(["labels", "object", "range"]))
    if columns_kind == "range" or not width:
        frame.columns = pd.RangeIndex(width)
    else:
        frame.columns = pd.Index(labels, dtype=object if columns_kind == "object" else None, tupleize_cols=False)
    frame.columns.name = draw(NAMES)
    return _with_attrs_and_flags(frame, draw)


def empty_frames() -> st.SearchStrategy:
    return st.sampled_from([
        lambda: pd.DataFrame(),
        lambda: pd.DataFrame(index=pd.RangeIndex(0)),
        lambda: pd.DataFrame(columns=pd.Index(["a", "b"], dtype=object)),
        lambda: pd.DataFrame({"a": pd.Series([], dtype="i8")}),
        lambda: pd.DataFrame(index=pd.Index([1, 2], name=5)),
    ]).map(lambda build: build())


@st.composite
def series(draw: st.DrawFn) -> pd.Series:
    n = draw(st.integers(0, 4))
    index = _index(draw(st.sampled_from(INDEX_KINDS)), n, draw)
    values = _column(draw(st.sampled_from(COLUMN_KINDS)), n, draw)
    return _with_attrs_and_flags(pd.Series(values, index=index, name=draw(st.one_of(NAMES, LABELS))), draw)


@st.composite
def indexes(draw: st.DrawFn) -> pd.Index:
    return _index(draw(st.sampled_from(INDEX_KINDS + ["datetime", "timedelta", "Int64", "object"])), draw(st.integers(0, 4)), draw)


def large_frames() -> st.SearchStrategy:
    """DataFrames of 8 MiB and more (stored column by column)."""

    def build(labels: list[Any], seed: int) -> pd.DataFrame:
        rows = 8 * 1024 * 1024 // 8 // len(labels) + 10
        frame = pd.DataFrame({i: np.full(rows, seed + i, dtype="f8") for i in range(len(labels))})
        frame.columns = pd.Index(labels, dtype=object)
        return frame

    return st.builds(build, st.lists(LABELS, min_size=1, max_size=3), st.integers(0, 100))


# -- Python builtins and the standard library -----------------------------------------------

# Built when drawn: the repr of 10**5000 raises (Python's 4300-digit limit), so no strategy holds it.
HUGE_INTS = st.builds(lambda exponent, sign: sign * 10**exponent + sign, st.sampled_from([5000, 4300, 19]), st.sampled_from([1, -1]))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([-0.0, 0.0, math.nan, -math.inf]))
SURROGATES = st.sampled_from(["\ud800", "a\udfffb", "\udc80\ud83d"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), HUGE_INTS, FLOATS, st.complex_numbers(allow_nan=True),
    st.text(max_size=8), SURROGATES, st.binary(max_size=8),
)
HASHABLES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=3), st.sampled_from([1.5, -0.0]), st.tuples(st.integers(0, 2), st.text(max_size=1)))


def builtin_values() -> st.SearchStrategy:
    """Scalars, and lists, tuples, dicts (keys of any type), sets, frozensets, bytearrays, and
    small arrays in containers."""

    def extend(children: st.SearchStrategy) -> st.SearchStrategy:
        return st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(HASHABLES, children, max_size=3),
            st.dictionaries(st.text(max_size=3), children, max_size=3),
        )

    small_arrays = st.sampled_from(["f8", ">i4", "M8[s]", "U2"]).flatmap(lambda dtype: hnp.arrays(dtype, _shapes()))
    leaves = st.one_of(
        SCALARS, st.sets(HASHABLES, max_size=3), st.frozensets(HASHABLES, max_size=3),
        st.binary(max_size=4).map(bytearray), small_arrays,
    )
    return st.recursive(leaves, extend, max_leaves=8)


def json_values() -> st.SearchStrategy:
    """Lists and dicts (str keys) of None, bool, int, float, str: what JSON holds exactly."""
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), FLOATS, st.text(max_size=8))
    containers = lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=3), children, max_size=3))
    return containers(st.recursive(scalars, containers, max_leaves=8))


def shared_and_recursive() -> st.SearchStrategy:
    """A list holding itself, a dict holding itself, one list in two places."""

    def build(kind: str, item: Any) -> Any:
        if kind == "self-list":
            value: Any = [item]
            value.append(value)
        elif kind == "self-dict":
            value = {"item": item}
            value["me"] = value
        else:
            shared = [item]
            value = {"a": shared, "b": [shared, shared]}
        return value

    return st.builds(build, st.sampled_from(["self-list", "self-dict", "shared"]), SCALARS)


def numbers_and_times() -> st.SearchStrategy:
    """Decimal, Fraction, datetime (naive and tz-aware, both folds), date, time, timedelta."""
    zones = st.sampled_from([None, dt.timezone.utc, dt.timezone(dt.timedelta(hours=5, minutes=30), "IST"), zoneinfo.ZoneInfo("Europe/Paris")])
    return st.one_of(
        st.decimals(allow_nan=True, allow_infinity=True, places=None),
        st.sampled_from([Decimal("1.10"), Decimal("-0"), Decimal("sNaN")]),
        st.fractions(),
        st.datetimes(timezones=zones, allow_imaginary=True),
        st.dates(),
        st.times(timezones=zones),
        st.timedeltas(),
    )


def paths_and_classes() -> st.SearchStrategy:
    """pathlib paths, a dataclass instance, an Enum member, a namedtuple."""
    text = st.text(max_size=4)
    return st.one_of(
        st.builds(pathlib.Path, text),
        st.builds(pathlib.PurePosixPath, text),
        st.builds(pathlib.PureWindowsPath, text),
        st.builds(Point, SCALARS, st.lists(st.integers(), max_size=2)),
        st.sampled_from(list(Color)),
        st.builds(Pair, SCALARS, SCALARS),
    )


# -- SciPy, scikit-learn, polars, pyarrow, xarray -------------------------------------------


def sparse_matrices() -> st.SearchStrategy:
    import scipy.sparse as sp

    formats = [sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.csr_array, sp.coo_array]
    dense = hnp.arrays(st.sampled_from(["f8", "i4", "?"]), st.tuples(st.integers(1, 4), st.integers(1, 4)))
    return st.builds(lambda make, values: make(values), st.sampled_from(formats), dense)


@functools.cache
def _fitted(kind: str) -> Any:
    """A fitted estimator (fitting is slow: each kind is fitted once and copied)."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X = np.array([[0.0, 1.0], [1.0, 0.5], [2.0, 3.0], [3.0, 2.5], [4.0, 0.0], [5.0, 1.5]])
    y = np.array([0, 0, 1, 1, 0, 1])
    if kind == "scaler":
        return StandardScaler().fit(X)
    if kind == "logistic":
        return LogisticRegression(C=0.5).fit(X, y)
    if kind == "linear":
        return LinearRegression().fit(pd.DataFrame(X, columns=["a", "b"]), y.astype(float))
    if kind == "onehot":
        return OneHotEncoder().fit(np.array([["a"], ["b"], ["a"]], dtype=object))
    if kind == "pipeline":
        return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    if kind == "unfitted":
        return LogisticRegression(max_iter=7)
    raise ValueError(kind)


def estimators() -> st.SearchStrategy:
    kinds = ["scaler", "logistic", "linear", "onehot", "pipeline", "unfitted"]
    return st.sampled_from(kinds).map(lambda kind: copy.deepcopy(_fitted(kind)))


def polars_values() -> st.SearchStrategy:
    import polars as pl

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        n = draw(st.integers(0, 4))
        ints = draw(st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=n, max_size=n))
        floats = draw(st.lists(st.floats(allow_nan=True), min_size=n, max_size=n))
        frame = pl.DataFrame({
            "i": pl.Series(ints, dtype=pl.Int32),
            "f": floats,
            "s": [None if i is None else str(i) for i in ints],
            "t": pl.Series([dt.datetime(2024, 1, 1 + k) for k in range(n)], dtype=pl.Datetime("us", "UTC")),
        })
        if draw(st.booleans()):
            return frame.to_series(draw(st.integers(0, 3)))
        return frame

    return build()


def arrow_tables() -> st.SearchStrategy:
    import pyarrow as pa

    def build(ints: list[int | None], metadata: bool) -> Any:
        table = pa.table({"i": pa.array(ints, pa.int16()), "s": [None if i is None else str(i) for i in ints]})
        return table.replace_schema_metadata({"origin": "sensor"}) if metadata else table

    return st.builds(build, st.lists(st.one_of(st.none(), st.integers(-5, 5)), max_size=4), st.booleans())


def xarray_values() -> st.SearchStrategy:
    import xarray as xr

    def build(data: np.ndarray, name: Any, dataset: bool) -> Any:
        array = xr.DataArray(
            data, dims=("x", "y"), name=name, attrs={"units": "m"},
            coords={"x": np.arange(data.shape[0]), "label": ("y", [f"c{j}" for j in range(data.shape[1])])},
        )
        return array.to_dataset(name=name or "v").assign_attrs(title="run") if dataset else array

    data = hnp.arrays(st.sampled_from(["f8", "i4"]), st.tuples(st.integers(1, 3), st.integers(1, 3)))
    return st.builds(build, data, st.sampled_from([None, "t", "temperature"]), st.booleans())


# -- FAMILIES: how each family is stored, and what comes back --------------------------------


@dataclasses.dataclass(frozen=True)
class Family:
    """One type family: how nbversion stores it and what a restore gives back."""

    name: str
    strategy: Callable[[], st.SearchStrategy]
    example: Callable[[], Any]  # a value of the family, stored with *codec*
    codec: str
    trusted: bool  # loads in a teammate's clone without --trust (no pickle)
    exact: str
    approximated: str = "nothing"
    large: bool = False  # only in values(large=True)


def _example_frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        {5: [1, 2], ("a", 1): pd.array([1, None], dtype="Int64"), "t": pd.to_datetime([0, 1]).tz_localize("UTC")},
        index=pd.MultiIndex.from_arrays([["x", "y"], [1, 2]], names=[0, 1]),
    )
    frame.attrs["source"] = "sensor"
    return frame


def _example_object_frame() -> pd.DataFrame:
    values = np.empty(2, dtype=object)
    values[:] = [1, "a"]
    return pd.DataFrame({"mixed": values})


def _example_masked() -> np.ma.MaskedArray:
    return np.ma.MaskedArray([1.0, 2.0, 3.0], mask=[False, True, False], fill_value=7.0, hard_mask=True)


def _example_recursive() -> list[Any]:
    value: list[Any] = [1, {2, 3}, (b"x", 10**5000)]
    value.append(value)
    return value


FAMILIES: list[Family] = [
    Family(
        "NumPy arrays", numpy_arrays, lambda: np.arange(6, dtype=">i4").reshape(2, 3)[:, ::2], "npy", True,
        "dtype (byte order, structured fields and offsets, datetime units, longdouble), shape, "
        "values bit for bit; F-ordered arrays stay F-ordered",
        "a non-contiguous view of an array that is not restored with it comes back as a contiguous "
        "copy (same values, other strides); `flags.writeable` is not kept (a restored array is writeable)",
    ),
    Family(
        "NumPy arrays of 16 MiB and more", large_arrays, lambda: np.zeros((LARGE_BYTES // 8 + 8,)), "npy-chunks", True,
        "as NumPy arrays; stored as 4 MiB parts, so a small change stores a small part",
        large=True,
    ),
    Family(
        "NumPy arrays whose dtype has metadata or align=True", metadata_arrays,
        lambda: np.zeros(3, dtype=np.dtype("f8", metadata={"unit": "m"})), "pickle", False,
        "as NumPy arrays, and `dtype.metadata` and `isalignedstruct` (the .npy format has no "
        "place for them, and metadata may be any Python object)",
    ),
    Family(
        "NumPy arrays of Python objects", object_arrays, lambda: np.array([1, "a", None], dtype=object), "joblib", False,
        "every element, pickled",
        "two variables that view one memory (`v = a[1:3]`) come back as two arrays with the same "
        "values that no longer share memory (NumPy cannot make an array of objects over a buffer)",
    ),
    Family(
        "NumPy masked arrays", masked_arrays, _example_masked, "masked", True,
        "data (masked places too), mask (or `nomask`), `fill_value`, `hard_mask`; "
        "arrays of Python objects are pickled instead",
        "two variables that view one memory (`v = a[1:3]`) come back as two masked arrays with the "
        "same data and masks that no longer share memory",
    ),
    Family(
        "NumPy array subclasses (`np.matrix`)", array_subclasses, lambda: _matrix([[1, 2], [3, 4]]), "pickle", False,
        "the subclass, its dtype (byte order too: NumPy's own pickle makes it native) and values",
    ),
    Family(
        "pandas DataFrames", data_frames, _example_frame, "arrow", True,
        "column dtypes (nullable, categorical, tz-aware, `str`), values, index and columns "
        "(class, dtype, duplicate labels, labels and names such as `5`, `('a', 1)`, `[0, 1]`, "
        "`'__index_level_0__'`), `attrs`, `flags.allows_duplicate_labels`. Pickled instead "
        "(exact, needs trust) when Arrow or JSON cannot say it exactly: a column of Python objects "
        "or `string[python]`, MultiIndex or non-plain columns, an index with a `freq` or a nullable "
        "dtype, a label, name or attr that is not None, bool, int, float, str, or a tuple, list "
        "or dict of them",
    ),
    Family(
        "pandas DataFrames of 8 MiB and more", large_frames,
        lambda: pd.DataFrame({"a": np.zeros(1024 * 1024 + 1), 2: np.ones(1024 * 1024 + 1)}), "frame", True,
        "as DataFrames; each column is stored on its own, so changing one column stores that column "
        "(a frame with a MultiIndex or object index is stored whole, `arrow`)",
        large=True,
    ),
    Family(
        "pandas DataFrames with Python-object columns", lambda: data_frames(kinds=["object", "int64"]),
        _example_object_frame, "joblib", False,
        "everything, pickled (Arrow cannot hold an arbitrary object column exactly)",
    ),
    Family("pandas Series", series, lambda: pd.Series([1.5, None], name=("a", 1), dtype="Float64"), "arrow", True,
           "dtype, values, name, index, `attrs`, flags; pickled instead when a DataFrame would be "
           "(object values, a name JSON cannot hold)"),
    Family("pandas Index and MultiIndex", indexes,
           lambda: pd.MultiIndex.from_arrays([["x", "y"], [1, 2]], names=[0, ("b", 2)]), "arrow", True,
           "class (RangeIndex stays RangeIndex), dtype, values, names, a MultiIndex's levels; "
           "pickled instead for object or nullable dtypes, a `freq`, or unused or unsorted levels"),
    Family(
        "JSON-like builtins (None, bool, int, float, str, list, dict with str keys)",
        json_values,
        lambda: {"a": [1, 2.5, -0.0, float("nan"), None, True, "é"]}, "json", True,
        "types, values, `-0.0`, NaN and infinities, dict order",
    ),
    Family(
        "Other builtins (bytes, bytearray, tuple, set, frozenset, complex, huge int, "
        "dict with other keys, self-referencing or shared containers, lone surrogates)",
        lambda: st.one_of(builtin_values(), shared_and_recursive()), _example_recursive, "joblib", False,
        "types, values, order, containers that hold themselves, sub-objects shared inside the value, "
        "arrays inside (byte order too)",
        "an `np.matrix` inside a container comes back as a plain array, and a masked array inside "
        "one loses `hard_mask` and its byte order (joblib's pickler does not use "
        "`codecs.reduce_exactly` yet)",
    ),
    Family(
        "Decimal, Fraction, datetime, date, time, timedelta", numbers_and_times,
        lambda: dt.datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")), "joblib", False,
        "values, `Decimal` digits and exponent, time zones, `fold`",
    ),
    Family(
        "pathlib paths, dataclasses, Enum members, namedtuples", paths_and_classes,
        lambda: Point(Pair(Color.RED, pathlib.Path("data/x.csv"))), "joblib", False,
        "class and attributes; the class must be importable where it is loaded (a notebook's own "
        "classes: defined before the restore)",
    ),
    Family(
        "SciPy sparse matrices and arrays", sparse_matrices, lambda: __import__("scipy.sparse").sparse.csr_matrix(np.eye(3)),
        "joblib", False, "format, dtype, shape, stored entries (`indices`, `indptr`, `data`)",
    ),
    Family(
        "scikit-learn estimators and Pipelines", estimators, lambda: copy.deepcopy(_fitted("pipeline")), "joblib", False,
        "parameters and every fitted attribute; loading with another scikit-learn version "
        "is warned about",
    ),
    Family(
        "polars DataFrames and Series", polars_values,
        lambda: __import__("polars").DataFrame({"a": [1, None], "b": ["x", "y"]}), "joblib", False,
        "schema (names, dtypes), values",
    ),
    Family(
        "pyarrow Tables", arrow_tables,
        lambda: __import__("pyarrow").table({"a": [1, None]}).replace_schema_metadata({"k": "v"}), "joblib", False,
        "schema with its metadata, values",
    ),
    Family(
        "xarray DataArrays and Datasets", xarray_values,
        lambda: __import__("xarray").DataArray(np.arange(3.0), dims="x", name="t", attrs={"units": "m"}), "joblib", False,
        "dims, coordinates, names, `attrs`, dtypes, values",
    ),
]


def values(large: bool = False) -> st.SearchStrategy:
    """A strategy for one variable's value, from every family (the large ones only if *large*)."""
    return st.one_of([family.strategy() for family in FAMILIES if large or not family.large])


# -- assert_exact ---------------------------------------------------------------------------

#: Values that cannot hold other values and that nobody changes in place: their identity
#: is not compared (``x = 5; [x, x]`` and ``[5, 5]`` are the same value).
_IMMUTABLE = (
    type(None), bool, int, float, complex, str, bytes, Decimal, Fraction, dt.date, dt.time,
    dt.timedelta, dt.tzinfo, pathlib.PurePath, enum.Enum, range, type, types.FunctionType,
    types.BuiltinFunctionType, np.generic, np.dtype,
)


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a repr that fails is a difference worth seeing too
        text = f"<repr failed: {type(exc).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def assert_exact(expected: Any, actual: Any, where: str = "value") -> None:
    """Raise ``AssertionError`` (one line) unless *actual* is exactly *expected*.

    Exact: same types all the way down, same dtypes (with metadata and byte order), shapes,
    values (NaN equals NaN, ``-0.0`` is not ``0.0``, strides do not matter), labels and
    names with their types, ``attrs``, flags, dict and list order, and the same sharing of
    sub-objects (an object reached twice in *expected* is one object in *actual*).
    """
    _Comparison().compare(expected, actual, where)


def _fail(where: str, what: str, expected: Any, actual: Any) -> None:
    raise AssertionError(f"{where}: {what} differs: expected {_short(expected)}, got {_short(actual)}")


def _one_line(check: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Run a pandas ``assert_*_equal`` and give its several-line message as one line."""
    try:
        check(*args, **kwargs)
    except AssertionError as exc:
        raise AssertionError(" ".join(str(exc).split())) from None


class _Comparison:
    def __init__(self) -> None:
        self.pairs: dict[int, int] = {}  # id(expected object) -> id(actual object)
        self.reverse: dict[int, int] = {}
        self.keep: list[Any] = []  # keeps compared objects alive so their ids stay unique

    def compare(self, a: Any, b: Any, where: str) -> None:
        if type(a) is not type(b):
            _fail(where, "type", type(a), type(b))
        if not isinstance(a, _IMMUTABLE) and not (type(a) is tuple):
            seen = self.pairs.get(id(a))
            if seen is not None or id(b) in self.reverse:
                if seen != id(b) or self.reverse.get(id(b)) != id(a):
                    raise AssertionError(f"{where}: sharing differs: an object seen twice in one value is not one object in the other")
                return  # compared already (or being compared: a value that holds itself)
            self.pairs[id(a)], self.reverse[id(b)] = id(b), id(a)
            self.keep += [a, b]
        for kinds, method in self._dispatch():
            if isinstance(a, kinds):
                method(a, b, where)
                return
        self.generic(a, b, where)

    def _dispatch(self) -> list[tuple[Any, Callable[[Any, Any, str], None]]]:
        found: list[tuple[Any, Callable[[Any, Any, str], None]]] = [
            (float, self.float_), (complex, self.complex_), (Decimal, self.decimal),
            (Fraction, lambda a, b, w: self.equal((a.numerator, a.denominator), (b.numerator, b.denominator), w, "value")),
            ((dt.datetime, dt.time), self.clock), ((bool, int, str, bytes, bytearray, type(None), dt.date, dt.timedelta, range), self.plain),
            (pathlib.PurePath, lambda a, b, w: self.equal(str(a), str(b), w, "path")),
            (enum.Enum, lambda a, b, w: self.equal(a.name, b.name, w, "member")),
            ((list, tuple), self.sequence), (dict, self.mapping), ((set, frozenset), self.set_),
            (np.ma.MaskedArray, self.masked), (np.ndarray, self.ndarray), (np.generic, self.numpy_scalar),
            (np.dtype, lambda a, b, w: self.dtype(a, b, w)),
            (pd.DataFrame, self.frame), (pd.Series, self.series), (pd.Index, self.index),
            (types.FunctionType, self.function),
        ]
        return found + self._optional()

    def _optional(self) -> list[tuple[Any, Callable[[Any, Any, str], None]]]:
        import sys

        found = []
        if "scipy.sparse" in sys.modules:
            sparse = sys.modules["scipy.sparse"]
            found.append(((sparse.spmatrix, sparse.sparray), self.sparse))
        if "polars" in sys.modules:
            pl = sys.modules["polars"]
            found.append(((pl.DataFrame, pl.Series), self.polars))
        if "pyarrow" in sys.modules:
            pa = sys.modules["pyarrow"]
            found.append(((pa.Table, pa.RecordBatch), self.arrow))
        if "xarray" in sys.modules:
            xr = sys.modules["xarray"]
            found.append(((xr.DataArray, xr.Dataset), self.xarray))
        if "sklearn" in sys.modules:
            found.append((sys.modules["sklearn"].base.BaseEstimator, self.estimator))
        return found

    # -- scalars

    def equal(self, a: Any, b: Any, where: str, what: str) -> None:
        if a != b:
            _fail(where, what, a, b)

    def plain(self, a: Any, b: Any, where: str) -> None:
        self.equal(a, b, where, "value")

    def float_(self, a: float, b: float, where: str) -> None:
        same = (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
        if not same:
            _fail(where, "value", a, b)

    def complex_(self, a: complex, b: complex, where: str) -> None:
        self.float_(a.real, b.real, where + ".real")
        self.float_(a.imag, b.imag, where + ".imag")

    def decimal(self, a: Decimal, b: Decimal, where: str) -> None:
        self.equal(a.as_tuple(), b.as_tuple(), where, "digits")

    def clock(self, a: Any, b: Any, where: str) -> None:
        self.equal(a.replace(tzinfo=None), b.replace(tzinfo=None), where, "value")
        self.equal(a.fold, b.fold, where, "fold")
        self.equal((a.tzinfo, repr(a.tzinfo)), (b.tzinfo, repr(b.tzinfo)), where, "tzinfo")

    def numpy_scalar(self, a: Any, b: Any, where: str) -> None:
        self.ndarray(np.asarray(a), np.asarray(b), where)

    # -- containers

    def sequence(self, a: Any, b: Any, where: str) -> None:
        self.equal(len(a), len(b), where, "length")
        for i, (x, y) in enumerate(zip(a, b)):
            self.compare(x, y, f"{where}[{i}]")
        if hasattr(a, "_fields"):  # a namedtuple
            self.equal(a._fields, b._fields, where, "fields")

    def mapping(self, a: dict, b: dict, where: str) -> None:
        self.equal(len(a), len(b), where, "length")
        for i, ((ka, va), (kb, vb)) in enumerate(zip(a.items(), b.items())):
            self.compare(ka, kb, f"{where}.keys()[{i}]")
            self.compare(va, vb, f"{where}[{_short(ka)}]")

    def set_(self, a: Any, b: Any, where: str) -> None:
        self.equal(len(a), len(b), where, "length")
        unmatched = list(b)
        for x in a:
            for j, y in enumerate(unmatched):
                try:
                    _Comparison().compare(x, y, where)
                except AssertionError:
                    continue
                del unmatched[j]
                break
            else:
                raise AssertionError(f"{where}: set element {_short(x)} has no exact match in {_short(b)}")

    # -- NumPy

    def dtype(self, a: np.dtype, b: np.dtype, where: str) -> None:
        self.equal(_dtype_signature(a), _dtype_signature(b), where, "dtype")

    def ndarray(self, a: np.ndarray, b: np.ndarray, where: str) -> None:
        self.dtype(a.dtype, b.dtype, where + ".dtype")
        self.equal(a.shape, b.shape, where, "shape")
        if a.dtype.names is not None:
            for name in a.dtype.names:
                self.ndarray(a[name], b[name], f"{where}[{name!r}]")
            return
        kind = a.dtype.kind
        if kind == "O":
            for i, (x, y) in enumerate(zip(a.ravel(), b.ravel())):
                self.compare(x, y, f"{where}.flat[{i}]")
            return
        if kind == "V":
            self.equal(a.tobytes(), b.tobytes(), where, "bytes")
            return
        if kind in "mM":
            same = np.array_equal(a.astype(np.int64), b.astype(np.int64))
        elif kind in "fc":
            same = np.array_equal(a, b, equal_nan=True) and all(
                np.array_equal(np.signbit(part(a)), np.signbit(part(b))) for part in (np.real, np.imag)
            )
        else:
            same = np.array_equal(a, b)
        if not same:
            _fail(where, "values", a, b)

    def masked(self, a: np.ma.MaskedArray, b: np.ma.MaskedArray, where: str) -> None:
        self.ndarray(a.data, b.data, where + ".data")
        self.equal(np.ma.getmask(a) is np.ma.nomask, np.ma.getmask(b) is np.ma.nomask, where, "nomask")
        self.ndarray(np.ma.getmaskarray(a), np.ma.getmaskarray(b), where + ".mask")
        # In the array's dtype: NumPy itself keeps an unset default as int64 or as the dtype,
        # depending on whether it was read before being pickled, and casts it on use.
        fill = lambda m: np.asarray(m.fill_value).astype(m.dtype)
        self.ndarray(fill(a), fill(b), where + ".fill_value")
        self.equal(a.hardmask, b.hardmask, where, "hard_mask")

    # -- pandas

    def labels(self, a: pd.Index, b: pd.Index, where: str) -> None:
        """An axis: class, dtype, names (with their types), and each label (with its type)."""
        self.equal(type(a), type(b), where, "class")
        self.dtype_of(a, b, where)
        self.compare(list(a.names), list(b.names), where + ".names")
        _one_line(pd.testing.assert_index_equal, a, b, exact=True, check_names=True, check_exact=True, check_categorical=True, obj=where)
        if isinstance(a, pd.MultiIndex):
            for level in range(a.nlevels):
                self.labels(a.levels[level], b.levels[level], f"{where}.levels[{level}]")
        elif a.dtype == object:
            self.compare(list(a), list(b), where + ".labels")
        if isinstance(a, pd.RangeIndex):
            self.equal((a.start, a.stop, a.step), (b.start, b.stop, b.step), where, "range")

    def dtype_of(self, a: Any, b: Any, where: str) -> None:
        if type(a.dtype) is not type(b.dtype):
            _fail(where, "dtype", a.dtype, b.dtype)
        if isinstance(a.dtype, np.dtype):
            self.dtype(a.dtype, b.dtype, where + ".dtype")
        else:
            self.equal((a.dtype, repr(a.dtype)), (b.dtype, repr(b.dtype)), where, "dtype")

    def pandas_common(self, a: Any, b: Any, where: str) -> None:
        self.labels(a.index, b.index, where + ".index")
        self.compare(a.attrs, b.attrs, where + ".attrs")
        self.equal(a.flags.allows_duplicate_labels, b.flags.allows_duplicate_labels, where, "flags.allows_duplicate_labels")

    def frame(self, a: pd.DataFrame, b: pd.DataFrame, where: str) -> None:
        self.labels(a.columns, b.columns, where + ".columns")
        self.pandas_common(a, b, where)
        _one_line(
            pd.testing.assert_frame_equal, a, b, check_exact=True, check_index_type=True, check_column_type=True, check_names=True,
            check_flags=True, check_freq=True, check_dtype=True, obj=where,
        )
        for i in range(a.shape[1]):
            self.values(a.iloc[:, i], b.iloc[:, i], f"{where}.iloc[:, {i}]")

    def series(self, a: pd.Series, b: pd.Series, where: str) -> None:
        self.compare(a.name, b.name, where + ".name")
        self.pandas_common(a, b, where)
        _one_line(
            pd.testing.assert_series_equal, a, b, check_exact=True, check_index_type=True, check_names=True, check_flags=True,
            check_freq=True, check_dtype=True, obj=where,
        )
        self.values(a, b, where)

    def values(self, a: pd.Series, b: pd.Series, where: str) -> None:
        """A column's values with their types (object) and signs of zero (floats)."""
        self.dtype_of(a, b, where)
        if isinstance(a.dtype, np.dtype) and a.dtype.kind in "Ofc":
            self.ndarray(a.to_numpy(), b.to_numpy(), where)

    def index(self, a: pd.Index, b: pd.Index, where: str) -> None:
        self.labels(a, b, where)
        if isinstance(a, pd.DatetimeIndex | pd.TimedeltaIndex):
            self.equal(a.freq, b.freq, where, "freq")

    # -- other libraries

    def sparse(self, a: Any, b: Any, where: str) -> None:
        self.equal((a.format, a.shape), (b.format, b.shape), where, "format and shape")
        self.dtype(a.dtype, b.dtype, where + ".dtype")
        fields = ("indices", "indptr", "data") if a.format in ("csr", "csc") else ("row", "col", "data") if a.format == "coo" else ()
        for field in fields:
            self.ndarray(getattr(a, field), getattr(b, field), f"{where}.{field}")
        if (a != b).nnz != 0:
            _fail(where, "entries", a, b)

    def polars(self, a: Any, b: Any, where: str) -> None:
        if hasattr(a, "schema"):
            self.equal(list(a.schema.items()), list(b.schema.items()), where, "schema")
            same = a.equals(b, null_equal=True)
        else:
            self.equal((a.name, a.dtype), (b.name, b.dtype), where, "name and dtype")
            same = a.equals(b, check_dtypes=True, check_names=True, null_equal=True)
        if not same:
            _fail(where, "values", a, b)

    def arrow(self, a: Any, b: Any, where: str) -> None:
        if not a.schema.equals(b.schema, check_metadata=True):
            _fail(where, "schema", a.schema, b.schema)
        for i in range(a.num_columns):
            self.compare(a.column(i).to_pylist(), b.column(i).to_pylist(), f"{where}.column({i})")

    def xarray(self, a: Any, b: Any, where: str) -> None:
        if not a.identical(b):
            _fail(where, "value (xarray identical)", a, b)
        va, vb = (a.variables, b.variables) if hasattr(a, "data_vars") else ({None: a.variable, **a.coords.variables}, {None: b.variable, **b.coords.variables})
        self.equal(list(va), list(vb), where, "variables")
        for name in va:
            self.ndarray(np.asarray(va[name].values), np.asarray(vb[name].values), f"{where}[{name!r}]")
            self.compare(dict(va[name].attrs), dict(vb[name].attrs), f"{where}[{name!r}].attrs")
            self.compare(dict(va[name].encoding), dict(vb[name].encoding), f"{where}[{name!r}].encoding")
        self.compare(dict(a.attrs), dict(b.attrs), where + ".attrs")

    def estimator(self, a: Any, b: Any, where: str) -> None:
        self.compare(a.get_params(deep=False), b.get_params(deep=False), where + ".get_params()")
        self.generic(a, b, where)

    # -- functions and other objects

    def function(self, a: types.FunctionType, b: types.FunctionType, where: str) -> None:
        if a is b:
            return
        self.equal(a.__qualname__, b.__qualname__, where, "function name")
        self.equal(a.__code__.co_code, b.__code__.co_code, where, "code")
        self.compare(a.__defaults__, b.__defaults__, where + ".__defaults__")
        self.compare(a.__kwdefaults__, b.__kwdefaults__, where + ".__kwdefaults__")
        cells = lambda f: [c.cell_contents for c in f.__closure__ or ()]
        self.compare(cells(a), cells(b), where + ".__closure__")

    def generic(self, a: Any, b: Any, where: str) -> None:
        if hasattr(a, "__dict__") and not isinstance(a, type):
            self.compare(dict(vars(a)), dict(vars(b)), f"{where}.__dict__")
            slots = [s for c in type(a).__mro__ for s in getattr(c, "__slots__", ()) if s != "__dict__"]
            for slot in slots:
                self.compare(getattr(a, slot, None), getattr(b, slot, None), f"{where}.{slot}")
            return
        if a is b:
            return
        try:
            state_a, state_b = a.__reduce_ex__(4), b.__reduce_ex__(4)
        except Exception:
            self.equal(a, b, where, "value")
            return
        self.compare(state_a[1:], state_b[1:], f"{where}.__reduce__()")


def _dtype_signature(dtype: np.dtype) -> Any:
    """Everything that makes a dtype what it is: its string with byte order, fields with
    offsets and titles, alignment, sub-array shape, and metadata (nested fields' too)."""
    fields = None
    if dtype.fields is not None:
        fields = tuple(
            (name, _dtype_signature(spec[0]), spec[1], spec[2] if len(spec) > 2 else None)
            for name, spec in dtype.fields.items()
        )
    sub = (_dtype_signature(dtype.subdtype[0]), dtype.subdtype[1]) if dtype.subdtype else None
    metadata = dict(dtype.metadata) if dtype.metadata is not None else None
    return (dtype.str, dtype.descr if dtype.fields is not None else None, fields, dtype.isalignedstruct, dtype.itemsize, sub, metadata, dtype.names)
