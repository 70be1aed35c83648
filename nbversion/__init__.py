"""nbversion: version code, data and models from inside a Jupyter notebook.

In a notebook::

    %load_ext nbversion
    %snapshot "baseline" --tag base
    %restore base

From Python: :func:`snapshot`, :func:`restore`, :func:`load`, :func:`log`, :func:`show`,
:func:`diff`, :func:`checkout_code`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import (  # noqa: E402
    check,
    checkout_code,
    diff,
    gc,
    load,
    log,
    pull,
    push,
    query,
    remote_add,
    remote_list,
    remote_remove,
    restore,
    show,
    snapshot,
    status,
)
from .errors import NbversionError  # noqa: E402

__all__ = [
    "NbversionError", "check", "checkout_code", "diff", "gc", "load", "load_ipython_extension", "log", "pull",
    "push", "query", "remote_add", "remote_list", "remote_remove", "restore", "show", "snapshot", "status",
]


def load_ipython_extension(ipython):  # type: ignore[no-untyped-def]
    """Register the magics: ``%load_ext nbversion``."""
    from .magics import NbversionMagics

    ipython.register_magics(NbversionMagics)


def unload_ipython_extension(ipython):  # type: ignore[no-untyped-def]
    """Nothing to undo beyond what IPython does for ``%unload_ext``."""
