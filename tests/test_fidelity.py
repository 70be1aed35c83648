"""A restore gives back exactly what the snapshot saw (DESIGN.md, invariant 8), value by value.

Each test snapshots a value into a real repository, loads it back with ``nbversion.load`` and
compares with :func:`oracle.values.assert_exact`; the property test does the same for every
value the grammar in ``tests/oracle/values.py`` draws. Where a test also names the codec, it
is because the value must load in a teammate's clone without ``--trust`` (no pickle).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import oracle.conftest  # noqa: F401  (loads the bounded or full Hypothesis profile)
import pandas as pd
import pytest
from conftest import git
from hypothesis import given
from oracle.values import assert_exact, values

import nbversion
from nbversion import codecs

NO_PICKLE = {"npy", "npy-chunks", "arrow", "frame", "json", "masked"}


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository for the whole module: a snapshot per value, each loaded back."""
    path = tmp_path_factory.mktemp("fidelity")
    git(path, "init", "-q")
    return path


def round_trip(repo: Path, value: Any) -> tuple[str, Any]:
    """Snapshot *value* as ``x``, load it back: (its codec, the loaded value)."""
    result = nbversion.snapshot("fidelity", namespace={"x": value}, repo=repo)
    assert not result.skipped, f"skipped: {result.skipped}"
    (artifact,) = [a for a in result.artifacts if a.name == "x"]
    return artifact.codec, nbversion.load("HEAD", "x", repo=repo)


def exact_without_pickle(repo: Path, value: Any) -> None:
    codec, back = round_trip(repo, value)
    assert_exact(value, back)
    assert codec in NO_PICKLE, f"stored with {codec}: a teammate's clone would need --trust"


@given(values())
def test_every_value_of_the_grammar_comes_back_exactly(shared_repo: Path, value: Any) -> None:
    _, back = round_trip(shared_repo, value)
    assert_exact(value, back)


# -- a. labels and names of any type, through Arrow, without a warning -------------------


def frame_indexed(index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame({"a": np.arange(len(index))}, index=index)


@pytest.mark.parametrize(
    "index",
    [
        pd.Index([3, 4], name=5),
        pd.Index([3, 4], name=("a", 1)),
        pd.Index([3, 4], name="__index_level_0__"),
        pd.RangeIndex(2, name=1.5),
        pd.MultiIndex.from_arrays([["x", "y"], [1, 2]], names=[0, 1]),
        pd.MultiIndex.from_arrays([["x", "y"], [1, 2]], names=["__index_level_1__", None]),
        pd.Index([3, 4], name="a"),  # the same name as a column
    ],
    ids=["int", "tuple", "index-level-name", "range-float", "multi-ints", "multi-level-names", "clash"],
)
def test_index_names_of_any_type_come_back_without_pickle(shared_repo: Path, index: pd.Index) -> None:
    exact_without_pickle(shared_repo, frame_indexed(index))


@pytest.mark.parametrize(
    "labels",
    [[0, 1], [("a", 1), ("b", 2)], ["a", "a"], ["a", 5, None, 1.5], ["__index_level_0__", "x"]],
    ids=["ints", "tuples", "duplicates", "mixed", "index-level-name"],
)
def test_column_labels_of_any_type_come_back_without_pickle(shared_repo: Path, labels: list[Any]) -> None:
    frame = pd.DataFrame([list(range(len(labels)))], columns=pd.Index(labels, dtype=object, tupleize_cols=False))
    frame.columns.name = ("c", 2)
    exact_without_pickle(shared_repo, frame)


def test_no_warning_reaches_the_user(shared_repo: Path) -> None:
    frame = pd.DataFrame({"a": [1], 2: [3]}, index=pd.Index([0], name=7))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact_without_pickle(shared_repo, frame)


# -- b. the frame's axes, flags and attrs; dtypes and masks of arrays ----------------------


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame(),
        pd.DataFrame(index=pd.RangeIndex(0)),
        pd.DataFrame({"a": np.array([], "i8")}, columns=pd.Index(["a"], dtype=object)),
        pd.DataFrame({"a": [1, 2]}, columns=pd.Index(["a"], dtype=object)),
        pd.DataFrame(np.zeros((2, 3))),
        pd.DataFrame(index=pd.RangeIndex(2, 11, 3, name=5)),
    ],
    ids=["empty", "empty-range", "object-columns-empty", "object-columns", "range-columns", "no-columns"],
)
def test_the_columns_index_keeps_its_class_and_dtype(shared_repo: Path, frame: pd.DataFrame) -> None:
    exact_without_pickle(shared_repo, frame)


def test_flags_and_attrs_are_kept_without_pickle(shared_repo: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2]}).set_flags(allows_duplicate_labels=False)
    frame.attrs = {"source": "sensor", "run": (3, None), 5: [1.5, -0.0]}
    exact_without_pickle(shared_repo, frame)


@pytest.mark.parametrize(
    "dtype",
    [
        np.dtype("f8", metadata={"unit": "m"}),
        np.dtype([("a", np.dtype("i4", metadata={"unit": "s"}))]),
        np.dtype([("a", "i1"), ("b", "<f8")], align=True),
    ],
    ids=["metadata", "field-metadata", "aligned"],
)
def test_what_npy_cannot_say_of_a_dtype_is_kept(shared_repo: Path, dtype: np.dtype) -> None:
    array = np.zeros(3, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns that .npy drops metadata
        codec, back = round_trip(shared_repo, array)
    assert_exact(array, back)
    assert codec == "pickle"


@pytest.mark.parametrize("hard", [True, False])
def test_masked_arrays_keep_mask_fill_value_and_hard_mask_without_pickle(shared_repo: Path, hard: bool) -> None:
    array = np.ma.MaskedArray(np.array([1, 2, 3], ">i4"), mask=[False, True, False], fill_value=7, hard_mask=hard)
    exact_without_pickle(shared_repo, array)
    exact_without_pickle(shared_repo, np.ma.MaskedArray(np.arange(2.0), hard_mask=hard))  # nomask


def test_masked_arrays_of_objects_keep_hard_mask(shared_repo: Path) -> None:
    array = np.ma.MaskedArray(np.array([1, "a"], dtype=object), mask=[True, False], hard_mask=True)
    _, back = round_trip(shared_repo, array)
    assert_exact(array, back)


@pytest.mark.parametrize(
    "array",
    [
        np.array([1.5, -0.0, np.nan], dtype=np.longdouble),
        np.zeros(2, dtype=np.dtype([(("title", "a"), "i4"), ("v", ">i2", (2,))])),
        np.array(["2024-01-01", "NaT"], dtype="M8[5m]"),
        np.array([1, -2], dtype="m8[us]"),
        np.asfortranarray(np.arange(6, dtype=">f4").reshape(2, 3)),
    ],
    ids=["longdouble", "titles-subarray", "datetime-multiple", "timedelta", "fortran-bigendian"],
)
def test_arrays_of_any_dtype_come_back_exactly(shared_repo: Path, array: np.ndarray) -> None:
    exact_without_pickle(shared_repo, array)


# -- c. Series and Index through Arrow -----------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pd.Series([1.5, None], name=("a", 1), dtype="Float64"),
        pd.Series(pd.Categorical(["x", "y"]), index=pd.Index([5, 6], name=0), name=0),
        pd.Series([1, 2], name="__index_level_0__").set_flags(allows_duplicate_labels=False),
        pd.Series(["a", None], dtype="str", name=None, index=pd.MultiIndex.from_arrays([[1, 2], ["p", "q"]], names=[0, 1])),
        pd.Index([1, 2], name=5),
        pd.RangeIndex(0, 10, 3, name=("r", 1)),
        pd.MultiIndex.from_arrays([["x", "y"], [1, 2]], names=[0, ("b", 2)]),
        pd.DatetimeIndex(["2024-01-01", None], tz="Europe/Paris", name="t"),
    ],
    ids=["float64-tuple-name", "categorical", "flags", "str-multi", "index", "range", "multi", "datetime-tz"],
)
def test_series_and_indexes_go_through_arrow_exactly(shared_repo: Path, value: Any) -> None:
    exact_without_pickle(shared_repo, value)


def test_series_attrs_are_kept(shared_repo: Path) -> None:
    series = pd.Series([1, 2], name="s")
    series.attrs["units"] = "m"
    exact_without_pickle(shared_repo, series)


@pytest.mark.parametrize(
    "value",
    [
        pd.Series(np.array([1, "a"], dtype=object), name=5),
        pd.Index([1, "a"], dtype=object, name=("n", 1)),
        pd.Series([1, 2], name=np.int64(3)),  # a name JSON cannot hold exactly
        pd.Series([1, 2], index=pd.date_range("2024-01-01", periods=2, freq="D")),
    ],
    ids=["object-series", "object-index", "numpy-name", "freq"],
)
def test_what_arrow_cannot_keep_is_pickled_exactly(shared_repo: Path, value: Any) -> None:
    codec, back = round_trip(shared_repo, value)
    assert_exact(value, back)
    assert codec == "joblib"


# -- d/e. large frames, containers, JSON, summaries ----------------------------------------


def test_large_frames_keep_labels_names_and_attrs(shared_repo: Path) -> None:
    rows = codecs.FRAME_MIN // 16 + 1
    frame = pd.DataFrame({0: np.zeros(rows), ("b", 1): np.ones(rows)}, index=pd.RangeIndex(rows, name=5))
    frame.columns = pd.Index(frame.columns, dtype=object, tupleize_cols=False, name=("c", 1))
    frame.attrs["units"] = "m"
    codec, back = round_trip(shared_repo, frame.set_flags(allows_duplicate_labels=False))
    assert codec == "frame"
    assert_exact(frame.set_flags(allows_duplicate_labels=False), back)


def test_arrays_inside_containers_keep_their_byte_order(shared_repo: Path) -> None:
    value = {"big-endian": np.array([1, 2], dtype=">i4"), "fortran": np.asfortranarray(np.eye(2, dtype=">f8"))}
    _, back = round_trip(shared_repo, value)
    assert_exact(value, back)


def matrix(values: Any) -> np.matrix:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # "not the recommended way"
        return np.matrix(values)


def test_array_subclasses_keep_their_class_and_byte_order(shared_repo: Path) -> None:
    value = matrix(np.array([[1.0, 2.0]], dtype=">f8"))
    codec, back = round_trip(shared_repo, value)
    assert_exact(value, back)
    assert codec == "pickle"


def test_array_subclasses_inside_containers_keep_their_class(shared_repo: Path) -> None:
    value = {
        "matrix": matrix(np.array([[1.0, 2.0]], dtype=">f8")),
        "masked": np.ma.MaskedArray(np.array([1, 2], ">i4"), mask=[True, False], hard_mask=True),
    }
    _, back = round_trip(shared_repo, value)
    assert_exact(value, back)


def test_a_list_in_two_places_stays_one_list(shared_repo: Path) -> None:
    shared = [1, 2]
    value = {"a": shared, "b": [shared]}
    _, back = round_trip(shared_repo, value)
    assert_exact(value, back)
    assert back["a"] is back["b"][0]


def test_an_int_too_long_for_a_summary_is_stored_with_a_short_summary(shared_repo: Path) -> None:
    huge = -(10**5000) - 7
    result = nbversion.snapshot("huge", namespace={"x": huge, "y": 1.0}, repo=shared_repo)
    assert not result.skipped
    (artifact,) = [a for a in result.artifacts if a.name == "x"]
    assert artifact.summary == {"value": "negative int of 5001 digits"}
    assert_exact(huge, nbversion.load("HEAD", "x", repo=shared_repo))
    assert nbversion.load("HEAD", "y", repo=shared_repo) == 1.0
