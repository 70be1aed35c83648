"""Codecs: every value comes back exactly, arrays and DataFrames without pickle."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbversion import codecs
from nbversion.errors import CorruptObject, EncodeError
from nbversion.store import ObjectStore


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore.local(str(tmp_path / "objects"))


def round_trip(value, store: ObjectStore):
    codec, put = codecs.encode(value, store)
    return codec, put, codecs.decode(codec, put.object_id, store)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float64).reshape(3, 4),
        np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
        np.arange(40, dtype=np.int16).reshape(8, 5)[::2, 1:4],  # not contiguous
        np.array(3.5),
        np.zeros((0, 3), dtype=np.uint8),
        np.array([1, 2, 3], dtype=">i4"),
        np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "i4"), ("b", "f8")]),
        np.array(["x", "yz"]),
        np.array([True, False]),
        np.arange("2024-01-01", "2024-01-11", dtype="datetime64[D]"),
    ],
    ids=["c", "fortran", "strided", "0d", "empty", "bigendian", "structured", "unicode", "bool", "datetime"],
)
def test_arrays_round_trip_as_npy_without_pickle(array: np.ndarray, store: ObjectStore) -> None:
    codec, put, back = round_trip(array, store)
    assert codec == "npy"
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    # The object is a plain .npy file that numpy itself reads, with pickle forbidden.
    np.testing.assert_array_equal(np.load(store.path(put.object_id), allow_pickle=False), array)


def test_object_arrays_go_through_joblib(store: ObjectStore) -> None:
    array = np.array([{"a": 1}, None], dtype=object)
    codec, _, back = round_trip(array, store)
    assert codec == "joblib" and back[0] == {"a": 1}


def test_same_array_is_stored_once(store: ObjectStore) -> None:
    a = np.arange(1000.0)
    _, first = codecs.encode(a, store)
    _, second = codecs.encode(a.copy(), store)
    assert first.object_id == second.object_id and first.new and not second.new


def test_dataframe_round_trips_through_arrow_exactly(store: ObjectStore) -> None:
    frame = pd.DataFrame(
        {
            "i": np.arange(5, dtype=np.int64),
            "f": np.linspace(0, 1, 5),
            "s": pd.Series(list("abcde"), dtype=pd.StringDtype("pyarrow")),
            "c": pd.Categorical(list("xyxyx")),
            "t": pd.date_range("2024-01-01", periods=5, tz="UTC"),
            "n": pd.array([1, None, 3, 4, 5], dtype="Int64"),
        },
        index=pd.Index(list("vwxyz"), dtype=pd.StringDtype("pyarrow", na_value=np.nan), name="key"),
    )
    codec, _, back = round_trip(frame, store)
    assert codec == "arrow"
    pd.testing.assert_frame_equal(back, frame)


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"o": [1, "a"]}, dtype=object),  # mixed objects
        pd.DataFrame({"l": [[1, 2], [3]]}),  # lists in cells
        pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")])),
        pd.DataFrame({"s": pd.Series(["a", None], dtype=pd.StringDtype("python"))}),
    ],
    ids=["mixed-object", "lists", "multiindex-columns", "python-strings"],
)
def test_dataframes_arrow_cannot_keep_exactly_fall_back_to_joblib(frame: pd.DataFrame, store: ObjectStore) -> None:
    codec, _, back = round_trip(frame, store)
    assert codec == "joblib"
    pd.testing.assert_frame_equal(back, frame)


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(2**70), 1.5, float("inf"), "text ü", [1, 2.5, "x", None], {"C": 1.0, "nested": {"k": [True]}}],
)
def test_plain_values_are_json(value, store: ObjectStore) -> None:
    codec, _, back = round_trip(value, store)
    assert codec == "json"
    assert back == value and type(back) is type(value)


@pytest.mark.parametrize(
    "value",
    [(1, 2), {1: "int key"}, {"a": (1,)}, np.float64(2.5), {1, 2}, b"bytes", list(range(20_000))],
    ids=["tuple", "int-key", "nested-tuple", "np-scalar", "set", "bytes", "long-list"],
)
def test_values_json_would_change_are_pickled_exactly(value, store: ObjectStore) -> None:
    codec, _, back = round_trip(value, store)
    assert codec == "joblib"
    assert back == value and type(back) is type(value)


def test_fitted_model_predicts_the_same_after_round_trip(store: ObjectStore) -> None:
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(200, 4)), rng.integers(0, 2, 200)
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    codec, _, back = round_trip(model, store)
    assert codec == "joblib"
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize(
    "make",
    [lambda: threading.Lock(), lambda: (x for x in range(3)), lambda: open(__file__)],
    ids=["lock", "generator", "open-file"],
)
def test_unpicklable_values_raise_encode_error_and_leave_nothing(make, store: ObjectStore, tmp_path: Path) -> None:
    value = make()
    try:
        with pytest.raises(EncodeError, match="pickle"):
            codecs.encode(value, store)
    finally:
        if hasattr(value, "close"):
            value.close()
    assert list((tmp_path / "objects" / "tmp").iterdir()) == []


def test_truncated_npy_is_refused(store: ObjectStore) -> None:
    _, put = codecs.encode(np.arange(1000.0), store)
    path = Path(store.path(put.object_id))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptObject, match=put.object_id):
        codecs.decode("npy", put.object_id, store)


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.zeros(3, dtype=[(f"f{i}", "<f8") for i in range(600)]),  # header over numpy's 10 kB guard
        lambda: np.zeros(3, dtype=[("α", "<i4")]),  # field name beyond latin-1
        lambda: np.matrix([[1, 2], [3, 4]]),
        lambda: np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]),
    ],
    ids=["wide-structured", "utf8-field", "matrix", "masked"],
)
@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_unusual_arrays_round_trip_exactly(make, store: ObjectStore) -> None:
    value = make()
    _, _, back = round_trip(value, store)
    assert type(back) is type(value) and back.dtype == value.dtype
    np.testing.assert_array_equal(np.asarray(back), np.asarray(value))
    if isinstance(value, np.ma.MaskedArray):
        np.testing.assert_array_equal(back.mask, value.mask)


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"a": pd.arrays.SparseArray([0.0, 1.0])}),
        pd.DataFrame({"a": [1.0]}, index=pd.Index(pd.array([1], dtype="Int64"))),
        pd.DataFrame({"a": [1.0, 2.0]}, index=pd.date_range("2024-01-01", periods=2, freq="D")),
    ],
    ids=["sparse", "nullable-index", "index-freq"],
)
def test_frames_come_back_exactly(frame: pd.DataFrame, store: ObjectStore) -> None:
    _, _, back = round_trip(frame, store)
    pd.testing.assert_frame_equal(back, frame)
    assert getattr(back.index, "freq", None) == getattr(frame.index, "freq", None)


@pytest.mark.parametrize("value", [10**5000, "a\ud800b", {"k": [1, "x\udcff"]}], ids=["huge-int", "surrogate", "nested"])
def test_values_json_cannot_write_are_pickled(value, store: ObjectStore) -> None:
    codec, _, back = round_trip(value, store)
    assert codec == "joblib" and back == value


def test_self_referential_list_is_stored(store: ObjectStore) -> None:
    value: list = [1]
    value.append(value)
    codec, _, back = round_trip(value, store)
    assert codec == "joblib" and back[0] == 1 and back[1] is back


def test_array_mutated_by_another_thread_is_stored_consistently(store: ObjectStore) -> None:
    array = np.zeros(8_000_000)  # 64 MB
    stop = threading.Event()

    def mutate() -> None:
        while not stop.is_set():
            np.add(array, 1, out=array)

    thread = threading.Thread(target=mutate)
    thread.start()
    try:
        puts = [codecs.encode(array, store, probe=probe) for probe in (False, True, False)]
    finally:
        stop.set()
        thread.join()
    for codec, put in puts:
        assert codec == "npy-chunks"  # 64 MB: stored in parts, each verified
        back = codecs.decode(codec, put.object_id, store)  # verified: id matches the bytes
        assert back.shape == array.shape
        assert len(np.unique(back[:: 1_000_000])) <= 8_000_000  # a real value, not garbage
