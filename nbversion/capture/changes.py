"""Which variables a cell may have changed: what auto mode looks at again after a cell.

Auto mode snapshots after every cell, so it only looks again at the variables a cell could
have changed and records the others as they were. That shortcut must never record a wrong
value (DESIGN.md, invariant 9): every rule here errs towards "may have changed", and where
the analysis cannot follow the cell it answers ``None`` (look at everything).

A variable may have changed when

- the cell names it (``a[0] = 1``, ``model.fit(X)``), except where the cell only shows it
  (``print(a.shape)``, ``len(a)``, a bare ``a``);
- notebook code the cell calls can reach it: the globals, closures and defaults of the
  notebook's functions, through decorators (``functools.wraps``, ``lru_cache``, anything
  with ``__wrapped__``), ``functools.partial``, bound methods, and the methods and property
  getters/setters/deleters of notebook classes, followed transitively;
- it shares an object with one of those (``b = a``, ``holder = {"arr": a}``, an attribute
  holding it, an array view of its memory, a frame over the same column): found by walking
  each variable's object graph, within a budget; a variable whose graph is too large to walk
  is looked at again.

``exec``, ``eval``, ``globals()``, ``get_ipython()``, star imports, and magics other than
nbversion's own reach variables by name: then everything is looked at.
"""

from __future__ import annotations

import ast
import functools
import gc
import re
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any

#: Cells that are nbversion's own work (a snapshot, a restore, a query): not the cell's code.
NBVERSION_LINE = re.compile(r"\s*%{1,2}(snapshot|restore|snapshots|nbsql|nbversion)\b")

#: Calls through which a cell can reach any variable: then every variable is looked at.
_REACHES_EVERYTHING = frozenset({"exec", "eval", "globals", "vars", "locals", "get_ipython", "__import__"})

#: Builtins that only look at their arguments.
_SHOWING = frozenset({"print", "len", "repr", "str", "type", "id", "isinstance", "hasattr", "display"})

#: Objects walked, in all, to find what variables share; past it a variable is looked at again.
WALK_BUDGET = 200_000

#: Objects whose contents no change can reach, or that are code, not data: not walked into.
_LEAVES = (
    str, bytes, int, float, complex, bool, type(None), range, type, types.ModuleType,
    types.FunctionType, types.BuiltinFunctionType, types.CodeType, types.MethodType,
    functools.partial, property, staticmethod, classmethod,
)


def touched_names(shell: Any, raw_cell: str) -> set[str] | None:
    """The variables a cell may have changed, by name: see the module docstring. ``None``
    (look at every variable) when the cell cannot be read or reaches variables by name."""
    own = "\n".join(line for line in raw_cell.splitlines() if not NBVERSION_LINE.match(line))
    try:
        tree = ast.parse(shell.transform_cell(own))
    except (SyntaxError, ValueError):
        return None
    touched: set[str] = set()
    read_only = _only_shown(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id in _REACHES_EVERYTHING:
                return None
            if id(node) not in read_only:
                touched.add(node.id)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            touched.update(node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    return None  # binds names nobody can list here
                touched.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            touched.add(node.name)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            touched.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            touched.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            touched.add(node.rest)
    return _reached_by_code(shell.user_ns, touched)


def _reached_by_code(namespace: Mapping[str, Any], touched: set[str]) -> set[str]:
    """*touched* plus every variable the notebook code it names can reach."""
    by_id: dict[int, list[str]] = {}
    for name, value in namespace.items():
        by_id.setdefault(id(value), []).append(name)
    pending: list[Any] = [namespace[name] for name in touched if name in namespace]
    followed: set[int] = set()
    while pending:
        value = pending.pop()
        if id(value) in followed:
            continue
        followed.add(id(value))
        for reached in _callees(value):
            if isinstance(reached, types.CodeType):
                for used in _code_names(reached):
                    if used in namespace and used not in touched:
                        touched.add(used)
                        pending.append(namespace[used])
                continue
            for name in by_id.get(id(reached), ()):
                touched.add(name)
            pending.append(reached)
    return touched


def _callees(value: Any) -> list[Any]:
    """What calling *value* (or the methods of a notebook object) can run or reach directly:
    code objects, and the objects held by closures, defaults, wrappers and bindings."""
    found: list[Any] = []
    if isinstance(value, types.FunctionType):
        if value.__module__ == "__main__" or value.__closure__:
            found.append(value.__code__)
        found.extend(cell_contents(value))
        found.extend(value.__defaults__ or ())
        found.extend((value.__kwdefaults__ or {}).values())
    elif isinstance(value, types.MethodType):
        found.extend([value.__func__, value.__self__])
    elif isinstance(value, functools.partial):
        found.extend([value.func, *value.args, *value.keywords.values()])
    elif isinstance(value, (staticmethod, classmethod)):
        found.append(value.__func__)
    elif isinstance(value, property):
        found.extend(f for f in (value.fget, value.fset, value.fdel) if f is not None)
    elif isinstance(value, (types.BuiltinFunctionType, types.BuiltinMethodType)):
        holder = getattr(value, "__self__", None)
        if holder is not None and not isinstance(holder, types.ModuleType):
            found.append(holder)  # append = items.append: calling it changes items
    wrapped = getattr(value, "__wrapped__", None) if not isinstance(value, type) else None
    if wrapped is not None:
        found.append(wrapped)  # functools.wraps, lru_cache, ...
    cls = value if isinstance(value, type) else type(value)
    for klass in getattr(cls, "__mro__", ()):  # a notebook class, or one of its objects
        if getattr(klass, "__module__", None) == "__main__":
            found.extend(vars(klass).values())
    if callable(value) and not isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
        # A callable object from a library (a decorator's product): whatever notebook
        # function it holds is what it runs.
        found.extend(
            held for held in _referents(value)
            if isinstance(held, types.FunctionType) and held.__module__ == "__main__"
        )
    return found


def cell_contents(function: types.FunctionType) -> list[Any]:
    """The values a function's closure holds (empty cells left out)."""
    values = []
    for cell in function.__closure__ or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    return values


def _referents(value: Any) -> list[Any]:
    held = gc.get_referents(value)
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        held.extend(attributes.values())
    return held


def _only_shown(tree: ast.AST) -> set[int]:
    """The ``id()`` of the names a cell only shows: in the arguments of ``print``, ``len``,
    ``display``, ... (``print(a.shape)``, ``len(a)``), or as a whole expression statement
    the kernel displays (``a``, ``a.shape``), with no call in between that could change them
    (``print(a.pop())`` changes ``a``)."""
    shown: set[int] = set()

    def collect(node: ast.AST) -> None:
        for child in ast.walk(node):
            if isinstance(child, (ast.Call, ast.NamedExpr, ast.Starred, ast.Subscript)):
                return  # a call, an assignment, an iteration or a lookup (a defaultdict) inside
        shown.update(id(child) for child in ast.walk(node) if isinstance(child, ast.Name))

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SHOWING:
            for argument in [*node.args, *(k.value for k in node.keywords)]:
                collect(argument)
        elif isinstance(node, ast.Expr) and isinstance(node.value, (ast.Name, ast.Attribute, ast.Subscript)):
            collect(node.value)
    return shown


def _code_names(code: Any) -> set[str]:
    """The global names a function's code (and the code nested in it) uses."""
    found = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            found |= _code_names(const)
    return found


def with_sharers(namespace: Mapping[str, Any], touched: set[str], candidates: Iterable[str]) -> set[str]:
    """*touched* plus every one of *candidates* that shares an object with a touched
    variable (``b = a``, ``holder = {"arr": a}``, an array view of the same memory, a frame
    over the same column), or whose objects are too many to tell within
    :data:`WALK_BUDGET`. A change made through one name can change all of those."""
    budget = [WALK_BUDGET]
    reached: set[int] = set()
    for name in touched:
        if name in namespace and _walk(namespace[name], reached, budget) is None:
            return touched | set(candidates)  # too much to follow: look at all of them
    found = set(touched)
    for name in candidates:
        if name in found or name not in namespace:
            continue
        own: set[int] = set()
        if _walk(namespace[name], own, budget) is None or not own.isdisjoint(reached):
            found.add(name)
    return found


def _walk(root: Any, seen: set[int], budget: list[int]) -> set[int] | None:
    """Add to *seen* the ids of the mutable objects *root* holds (itself included; for an
    array, the memory it views); ``None`` when *budget* runs out first."""
    np = sys.modules.get("numpy")
    stack = [root]
    while stack:
        value = stack.pop()
        if isinstance(value, _LEAVES) or id(value) in seen:
            continue
        seen.add(id(value))
        budget[0] -= 1
        if budget[0] < 0:
            return None
        if np is not None and isinstance(value, np.ndarray):
            base = value
            while isinstance(base, np.ndarray) and base.base is not None:
                base = base.base
                seen.add(id(base))  # views of one memory meet here, whatever the base is
            if value.dtype.hasobject:
                if value.size > budget[0]:
                    return None
                stack.extend(value.ravel(order="K").tolist())
            continue
        stack.extend(_referents(value))
    return seen


def with_aliases(namespace: Mapping[str, Any], names: set[str]) -> set[str]:
    """*names* and every other name for the same objects (``b = a``: changing one changes
    both), and every array that shares memory with a named one (``v = a[:2]``, also through
    different bases, as ``np.frombuffer`` makes)."""
    ids = {id(namespace[name]) for name in names if name in namespace}
    found = names | {name for name, value in namespace.items() if id(value) in ids}
    np = sys.modules.get("numpy")
    if np is not None:
        arrays = [namespace[name] for name in found if isinstance(namespace.get(name), np.ndarray)]
        found |= {
            name for name, value in namespace.items()
            if isinstance(value, np.ndarray) and name not in found and any(np.may_share_memory(value, a) for a in arrays)
        }
    return found
