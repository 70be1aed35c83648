"""Where nbversion keeps things in a repository: the ``.nbversion/`` directory.

``<root>/.nbversion/catalog.db`` is the catalog (committed with the code);
``<root>/.nbversion/objects/`` is the object store (ignored by git; shared through remotes).
The root is the git work tree that contains the current directory, else that directory.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from . import config
from .catalog import Catalog, StatCache
from .config import Config
from .store import ObjectStore

DIRNAME = ".nbversion"
CATALOG_NAME = "catalog.db"
OBJECTS_NAME = "objects"
STATE_NAME = "state.db"
#: While snapshots wait in the WAL (a reader kept the checkpoint from folding them in), which
#: catalog file (inode) they belong to.
WAL_OWNER_NAME = f"{CATALOG_NAME}-wal-owner"

#: Kept in ``.nbversion/.gitignore``: the catalog is committed, the bytes and SQLite's
#: transient files are not.
GITIGNORE = f"""\
# Written by nbversion. The catalog is meant to be committed; the object store travels
# through a remote (nbversion push/pull), and SQLite's -wal/-shm files are transient.
/{OBJECTS_NAME}/
/{CATALOG_NAME}-wal
/{CATALOG_NAME}-shm
/{CATALOG_NAME}-journal
/{WAL_OWNER_NAME}
/{CATALOG_NAME}-wal.replaced-*
/.{CATALOG_NAME}.*.new
/{STATE_NAME}
/{STATE_NAME}-wal
/{STATE_NAME}-shm
"""


def _identity(path: Path) -> str:
    """Which file *path* is: its inode, size and modification time (a file git writes in its
    place may get the same inode number back, but not also the same size and time)."""
    stat = path.stat()
    return f"{stat.st_ino} {stat.st_size} {stat.st_mtime_ns}"


def find_root(start: str | os.PathLike[str] | None = None) -> Path:
    """Return the root of the git work tree containing *start* (default: the current
    directory), or *start* itself when it is not inside one."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / ".git").exists():
            return directory
    return here


class Project:
    """The nbversion files of one repository.

    :param root: the repository root (see :func:`find_root`).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.dir = self.root / DIRNAME
        self.catalog_path = self.dir / CATALOG_NAME
        self.store = ObjectStore.local(str(self.dir / OBJECTS_NAME))

    @classmethod
    def find(cls, start: str | os.PathLike[str] | None = None) -> Project:
        """Return the project of the repository containing *start* (default: cwd)."""
        return cls(find_root(start))

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r})"

    def exists(self) -> bool:
        """Whether a catalog has been created here."""
        return self.catalog_path.exists()

    def config(self) -> Config:
        """The ``[tool.nbversion]`` settings of this repository."""
        return config.load(self.root)

    def stat_cache(self) -> StatCache:
        """Open this machine's stat cache (``.nbversion/state.db``, ignored by git)."""
        self._ensure_dir()
        return StatCache(self.dir / STATE_NAME)

    def _ensure_dir(self) -> None:
        self.dir.mkdir(exist_ok=True)
        gitignore = self.dir / ".gitignore"
        try:
            current = gitignore.read_text()
        except FileNotFoundError:
            current = None
        # Ours to keep current (an older nbversion wrote fewer lines); a user's own is left alone.
        if current is None or (current != GITIGNORE and current.startswith("# Written by nbversion")):
            gitignore.write_text(GITIGNORE)

    def open_catalog(self) -> Catalog:
        """Open the catalog, creating ``.nbversion/`` and its ``.gitignore`` if needed."""
        self._ensure_dir()
        self._set_aside_foreign_wal()
        return Catalog.open(self.catalog_path)

    def note_wal(self, folded: bool) -> None:
        """After writing the catalog: if its WAL could not be folded into the file (another
        connection was reading), remember which file those pending snapshots belong to."""
        owner = self.dir / WAL_OWNER_NAME
        if folded:
            owner.unlink(missing_ok=True)
        else:
            owner.write_text(_identity(self.catalog_path))

    def _set_aside_foreign_wal(self) -> None:
        """If git replaced ``catalog.db`` (checkout, pull, stash) while snapshots of the old
        file still waited in the WAL, SQLite would replay them into the new file: move that
        WAL aside instead, and say so."""
        owner = self.dir / WAL_OWNER_NAME
        try:
            recorded = owner.read_text()
        except FileNotFoundError:
            return
        wal = self.dir / f"{CATALOG_NAME}-wal"
        try:
            current = _identity(self.catalog_path)
            pending = wal.stat().st_size > 0
        except FileNotFoundError:
            pending = False
            current = recorded
        if current == recorded and pending:
            return  # still the same file: its WAL is its own
        if pending:
            stale = self.dir / f"{CATALOG_NAME}-wal.replaced-{time.strftime('%Y%m%dT%H%M%S')}"
            os.replace(wal, stale)
            (self.dir / f"{CATALOG_NAME}-shm").unlink(missing_ok=True)
            print(
                f"nbversion: {self.catalog_path} was replaced (git checkout, pull or stash?) while "
                f"snapshots of the old file still waited in its WAL; moved that WAL to {stale.name} "
                "instead of mixing them into this catalog",
                file=sys.stderr,
            )
        owner.unlink(missing_ok=True)
