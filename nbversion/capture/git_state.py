"""Capture the git state: HEAD commit, branch, dirty flag, the uncommitted diff, and the
untracked files (kept whole up to a size cap).

Untracked files that are credential stores by name (``.env``, ``id_rsa``, ``*.pem``, ...,
see :func:`nbversion.credentials.is_secret_file`) are not kept, only named.

Two ``git`` calls at most, through GitPython: one ``git status --porcelain=v2`` for
everything but the diff, and ``git diff --binary`` only when the tree is dirty.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import is_utf8
from .. import credentials
from ..catalog import Artifact
from ..errors import UsageProblem
from ..store import ObjectStore

#: The artifact holding the uncommitted diff; untracked files are ``untracked/<path>``.
DIFF_NAME = "diff"
UNTRACKED_PREFIX = "untracked/"


@dataclass
class GitState:
    """What git says about the work tree at snapshot time."""

    is_repo: bool
    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    untracked: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # untracked names that are not UTF-8
    secret_files: list[str] = field(default_factory=list)  # untracked credential stores, not kept

    def row(self) -> dict[str, Any]:
        """The values of the ``snapshots`` row's git columns."""
        return {"commit": self.commit, "branch": self.branch, "dirty": self.dirty}


def _repo(root: Path) -> Any:
    import git

    try:
        return git.Repo(root)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def read_state(root: Path, exclude: tuple[str, ...] = (".nbversion/",)) -> GitState:
    """Return the git state of the work tree at *root*.

    One plain ``git status`` process: this runs on every snapshot, and importing GitPython
    would cost more than git itself does here. ``--no-optional-locks``: a snapshot never
    takes ``index.lock`` from under the user's own git.
    """
    if not (root / ".git").exists():
        return GitState(is_repo=False)
    proc = subprocess.run(
        ["git", "--no-optional-locks", "status", "--porcelain=v2", "--branch", "--untracked-files=all", "-z"],
        cwd=root, capture_output=True, text=True, encoding="utf-8", errors="surrogateescape",
    )
    if proc.returncode != 0:
        return GitState(is_repo=False)
    out = proc.stdout
    state = GitState(is_repo=True, dirty=False)
    records = out.split("\0")
    i = 0
    while i < len(records):
        record = records[i]
        i += 1
        if not record:
            continue
        if record.startswith("# branch.oid "):
            oid = record[len("# branch.oid "):]
            state.commit = None if oid == "(initial)" else oid
        elif record.startswith("# branch.head "):
            head = record[len("# branch.head "):]
            state.branch = None if head == "(detached)" else head
        elif record.startswith("? "):
            path = record[2:]
            if path.startswith(exclude):
                continue
            if is_utf8(path):
                state.untracked.append(path)
            else:
                state.unreadable.append(path)
        elif record[:2] in ("1 ", "2 ", "u "):
            # The path is the last field: after 8 fields (1), 9 (2: renames), 10 (u: conflicts).
            fields = {"1": 8, "2": 9, "u": 10}[record[0]]
            path = record.split(" ", fields)[-1]
            if not path.startswith(exclude):  # a committed catalog changes with every snapshot
                state.dirty = True
            if record[0] == "2":
                i += 1  # a rename or copy is followed by its original path
    return state


def uncommitted_diff(repo: Any, state: GitState) -> bytes:
    """Return ``git diff --binary`` of the tracked files against HEAD (the empty tree when
    there is no commit yet): staged and unstaged changes, applicable with ``git apply``."""
    base = state.commit or repo.git.hash_object("-t", "tree", "/dev/null")
    # A patch git apply takes whatever the user's git config says (noprefix, color, external
    # or textconv drivers, relative); the catalog itself, which changes with every snapshot,
    # left out. GitPython strips the final newline by default, which corrupts the patch.
    return repo.git.diff(
        base, "--binary", "--no-color", "--no-ext-diff", "--no-textconv", "--no-relative",
        "--src-prefix=a/", "--dst-prefix=b/", "--", ".", ":(exclude).nbversion",
        stdout_as_string=False, strip_newline_in_stdout=False,
    )


def capture(
    root: Path,
    store: ObjectStore,
    untracked_max_bytes: int,
    skip: set[str] | frozenset[str] = frozenset(),
) -> tuple[GitState, list[Artifact]]:
    """Return the git state and its artifacts: the diff, and each untracked file (its bytes
    when at most *untracked_max_bytes*, else only its size). Paths in *skip* (files tracked
    by nbversion itself) are left out."""
    state = read_state(root)
    artifacts: list[Artifact] = []
    if not state.is_repo:
        return state, artifacts
    repo = _repo(root) if state.dirty else None  # GitPython only when there is a diff to take
    try:
        _capture_changes(root, store, untracked_max_bytes, skip, state, repo, artifacts)
    finally:
        if repo is not None:
            repo.close()
    return state, artifacts


def _capture_changes(
    root: Path, store: ObjectStore, untracked_max_bytes: int, skip: set[str] | frozenset[str],
    state: GitState, repo: Any, artifacts: list[Artifact],
) -> None:
    if repo is not None:
        diff = uncommitted_diff(repo, state)
        put = store.put_bytes(diff)
        artifacts.append(
            Artifact(
                kind="code", source="git", name=DIFF_NAME, type="patch", codec="text",
                object_id=put.object_id, size=put.size, new_bytes=put.size if put.new else 0,
                summary={"files": _files_in_diff(diff), "against": state.commit},
            )
        )
    for path in state.untracked:
        if path in skip:
            continue
        if credentials.is_secret_file(path):
            state.secret_files.append(path)
            continue
        full = root / path
        try:
            size = full.stat().st_size if not full.is_symlink() else None
        except OSError:
            continue
        if size is None:
            continue
        if size > untracked_max_bytes:
            artifacts.append(
                Artifact(
                    kind="code", source="git", name=UNTRACKED_PREFIX + path, path=path, type="file",
                    codec="file", object_id=None, size=size,
                    summary={"skipped": f"larger than untracked_max_bytes ({untracked_max_bytes})"},
                )
            )
            continue
        put = store.put_file(full)
        artifacts.append(
            Artifact(
                kind="code", source="git", name=UNTRACKED_PREFIX + path, path=path, type="file",
                codec="file", object_id=put.object_id, size=put.size, new_bytes=put.size if put.new else 0,
            )
        )


def _files_in_diff(diff: bytes) -> int:
    return sum(1 for line in diff.splitlines() if line.startswith(b"diff --git "))


def materialize(repo_root: Path, commit: str | None, target: Path, patch: bytes) -> None:
    """Make *target* hold the tree of *commit* (a detached ``git worktree``) with *patch*
    applied; without a commit, an empty directory with the patch applied.

    :raises UsageProblem: when the commit is not in this repository or the patch does not apply.
    """
    import git

    repo = _repo(repo_root)
    added = False
    try:
        if commit is not None:
            if repo is None:
                raise UsageProblem(f"commit {commit[:10]} cannot be checked out: {repo_root} is not a git repository")
            repo.git.worktree("add", "--detach", str(target), commit)
            added = True
        else:
            target.mkdir(parents=True, exist_ok=True)
            git.Git(str(target)).init("-q")  # its own repository, so the patch applies here
        if patch:
            patch_file = target / ".nbversion-uncommitted.patch"
            patch_file.write_bytes(patch)
            try:
                git.Git(str(target)).apply("--binary", "--whitespace=nowarn", str(patch_file))
            finally:
                patch_file.unlink()
    except git.GitCommandError as exc:
        # Leave nothing half made: no registered worktree, no directory.
        if added:
            with contextlib.suppress(git.GitCommandError):
                repo.git.worktree("remove", "--force", str(target))
        shutil.rmtree(target, ignore_errors=True)
        detail = (exc.stderr or str(exc)).strip().splitlines()
        raise UsageProblem(f"cannot check out the code into {target}: {detail[-1] if detail else exc}") from None
    finally:
        if repo is not None:
            repo.close()
