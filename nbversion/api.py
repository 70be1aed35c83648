"""The Python API: snapshot, restore, load and log. No IPython import.

Example, from a notebook or a plain script::

    import nbversion
    nbversion.snapshot("baseline")           # every user variable
    model = nbversion.load("HEAD", "model")   # one value back, without touching globals
    nbversion.restore("HEAD~1")               # the previous snapshot's variables

Trust. Loading a value stored with a codec that pickles (``pickle``, ``joblib``: models and
other Python objects) can run any code its bytes name, so such a value is loaded only when
its object is trusted *on this machine*: this machine made it (a snapshot here pickled it),
the user loaded it once with ``--trust`` (``trust=True``), or it was fetched from a remote
the user trusts here (``nbversion remote trust NAME``, by the remote's URL). Anything else —
fetched from an untrusted remote, or arrived by git or a copy — raises
:class:`~nbversion.errors.UntrustedPickle` naming the variable, snapshot and remote, and
nothing is restored. Arrays, DataFrames and plain values never go through pickle and always
load. These facts live in ``.nbversion/state.db``, never committed; if git tracks that file
(whoever pushes could have planted it), it is not believed: pickles then need ``--trust``.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import keyword
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__, codecs, credentials
from . import interrupts, worktree
from .capture import changes as capture_changes
from .capture import environment as capture_env
from .capture import files as capture_files
from .capture import git_state as capture_git
from .capture import namespace as capture_ns
from .capture import notebook as capture_notebook
from .capture.git_state import GitState
from .catalog import Artifact, Catalog, Skipped, StatCache, is_text, check_tag_name, merge_catalogs, new_id, read_query, short_id
from .display import (
    LINE_LIMIT, QueryResult, Table, Text, describe, format_bytes, printable, printable_text, progress, relative_time,
)
from .errors import CatalogError, DecodeError, MissingObject, NbversionError, RefNotFound, UntrustedPickle, UsageProblem
from . import remote as transfers
from .project import CATALOG_NAME, DIRNAME, STATE_NAME, Project
from .remote import Remotes
from .store import IdOnlyStore, reporting

PathLike = str | os.PathLike[str]

# The snapshot this process last took or restored, per catalog: the next one's parent.
_session_parent: dict[str, str] = {}

#: The ``skipped`` reason of a variable left out with ``--exclude``.
EXCLUDED = "left out with --exclude"

# Things said once per process.
_said = {"notebook": False}


@dataclass
class SnapshotResult:
    """What :func:`snapshot` recorded. ``str()`` gives the summary line (and any warning
    and notes)."""

    id: str
    message: str
    artifacts: list[Artifact]
    metrics: dict[str, float | None]
    skipped: list[Skipped]
    tag: str | None = None
    git: GitState | None = None
    notes: list[str] = field(default_factory=list)
    #: variables left out because they look like credentials (they are in *skipped* too)
    secrets: list[str] = field(default_factory=list)

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    @property
    def new_bytes(self) -> int:
        """Bytes this snapshot added to the object store."""
        return sum(a.new_bytes for a in self.artifacts)

    @property
    def reused_bytes(self) -> int:
        """Bytes it references that were already stored (by an earlier snapshot or twice)."""
        return sum(max(0, a.size - a.new_bytes) for a in self.artifacts)

    def __str__(self) -> str:
        variables = [a for a in self.artifacts if a.source == "variable"]
        kinds = Counter(a.kind for a in variables)
        detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        line = f"snapshot {self.short_id}"
        if self.tag:
            line += f" ({self.tag})"
        line += f' "{self.message}": {_plural(len(variables), "variable")}'
        if detail:
            line += f" ({detail})"
        files = sum(
            a.summary.get("files", 0) if a.codec == "tree" else 1 for a in self.artifacts if a.source == "file"
        )
        if files:
            line += f", {_plural(files, 'file')}"
        line += f", {_plural(len(self.metrics), 'metric')}"
        if self.git is not None and self.git.is_repo:
            state = "dirty" if self.git.dirty else "clean"
            line += f", git {self.git.commit[:7] if self.git.commit else '(no commit)'} {state}"
        line += f"; {format_bytes(self.new_bytes)} new, {format_bytes(self.reused_bytes)} reused"
        others = [s for s in self.skipped if s.name not in self.secrets]  # the warning names those
        if others:
            line += "; skipped " + ", ".join(f"{s.name} ({s.reason})" for s in others)
        lines = [line]
        if self.secrets:
            lines.append(
                f"warning: not kept, {credentials.REASON}: {', '.join(self.secrets)} "
                "(allow with [tool.nbversion] allow_secrets)"
            )
        return "\n".join([*lines, *(f"note: {n}" for n in self.notes)])


@dataclass
class RestoreResult:
    """What :func:`restore` did. ``str()`` gives the summary line (and any warnings)."""

    id: str
    message: str
    restored: list[str]
    removed: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: of *restored*, those the kernel held already as stored (kept, not loaded again)
    unchanged: list[str] = field(default_factory=list)
    #: files and links in tracked directories the snapshot did not have, removed (*exact*)
    removed_files: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        line = f'restored {_plural(len(self.restored), "variable")}'
        if self.files:
            line += f" and {_plural(len(self.files), 'file')}"
        line += f' from {short_id(self.id)} "{printable(self.message)}"'  # catalog text: anyone's
        if self.restored:
            line += ": " + ", ".join(self.restored)
        if self.unchanged:
            line += f" ({len(self.unchanged)} already as stored, not loaded again)"
        if self.removed:
            line += "; removed " + ", ".join(self.removed)
        if self.removed_files:
            shown = self.removed_files[:5] + ([f"... ({len(self.removed_files) - 5} more)"] if len(self.removed_files) > 5 else [])
            line += f"; removed {_plural(len(self.removed_files), 'file')} the snapshot does not have: " + ", ".join(map(printable, shown))
        return "\n".join([line, *(f"warning: {printable(w, LINE_LIMIT)}" for w in self.warnings)])


def snapshot(
    message: str,
    namespace: MutableMapping[str, Any] | None = None,
    *,
    tag: str | None = None,
    vars: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    files: Iterable[str] = (),
    notebook: str | None = None,
    repo: PathLike | None = None,
    auto: bool = False,
    touched: Collection[str] | None = None,
) -> SnapshotResult | None:
    """Freeze the notebook's variables, code and tracked files under *message*.

    Besides the variables, a snapshot keeps the git state (commit, branch, the uncommitted
    diff, small untracked files), the cells the kernel ran in the order it ran them, the
    notebook file when its path is known, the installed packages, and the files tracked by
    ``[tool.nbversion] track`` plus *files*.

    Credentials are not kept: a variable whose name or value looks like one
    (:func:`nbversion.credentials.why_secret`) is skipped and named in a warning, even when
    *vars* names it, unless ``[tool.nbversion] allow_secrets`` lists it; secret-shaped
    literals in the stored cells are redacted; untracked ``.env``, ``id_rsa``, ``*.pem``, ...
    files are not kept.

    :param message: what this snapshot is, for people (required, like a commit message).
    :param namespace: the variables; default: the running IPython shell's, else the caller's
        module globals.
    :param tag: a name for the snapshot, usable as a ref (must not exist yet).
    :param vars: only these variables (default: every user variable).
    :param exclude: leave these variables out.
    :param files: files or directories to keep too (besides the configured ones).
    :param notebook: the notebook file, when the kernel cannot find it by itself.
    :param repo: a directory inside the repository (default: the current directory).
    :param auto: an auto snapshot (``%nbversion auto on``): marked as such, and taken only
        when a variable changed since the parent (else ``None`` is returned).
    :param touched: the variables that may have changed since the parent snapshot (the
        names a cell used); the others are recorded as they were without being looked at.
        Default: look at every variable.
    :raises UsageProblem: empty message, bad tag name, a named variable that is not defined,
        a file that does not exist or is outside the repository.
    :raises TagExists: when *tag* already names a snapshot.
    """
    if not isinstance(message, str) or not message.strip():
        raise UsageProblem('a snapshot needs a message, e.g. %snapshot "baseline model"')
    message = message.strip()
    if not is_text(message):
        raise UsageProblem(f"the message {message!r} is not valid text (it holds a lone surrogate)")
    if tag is not None:
        check_tag_name(tag)
    # Only the kernel's own snapshots build on one another; another namespace's never
    # becomes the parent the kernel's next (auto) snapshot copies unchanged records from.
    kernel = _is_kernel_namespace(namespace)
    namespace, hidden = _namespace(namespace)
    if vars is not None:
        names = list(dict.fromkeys(vars))
        for name in names:
            if name not in namespace:
                raise UsageProblem(f"variable {name!r} is not defined")
    else:
        names = capture_ns.user_variables(namespace, hidden)
    excluded = set(exclude)
    # Left out on purpose, not absent: `restore --exact` must keep them.
    left_out = [n for n in names if n in excluded]
    names = [n for n in names if n not in excluded]

    project = Project.find(repo)
    config = project.config()
    notebook_path = capture_notebook.find_notebook(namespace, notebook, config.notebook)
    if notebook is not None and notebook_path is None:
        raise UsageProblem(f"notebook {notebook!r} is not an existing .ipynb file")
    with project.open_catalog() as catalog, project.stat_cache() as cache:
        if tag is not None:
            catalog.check_tag_free(tag)
        session_parent = _session_parent.get(str(catalog.path)) if kernel else None
        head = catalog.head()
        parent = session_parent or head
        previous = {a["name"]: a for a in catalog.artifacts(parent, "variable")} if parent else {}
        kept: list[str] = []
        if touched is not None and session_parent is not None:  # only what the cells used can have changed
            # A record that names other variables (a view of their memory, references to
            # them) is only right while they are the same objects: such ones are looked at.
            kept = [
                n for n in names
                if n in previous and n not in touched and previous[n]["codec"] not in ("source", "joblib-group")
                and not previous[n]["summary"].get("view")
            ]
            # Names that were one object are looked at together, or not at all.
            def root(name: str) -> str:
                return previous[name]["summary"].get("alias_of") or name

            looked_roots = {root(n) for n in names if n in previous and n not in kept}
            kept = [n for n in kept if root(n) not in looked_roots and n not in looked_roots]
            # And one that now shares an object with a looked-at one (b = a made since, a
            # holder of it, a view of it) is looked at too: its record may not say so.
            shared = capture_changes.with_sharers(namespace, {n for n in names if n not in set(kept)}, kept)
            kept = [n for n in kept if n not in shared]
        look = [n for n in names if n not in set(kept)] if kept else names
        expected = sum(_nbytes(namespace[n]) for n in look)
        with progress("snapshot", expected or None) as moved, reporting(moved):
            repickled = {
                a["object_id"]: cache.recall(f"repickled:{a['object_id']}")
                for a in previous.values() if a["codec"] in codecs.RUNS_CODE
            }
            captured = capture_ns.capture(
                namespace, look, project.store, previous, config.allow_secrets,
                {k: v for k, v in repickled.items() if isinstance(v, str)},
            )
            if touched is not None:
                captured = _with_unchanged(captured, [previous[n] for n in kept], catalog.metrics(parent) if parent else {})
            captured.skipped.extend(Skipped(n, codecs.type_name(namespace[n]), EXCLUDED) for n in left_out)
            # An auto snapshot is needed when a variable changed, or when HEAD is not the
            # kernel's (another namespace's snapshot came in between): HEAD is what it holds.
            if auto and head == parent and not _state_changed(captured, previous, catalog.skipped_rows(parent) if parent else []):
                return None
            tracked = capture_files.capture(project.root, project.store, config, cache, list(files))
        git, git_artifacts = capture_git.capture(
            project.root, project.store, config.untracked_max_bytes, skip=tracked.paths
        )
        code = capture_notebook.capture(namespace, project.root, project.store, notebook_path)
        environment = capture_env.capture(cache)
        artifacts = [*captured.artifacts, *tracked.artifacts, *git_artifacts, *code]
        # Pickles this machine made load here without --trust (see "Trust" above).
        cache.trust_objects(
            (a.object_id for a in captured.artifacts if a.codec in codecs.RUNS_CODE and a.name not in set(kept)), "made"
        )
        snapshot_id = new_id()
        with interrupts.deferred():  # the row is committed and remembered as the parent, or neither
            checkpointed = catalog.add_snapshot(
                snapshot_id=snapshot_id,
                message=message,
                parent=parent,
                artifacts=artifacts,
                metrics=captured.metrics,
                skipped=captured.skipped,
                tag=tag,
                notebook=next((a.path for a in code if a.type == "ipynb"), None),
                git=git.row(),
                environment=environment,
                tree_entries={**captured.tree_entries, **tracked.tree_entries},
                nbversion_version=__version__,
                python_version=environment.python_version,
                auto=auto,
            )
            if kernel:
                _session_parent[str(catalog.path)] = snapshot_id
            project.note_wal(checkpointed)
    notes = list(tracked.notes)
    said = "\n".join(notes)
    notes += [
        f"untracked {name!r}: not valid UTF-8, not kept"
        for name in (path.encode("utf-8", "surrogateescape") for path in git.unreadable)
        if repr(name) not in said  # a tracked directory's walk said it already
    ]
    if git.secret_files:
        notes.append(f"untracked files that look like credential stores, not kept: {', '.join(git.secret_files)}")
    if not checkpointed:
        notes.append(
            f"another connection is reading {project.catalog_path.name}, so its WAL could not be "
            "folded in yet: commit it to git after the next snapshot"
        )
    in_jupyter = "ipykernel" in sys.modules  # a terminal IPython has no notebook file to find
    if notebook_path is None and "In" in namespace and in_jupyter and not _said["notebook"]:
        _said["notebook"] = True
        notes.append(
            "the notebook file's path is unknown, so only the executed cells are kept; "
            "pass --notebook PATH or set [tool.nbversion] notebook to keep the .ipynb too"
        )
    return SnapshotResult(
        snapshot_id, message, artifacts, captured.metrics, captured.skipped, tag, git, notes, captured.secrets
    )


def _with_unchanged(
    captured: capture_ns.Captured, rows: list[dict[str, Any]], metrics: dict[str, float | None]
) -> capture_ns.Captured:
    """*captured* plus the previous snapshot's records of the variables not looked at."""
    for row in rows:
        captured.artifacts.append(
            Artifact(
                kind=row["kind"], source="variable", name=row["name"], type=row["type"], codec=row["codec"],
                object_id=row["object_id"], size=row["size"], summary=row["summary"],
            )
        )
        if row["name"] in metrics:
            captured.metrics[row["name"]] = metrics[row["name"]]
    return captured


def _state_changed(
    captured: capture_ns.Captured, previous: dict[str, dict[str, Any]], skipped: list[tuple[str, str, str]]
) -> bool:
    """Whether the variables differ from the previous snapshot's: a name came or went, or
    a value's bytes changed."""
    if {a.name for a in captured.artifacts} != set(previous):
        return True
    if {s.name for s in captured.skipped} != {name for name, _, _ in skipped}:
        return True
    return any(
        a.object_id != previous[a.name]["object_id"]
        or any(a.summary.get(key) != previous[a.name]["summary"].get(key) for key in ("alias_of", "view", "group", "refs"))
        for a in captured.artifacts
    )


def restore(
    ref: str,
    namespace: MutableMapping[str, Any] | None = None,
    *,
    vars: Iterable[str] | None = None,
    exact: bool = False,
    files: bool = True,
    files_only: bool = False,
    force: bool = False,
    trust: bool = False,
    repo: PathLike | None = None,
) -> RestoreResult:
    """Bring back the variables and tracked files of the snapshot *ref* names.

    Everything is loaded and verified first; only then are the namespace and the files
    changed, so an error leaves both exactly as they were. Variables the snapshot does not
    have are left alone, unless *exact* (then they are removed). Functions and classes are
    kept as code, not restored. A file whose current content no snapshot holds is not
    overwritten unless *force*.

    :param ref: ``HEAD``, ``HEAD~N``, a tag, or an id prefix.
    :param vars: only these variables (and no files).
    :param exact: also remove user variables the snapshot did not have, and the files its
        tracked directories did not have (one whose content no snapshot holds only with
        *force*); without it, those files are kept and named in a warning.
    :param files: restore tracked files too (default).
    :param files_only: restore only the files, no variable.
    :param force: overwrite files even when their current content is in no snapshot.
    :param trust: load pickled values even when this machine does not trust them (they came
        from a remote not trusted here, or by git): loading them can run their author's code.
        Those objects are trusted here from then on.
    :raises RefNotFound: / :raises AmbiguousRef: for a bad ref.
    :raises UsageProblem: a requested variable not in the snapshot, an unsafe path, or a file
        with unsaved work.
    :raises MissingObject: / :raises CorruptObject: when stored bytes are missing or damaged.
    :raises UntrustedPickle: when a pickled value is not trusted here (see "Trust" above).
    """
    if exact and vars is not None:
        raise UsageProblem("--exact restores a whole snapshot: it cannot be combined with --vars")
    if files_only and (vars is not None or not files):
        raise UsageProblem("--files-only cannot be combined with --vars or --no-files")
    whole_namespace = False
    if not files_only:
        whole_namespace = _is_kernel_namespace(namespace)
        namespace, hidden = _namespace(namespace)
    project = Project.find(repo)
    with _open_existing(project, ref) as catalog, project.stat_cache() as cache:
        snapshot_id = catalog.resolve(ref)
        record = catalog.snapshot(snapshot_id)
        stored = {
            a["name"]: a for a in catalog.artifacts(snapshot_id, "variable") if a["codec"] != "source"
        }
        wanted: list[str] = []
        if not files_only:
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
        for name in wanted:
            _check_variable_name(name, snapshot_id)
        file_artifacts = catalog.artifacts(snapshot_id, "file") if ((files and vars is None) or files_only) else []
        referenced = {r for n in wanted for r in stored[n]["summary"].get("refs") or () if r in stored}
        _fetch_missing(
            project, catalog,
            [stored[n]["object_id"] for n in [*wanted, *referenced]] + [a["object_id"] for a in file_artifacts if a["object_id"]],
        )
        # Variables that hold exactly what *ref* has (the same object ids, computed without
        # writing) are kept, not loaded again; pickles are always loaded.
        same: dict[str, Any] = {}
        if not files_only:
            same = {
                name: namespace[name]
                for name in wanted
                if name in namespace and not stored[name]["summary"].get("alias_of")
                and not stored[name]["summary"].get("view")
                and _holds(namespace, name, stored[name])
            }
        loading = [name for name in wanted if name not in same]
        _check_trust(project, cache, snapshot_id, [stored[name] for name in loading], trust)
        total = sum(stored[name]["size"] for name in loading if not stored[name]["summary"].get("alias_of"))
        with progress("restore", total or None) as moved, reporting(moved):
            values = {**same, **_decode_all([stored[name] for name in loading], snapshot_id, project, same, stored)}
            _remember_repickled(cache, [stored[name] for name in loading], values)
        warnings = _library_warnings([stored[name] for name in wanted])
        planned = worktree.plan(catalog, project.store, file_artifacts) if file_artifacts else []
        _fetch_missing(project, catalog, [p.object_id for p in planned])
        extra = worktree.untracked_in_trees(project.root, file_artifacts, planned)
        if not exact:  # files added to a tracked directory since the snapshot stay, named
            for tree, paths in extra.items():
                shown = ", ".join(paths[:5]) + (f", ... ({len(paths) - 5} more)" if len(paths) > 5 else "")
                warnings.append(
                    f"kept {_plural(len(paths), 'file')} in {tree}/ that snapshot {short_id(snapshot_id)} does not have:"
                    f" {shown} (--exact removes them)"
                )
        removed: list[str] = []
        if exact and not files_only:
            # Variables the snapshot could not keep are not "absent" from it: keep them.
            kept = set(stored) | {name for name, _, _ in catalog.skipped_rows(snapshot_id)}
            removed = [
                n
                for n in capture_ns.user_variables(namespace, hidden)
                if n not in kept and not capture_ns.is_code(namespace[n])
            ]
        with worktree.stage_files(
            project.root, catalog, project.store, cache, planned, force=force, remove=extra if exact else None
        ) as staged:
            # Everything is loaded and verified: now change files and variables together,
            # with Ctrl-C held back until both are done.
            with interrupts.deferred():
                changed = staged.commit()
                if not files_only:
                    namespace.update(values)
                    for name in removed:
                        del namespace[name]
                if vars is None and not files_only and whole_namespace:
                    _session_parent[str(catalog.path)] = snapshot_id
                else:  # the kernel's variables are not the snapshot's: no parent to build on
                    _session_parent.pop(str(catalog.path), None)
    return RestoreResult(snapshot_id, record["message"], wanted, removed, changed, warnings, list(same), staged.removed)


def load(ref: str, name: str, *, trust: bool = False, repo: PathLike | None = None) -> Any:
    """Return the value variable *name* had in snapshot *ref*, verified, without assigning it.

    :param trust: load it even if it is a pickle this machine does not trust (see :func:`restore`).
    :raises UsageProblem: when the snapshot has no such variable.
    :raises UntrustedPickle: when it is a pickle not trusted here (see "Trust" above).
    """
    project = Project.find(repo)
    with _open_existing(project, ref) as catalog, project.stat_cache() as cache:
        snapshot_id = catalog.resolve(ref)
        stored = {a["name"]: a for a in catalog.artifacts(snapshot_id, "variable")}
        if name in stored:
            artifact = stored[name]
            needed = [artifact, *(stored[n] for n in artifact["summary"].get("refs") or () if n in stored)]
            _fetch_missing(project, catalog, [a["object_id"] for a in needed])
            _check_trust(project, cache, snapshot_id, [artifact], trust)
            return _decode_all([artifact], snapshot_id, project, available=stored)[name]
    raise UsageProblem(f"variable {name!r} is not in snapshot {short_id(snapshot_id)}")


def log(n: int | None = 20, *, auto: bool = False, repo: PathLike | None = None) -> Table:
    """Return the newest *n* snapshots (all when ``None``) as a :class:`Table`; auto
    snapshots only with *auto* (marked so), else counted in a footnote."""
    if n is not None and n < 1:
        raise UsageProblem(f"-n must be a positive number, not {n}")
    project = Project.find(repo)
    rows = []
    hidden = 0
    if project.exists():
        with project.open_catalog() as catalog:
            rows = catalog.log(n, auto=auto)
            hidden = 0 if auto else catalog.count_auto()
    table = Table(
        ["id", "when", "message", "tags", "artifacts", "metrics", "new"],
        [
            [
                short_id(r["id"]), relative_time(r["created_at"]), f"{r['message']}{' (auto)' if r.get('auto') else ''}", r["tags"],
                r["artifacts"], r["metrics"], format_bytes(r["new_bytes"]),
            ]
            for r in rows
        ],
        empty=(
            f"no snapshots of your own yet, {_plural(hidden, 'auto snapshot')} (--auto shows them)"
            if hidden else f"no snapshots yet in {project.root}"
        ),
    )
    if hidden and rows:
        table.footer = f"... and {_plural(hidden, 'auto snapshot')} (--auto shows them)"
    return table


def _check_trust(
    project: Project, cache: StatCache, snapshot_id: str, artifacts: list[dict[str, Any]], trust: bool
) -> None:
    """Refuse, before anything is loaded, a pickled artifact this machine does not trust.

    With *trust*, trust them all from now on instead.

    :raises UntrustedPickle: naming the first such variable, where it came from, and how to allow it.
    """
    risky = [a for a in artifacts if a["codec"] in codecs.RUNS_CODE]
    if not risky:
        return
    if trust:
        cache.trust_objects((a["object_id"] for a in risky), "trusted")
        return
    remotes = Remotes.load(project.dir)
    trusted_urls = cache.trusted_remotes()
    for artifact in risky:
        what = f"variable {artifact['name']!r} of snapshot {short_id(snapshot_id)} is a pickle"
        risk = "loading it can run code: restore with --trust (trust=True in Python) if you trust who made it"
        origin = cache.fetched_from(artifact["object_id"])
        if cache.is_trusted_object(artifact["object_id"]) or (origin is not None and origin[1] in trusted_urls):
            continue
        if origin is None:
            raise UntrustedPickle(f"{what} that was neither made on this machine nor fetched from a remote; {risk}")
        name, url = origin
        if name in remotes.urls and remotes.location(name, project.root) == url:
            raise UntrustedPickle(f"{what} from remote {name!r}; {risk}, or nbversion remote trust {name}")
        raise UntrustedPickle(f"{what} fetched from {url} (then remote {name!r}); {risk}")
    if _tracked_by_git(project, cache.path):
        # Trust recorded in a file anyone who pushes could have written is no trust at all.
        raise UntrustedPickle(
            f"variable {risky[0]['name']!r} of snapshot {short_id(snapshot_id)} is a pickle, and "
            f"{cache.path.relative_to(project.root)}, which records what this machine trusts, is tracked by git "
            "(anyone who pushes could have planted it): delete it and git rm --cached it, then restore "
            "with --trust if you trust who made the pickle"
        )


def _tracked_by_git(project: Project, path: Path) -> bool:
    """Whether git tracks *path*: then a checkout, not this machine, may have written it."""
    if not (project.root / ".git").exists():
        return False
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--", str(path.relative_to(project.root))],
            cwd=project.root, capture_output=True, check=False,
        )
    except OSError:  # no git here: no git checkout wrote it either
        return False
    return bool(listed.stdout)


def _decode_all(
    artifacts: list[dict[str, Any]], snapshot_id: str, project: Project, known: Mapping[str, Any] | None = None,
    available: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Load the artifacts' values by name. Names that were one object when the snapshot was
    taken (``b = a``) become one object again, loaded once (or taken from *known*, the
    values already at hand by name); variables pickled together (``joblib-group``) are
    loaded together, their references to other variables resolved to those variables'
    values (loaded from *available*, the snapshot's variable artifacts by name, when not
    restored themselves); arrays that viewed one memory view one memory again."""
    names = {artifact["name"] for artifact in artifacts} | set(known or {})
    values: dict[str, Any] = dict(known or {})
    aliases: dict[str, str] = {}
    grouped: list[dict[str, Any]] = []
    for artifact in artifacts:
        first = (artifact.get("summary") or {}).get("alias_of")
        if isinstance(first, str) and first in names and first != artifact["name"]:
            aliases[artifact["name"]] = first
        elif artifact["codec"] == "joblib-group":
            grouped.append(artifact)  # after the values it may refer to
        else:
            values[artifact["name"]] = _decode(artifact, snapshot_id, project)
    # Views first, then what refers to them (groups), then other names for them (aliases).
    _share_memory([a for a in artifacts if a["name"] not in aliases and a["codec"] != "joblib-group"], values)
    if grouped:
        values.update(_decode_groups(grouped, snapshot_id, project, values, available or {}))
    for name, first in aliases.items():
        values[name] = values[first] if first in values else _decode(
            next(a for a in artifacts if a["name"] == name), snapshot_id, project
        )
    return {artifact["name"]: values[artifact["name"]] for artifact in artifacts}


def _decode_groups(
    artifacts: list[dict[str, Any]], snapshot_id: str, project: Project,
    values: Mapping[str, Any], available: Mapping[str, dict[str, Any]],
) -> dict[str, Any]:
    """Load ``joblib-group`` artifacts, each group's object once."""
    from . import pickling

    extra: dict[str, Any] = {}  # referenced variables that are not restored themselves

    def resolve(name: str) -> Any:
        if name in values:
            return values[name]
        if name not in extra:
            artifact = available.get(name)
            if artifact is None or artifact["codec"] in codecs.RUNS_CODE:
                raise ValueError(f"it refers to variable {name!r}, which the snapshot does not hold")
            extra[name] = _decode(artifact, snapshot_id, project)
        return extra[name]

    loaded: dict[str, Any] = {}
    found: dict[str, Any] = {}
    for artifact in artifacts:
        object_id = artifact["object_id"]
        try:
            if object_id not in loaded:
                group = pickling.load(project.store.read_bytes(object_id), resolve)
                if not isinstance(group, dict):
                    raise ValueError("it is not a group of variables")
                loaded[object_id] = group
            found[artifact["name"]] = loaded[object_id][artifact["summary"].get("alias_of") or artifact["name"]]
        except NbversionError as exc:
            raise type(exc)(f"variable {artifact['name']!r} of snapshot {short_id(snapshot_id)}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - verified bytes that do not load: say which
            raise DecodeError(
                f"variable {artifact['name']!r} of snapshot {short_id(snapshot_id)} cannot be loaded: {exc}"
            ) from None
    return found


def _remember_repickled(cache: StatCache, artifacts: list[dict[str, Any]], values: Mapping[str, Any]) -> None:
    """For each pickled value just loaded, remember which id pickling it again gives, so
    the next snapshot of it unchanged reuses the stored object (``capture(repickled=...)``)
    instead of storing a second copy: a pickle round trip is not byte-stable."""
    for artifact in artifacts:
        if artifact["codec"] not in codecs.RUNS_CODE or artifact["summary"].get("alias_of"):
            continue
        try:
            codec, put = codecs.encode(values[artifact["name"]], IdOnlyStore())
        except NbversionError:
            continue
        if codec == artifact["codec"] and put.object_id != artifact["object_id"]:
            cache.remember(f"repickled:{artifact['object_id']}", put.object_id)


def _share_memory(artifacts: list[dict[str, Any]], values: dict[str, Any]) -> None:
    """Make the arrays that viewed one memory at snapshot time (``v = a[1:3]``) views of one
    memory again, laid out as they were (``capture.namespace.view_groups``): each array's
    bytes are written into a new memory at its place, then each becomes a view of it. Only
    whole groups are rebuilt; a group of which only some arrays are restored gives copies."""
    import numpy as np

    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for artifact in artifacts:
        view = (artifact.get("summary") or {}).get("view")
        if isinstance(view, dict) and isinstance(values.get(artifact["name"]), np.ndarray):
            groups.setdefault(str(view.get("group")), []).append((artifact["name"], view))
    for members in groups.values():
        if {m["group"] for _, m in members} - {name for name, _ in members}:
            continue  # its first member is not restored: not the whole group
        try:
            span = int(members[0][1]["span"])
            owner = next((name for name, view in members if view.get("owner") is True), None)
            memory = values[owner] if owner is not None else np.empty(span, dtype=np.uint8)
            if memory.nbytes != span:
                continue
            views = {
                name: values[name] if name == owner else np.ndarray(
                    values[name].shape, values[name].dtype, buffer=memory,
                    offset=int(view["offset"]), strides=tuple(int(s) for s in view["strides"]),
                ).view(type(values[name]))
                for name, view in members
            }
        except (KeyError, TypeError, ValueError):
            continue  # a layout that does not fit (a catalog edited by hand): copies, as stored
        for name, view in views.items():
            if name != owner:
                view[...] = values[name]
        values.update(views)


def _decode(artifact: dict[str, Any], snapshot_id: str, project: Project) -> Any:
    """Load one artifact's value; an error names the variable and the snapshot."""
    try:
        return codecs.decode(artifact["codec"], artifact["object_id"], project.store)
    except NbversionError as exc:
        raise type(exc)(
            f"variable {artifact['name']!r} of snapshot {short_id(snapshot_id)}: {exc}"
        ) from None


def query(
    sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None, *, repo: PathLike | None = None
) -> QueryResult:
    """Run a read-only SQL query on the catalog and return its rows.

    Bind values with parameters, never by pasting them into the text:
    ``query("SELECT * FROM metrics WHERE name = :metric", {"metric": "accuracy"})``.

    :raises ReadOnlyQueryError: for anything that would write, bad SQL, or a missing parameter.
    """
    project = Project.find(repo)
    if not project.exists():
        raise UsageProblem(f"there is no catalog yet in {project.root}: take a snapshot first")
    try:
        with project.open_catalog():
            pass  # migrate an older catalog once, so the documented views exist
    except CatalogError:
        pass  # a catalog we may not write is still one we can read
    columns, rows = read_query(project.catalog_path, sql, params if params is not None else ())
    return QueryResult(columns, rows)


@dataclass
class CheckResult:
    """What :func:`check` found. ``str()`` says it; ``ok`` is False if anything is wrong."""

    checked: int
    checked_bytes: int
    problems: list[tuple[str, str, list[str]]]  # (object id, what is wrong, snapshots affected)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = f"checked {_plural(self.checked, 'object')} ({format_bytes(self.checked_bytes)})"
        if self.ok:
            return head + ": all present and intact"
        lines = [head + f": {_plural(len(self.problems), 'problem')}"]
        for object_id, problem, snapshots in self.problems:
            shown = ", ".join(short_id(s) for s in snapshots[:8]) + (" ..." if len(snapshots) > 8 else "")
            lines.append(f"  {object_id} {problem}; needed by {_plural(len(snapshots), 'snapshot')}: {shown}")
        return "\n".join(lines)


def check(refs: Iterable[str] = (), *, remote: str | None = None, repo: PathLike | None = None) -> CheckResult:
    """Re-hash every object the catalog needs (or only the named snapshots'), here or on a
    *remote*, and report each missing or corrupt one with the snapshots it breaks.

    :raises RefNotFound: / :raises AmbiguousRef: for a bad ref.
    """
    from concurrent.futures import ThreadPoolExecutor

    project = Project.find(repo)
    if not project.exists():
        return CheckResult(0, 0, [])
    store = Remotes.load(project.dir).store(remote or None, project.root) if remote is not None else project.store
    with project.open_catalog() as catalog:
        refs = list(refs)
        ids = [catalog.resolve(r) for r in refs] if refs else None
        wanted = catalog.referenced_objects(ids)

        with progress("check", sum(wanted.values()) or None) as moved, reporting(moved):
            with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
                verdicts = list(pool.map(store.problem, sorted(wanted)))
        said = {"missing": "is missing", "corrupt": "is corrupt (its bytes do not match its id)"}
        problems = [
            (object_id, said[verdict], catalog.snapshots_using(object_id))
            for object_id, verdict in zip(sorted(wanted), verdicts)
            if verdict is not None
        ]
    return CheckResult(len(wanted), sum(wanted.values()), problems)


#: Objects and temporary files younger than this are never collected: they may belong to a
#: snapshot that another kernel is taking right now (its rows are not in the catalog yet).
GC_GRACE_SECONDS = 3600.0


def gc(
    *,
    grace_seconds: float = GC_GRACE_SECONDS,
    dry_run: bool = False,
    remote: str | None = None,
    keep_auto: int | None = None,
    repo: PathLike | None = None,
) -> Text:
    """Remove objects no snapshot needs, and abandoned temporary files: locally, or on a
    *remote* ("" for the default one).

    Anything modified within *grace_seconds* stays, so a snapshot in progress in another
    kernel never loses a fresh object. On a remote, only what *this* catalog does not
    reference goes: run it from a clone that has merged everyone's catalog. With
    *keep_auto*, all but the newest *keep_auto* auto snapshots are deleted first (tagged
    ones stay), and the objects only they needed go too once past the grace period.
    """
    import time

    project = Project.find(repo)
    if not project.exists():
        return Text(f"nothing to collect: there is no catalog yet in {project.root}")
    store = Remotes.load(project.dir).store(remote or None, project.root) if remote is not None else project.store
    cutoff = time.time() - grace_seconds
    with project.open_catalog() as catalog:
        pruned: list[str] = []
        if keep_auto is not None and dry_run:
            pruned = catalog.auto_beyond(keep_auto)
        elif keep_auto is not None:
            with interrupts.deferred():
                pruned = catalog.prune_auto(keep_auto)
                project.note_wal(catalog.checkpoint())
        needed = catalog.referenced_objects()
        needed.update((oid, 0) for oid in catalog.all_object_ids())
        removable = [
            (object_id, size)
            for object_id, size, mtime in store.iter_objects()
            if object_id not in needed and mtime < cutoff
        ]
        temporary = [path for path, mtime in store.iter_temporary() if mtime < cutoff]
        if not dry_run:
            for object_id, _ in removable:
                store.delete(object_id)
            for path in temporary:
                with contextlib.suppress(FileNotFoundError):
                    store.fs.rm_file(path)
    verb = "would remove" if dry_run else "removed"
    return Text(
        (f"{'would delete' if dry_run else 'deleted'} {_plural(len(pruned), 'auto snapshot')}"
         + (" (then more objects would be unreferenced); " if dry_run else "; ") if keep_auto is not None else "")
        + f"{verb} {_plural(len(removable), 'unreferenced object')} ({format_bytes(sum(s for _, s in removable))})"
        f" and {_plural(len(temporary), 'abandoned temporary file')}; kept {_plural(len(needed), 'object')}"
        " that snapshots need and anything younger than "
        f"{grace_seconds / 3600:g} h"
    )


def init(*, repo: PathLike | None = None) -> Text:
    """Set up a repository for nbversion: the ``.nbversion/`` directory, and the git merge
    driver that unions two catalogs when branches meet (``.gitattributes``, committed, and
    ``merge.nbversion.driver`` in this clone's git config)."""
    project = Project.find(repo)
    with project.open_catalog():
        pass
    lines = [f"initialized {project.dir}"]
    if not (project.root / ".git").exists():
        return Text(lines[0] + " (not a git repository: no merge driver)")
    attributes = project.root / ".gitattributes"
    rule = f"{DIRNAME}/{CATALOG_NAME} -diff -text merge=nbversion"  # not "binary": it unsets merge
    existing = attributes.read_text() if attributes.exists() else ""
    if rule not in existing.splitlines():
        attributes.write_text(existing + ("" if not existing or existing.endswith("\n") else "\n") + rule + "\n")
        lines.append(f"added to .gitattributes: {rule}")
    driver = f"{shlex.quote(sys.executable)} -m nbversion merge %A %B %O"
    subprocess.run(["git", "config", "merge.nbversion.name", "nbversion catalog union"], cwd=project.root, check=True)
    subprocess.run(["git", "config", "merge.nbversion.driver", driver], cwd=project.root, check=True)
    lines.append(f"git merge driver installed: {driver}")
    return Text("\n".join(lines))


def merge(ours: PathLike, theirs: PathLike) -> Text:
    """Union the catalog *theirs* into *ours* (what the git merge driver runs)."""
    for path in (ours, theirs):
        if not Path(path).is_file():
            raise UsageProblem(f"catalog {str(path)!r} does not exist")
    return Text(str(merge_catalogs(ours, theirs)))


def remote_add(name: str, url: str, *, default: bool = False, repo: PathLike | None = None) -> Text:
    """Add a remote: any fsspec URL or a directory (``s3://bucket/team/project``, ``/mnt/shared``)."""
    project = Project.find(repo)
    remotes = Remotes.load(project.dir)
    remotes.add(name, url, default=default)
    remotes.save()
    return Text(f"remote {name} -> {url}" + (" (default)" if remotes.default == name else ""))


def remote_remove(name: str, *, repo: PathLike | None = None) -> Text:
    """Forget a remote (its bytes stay where they are)."""
    project = Project.find(repo)
    remotes = Remotes.load(project.dir)
    remotes.remove(name)
    remotes.save()
    return Text(f"removed remote {name}" + (f"; the default is now {remotes.default}" if remotes.default else ""))


def remote_list(*, repo: PathLike | None = None) -> Table:
    """The configured remotes, and whether this machine trusts their pickles."""
    project = Project.find(repo)
    remotes = Remotes.load(project.dir)
    trusted: dict[str, str] = {}
    if (project.dir / STATE_NAME).exists():  # a listing creates nothing
        with project.stat_cache() as cache:
            trusted = cache.trusted_remotes()

    def trust(name: str) -> str:
        if remotes.location(name, project.root) in trusted:
            return "yes"
        return "no: its URL changed since" if name in trusted.values() else ""

    return Table(
        ["name", "url", "default", "trusted"],
        [[name, url, "*" if name == remotes.default else "", trust(name)] for name, url in remotes.urls.items()],
        empty="no remotes: nbversion remote add NAME URL",
    )


def remote_trust(name: str, *, repo: PathLike | None = None) -> Text:
    """Trust remote *name* on this machine: pickled values (models, ...) fetched from it load
    without ``--trust``. Only do so if you trust everyone who can write to it.

    The trust is kept in ``.nbversion/state.db`` (never committed) for the remote's current
    URL: if the committed ``remotes.json`` later points *name* elsewhere, that is not trusted.

    :raises UsageProblem: when there is no such remote, or git tracks ``state.db``.
    """
    project = Project.find(repo)
    url = Remotes.load(project.dir).location(name, project.root)
    with project.stat_cache() as cache:
        if _tracked_by_git(project, cache.path):
            raise UsageProblem(
                f"{cache.path.relative_to(project.root)} is tracked by git, so what it trusts could have been "
                "planted by anyone who pushes: delete it and git rm --cached it first"
            )
        cache.trust_remote(name, url)
    return Text(f"remote {name} ({url}) is trusted on this machine: pickles fetched from it load without --trust")


def remote_untrust(name: str, *, repo: PathLike | None = None) -> Text:
    """Stop trusting remote *name* on this machine (its pickles need ``--trust`` again)."""
    project = Project.find(repo)
    remotes = Remotes.load(project.dir)
    url = remotes.location(name, project.root) if name in remotes.urls else None
    with project.stat_cache() as cache:
        was = cache.untrust_remote(name, url)
    return Text(f"remote {name} is no longer trusted on this machine" if was else f"remote {name} was not trusted")


def push(refs: Iterable[str] = (), *, remote: str | None = None, repo: PathLike | None = None) -> Text:
    """Upload the objects the catalog references (or the named snapshots') that the remote
    lacks. Parallel, verified, and safe to re-run after an interruption."""
    project = Project.find(repo)
    target = Remotes.load(project.dir).store(remote, project.root)
    with _open_existing(project, "HEAD") as catalog:
        refs = list(refs)
        wanted = catalog.referenced_objects([catalog.resolve(r) for r in refs] if refs else None)
    present = transfers.listing(target)
    todo = sum(size for oid, size in wanted.items() if oid not in present)
    with progress("push", todo or None) as moved:
        result = transfers.transfer(project.store, target, wanted, present=present, progress=moved)
    line = f"pushed {_plural(result.copied, 'object')} ({format_bytes(result.copied_bytes)}); {result.present} already there"
    if result.missing:
        line += f"; {_plural(len(result.missing), 'object')} missing here, not pushed: {', '.join(result.missing[:3])}"
    return Text(line)


def pull(
    refs: Iterable[str] = (), *, all_snapshots: bool = False, remote: str | None = None, repo: PathLike | None = None
) -> Text:
    """Download what restoring the named snapshots (default HEAD; all with *all_snapshots*)
    needs and this machine lacks, verifying every object."""
    project = Project.find(repo)
    with _open_existing(project, "HEAD") as catalog:
        refs = list(refs) or ([] if all_snapshots else ["HEAD"])
        ids = [catalog.resolve(r) for r in refs] if refs else None
        result = _fetch(project, catalog, ids, remote)
    line = f"pulled {_plural(result.copied, 'object')} ({format_bytes(result.copied_bytes)}); {result.present} already here"
    if result.missing:
        line += f"; {_plural(len(result.missing), 'object')} not on the remote either: {', '.join(result.missing[:3])}"
    return Text(line)


def status(*, remote: str | None = None, repo: PathLike | None = None) -> Text:
    """Say what is not pushed yet and what is not here yet."""
    project = Project.find(repo)
    remotes = Remotes.load(project.dir)
    with _open_existing(project, "HEAD") as catalog:
        wanted = catalog.referenced_objects()
    local = transfers.listing(project.store)
    lines = [f"{_plural(len(wanted), 'object')} ({format_bytes(sum(wanted.values()))}) referenced by the catalog"]
    missing_here = [oid for oid in wanted if oid not in local]
    lines.append(f"  {len(missing_here)} not on this machine" + (" (nbversion pull)" if missing_here else ""))
    if remotes.default is None and remote is None:
        lines.append("  no remote configured (nbversion remote add NAME URL)")
    else:
        name = remote or remotes.default
        on_remote = transfers.listing(remotes.store(name, project.root))
        unpushed = [oid for oid in wanted if oid in local and oid not in on_remote]
        size = sum(wanted[oid] for oid in unpushed)
        lines.append(f"  {len(unpushed)} not pushed to {name} ({format_bytes(size)})" + (" (nbversion push)" if unpushed else ""))
    return Text("\n".join(lines))


def _fetch(project: Project, catalog: Catalog, snapshot_ids: list[str] | None, remote: str | None) -> transfers.Transfer:
    """Bring the objects the snapshots need from the remote: their artifacts, then the
    files their directory manifests list."""
    remotes = Remotes.load(project.dir)
    source = remotes.store(remote, project.root)
    total = transfers.Transfer()
    for _ in range(2):  # the manifests first, then what they list
        wanted = catalog.referenced_objects(snapshot_ids)
        lacking = {oid: size for oid, size in wanted.items() if not project.store.exists(oid)}
        if not lacking:
            break
        with progress("pull", sum(lacking.values()) or None) as moved:
            result = transfers.transfer(source, project.store, lacking, present=(), progress=moved)
        _record_fetched(project, remotes, remote, result)
        total.copied += result.copied
        total.copied_bytes += result.copied_bytes
        total.missing = result.missing
    total.present = len(catalog.referenced_objects(snapshot_ids)) - total.copied - len(total.missing)
    return total


def _fetch_missing(project: Project, catalog: Catalog, object_ids: Iterable[str]) -> None:
    """Before a restore: fetch from the default remote any of *object_ids* (and the parts
    their manifests list) missing here."""
    wanted = set(object_ids)
    wanted.update(catalog.parts_of(wanted))
    lacking = [oid for oid in wanted if not project.store.exists(oid)]
    if not lacking:
        return
    remotes = Remotes.load(project.dir)
    if remotes.default is None:
        raise MissingObject(
            f"object {lacking[0]} is missing from {project.store.root} and no remote is configured to fetch it from"
        )
    source = remotes.store(None, project.root)
    with progress("fetch", None) as moved:
        result = transfers.transfer(source, project.store, dict.fromkeys(lacking, 0), present=(), progress=moved)
    _record_fetched(project, remotes, None, result)
    if result.missing:
        raise MissingObject(f"object {result.missing[0]} is missing here and on remote {remotes.default}")


def _record_fetched(project: Project, remotes: Remotes, name: str | None, result: transfers.Transfer) -> None:
    """Remember where the objects a pull brought came from: their pickles are not trusted
    unless that remote is (see "Trust" above)."""
    if not result.copied_ids:
        return
    name = name or remotes.default
    if name is None:  # cannot happen: remotes.store() refused before anything was copied
        return
    with project.stat_cache() as cache:
        cache.record_fetched(result.copied_ids, name, remotes.location(name, project.root))


def show(ref: str, *, patch: bool = False, repo: PathLike | None = None) -> Text:
    """Describe one snapshot: message, git state, code, variables, files, metrics.

    :param patch: also print the stored uncommitted diff.
    """
    project = Project.find(repo)
    with _open_existing(project, ref) as catalog:
        snapshot_id = catalog.resolve(ref)
        record = catalog.snapshot(snapshot_id)
        artifacts = catalog.artifacts(snapshot_id)
        metrics = catalog.metrics(snapshot_id)
        skipped = catalog.skipped_rows(snapshot_id)
        environment = catalog.environment(record["environment_id"])
    lines = [f"snapshot {snapshot_id}" + (f"  (tags: {', '.join(record['tags'])})" if record["tags"] else "")]
    if record["parent"]:
        lines.append(f"parent:   {record['parent']}")
    lines.append(f"date:     {record['created_at']} ({relative_time(record['created_at'])})")
    lines.append(f"message:  {record['message']}")
    lines.append(f"git:      {_git_line(record)}")
    if record["notebook"]:
        lines.append(f"notebook: {record['notebook']}")
    if environment:
        lines.append(f"python:   {environment['python_version']} on {environment['platform']} ({environment['packages']} packages)")
    by_source: dict[str, list[dict[str, Any]]] = {}
    for artifact in artifacts:
        by_source.setdefault(artifact["source"], []).append(artifact)
    for source, title in (("variable", "variables"), ("file", "files"), ("notebook", "code"), ("git", "git")):
        rows = by_source.get(source)
        if not rows:
            continue
        lines += ["", f"{title}:"]
        table = Table(
            ["name", "kind", "type", "size", "summary"],
            [[a["name"], a["kind"], a["type"].rsplit(".", 1)[-1], format_bytes(a["size"]), describe(a["summary"])] for a in rows],
        )
        lines += ["  " + line for line in table.to_text().splitlines()]
    if metrics:
        lines += ["", "metrics:"] + [f"  {name} = {_number(value)}" for name, value in metrics.items()]
    if skipped:
        lines += ["", "skipped:"] + [f"  {name} ({kind}): {reason}" for name, kind, reason in skipped]
    if patch:
        diff = next((a for a in by_source.get("git", []) if a["name"] == capture_git.DIFF_NAME), None)
        lines.append("")
        if diff is None:
            lines.append("(no uncommitted changes were recorded)")
        else:
            patch_text = project.store.read_bytes(diff["object_id"]).decode(errors="replace").rstrip("\n")
            return Text("\n".join([*_printable_lines(lines), printable_text(patch_text)]))
    return Text("\n".join(_printable_lines(lines)))


def _printable_lines(lines: list[str]) -> list[str]:
    """Report lines that quote catalog text, each escaped and cut short (see :func:`printable`)."""
    return [printable(line, LINE_LIMIT) for line in lines]


def diff(a: str, b: str, *, repo: PathLike | None = None) -> Text:
    """Say what changed from snapshot *a* to snapshot *b*: variables, metrics, files, code."""
    project = Project.find(repo)
    with _open_existing(project, a) as catalog:
        id_a, id_b = catalog.resolve(a), catalog.resolve(b)
        rec_a, rec_b = catalog.snapshot(id_a), catalog.snapshot(id_b)
        vars_a = {x["name"]: x for x in catalog.artifacts(id_a, "variable")}
        vars_b = {x["name"]: x for x in catalog.artifacts(id_b, "variable")}
        metrics_a, metrics_b = catalog.metrics(id_a), catalog.metrics(id_b)
        files_a, files_b = catalog.files(id_a), catalog.files(id_b)
        code_a = {x["name"]: x for x in catalog.artifacts(id_a) if x["source"] in ("notebook", "git")}
        code_b = {x["name"]: x for x in catalog.artifacts(id_b) if x["source"] in ("notebook", "git")}
    lines = [f"diff {short_id(id_a)} \"{rec_a['message']}\" -> {short_id(id_b)} \"{rec_b['message']}\""]

    lines += ["", "variables:", *_changes(
        vars_a, vars_b,
        added=lambda name, new: f"  + {name}  {describe(new['summary'])}",
        removed=lambda name, old: f"  - {name}  {describe(old['summary'])}",
        changed=lambda name, old, new: (
            f"  ~ {name}  {describe(old['summary'])} -> {describe(new['summary'])}"
            if describe(old["summary"]) != describe(new["summary"])
            else f"  ~ {name}  {describe(new['summary'])} (content changed)"
        ) if old["object_id"] != new["object_id"] else None,
    )]
    lines += ["", "metrics:", *_changes(
        metrics_a, metrics_b,
        added=lambda name, new: f"  {name}: - -> {_number(new)}",
        removed=lambda name, old: f"  {name}: {_number(old)} -> -",
        changed=lambda name, old, new: f"  {name}: {_number(old)} -> {_number(new)}" if old != new else None,
    )]
    lines += ["", "files:", *_changes(
        files_a, files_b,
        added=lambda path, new: f"  + {path}  ({format_bytes(new[1])})",
        removed=lambda path, old: f"  - {path}",
        changed=lambda path, old, new: (
            f"  ~ {path}  ({format_bytes(old[1])} -> {format_bytes(new[1])})" if old[0] != new[0] else None
        ),
    )]

    lines += ["", "code:", f"  git: {_git_line(rec_a)} -> {_git_line(rec_b)}"]
    patch_a, patch_b = code_a.get(capture_git.DIFF_NAME), code_b.get(capture_git.DIFF_NAME)
    if (patch_a or {}).get("object_id") != (patch_b or {}).get("object_id"):
        lines.append("  uncommitted diff: " + ("changed" if patch_a and patch_b else "added" if patch_b else "gone"))
    cells_a = _cells_text(project, code_a.get(capture_notebook.CELLS_NAME))
    cells_b = _cells_text(project, code_b.get(capture_notebook.CELLS_NAME))
    if cells_a != cells_b:
        lines.append("  executed cells:")
        lines += [
            "    " + line.rstrip("\n")
            for line in difflib.unified_diff(
                cells_a, cells_b, f"cells@{short_id(id_a)}", f"cells@{short_id(id_b)}", n=1
            )
        ]
    return Text("\n".join(_printable_lines(lines)))


def checkout_code(ref: str, directory: PathLike, *, repo: PathLike | None = None) -> Text:
    """Materialize the code of snapshot *ref* in a new *directory*: its git commit (as a
    detached ``git worktree``), the stored uncommitted diff applied, and the untracked files
    it kept. The user's own work tree is never touched.

    :raises UsageProblem: when *directory* exists and is not empty, or the commit is unknown.
    """
    project = Project.find(repo)
    target = Path(directory).resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageProblem(f"directory {str(directory)!r} exists and is not empty")
    with _open_existing(project, ref) as catalog:
        snapshot_id = catalog.resolve(ref)
        record = catalog.snapshot(snapshot_id)
        code = {a["name"]: a for a in catalog.artifacts(snapshot_id, "git")}
    patch = code.get(capture_git.DIFF_NAME)
    untracked = [a for a in code.values() if a["name"].startswith(capture_git.UNTRACKED_PREFIX)]
    commit = record["git_commit"]
    if commit is not None and not _COMMIT_RE.match(str(commit)):  # it becomes a git argument
        raise UsageProblem(f"snapshot {short_id(snapshot_id)}: {commit!r} is not a commit id")
    # Load and verify everything, and refuse any unsafe path, before making the directory.
    patch_bytes = project.store.read_bytes(patch["object_id"]) if patch else b""
    files = {a["path"]: project.store.read_bytes(a["object_id"]) for a in untracked if a["object_id"]}
    for path in files:
        worktree.safe_target(target, path)
    missing = [a["path"] for a in untracked if not a["object_id"]]
    capture_git.materialize(project.root, record["git_commit"], target, patch_bytes)
    for path, data in files.items():
        destination = worktree.safe_target(target, path)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(data)
    line = f"checked out the code of {short_id(snapshot_id)} into {target}: "
    line += f"commit {record['git_commit'][:10]}" if record["git_commit"] else "no commit"
    line += ", uncommitted diff applied" if patch else ", no uncommitted diff"
    line += f", {_plural(len(files), 'untracked file')}"
    if missing:
        line += f" ({_plural(len(missing), 'file')} over the size cap not kept: {', '.join(map(str, missing[:5]))})"
    return Text(printable(line, LINE_LIMIT))


def _changes(
    before: dict[str, Any],
    after: dict[str, Any],
    *,
    added: Callable[[str, Any], str],
    removed: Callable[[str, Any], str],
    changed: Callable[[str, Any, Any], str | None],
) -> list[str]:
    """Lines for what differs between two name -> value maps, sorted by name."""
    lines = []
    for name in sorted(before.keys() | after.keys()):
        if name not in before:
            lines.append(added(name, after[name]))
        elif name not in after:
            lines.append(removed(name, before[name]))
        elif (line := changed(name, before[name], after[name])) is not None:
            lines.append(line)
    return lines or ["  (no change)"]


def _git_line(record: dict[str, Any]) -> str:
    if record["git_commit"] is None and record["git_dirty"] is None:
        return "not a git repository"
    commit = record["git_commit"][:10] if record["git_commit"] else "(no commit yet)"
    branch = f"on {record['git_branch']}" if record["git_branch"] else "detached"
    return f"{commit} {branch}, {'dirty' if record['git_dirty'] else 'clean'}"


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _cells_text(project: Project, artifact: dict[str, Any] | None) -> list[str]:
    if artifact is None:
        return []
    cells = json.loads(project.store.read_bytes(artifact["object_id"]))
    lines = []
    try:
        for cell in cells:
            lines.append(f"# [{cell['execution_count']}]\n")
            lines += [line + "\n" for line in cell["source"].splitlines()]
    except (AttributeError, KeyError, TypeError):  # not cells: a catalog edited by hand
        return ["(unreadable cells)\n"]
    return lines


def _nbytes(value: Any) -> int:
    """The size of an array-like value, cheaply (0 when it does not say)."""
    size = getattr(value, "nbytes", 0)
    return size if isinstance(size, int) else 0


def _library_warnings(artifacts: list[dict[str, Any]]) -> list[str]:
    """Say when a pickled value's library has a different version now than when it was saved."""
    warnings = []
    for artifact in artifacts:
        saved = artifact["summary"].get("library")
        if artifact["codec"] != "joblib" or not isinstance(saved, dict) or not {"module", "name", "version"} <= saved.keys():
            continue  # nothing said, or not what nbversion writes
        now = capture_env.library_of(saved["module"])
        if now is not None and now["version"] != saved["version"]:
            warnings.append(
                f"{artifact['name']} was saved with {saved['name']} {saved['version']}; "
                f"this kernel has {now['version']}"
            )
    return warnings


#: A full git commit id (SHA-1 or SHA-256).
_COMMIT_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


def _check_variable_name(name: Any, snapshot_id: str) -> None:
    """Refuse a stored variable name no notebook variable has (a catalog edited by hand):
    restoring it would shadow Python's or IPython's own names, or be unreachable."""
    if (
        not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name)
        or (name.startswith("__") and name.endswith("__")) or name in capture_ns.IPYTHON_NAMES
    ):
        raise UsageProblem(
            f"refusing to restore variable {name!r} of snapshot {short_id(snapshot_id)}: "
            "not a name a notebook variable has"
        )


def _open_existing(project: Project, ref: str) -> Catalog:
    if not project.exists():
        raise RefNotFound(f"snapshot {ref!r} not found: there are no snapshots yet in {project.root}")
    return project.open_catalog()


def _namespace(
    namespace: MutableMapping[str, Any] | None,
) -> tuple[MutableMapping[str, Any], dict[str, Any]]:
    """Return the namespace to work on and the names IPython hides in it."""
    shell = _shell()
    if namespace is None:
        if shell is not None:
            return shell.user_ns, shell.user_ns_hidden
        # A plain script: the globals of the module that called the public function.
        frame = sys._getframe(2)
        return frame.f_globals, {}
    if shell is not None and namespace is shell.user_ns:
        return namespace, shell.user_ns_hidden
    return namespace, {}


def _sole_reference_count() -> int:
    probe = {"x": object()}
    return sys.getrefcount(probe["x"])


#: What ``sys.getrefcount(namespace[name])`` says of a value nothing else holds.
_SOLE_REFERENCE = _sole_reference_count()

#: Values whose identity no one can observe through a change: keeping the live one is exact.
_IMMUTABLE_SCALARS = (str, int, float, bool, type(None))


def _holds(namespace: Mapping[str, Any], name: str, artifact: dict[str, Any]) -> bool:
    """Whether the live value of *name* can stay as it is: it would be stored as exactly
    *artifact*'s object (hashing, no writes) and keeping it cannot keep an alias the snapshot
    did not have. That is sure only for immutable scalars and for arrays that own their
    memory and that nothing else holds (a view, another name, a container, a buffer would
    each hold a reference); any other value is loaded again. Pickles are never compared:
    pickling one costs about as much as loading it."""
    sole = sys.getrefcount(namespace[name]) <= _SOLE_REFERENCE  # before a local holds it too
    value = namespace[name]
    np = sys.modules.get("numpy")
    if type(value) in _IMMUTABLE_SCALARS:
        if artifact["codec"] != "json":
            return False
    elif not (
        sole and np is not None and type(value) is np.ndarray and value.base is None
        and artifact["codec"] in ("npy", "npy-chunks")
    ):
        return False
    try:
        codec, put = codecs.encode(value, IdOnlyStore(), probe=True)
    except (NbversionError, RecursionError):
        return False
    return codec == artifact["codec"] and put.object_id == artifact["object_id"]


def _shell() -> Any:
    """The running IPython shell, if any (IPython is never imported for this)."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def _is_kernel_namespace(namespace: MutableMapping[str, Any] | None) -> bool:
    """Whether *namespace* is (or defaults to) the running IPython shell's variables."""
    shell = _shell()
    return shell is not None and (namespace is None or namespace is shell.user_ns)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
