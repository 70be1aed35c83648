"""Which objects a set of variables shares: the aliasing a restore must give back.

DESIGN.md, invariant 8: a restore gives back "the same aliasing among the restored variables
(``b is a``, views, shared sub-objects) as at snapshot time, no more, no less".
:func:`aliasing` reads that from live values, as paths from the variable names::

    >>> a = [1]; holder = {"k": a}
    >>> aliasing({"a": a, "holder": holder}).same
    frozenset({frozenset({"a", "holder['k']"})})

- ``same``: groups of two or more paths that reach one mutable object (``b is a``,
  ``holder['k'] is a``, a list that holds itself).
- ``memory``: pairs of paths to two different NumPy arrays that share memory (``v = a[1:3]``,
  ``a.T``), with where one starts relative to the other and both strides, so a restored view
  must view the same elements, not merely overlap. Masked arrays and arrays of Python objects
  are left out: docs/support.md documents that their views come back as equal copies.

Each variable is walked on its own (lists, tuples, dict values, object arrays, the
``__dict__`` of plain objects; arrays, pandas objects and immutable values are leaves), so
the aliasing of a subset of the variables (``%restore --vars``) is :func:`restrict` of the
whole. No test dependency beyond NumPy: the fresh-interpreter child imports this too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import pathlib
import types
from collections.abc import Iterable, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

#: Values nobody changes in place: their identity is never compared (as in values.py).
IMMUTABLE = (
    type(None), bool, int, float, complex, str, bytes, Decimal, Fraction, dt.date, dt.time,
    dt.timedelta, dt.tzinfo, pathlib.PurePath, enum.Enum, range, type, types.FunctionType,
    types.BuiltinFunctionType, types.ModuleType, np.generic, np.dtype, frozenset, type(Ellipsis),
)

#: At most this many objects are walked per variable (a list of 10,000 lists is cut short the
#: same way at snapshot time and after the restore, so the comparison stays fair).
BUDGET = 4000


@dataclasses.dataclass(frozen=True)
class Aliasing:
    same: frozenset[frozenset[str]]
    memory: frozenset[tuple[str, str, int, tuple[int, ...], tuple[int, ...]]]

    def describe(self) -> str:
        groups = sorted(" is ".join(sorted(group)) for group in self.same)
        views = sorted(f"{p} ~ {q} (offset {d}, strides {sp} / {sq})" for p, q, d, sp, sq in self.memory)
        return "; ".join(groups + views) or "(nothing shared)"


def _is_leaf(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype != object
    module = type(value).__module__ or ""
    return module.split(".")[0] in ("pandas", "polars", "pyarrow", "xarray", "scipy")


def _children(value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, (list, tuple)):
        return ((f"[{i}]", item) for i, item in enumerate(value))
    if isinstance(value, dict):
        return ((f"[{key!r}]", item) for key, item in value.items())
    if isinstance(value, np.ndarray) and value.dtype == object:
        return ((f".flat[{i}]", item) for i, item in enumerate(value.flat))
    if _is_leaf(value) or isinstance(value, (set, bytearray, np.ndarray)):
        return ()
    try:
        attributes = vars(value)
    except TypeError:
        return ()
    return ((f".{name}", item) for name, item in list(attributes.items()))


def walk(name: str, value: Any) -> list[tuple[str, Any]]:
    """Every mutable object reachable from variable *name*, with its path (an object met again
    is listed again under its new path, and not walked again)."""
    found: list[tuple[str, Any]] = []
    seen: set[int] = set()
    pending = [(name, value)]
    while pending and len(found) < BUDGET:
        path, item = pending.pop()
        if isinstance(item, tuple) and not hasattr(item, "__dict__"):
            # A tuple has no identity worth keeping, but what it holds may.
            pending.extend(reversed([(path + step, child) for step, child in _children(item)]))
            continue
        if isinstance(item, IMMUTABLE):
            continue
        found.append((path, item))
        if id(item) in seen:
            continue
        seen.add(id(item))
        pending.extend(reversed([(path + step, child) for step, child in _children(item)]))
    return found


def _start(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


def _views_come_back_as_copies(array: np.ndarray) -> bool:
    """docs/support.md: two variables that view one memory come back as equal arrays that no
    longer share it when they are masked arrays or arrays of Python objects (the one
    approximation of invariant 8 the project documents)."""
    return isinstance(array, np.ma.MaskedArray) or array.dtype == object


def aliasing(variables: Mapping[str, Any]) -> Aliasing:
    """The aliasing among *variables* (name -> live value)."""
    by_id: dict[int, list[str]] = {}
    arrays: dict[int, tuple[np.ndarray, list[str]]] = {}
    for name, value in variables.items():
        for path, item in walk(name, value):
            by_id.setdefault(id(item), []).append(path)
            if isinstance(item, np.ndarray):
                arrays.setdefault(id(item), (item, []))[1].append(path)
    same = frozenset(frozenset(paths) for paths in by_id.values() if len(set(paths)) > 1)
    memory = set()
    listed = list(arrays.values())
    for i, (a, paths_a) in enumerate(listed):
        for b, paths_b in listed[i + 1 :]:
            if a.nbytes == 0 or b.nbytes == 0 or _views_come_back_as_copies(a) or _views_come_back_as_copies(b):
                continue
            if not np.shares_memory(a, b, max_work=10**6):
                continue
            for p in paths_a:
                for q in paths_b:
                    first, second = (a, b) if p < q else (b, a)
                    memory.add((min(p, q), max(p, q), _start(second) - _start(first), first.strides, second.strides))
    return Aliasing(same, frozenset(memory))


def root(path: str) -> str:
    """The variable a path starts from."""
    end = len(path)
    for mark in "[.":
        at = path.find(mark)
        if at != -1:
            end = min(end, at)
    return path[:end]


def restrict(whole: Aliasing, names: Iterable[str]) -> Aliasing:
    """The aliasing among only *names*, from the aliasing of more variables."""
    names = set(names)
    same = set()
    for group in whole.same:
        kept = frozenset(p for p in group if root(p) in names)
        if len(kept) > 1:
            same.add(kept)
    memory = frozenset(m for m in whole.memory if root(m[0]) in names and root(m[1]) in names)
    return Aliasing(frozenset(same), memory)


def crossing(now: Aliasing, left: set[str], right: set[str]) -> Aliasing:
    """What in *now* links a variable of *left* with one of *right*."""
    same = set()
    for group in now.same:
        roots = {root(p) for p in group}
        if roots & left and roots & right:
            same.add(group)
    memory = frozenset(
        m for m in now.memory if {root(m[0]), root(m[1])} & left and {root(m[0]), root(m[1])} & right
    )
    return Aliasing(frozenset(same), memory)
