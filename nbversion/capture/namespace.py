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

from .. import codecs, credentials
from . import environment
from ..catalog import Artifact, Skipped
from ..errors import EncodeError, ObjectError
from ..store import ObjectStore

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
        if isinstance(value, _CODE_TYPES) and getattr(value, "__module__", None) != "__main__":
            continue
        names.append(name)
    return names


def is_code(value: Any) -> bool:
    """Whether *value* is a function or class (kept as source code, never restored)."""
    return isinstance(value, _CODE_TYPES)


def capture(
    namespace: Mapping[str, Any],
    names: Iterable[str],
    store: ObjectStore,
    previous: Mapping[str, Mapping[str, Any]] | None = None,
    allow_secrets: Collection[str] = (),
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
    """
    previous = previous or {}
    result = Captured()
    first_names: dict[int, Artifact] = {}  # id() of a mutable value -> its first name's artifact
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
                codec, kind, summary = "source", "code", {"defines": value.__qualname__}
            else:
                before = previous.get(name)
                probe = before is not None and before["type"] == kind_of_type
                codec, put = codecs.encode(value, store, probe=probe)
                kind, summary = classify(value), summarize(value)
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
    return result


_NOT_A_METRIC = object()


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


def _jsonable(value: Any) -> Any:
    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, numbers.Real):
        return _json_number(value)
    return _preview.repr(value)
