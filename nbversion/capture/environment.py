"""Capture the environment: Python version, platform, and every installed package's version.

The package list is read from ``importlib.metadata`` once and reused until a directory on
``sys.path`` changes (``pip install`` in the kernel changes its site-packages), so a snapshot
normally pays a few ``stat`` calls for it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..store import hash_buffers


@dataclass(frozen=True)
class Environment:
    """Where the snapshot was taken. ``id`` is a hash of everything else, so identical
    environments are stored once."""

    id: str
    python_version: str
    platform: str
    packages: tuple[tuple[str, str], ...]


_cache: tuple[tuple[tuple[str, int], ...], Environment] | None = None


def _path_stamp() -> tuple[tuple[str, int], ...]:
    stamp = []
    for entry in sys.path:
        try:
            stamp.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            continue
    return tuple(stamp)


def capture(memo: Any = None) -> Environment:
    """Return the current environment, cached while ``sys.path`` directories are unchanged:
    in this process, and across processes through *memo* (a
    :class:`~nbversion.catalog.StatCache`), since reading every package's metadata takes
    a noticeable fraction of a second."""
    global _cache
    stamp = _path_stamp()
    if _cache is not None and _cache[0] == stamp:
        return _cache[1]
    remembered = memo.recall("environment") if memo is not None else None
    if remembered and remembered["stamp"] == [list(s) for s in stamp]:
        environment = Environment(
            remembered["id"], remembered["python_version"], remembered["platform"],
            tuple(tuple(p) for p in remembered["packages"]),  # type: ignore[misc]
        )
        _cache = (stamp, environment)
        return environment
    packages: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name not in packages:  # the first on sys.path is the one imported
            packages[name] = dist.version
    ordered = tuple(sorted(packages.items(), key=lambda item: item[0].lower()))
    python_version, system = platform.python_version(), platform.platform()
    key = json.dumps([python_version, system, ordered]).encode()
    environment = Environment(hash_buffers([key]), python_version, system, ordered)
    _cache = (stamp, environment)
    if memo is not None:
        memo.remember(
            "environment",
            {"stamp": stamp, "id": environment.id, "python_version": python_version, "platform": system,
             "packages": ordered},
        )
    return environment


@lru_cache(maxsize=1)
def _module_to_distribution() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def library_of(type_module: str) -> dict[str, str] | None:
    """Return the installed distribution (name and version) that provides a module, e.g.
    ``sklearn.linear_model._logistic`` -> ``{"name": "scikit-learn", "version": "1.5.0"}``."""
    top = type_module.split(".", 1)[0]
    if top in ("builtins", "__main__") or top in sys.stdlib_module_names:
        return None
    names = _module_to_distribution().get(top)
    if not names:
        return None
    try:
        return {"name": names[0], "version": importlib.metadata.version(names[0])}
    except importlib.metadata.PackageNotFoundError:
        return None
