"""Capture the notebook's code: the cells the kernel actually ran, in the order it ran them,
and the notebook file itself when its path can be found.

The cells come from IPython's input history as the namespace holds it (``In``, or the raw
history behind ``get_ipython()``): entry *n* is the cell run with execution count *n*, which
is the truth when cells ran out of order. No IPython import is needed. A plain script's own file stands in for the cells.

The stored cells have secret-shaped literals (``sk-...`` keys, AWS keys, ...) replaced by
``[redacted by nbversion]`` (:func:`nbversion.credentials.redact`); the notebook and script files
are the user's own and are stored as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import credentials
from ..catalog import Artifact, is_text
from ..store import ObjectStore

CELLS_NAME = "cells"
SCRIPT_NAME = "script"


def executed_cells(namespace: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return ``[{"execution_count": n, "source": text}, ...]`` for every cell run so far.

    The source is what the user typed (``%snapshot ...``), from the shell's raw history when
    the namespace leads to it, else IPython's transformed ``In``.
    """
    history = namespace.get("In")
    shell = namespace.get("get_ipython")
    try:
        raw = shell().history_manager.input_hist_raw if callable(shell) else None
    except Exception:  # not IPython's, or no history: fall back to In
        raw = None
    if isinstance(raw, list) and isinstance(history, list) and len(raw) == len(history):
        history = raw
    if not isinstance(history, list):
        return []
    return [
        {"execution_count": n, "source": source}
        for n, source in enumerate(history)
        if n > 0 and isinstance(source, str) and source.strip()
    ]


def find_notebook(namespace: Mapping[str, Any], explicit: str | None, configured: str | None) -> Path | None:
    """Return the path of the running notebook, if anything says where it is.

    In order: an explicit ``--notebook``, ``[tool.nbversion] notebook``, VS Code's
    ``__vsc_ipynb_file__``, Jupyter's ``JPY_SESSION_NAME``.
    """
    for candidate in (explicit, configured, namespace.get("__vsc_ipynb_file__"), os.environ.get("JPY_SESSION_NAME")):
        if isinstance(candidate, str) and candidate.endswith(".ipynb") and Path(candidate).is_file():
            return Path(candidate).resolve()
    return None


def capture(
    namespace: Mapping[str, Any],
    root: Path,
    store: ObjectStore,
    notebook: Path | None,
) -> list[Artifact]:
    """Store the executed cells (credentials redacted, or the script) and the notebook file;
    return their artifacts."""
    artifacts = []
    cells = [{**cell, "source": credentials.redact(cell["source"])} for cell in executed_cells(namespace)]
    if cells:
        text = json.dumps(cells, ensure_ascii=False)
        if not is_text(text):  # a lone surrogate typed in a cell: JSON escapes it instead
            text = json.dumps(cells)
        put = store.put_bytes(text.encode())
        artifacts.append(
            Artifact(
                kind="code", source="notebook", name=CELLS_NAME, type="cells", codec="json",
                object_id=put.object_id, size=put.size, new_bytes=put.size if put.new else 0,
                summary={"cells": len(cells), "last_execution_count": cells[-1]["execution_count"]},
            )
        )
    else:
        script = namespace.get("__file__")
        if isinstance(script, str) and os.path.isfile(script):
            put = store.put_file(script)
            artifacts.append(
                Artifact(
                    kind="code", source="notebook", name=SCRIPT_NAME, path=_relative(Path(script).resolve(), root),
                    type="file", codec="file", object_id=put.object_id, size=put.size, new_bytes=put.size if put.new else 0,
                )
            )
    if notebook is not None:
        put = store.put_file(notebook)
        relative = _relative(notebook, root)
        artifacts.append(
            Artifact(
                kind="code", source="notebook", name=relative, path=relative, type="ipynb",
                codec="file", object_id=put.object_id, size=put.size, new_bytes=put.size if put.new else 0,
            )
        )
    return artifacts


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
