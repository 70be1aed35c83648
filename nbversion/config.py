"""Settings from ``[tool.nbversion]`` in the repository's ``pyproject.toml``.

Example::

    [tool.nbversion]
    track = ["data", "models/*.pkl"]      # files and directories every snapshot keeps
    untracked_max_bytes = 1_000_000       # untracked files up to this size are kept whole
    notebook = "analysis.ipynb"           # when the kernel cannot tell its notebook's path
    data_extensions = [".csv", ".parquet"]  # files ending so are kind 'data' (replaces the default list)
    model_extensions = [".pkl", ".pt"]      # files ending so are kind 'model' (replaces the default list)
    allow_secrets = ["api_token"]         # keep these variables although they look like credentials
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import UsageProblem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DATA_EXTENSIONS = (".csv", ".tsv", ".parquet", ".feather", ".arrow", ".json", ".jsonl", ".npy", ".npz", ".txt", ".xlsx")
MODEL_EXTENSIONS = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".onnx", ".safetensors", ".h5", ".keras", ".ckpt")


@dataclass(eq=False)
class Config:
    """The settings, with their defaults."""

    track: list[str] = field(default_factory=list)
    untracked_max_bytes: int = 1_000_000
    notebook: str | None = None
    data_extensions: list[str] = field(default_factory=lambda: list(DATA_EXTENSIONS))
    model_extensions: list[str] = field(default_factory=lambda: list(MODEL_EXTENSIONS))
    allow_secrets: list[str] = field(default_factory=list)

    def kind_of_file(self, path: str) -> str:
        """Return ``data``, ``model`` or ``other`` for a file, by its extension or directory."""
        directory, _, name = path.lower().rpartition("/")
        return self._kind_of(directory, os.path.splitext(name)[1])

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - a handful of (directory, extension) pairs
    def _kind_of(self, directory: str, extension: str) -> str:
        lower = f"{directory}/x{extension}"
        if lower.endswith(tuple(self.model_extensions)):
            return "model"
        if lower.endswith(tuple(self.data_extensions)):
            return "data"
        parts = lower.split("/")
        if any(p in ("models", "model", "checkpoints") for p in parts[:-1]):
            return "model"
        if any(p in ("data", "datasets", "dataset") for p in parts[:-1]):
            return "data"
        return "other"


def load(root: Path) -> Config:
    """Read ``[tool.nbversion]`` from ``root/pyproject.toml`` (defaults when absent).

    :raises UsageProblem: when the file does not parse or a setting has the wrong type.
    """
    path = root / "pyproject.toml"
    if not path.exists():
        return Config()
    try:
        table: dict[str, Any] = tomllib.loads(path.read_text()).get("tool", {}).get("nbversion", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageProblem(f"{path} cannot be read: {exc}") from None
    known = {f.name: f for f in fields(Config)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            continue  # settings for later versions (remotes, ...) are not ours to refuse
        default = getattr(Config(), name)
        expected = type(default) if default is not None else str
        if expected is list:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, expected) and not isinstance(value, bool)
        if not ok:
            raise UsageProblem(
                f"[tool.nbversion] {key} in {path} should be "
                f"{'a list of strings' if expected is list else 'a ' + expected.__name__}, not {value!r}"
            )
        values[name] = value
    return Config(**values)
