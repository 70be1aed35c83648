"""Capture the notebook's variables: choose them, classify them, summarize and store them."""

from __future__ import annotations

import inspect
import math
import numbers
import reprlib
import sys
import types
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .. import codecs, credentials, pickling
from . import environment
from ..catalog import Artifact, Skipped
from ..errors import EncodeError, ObjectError
from ..store import IdOnlyStore, ObjectStore, PutResult

#: Names IPython puts in every user namespace; never the user's own variables.
IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})

#: Arrays up to this many elements get min/max/mean in their summary.
STATS_MAX_ELEMENTS = 1_000_000

_preview = reprlib.Repr()
_preview.maxstring = 80
_preview.maxother = 80
_preview.maxlist = _preview.maxtuple = _preview.maxdict = _preview.maxset = 8

_CODE_TYPES = (types.FunctionType, type)
#: Values whose identity does not matter (no one can change them through another name).
_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), tuple, frozenset, range)
_MODULE_PREFIXES_DATA = ("numpy", "pandas", "pyarrow", "polars", "scipy.sparse", "xarray")


@dataclass
class Captured:
    """The result of capturing a namespace."""

    artifacts: list[Artifact] = field(default_factory=list)
    metrics: dict[str, float | None] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    #: the variables left out because they look like credentials (also in *skipped*)
    secrets: list[str] = field(default_factory=list)
    #: manifest object id -> the parts it lists (values stored in parts: large arrays, frames)
    tree_entries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def user_variables(namespace: Mapping[str, Any], hidden: Mapping[str, Any] | None = None) -> list[str]:
    """Return the names in *namespace* that are the user's, in namespace order.

    Like IPython's ``%who``: not private (``_x``), not IPython's own, not modules, and not
    functions or classes imported from elsewhere. Functions and classes defined in the
    notebook itself are the user's (they are kept as code).
    """
    hidden = hidden or {}
    missing = object()
    names = []
    for name, value in namespace.items():
        if name.startswith("_") or name in IPYTHON_NAMES:
            continue
        if hidden.get(name, missing) is value:
            continue
        if isinstance(value, types.ModuleType):
            continue
        if isinstance(value, (types.BuiltinFunctionType, types.BuiltinMethodType)):
            continue
        code = code_of(value)
        if code is not None and getattr(code, "__module__", None) != "__main__":
            continue
        names.append(name)
    return names


def code_of(value: Any) -> Any:
    """The function or class *value* is, or wraps (``functools.lru_cache``, a decorator's
    ``functools.wraps``); ``None`` for data."""
    if isinstance(value, _CODE_TYPES):
        return value
    if getattr(value, "__wrapped__", None) is None or not callable(value):
        return None
    try:
        target = inspect.unwrap(value)
    except ValueError:  # a __wrapped__ cycle
        return None
    return target if isinstance(target, _CODE_TYPES) else None


def is_code(value: Any) -> bool:
    """Whether *value* is a function or class, or a wrapper of one such as an ``lru_cache``
    (kept as source code, never restored)."""
    return code_of(value) is not None


def capture(
    namespace: Mapping[str, Any],
    names: Iterable[str],
    store: ObjectStore,
    previous: Mapping[str, Mapping[str, Any]] | None = None,
    allow_secrets: Collection[str] = (),
    repickled: Mapping[str, str] | None = None,
) -> Captured:
    """Store each named variable and return its artifacts, the metrics, and what was skipped.

    A variable that cannot be serialized is skipped with the reason; it never fails the
    capture. Errors of the store itself (disk full, a corrupt write) do fail it. A variable
    that looks like a credential (:func:`nbversion.credentials.why_secret`) is skipped too, and
    named in ``secrets``, unless it is in *allow_secrets*; functions and classes never are
    (their source is in the cells already).

    :param previous: the previous snapshot's variable artifacts by name. A variable of the
        same type there is probably unchanged, so it is hashed before anything is written;
        any other is written and hashed in one pass.
    :param repickled: stored pickle's object id -> the id its value gets when pickled again
        after a restore loaded it (a pickle round trip is not byte-stable). A variable
        whose pickle has that id now holds exactly what was loaded: it keeps the stored
        object instead of storing a second copy.
    """
    previous = previous or {}
    result = Captured()
    first_names: dict[int, Artifact] = {}  # id() of a mutable value -> its first name's artifact
    names = list(names)
    views = view_groups(namespace, names)
    #: variable stored as a pickle or JSON -> the mutable objects its bytes hold, by id
    reached: dict[str, Mapping[int, Any]] = {}
    for name in names:
        value = namespace[name]
        kind_of_type = codecs.type_name(value)
        first = first_names.get(id(value)) if not isinstance(value, _IMMUTABLE) else None
        if first is not None:
            # Another name for a value stored already (b = a): stored once, restored as one.
            result.artifacts.append(
                replace(first, name=name, new_bytes=0, summary={**first.summary, "alias_of": first.name})
            )
            if first.name in result.metrics:
                result.metrics[name] = result.metrics[first.name]
            continue
        why = None if name in allow_secrets or is_code(value) else credentials.why_secret(name, value)
        if why is not None:
            result.skipped.append(Skipped(name, kind_of_type, f"{credentials.REASON} ({why})"))
            result.secrets.append(name)
            continue
        try:
            if is_code(value):
                put = codecs.encode_source(value, store)
                codec, kind, summary = "source", "code", {"defines": code_of(value).__qualname__}
            else:
                before = previous.get(name)
                probe = before is not None and before["type"] == kind_of_type
                held: dict[int, Any] = {}
                put = _as_loaded(value, before, repickled or {}, held)
                codec, put = (before["codec"], put) if put is not None else codecs.encode(
                    value, store, probe=probe, reached=held
                )
                if codec == "joblib":
                    reached[name] = held
                elif codec == "json":
                    reached[name] = _json_containers(value)
                kind, summary = classify(value), summarize(value)
                if name in views and codec in ("npy", "npy-chunks", "pickle"):
                    summary["view"] = views[name]
                if codec == "joblib":
                    library = environment.library_of(type(value).__module__)
                    if library is not None:
                        summary["library"] = {**library, "module": type(value).__module__}
        except EncodeError as exc:
            result.skipped.append(Skipped(name, kind_of_type, str(exc)))
            continue
        except ObjectError:
            raise
        if isinstance(put, codecs.Manifest):
            size, object_size, new_bytes = put.value_size, put.size, put.new_bytes
            result.tree_entries[put.object_id] = [
                {"path": label, "object_id": part_id, "size": part_size, "kind": kind}
                for label, part_id, part_size in put.parts
            ]
        else:
            size, object_size, new_bytes = put.size, None, put.size if put.new else 0
        artifact = Artifact(
            kind=kind, source="variable", name=name, type=kind_of_type, codec=codec,
            object_id=put.object_id, size=size, summary=summary, new_bytes=new_bytes,
            object_size=object_size,
        )
        result.artifacts.append(artifact)
        if not isinstance(value, _IMMUTABLE):
            first_names[id(value)] = artifact
        metric = metric_value(value)
        if metric is not _NOT_A_METRIC:
            result.metrics[name] = metric
    _keep_sharing(result, namespace, reached, store)
    return result


def _json_containers(value: Any) -> dict[int, Any]:
    """The lists and dicts in a JSON-plain value by id; with the key ``0`` (no object's id)
    when one is in it twice (JSON would give back two copies)."""
    found: dict[int, Any] = {}
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, dict)):
            if id(item) in found:
                found[0] = None
                continue
            found[id(item)] = item
            stack.extend(item.values() if isinstance(item, dict) else item)
    return found


def _keep_sharing(
    result: Captured, namespace: Mapping[str, Any], reached: dict[str, Mapping[int, Any]], store: ObjectStore
) -> None:
    """Store again, together, the pickled and JSON variables whose bytes hold another
    variable's value or an object another one holds too (``holder = {"arr": a}``, ``x = [s];
    y = [s]``), or one object twice: as one ``joblib-group`` object in which the other
    variables' values are references (:mod:`nbversion.pickling`), so restore gives back one
    object where there was one. Variables that share nothing (nearly always) are left as
    they are."""
    if not reached:
        return
    stored = {a.name: a for a in result.artifacts if "alias_of" not in a.summary and a.codec != "source"}
    roots = {id(namespace[n]): n for n in stored if not isinstance(namespace[n], _IMMUTABLE)}
    # A pickle (an np.matrix, ...) another variable holds is pickled with it, never referred
    # to: a reference must load without trust on its own, and a pickle does not.
    parent = {name: name for name in [*reached, *(n for n in roots.values() if stored[n].codec in codecs.RUNS_CODE)]}

    def find(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    owner: dict[int, str] = {}
    regroup: set[str] = set()
    for name, held in reached.items():
        if 0 in held:  # one object twice in a JSON value
            regroup.add(name)
        for object_id in held:
            if object_id == 0:
                continue
            other = roots.get(object_id)
            if other is not None and other != name:
                regroup.add(name)  # holds another variable's value: a reference instead
                if other in parent:
                    regroup.add(other)
                    parent[find(name)] = find(other)
            first = owner.setdefault(object_id, name)
            if first != name:
                regroup.update((name, first))
                parent[find(name)] = find(first)
    if not regroup:
        return
    groups: dict[str, list[str]] = {}
    regrouped = {find(n) for n in regroup}
    for name in stored:  # in the order they were captured
        if name in parent and find(name) in regrouped:
            groups.setdefault(find(name), []).append(name)
    for members in groups.values():
        refs = {object_id: n for object_id, n in roots.items() if n not in members and n not in parent}
        values = {name: namespace[name] for name in members}
        try:
            referenced: set[str] = set()

            def write(file: Any) -> None:
                referenced.update(pickling.dump(values, file, refs).referenced)

            put = store.put_stream(write)
        except ObjectError:
            raise
        except Exception:  # noqa: BLE001 - then each stays as it was stored on its own
            continue
        for index, name in enumerate(members):
            artifact = stored[name]
            grouped = replace(
                artifact, codec="joblib-group", object_id=put.object_id, size=put.size, object_size=None,
                new_bytes=put.size if put.new and index == 0 else 0,
                summary={**artifact.summary, "group": members, "refs": sorted(referenced)},
            )
            result.artifacts[result.artifacts.index(artifact)] = grouped
            for position, other in enumerate(result.artifacts):  # its aliases follow it
                if other.summary.get("alias_of") == name:
                    result.artifacts[position] = replace(
                        grouped, name=other.name, new_bytes=0, summary={**grouped.summary, "alias_of": name}
                    )


_NOT_A_METRIC = object()


def _as_loaded(
    value: Any, before: Mapping[str, Any] | None, repickled: Mapping[str, str], reached: dict[int, Any]
) -> PutResult | None:
    """The stored object *before* again, when *value* still pickles exactly as the value a
    restore loaded from it did (hashing only, no write); else ``None``."""
    if before is None or before["codec"] != "joblib" or before["object_id"] not in repickled:
        return None
    try:
        codec, put = codecs.encode(value, IdOnlyStore(), reached=reached)
    except EncodeError:
        return None
    if codec != before["codec"] or put.object_id != repickled[before["object_id"]]:
        return None
    return PutResult(before["object_id"], before["size"], False)


def view_groups(namespace: Mapping[str, Any], names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """How arrays (and matrices) that view one memory (``v = a[1:3]``, ``a.T``,
    ``a.view(np.int32)``) lie in it, so restore can make them views of one memory again: for each such variable,
    ``{"group": its first member's name, "span": bytes the group covers, "offset": where
    this array starts in them, "strides": ..., "owner": whether it is the memory's owner}``.
    Each array's bytes are stored whole as well (it loads on its own)."""
    np = sys.modules.get("numpy")
    if np is None:
        return {}
    from numpy.lib.array_utils import byte_bounds

    groups: dict[int, list[tuple[str, Any]]] = {}
    seen: set[int] = set()
    for name in names:
        value = namespace[name]
        if (
            type(value) not in (np.ndarray, np.matrix) or value.size == 0 or value.dtype.hasobject
            or (type(value) is np.matrix and not value.dtype.isnative)  # pickled: not sure of its bytes
            or id(value) in seen
        ):
            continue  # another name for one array is an alias (alias_of), not a view
        seen.add(id(value))
        root = value
        while isinstance(root, np.ndarray) and root.base is not None:
            root = root.base
        groups.setdefault(id(root), []).append((name, value))
    found: dict[str, dict[str, Any]] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        bounds = [byte_bounds(value) for _, value in members]
        low, high = min(b[0] for b in bounds), max(b[1] for b in bounds)
        for name, value in members:
            found[name] = {
                "group": members[0][0], "span": high - low,
                "offset": value.__array_interface__["data"][0] - low, "strides": list(value.strides),
                "owner": value.base is None and value.flags.c_contiguous and value.nbytes == high - low,
            }
    return found


def metric_value(value: Any) -> Any:
    """Return the float a metric records for *value*, or a sentinel if it is not a number.

    Every int, float and bool (NumPy scalars too) is a metric; NaN is recorded as NULL.
    """
    np = sys.modules.get("numpy")
    if not (isinstance(value, numbers.Real) or (np is not None and isinstance(value, np.bool_))):
        return _NOT_A_METRIC
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return _NOT_A_METRIC
    return None if math.isnan(number) else number


def classify(value: Any) -> str:
    """Return the artifact kind of a variable: ``model``, ``data`` or ``other``."""
    cls = type(value)
    if _is_torch_module(cls) or (
        hasattr(cls, "fit") and (hasattr(cls, "predict") or hasattr(cls, "transform"))
    ):
        return "model"
    module = cls.__module__ or ""
    np = sys.modules.get("numpy")
    if np is not None and module.startswith("numpy"):
        if isinstance(value, (np.ndarray, np.generic)):
            return "data"
    elif module.startswith(_MODULE_PREFIXES_DATA) or (
        module.startswith("torch") and cls.__name__ == "Tensor"
    ):
        return "data"
    if isinstance(value, (list, tuple)) and value and all(_is_number(v) for v in value):
        return "data"
    if isinstance(value, dict) and value and all(_is_number(v) for v in value.values()):
        return "data"
    return "other"


def summarize(value: Any) -> dict[str, Any]:
    """Return what a person wants to know about *value* without loading it."""
    try:
        return _summarize(value)
    except Exception as exc:  # a summary must never fail a snapshot
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}


def _summarize(value: Any) -> dict[str, Any]:
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if np is not None and isinstance(value, np.ndarray):
        summary: dict[str, Any] = {
            "shape": list(value.shape), "dtype": str(value.dtype), "nbytes": int(value.nbytes),
        }
        if 0 < value.size <= STATS_MAX_ELEMENTS and value.dtype.kind in "biuf":
            with np.errstate(all="ignore"):
                summary.update(
                    min=_json_number(value.min()), max=_json_number(value.max()),
                    mean=_json_number(value.mean()),
                )
        return summary
    if pd is not None and isinstance(value, pd.DataFrame):
        columns = [str(c) for c in value.columns[:50]]
        return {
            "shape": list(value.shape),
            "columns": columns,
            "dtypes": {str(c): str(t) for c, t in list(value.dtypes.items())[:50]},
        }
    if pd is not None and isinstance(value, pd.Series):
        return {"length": len(value), "dtype": str(value.dtype), "name": str(value.name)}
    if classify(value) == "model" and hasattr(value, "get_params"):
        return {
            "class": codecs.type_name(value),
            "params": {k: _jsonable(v) for k, v in value.get_params(deep=False).items()},
            "fitted": any(k.endswith("_") and not k.startswith("__") for k in vars(value)),
        }
    if value is None or isinstance(value, (bool, numbers.Real)):
        return {"value": _jsonable(value)}
    if isinstance(value, (str, bytes)):
        return {"length": len(value), "preview": _preview.repr(value)}
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return {"length": len(value), "preview": _preview.repr(value)}
    return {"preview": _preview.repr(value)}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real)


def _is_torch_module(cls: type) -> bool:
    return any(
        c.__name__ == "Module" and c.__module__.startswith("torch.nn") for c in inspect.getmro(cls)
    )


def _json_number(value: Any) -> float | int | None:
    number = value.item() if hasattr(value, "item") else value
    if isinstance(number, float) and not math.isfinite(number):
        return None
    return number


#: Ints longer than this are summarized by their length (Python will not even print one of
#: over 4,300 digits, and a summary is for reading).
SUMMARY_MAX_DIGITS = 100


def _jsonable(value: Any) -> Any:
    if type(value) is int and value.bit_length() > SUMMARY_MAX_DIGITS * 3.33:
        digits = int(math.log10(abs(value))) + 1
        return f"{'negative ' if value < 0 else ''}int of {digits} digits"
    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, numbers.Real):
        return _json_number(value)
    return _preview.repr(value)
