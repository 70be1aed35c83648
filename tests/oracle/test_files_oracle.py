"""The exactness oracle for tracked files (DESIGN.md, invariants 3, 5, 8 and 9).

Each example builds a random tree under a tracked directory ``data/`` of a real git
repository — nested directories, files with modes among 0600/0644/0640/0700/0755, empty
files, unicode and space-containing names, symbolic links to files and directories inside the
tree, to the repository, dangling ones, and ones leading out of the repository (relative or
absolute) — keeps a model of it, snapshots it, mutates it (edit, delete, add, chmod, replace a
file by a link, retarget a link, add a link leading out, snapshot again), and restores a
snapshot, sometimes with ``exact``. After each restore the tree must equal the model exactly:
the set of paths, every file's bytes and permission bits, every link's target. Links leading
out must be named in the snapshot's notes and never be kept, followed or removed. A restore
that would overwrite or remove content no snapshot holds must refuse (changing nothing)
unless forced, and one that would not must succeed without ``force``.

The model is computed here, from what the example did, never from nbversion's own answers.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import git
from hypothesis import given, note, settings
from hypothesis import strategies as st

import nbversion
from nbversion.errors import UsageProblem

MODES = (0o600, 0o644, 0o640, 0o700, 0o755)
#: Letters for names: ASCII, accented, CJK, an emoji, a space, a dot (no "/", never "." or "..").
NAME = st.text(alphabet="abz09 ._-éüß日本🎉", min_size=1, max_size=6).filter(lambda n: n not in (".", ".."))
CONTENT = st.one_of(st.just(b""), st.binary(min_size=1, max_size=40))

#: An example takes 0.15 s to 1 s (a new repository and catalog, two or three snapshots, on a
#: busy machine): a few seconds for the bounded profile (25 -> 10 examples), a few minutes for
#: the full one (2500 -> 833).
EXAMPLES = max(10, settings().max_examples // 3)


@dataclass(frozen=True)
class File:
    data: bytes
    mode: int


@dataclass(frozen=True)
class Link:
    target: str


Entry = File | Link


def content(entry: Entry) -> bytes:
    """The bytes a snapshot stores for *entry*: a file's, a link's target text."""
    return entry.data if isinstance(entry, File) else entry.target.encode()


def read_tree(root: Path) -> dict[str, Entry]:
    """Every file and link under ``root/data`` as the model spells it (links never followed)."""
    found: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root / "data"):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            path = os.path.relpath(full, root)
            if os.path.islink(full):
                found[path] = Link(os.readlink(full))
            elif name in filenames:
                found[path] = File(Path(full).read_bytes(), os.lstat(full).st_mode & 0o777)
    return found


class Example:
    """One generated example: a repository, its ``data/`` tree, and the model of both."""

    def __init__(self, base: Path, draw: st.DataObject) -> None:
        self.draw = draw
        self.root = base / "repo"
        self.outside = base / "outside"
        self.root.mkdir()
        self.outside.mkdir()
        (self.outside / "x.csv").write_text("outside, never written")
        git(self.root, "init", "-q")
        (self.root / "README.md").write_text("readme\n")
        self.by_config = draw.draw(st.booleans(), label="track by config")
        (self.root / "pyproject.toml").write_text('[tool.nbversion]\ntrack = ["data"]\n' if self.by_config else "")
        git(self.root, "add", "-A")
        git(self.root, "commit", "-qm", "start")
        (self.root / "data").mkdir()
        self.model: dict[str, Entry] = {}
        self.used: set[str] = {"data"}
        self.dirs = ["data"]
        # What the catalog holds: every stored file's and kept link's bytes (the repository is
        # clean and has no untracked file beside data/, so the git state adds none).
        self.held: set[bytes] = set()
        self.snapshots: list[tuple[str, dict[str, Entry]]] = []

    # -- building ----------------------------------------------------------------------------

    def fresh(self, parent: str) -> str:
        name = self.draw.draw(NAME, label="name")
        path = f"{parent}/{name}"
        n = 0
        while path in self.used or any(u.startswith(path + "/") for u in self.used):
            n += 1
            path = f"{parent}/{name}~{n}"
        self.used.add(path)
        return path

    def parent(self) -> str:
        parent = self.draw.draw(st.sampled_from(self.dirs), label="parent")
        if parent.count("/") < 3 and self.draw.draw(st.booleans(), label="new directory"):
            parent = self.fresh(parent)
            self.dirs.append(parent)
        return parent

    def write_file(self, path: str, entry: File) -> None:
        full = self.root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(entry.data)
        os.chmod(full, entry.mode)
        self.model[path] = entry

    def make_link(self, path: str, entry: Link) -> None:
        full = self.root / path
        full.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(entry.target, full)
        self.model[path] = entry

    def add_file(self) -> None:
        path = self.fresh(self.parent())
        self.write_file(path, File(self.draw.draw(CONTENT, label="bytes"), self.draw.draw(st.sampled_from(MODES), label="mode")))

    def stored(self, path: str) -> bool:
        """Whether a snapshot keeps what is at *path* now: a file, or a link that leads (through
        the tree's other links) to a place inside the repository. Worked out on the model: no
        link outside ``data/`` leads back in, and no generated target leaves and comes back."""
        entry = self.model[path]
        if isinstance(entry, File):
            return True
        parts = path.split("/")[:-1]
        pending = list(reversed(entry.target.split("/")))
        if entry.target.startswith("/"):
            return False
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if not parts:
                    return False  # above the repository's root
                parts.pop()
                continue
            here = "/".join([*parts, name])
            link = self.model.get(here)
            if isinstance(link, Link):  # no loops are generated
                if link.target.startswith("/"):
                    return False
                pending.extend(reversed(link.target.split("/")))
            else:
                parts.append(name)
        return True

    def files(self) -> list[str]:
        return sorted(p for p, e in self.model.items() if isinstance(e, File))

    def inside_target(self, at: str) -> str | None:
        """A relative target, from the link *at*, to a file, a directory, the repository's
        README, or nothing at all (dangling) — never through another link."""
        kind = self.draw.draw(st.sampled_from(["file", "dir", "repo", "dangling"]), label="link to")
        start = posixpath.dirname(at)
        if kind == "file":
            if not self.files():
                return None
            return posixpath.relpath(self.draw.draw(st.sampled_from(self.files()), label="target"), start)
        if kind == "dir":
            real = [d for d in self.dirs if (self.root / d).is_dir() and not (self.root / d).is_symlink()]
            return posixpath.relpath(self.draw.draw(st.sampled_from(real), label="target"), start)
        if kind == "repo":
            return posixpath.relpath("README.md", start)
        return posixpath.relpath("data/∅ never made", start)

    def add_inside_link(self) -> None:
        path = self.fresh(self.parent())
        target = self.inside_target(path)
        if target is not None:
            self.make_link(path, Link(target))
        else:
            self.used.discard(path)

    def add_outside_link(self) -> None:
        """A link leading out: absolute, relative, or to a link leading out."""
        path = self.fresh(self.parent())
        how = self.draw.draw(st.sampled_from(["relative", "absolute", "through a link"]), label="leading out")
        out = sorted(p for p in self.model if not self.stored(p))
        if how == "through a link" and out:
            target = posixpath.relpath(self.draw.draw(st.sampled_from(out), label="outside link"), posixpath.dirname(path))
        else:
            aim = self.outside / self.draw.draw(st.sampled_from(["x.csv", "missing.csv"]), label="outside target")
            target = str(aim) if how == "absolute" else os.path.relpath(aim, (self.root / path).parent)
        self.make_link(path, Link(target))

    def build(self) -> None:
        for _ in range(self.draw.draw(st.integers(1, 7), label="files")):
            self.add_file()
        for _ in range(self.draw.draw(st.integers(0, 4), label="links")):
            if self.draw.draw(st.integers(0, 3), label="outside?") == 0:
                self.add_outside_link()
            else:
                self.add_inside_link()

    # -- mutating ----------------------------------------------------------------------------

    def mutate(self) -> None:
        step = self.draw.draw(
            st.sampled_from(["add", "edit", "chmod", "to-link", "delete", "retarget", "outside-link", "snapshot"]),
            label="mutation",
        )
        note(f"mutation: {step}")
        files = self.files()
        if step == "edit" and files:
            path = self.draw.draw(st.sampled_from(files), label="edit")
            self.write_file(path, File(self.draw.draw(CONTENT, label="bytes"), self.model[path].mode))  # type: ignore[union-attr]
        elif step == "delete" and self.model:
            path = self.draw.draw(st.sampled_from(sorted(self.model)), label="delete")
            os.unlink(self.root / path)
            del self.model[path]
        elif step == "add":
            self.add_file()
        elif step == "chmod" and files:
            path = self.draw.draw(st.sampled_from(files), label="chmod")
            new = self.draw.draw(st.sampled_from(MODES), label="mode")
            os.chmod(self.root / path, new)
            self.model[path] = File(self.model[path].data, new)  # type: ignore[union-attr]
        elif step == "to-link" and len(files) > 1:
            path = self.draw.draw(st.sampled_from(files), label="replace by a link")
            other = self.draw.draw(st.sampled_from([f for f in files if f != path]), label="target")
            os.unlink(self.root / path)
            self.make_link(path, Link(posixpath.relpath(other, posixpath.dirname(path))))
        elif step == "retarget":
            links = sorted(p for p, e in self.model.items() if isinstance(e, Link) and self.stored(p))
            if links:
                path = self.draw.draw(st.sampled_from(links), label="retarget")
                target = self.inside_target(path)
                if target is not None:
                    os.unlink(self.root / path)
                    self.make_link(path, Link(target))
        elif step == "outside-link":
            self.add_outside_link()
        elif step == "snapshot":
            self.snapshot()

    # -- snapshot and restore ----------------------------------------------------------------

    def snapshot(self) -> None:
        message = f"snapshot {len(self.snapshots)}"
        result = nbversion.snapshot(message, namespace={}, files=[] if self.by_config else ["data"], repo=self.root)
        text = str(result)
        kept = {p: e for p, e in self.model.items() if self.stored(p)}
        for path, entry in self.model.items():
            said = f"note: {path} is a symbolic link: not kept" in text
            assert said == (path not in kept), (path, entry, text)
        self.held |= {content(e) for e in kept.values()}
        self.snapshots.append((result.id, kept))
        tree = [a for a in result.artifacts if a.codec == "tree"]
        assert [a.summary["files"] for a in tree] == [len(kept)], (tree, kept)

    def restore(self) -> None:
        index = self.draw.draw(st.integers(0, len(self.snapshots) - 1), label="restore which")
        ref, wanted = self.snapshots[index]
        exact = self.draw.draw(st.booleans(), label="exact")
        note(f"restore snapshot {index} exact={exact}")
        extras = sorted(p for p in self.model if p not in wanted and self.stored(p))
        unsaved = []
        for path, want in wanted.items():
            now = self.model.get(path)
            if now is not None and content(now) != content(want) and content(now) not in self.held:
                unsaved.append(path)
        if exact:
            unsaved += [p for p in extras if content(self.model[p]) not in self.held]
        before = read_tree(self.root)
        assert before == self.model
        if unsaved:
            with pytest.raises(UsageProblem) as info:
                nbversion.restore(ref, namespace={}, exact=exact, repo=self.root)
            message = str(info.value)
            assert "\n" not in message and "changes no snapshot holds" in message, message
            assert any(path in message for path in unsaved), (unsaved, message)
            assert read_tree(self.root) == before  # all or nothing
            force = True
        else:
            force = self.draw.draw(st.booleans(), label="force anyway")
        result = nbversion.restore(ref, namespace={}, exact=exact, force=force, repo=self.root)
        expected = dict(wanted)
        for path, entry in self.model.items():
            if path not in wanted and not (exact and path in extras):
                expected[path] = entry
        assert read_tree(self.root) == expected
        text = str(result)
        said = re.search(r"warning: kept (\d+) files? in data/ that snapshot \w+ does not have", text)
        if exact:
            assert sorted(result.removed_files) == extras and said is None, text
        else:
            assert result.removed_files == [] and (int(said.group(1)) if said else 0) == len(extras), text
        self.model = expected
        assert not [p for p in self.root.rglob("*") if ".nbversion-" in p.name], "a staged file was left behind"
        assert (self.outside / "x.csv").read_text() == "outside, never written"
        assert sorted(os.listdir(self.outside)) == ["x.csv"]


@settings(max_examples=EXAMPLES)
@given(draw=st.data())
def test_restored_files_equal_the_model(tmp_path_factory: pytest.TempPathFactory, draw: st.DataObject) -> None:
    base = tmp_path_factory.mktemp("files-oracle")
    example = Example(base, draw)
    with contextlib.chdir(example.root):  # as a notebook runs: inside the repository
        example.build()
        note(f"tree: {example.model}")
        example.snapshot()
        for _ in range(draw.draw(st.integers(1, 2), label="rounds")):
            for _ in range(draw.draw(st.integers(1, 5), label="mutations")):
                example.mutate()
            note(f"tree: {example.model}")
            example.restore()
