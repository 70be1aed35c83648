"""Pickles that keep identity: what joblib's pickle loses, and what variables share.

``joblib.dump`` writes each NumPy array inside a value in place, so an array held twice
(``{"a": x, "b": x}``) comes back as two arrays, and a pickle of one variable copies what it
holds of another (``holder = {"arr": a}``): after a restore ``holder["arr"] is a`` would be
false. :class:`Pickler` is joblib's pickler that memoizes arrays like any other object and
writes a *reference* (``("var", name)``) wherever it meets the value of another variable it
was given; :func:`load` resolves those references with the caller's values. Variables whose
pickles share objects are pickled together, as one object (``joblib-group``), so whatever
they shared is one object again after a restore.

The files are joblib's format (plus pickle's standard memo and persistent-id opcodes), and
loading one can run code like any pickle: only trusted objects are loaded (see
:mod:`nbversion.api`).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Mapping
from typing import IO, Any

import pickle

from joblib.numpy_pickle import NumpyPickler, NumpyUnpickler

from .codecs import reduce_exactly

#: Objects whose identity no one can observe through a change: never a shared object.
_IMMUTABLE = (str, bytes, int, float, complex, bool, type(None), tuple, frozenset, range, type)


class Pickler(NumpyPickler):  # type: ignore[misc]
    """joblib's pickler, keeping identity: arrays are memoized (written once, referenced
    after), the values of other variables (*refs*: ``id(value) -> name``) become references,
    and :attr:`reached` collects the mutable objects written by id (to tell what two
    variables' pickles share; it holds them, so a temporary's id is not reused meanwhile)."""

    def reducer_override(self, obj: Any) -> Any:  # noqa: D102
        return reduce_exactly(obj)

    def __init__(self, file: IO[bytes], refs: Mapping[int, str] | None = None) -> None:
        super().__init__(file)
        self.refs = dict(refs or {})
        self.referenced: set[str] = set()
        self.reached: dict[int, Any] = {}

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:  # noqa: D102
        name = self.refs.get(id(obj))
        if name is not None:
            self.referenced.add(name)
            self.save_pers(("var", name))
            return
        if not isinstance(obj, _IMMUTABLE):
            self.reached[id(obj)] = obj
        np = sys.modules.get("numpy")
        if np is not None and isinstance(obj, np.ndarray) and type(obj) is not np.ndarray:
            # A subclass (np.matrix, a masked array): rebuilt from plain arrays, which keep
            # their byte order, rather than through joblib's wrapper, which drops the class.
            pickle._Pickler.save(self, obj, save_persistent_id)
            return
        if np is not None and type(obj) is np.ndarray:
            memo = self.memo.get(id(obj))
            if memo is not None:  # the same array again: a reference to the first
                self.write(self.get(memo[0]))
                return
            base = obj
            while isinstance(base, np.ndarray) and base.base is not None:
                base = base.base
                self.reached[id(base)] = base  # views of one memory meet here
            super().save(obj)
            self.memoize(obj)  # joblib leaves the loaded array on the stack: memoize it
            return
        super().save(obj)


class _Unpickler(NumpyUnpickler):  # type: ignore[misc]
    def __init__(self, file: IO[bytes], resolve: Callable[[str], Any]) -> None:
        super().__init__("", file, False)
        self._resolve = resolve

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "var" and isinstance(pid[1], str)):
            raise ValueError(f"unknown reference {pid!r}")
        return self._resolve(pid[1])


def dump(value: Any, file: IO[bytes], refs: Mapping[int, str] | None = None) -> Pickler:
    """Pickle *value* to *file* (joblib's format, identity kept); return the pickler, whose
    ``referenced`` names the variables it refers to and ``reached`` the objects it wrote."""
    pickler = Pickler(file, refs)
    pickler.dump(value)
    return pickler


def load(data: bytes, resolve: Callable[[str], Any] | None = None) -> Any:
    """Load what :func:`dump` wrote; *resolve(name)* gives the value of a referenced variable."""

    def refuse(name: str) -> Any:
        raise ValueError(f"it refers to variable {name!r}, which is not at hand")

    return _Unpickler(io.BytesIO(data), resolve or refuse).load()
