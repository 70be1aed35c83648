"""The Python API: snapshot, restore, load and log. No IPython import.

Example, from a notebook or a plain script::

    import nbversion
    nbversion.snapshot("baseline")           # every user variable
    model = nbversion.load("HEAD", "model")   # one value back, without touching globals
    nbversion.restore("HEAD~1")               # the previous snapshot's variables
"""

from __future__ import annotations

import os
import platform
import sys
from collections import Counter
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from . import __version__, codecs
from .capture import namespace as capture_ns
from .catalog import Artifact, Catalog, Skipped, check_tag_name, new_id, short_id
from .display import Table, format_bytes, relative_time
from .errors import NbversionError, RefNotFound, UsageProblem
from .project import Project

PathLike = str | os.PathLike[str]

# The snapshot this process last took or restored, per catalog: the next one's parent.
_session_parent: dict[str, str] = {}


@dataclass
class SnapshotResult:
    """What :func:`snapshot` recorded. ``str()`` gives the one-line summary."""

    id: str
    message: str
    artifacts: list[Artifact]
    metrics: dict[str, float | None]
    skipped: list[Skipped]
    tag: str | None = None

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    @property
    def new_bytes(self) -> int:
        """Bytes this snapshot added to the object store."""
        return sum(a.size for a in self.artifacts if a.new)

    @property
    def reused_bytes(self) -> int:
        """Bytes it references that were already stored (by an earlier snapshot or twice)."""
        return sum(a.size for a in self.artifacts if not a.new)

    def __str__(self) -> str:
        kinds = Counter(a.kind for a in self.artifacts)
        detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        line = f"snapshot {self.short_id}"
        if self.tag:
            line += f" ({self.tag})"
        line += f' "{self.message}": {_plural(len(self.artifacts), "variable")}'
        if detail:
            line += f" ({detail})"
        line += f", {_plural(len(self.metrics), 'metric')}"
        line += f"; {format_bytes(self.new_bytes)} new, {format_bytes(self.reused_bytes)} reused"
        if self.skipped:
            line += "; skipped " + ", ".join(f"{s.name} ({s.reason})" for s in self.skipped)
        return line


@dataclass
class RestoreResult:
    """What :func:`restore` did. ``str()`` gives the one-line summary."""

    id: str
    message: str
    restored: list[str]
    removed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        line = (
            f'restored {_plural(len(self.restored), "variable")} from {short_id(self.id)} '
            f'"{self.message}"'
        )
        if self.restored:
            line += ": " + ", ".join(self.restored)
        if self.removed:
            line += "; removed " + ", ".join(self.removed)
        return line


def snapshot(
    message: str,
    namespace: MutableMapping[str, Any] | None = None,
    *,
    tag: str | None = None,
    vars: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    repo: PathLike | None = None,
) -> SnapshotResult:
    """Freeze the notebook's variables under *message* and return what was recorded.

    :param message: what this snapshot is, for people (required, like a commit message).
    :param namespace: the variables; default: the running IPython shell's, else the caller's
        module globals.
    :param tag: a name for the snapshot, usable as a ref (must not exist yet).
    :param vars: only these variables (default: every user variable).
    :param exclude: leave these variables out.
    :param repo: a directory inside the repository (default: the current directory).
    :raises UsageProblem: empty message, bad tag name, or a named variable that is not defined.
    :raises TagExists: when *tag* already names a snapshot.
    """
    if not isinstance(message, str) or not message.strip():
        raise UsageProblem('a snapshot needs a message, e.g. %snapshot "baseline model"')
    message = message.strip()
    if tag is not None:
        check_tag_name(tag)
    namespace, hidden = _namespace(namespace)
    if vars is not None:
        names = list(dict.fromkeys(vars))
        for name in names:
            if name not in namespace:
                raise UsageProblem(f"variable {name!r} is not defined")
    else:
        names = capture_ns.user_variables(namespace, hidden)
    excluded = set(exclude)
    names = [n for n in names if n not in excluded]

    project = Project.find(repo)
    with project.open_catalog() as catalog:
        if tag is not None:
            catalog.check_tag_free(tag)
        parent = _session_parent.get(str(catalog.path)) or catalog.head()
        previous = {a["name"]: a for a in catalog.artifacts(parent, "variable")} if parent else {}
        captured = capture_ns.capture(namespace, names, project.store, previous)
        snapshot_id = new_id()
        catalog.add_snapshot(
            snapshot_id=snapshot_id,
            message=message,
            parent=parent,
            artifacts=captured.artifacts,
            metrics=captured.metrics,
            skipped=captured.skipped,
            tag=tag,
            nbversion_version=__version__,
            python_version=platform.python_version(),
        )
        _session_parent[str(catalog.path)] = snapshot_id
    return SnapshotResult(
        snapshot_id, message, captured.artifacts, captured.metrics, captured.skipped, tag
    )


def restore(
    ref: str,
    namespace: MutableMapping[str, Any] | None = None,
    *,
    vars: Iterable[str] | None = None,
    exact: bool = False,
    repo: PathLike | None = None,
) -> RestoreResult:
    """Bring back the variables of the snapshot *ref* names.

    Everything is loaded and verified first; only then is the namespace changed, so an error
    leaves it exactly as it was. Variables the snapshot does not have are left alone, unless
    *exact* (then they are removed). Functions and classes are kept as code, not restored.

    :param ref: ``HEAD``, ``HEAD~N``, a tag, or an id prefix.
    :param vars: only these variables.
    :param exact: also remove user variables the snapshot did not have.
    :raises RefNotFound: / :raises AmbiguousRef: for a bad ref.
    :raises UsageProblem: when a requested variable is not in the snapshot.
    :raises MissingObject: / :raises CorruptObject: when stored bytes are missing or damaged.
    """
    namespace, hidden = _namespace(namespace)
    project = Project.find(repo)
    with _open_existing(project, ref) as catalog:
        snapshot_id = catalog.resolve(ref)
        record = catalog.snapshot(snapshot_id)
        stored = {
            a["name"]: a for a in catalog.artifacts(snapshot_id, "variable") if a["codec"] != "source"
        }
        if vars is not None:
            wanted = list(dict.fromkeys(vars))
            for name in wanted:
                if name not in stored:
                    raise UsageProblem(
                        f"variable {name!r} is not in snapshot {short_id(snapshot_id)}"
                        f" (it has: {', '.join(stored) or 'no variables'})"
                    )
        else:
            wanted = list(stored)
        if exact and vars is not None:
            raise UsageProblem("--exact restores a whole snapshot: it cannot be combined with --vars")
        values = {name: _decode(stored[name], snapshot_id, project) for name in wanted}
        removed = []
        if exact:
            removed = [
                n
                for n in capture_ns.user_variables(namespace, hidden)
                if n not in stored and not capture_ns.is_code(namespace[n])
            ]
        namespace.update(values)
        for name in removed:
            del namespace[name]
        _session_parent[str(catalog.path)] = snapshot_id
    return RestoreResult(snapshot_id, record["message"], wanted, removed)


def load(ref: str, name: str, *, repo: PathLike | None = None) -> Any:
    """Return the value variable *name* had in snapshot *ref*, verified, without assigning it.

    :raises UsageProblem: when the snapshot has no such variable.
    """
    project = Project.find(repo)
    with _open_existing(project, ref) as catalog:
        snapshot_id = catalog.resolve(ref)
        for artifact in catalog.artifacts(snapshot_id, "variable"):
            if artifact["name"] == name:
                return _decode(artifact, snapshot_id, project)
    raise UsageProblem(f"variable {name!r} is not in snapshot {short_id(snapshot_id)}")


def log(n: int | None = 20, *, repo: PathLike | None = None) -> Table:
    """Return the newest *n* snapshots (all when ``None``) as a :class:`Table`."""
    if n is not None and n < 1:
        raise UsageProblem(f"-n must be a positive number, not {n}")
    project = Project.find(repo)
    rows = []
    if project.exists():
        with project.open_catalog() as catalog:
            rows = catalog.log(n)
    return Table(
        ["id", "when", "message", "tags", "artifacts", "metrics", "new"],
        [
            [
                short_id(r["id"]), relative_time(r["created_at"]), r["message"], r["tags"],
                r["artifacts"], r["metrics"], format_bytes(r["new_bytes"]),
            ]
            for r in rows
        ],
        empty=f"no snapshots yet in {project.root}",
    )


def _decode(artifact: dict[str, Any], snapshot_id: str, project: Project) -> Any:
    """Load one artifact's value; an error names the variable and the snapshot."""
    try:
        return codecs.decode(artifact["codec"], artifact["object_id"], project.store)
    except NbversionError as exc:
        raise type(exc)(
            f"variable {artifact['name']!r} of snapshot {short_id(snapshot_id)}: {exc}"
        ) from None


def _open_existing(project: Project, ref: str) -> Catalog:
    if not project.exists():
        raise RefNotFound(f"snapshot {ref!r} not found: there are no snapshots yet in {project.root}")
    return project.open_catalog()


def _namespace(
    namespace: MutableMapping[str, Any] | None,
) -> tuple[MutableMapping[str, Any], dict[str, Any]]:
    """Return the namespace to work on and the names IPython hides in it."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if namespace is None:
        if shell is not None:
            return shell.user_ns, shell.user_ns_hidden
        # A plain script: the globals of the module that called the public function.
        frame = sys._getframe(2)
        return frame.f_globals, {}
    if shell is not None and namespace is shell.user_ns:
        return namespace, shell.user_ns_hidden
    return namespace, {}


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
