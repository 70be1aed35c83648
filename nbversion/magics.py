"""IPython magics: ``%snapshot``, ``%restore``, ``%snapshots`` and ``%nbversion``.

Example::

    In [1]: %load_ext nbversion
    In [2]: %snapshot "baseline" --tag base
    snapshot 01jdx3k7qz (base) "baseline": 3 variables (2 data, 1 model), 1 metric; ...
    In [3]: %restore base
    restored 3 variables from 01jdx3k7qz "baseline": X, y, model

The magics only parse, call :mod:`nbversion.api` and display. A mistake or a failure is a
one-line ``UsageError`` (IPython shows it without a traceback); nothing is half done.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from traitlets import Bool

from . import api, cli
from .capture import changes
from .display import Text
from .errors import NbversionError

F = TypeVar("F", bound=Callable[..., Any])


def _parser(prog: str, add_arguments: Callable[[argparse.ArgumentParser], None], description: str) -> cli.ArgumentParser:
    parser = cli.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    return parser


_SNAPSHOT = _parser(
    "%snapshot", cli.add_snapshot_arguments,
    "Freeze the notebook's variables under a message: arrays, DataFrames, models, "
    "parameters and metrics, into .nbversion/ at the repository root.",
)
_RESTORE = _parser(
    "%restore", cli.add_restore_arguments,
    "Bring back a snapshot's variables and tracked files. Everything is loaded and verified "
    "before any variable is assigned or file written; variables and files the snapshot did not "
    "have are left alone (--exact removes them).",
)
_SNAPSHOTS = _parser("%snapshots", cli.add_log_arguments, "List snapshots, newest first.")


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn nbversion's errors into the one-line ``UsageError`` IPython shows plainly."""
    try:
        yield
    except (NbversionError, OSError, sqlite3.Error) as exc:  # OSError: the machine's trouble, not a bug
        raise UsageError(cli.error_line(exc)) from None


def _split(prog: str, line: str) -> list[str]:
    """Split *line* like a shell would."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{prog}: cannot split {line!r}: {exc}") from None


def _parse_or_none(parser: argparse.ArgumentParser, line: str) -> argparse.Namespace | None:
    """Parse a magic's options; ``None`` when only ``--help`` was asked for."""
    argv = _split(parser.prog, line)
    with _one_line_errors():
        try:
            return parser.parse_args(argv)
        except SystemExit:
            return None


def _verb(parser: argparse.ArgumentParser) -> Callable[[F], F]:
    """Make a magic of *function(self, args)*: split and parse the line with *parser*, turn
    errors into one line, and use the parser's usage as docstring (``%snapshot?``)."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def magic(self: Magics, line: str) -> Any:
            args = _parse_or_none(parser, line)
            if args is None:  # -h / --help printed the usage
                return None
            with _one_line_errors():
                return function(self, args)

        magic.__doc__ = parser.format_help()
        return magic  # type: ignore[return-value]

    return decorate


class _NotebookParameters(dict):  # type: ignore[type-arg]
    """SQL parameters (``:name``) looked up in the notebook's variables, as values, never
    pasted into the SQL text."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        super().__init__()
        self._namespace = namespace

    def __missing__(self, name: str) -> Any:
        value = self._namespace[name]  # KeyError: sqlite3 reports the parameter as missing
        if hasattr(value, "dtype") and getattr(value, "size", 0) == 1:
            return value.item()  # a NumPy scalar, as the Python number SQLite takes
        return value


_NBSQL_CELL = cli.ArgumentParser(
    prog="%%nbsql", description="Run the cell's SQL, read-only, on the catalog.", add_help=True
)
_NBSQL_CELL.add_argument("-o", "--out", metavar="NAME", help="also store the result in this variable")
_NBSQL_CELL.add_argument("--df", action="store_true", help="return a pandas DataFrame")


_AUTO_HELP = """
In a kernel, also:
  %nbversion auto [on|off]    snapshot after every cell that changes a variable
"""

@magics_class
class NbversionMagics(Magics):
    """The magics ``%load_ext nbversion`` registers."""

    dataframe = Bool(
        False, config=True,
        help="Return %nbsql results as pandas DataFrames (%config NbversionMagics.dataframe = True).",
    )

    @line_magic
    @_verb(_SNAPSHOT)
    def snapshot(self, args: argparse.Namespace) -> None:
        print(
            api.snapshot(
                " ".join(args.message), self.shell.user_ns, tag=args.tag, vars=args.vars,
                exclude=args.exclude, files=args.files, notebook=args.notebook,
            )
        )

    @line_magic
    @_verb(_RESTORE)
    def restore(self, args: argparse.Namespace) -> None:
        print(
            api.restore(
                args.ref, self.shell.user_ns, vars=args.vars, exact=args.exact,
                files=not args.no_files, files_only=args.files_only, force=args.force, trust=args.trust,
            )
        )

    @line_magic
    @_verb(_SNAPSHOTS)
    def snapshots(self, args: argparse.Namespace) -> Any:
        return api.log(None if args.all else args.n, auto=args.auto)

    @no_var_expand
    @line_cell_magic
    def nbsql(self, line: str, cell: str | None = None) -> Any:
        """Query the catalog in SQL, read-only.

        Line: ``%nbsql SELECT name, value FROM metrics``. Cell: ``%%nbsql [-o NAME] [--df]``
        then the SQL below. ``:name`` binds the notebook variable ``name`` as a value. No
        ``$`` or ``{}`` expansion happens. Writing statements are refused. The result shows
        as a table; ``.to_dataframe()`` gives pandas.
        """
        out, as_frame = None, self.dataframe
        if cell is None:
            sql = line
        else:
            sql = cell
            args = _parse_or_none(_NBSQL_CELL, line)
            if args is None:
                return None
            out, as_frame = args.out, as_frame or args.df
        with _one_line_errors():
            result = api.query(sql, _NotebookParameters(self.shell.user_ns))
            value = result.to_dataframe() if as_frame else result
        if out:
            self.shell.user_ns[out] = value
        return value

    @line_magic
    def nbversion(self, line: str) -> Any:
        argv = _split("%nbversion", line)
        if argv[:1] == ["auto"]:
            return self._auto(argv[1:])
        with _one_line_errors():
            try:
                return cli.run(argv, prog="%nbversion")
            except SystemExit:  # --help
                return None

    nbversion.__doc__ = cli.build_parser("%nbversion").format_help() + _AUTO_HELP

    # -- auto mode -----------------------------------------------------------------------------

    _auto_on = False
    _auto_starting = False
    _auto_missed = False
    _auto_names: frozenset[str] = frozenset()

    def _auto(self, argv: list[str]) -> Any:
        """``%nbversion auto on|off``: snapshot after every cell that changed a variable."""
        if argv not in ([], ["on"], ["off"]):
            raise UsageError("usage: %nbversion auto [on|off]")
        events = self.shell.events
        if argv == ["on"] and not self._auto_on:
            events.register("post_run_cell", self._after_cell)
        if argv == ["on"]:  # this cell is not a change to snapshot, even when already on
            self._auto_starting = True
        elif argv == ["off"] and self._auto_on:
            events.unregister("post_run_cell", self._after_cell)
        if argv:
            self._auto_on = argv == ["on"]
        if not self._auto_on:
            return Text("auto snapshots are off")
        return Text(
            "auto snapshots are on: one after every cell that changes a variable, marked 'auto' "
            "(nbversion log --auto shows them; nbversion gc --keep-auto N trims them)"
        )

    def _after_cell(self, result: Any) -> None:
        """After a cell: take an auto snapshot if it changed a variable. Never raises: a
        problem is one line on stderr, and the user's cell result stands."""
        info = getattr(result, "info", None)
        raw = getattr(info, "raw_cell", "") or ""
        if result.error_before_exec is not None:
            return  # a cell that did not run changed nothing
        if self._auto_starting:
            # The cell that turned auto mode on is not a change to snapshot; what it did
            # before that line is seen by the next snapshot, which looks at everything.
            self._auto_starting = False
            self._auto_missed = True
            self._auto_names = frozenset(n for n in self.shell.user_ns if not n.startswith("_"))
            return
        try:
            namespace = self.shell.user_ns
            touched = None if self._auto_missed else changes.touched_names(self.shell, raw)
            if touched is not None:
                touched = changes.with_aliases(namespace, touched)
            names = frozenset(n for n in namespace if not n.startswith("_"))
            ran_nbversion = any(changes.NBVERSION_LINE.match(line) for line in raw.splitlines())
            if touched is not None and names == self._auto_names and not touched & names and not ran_nbversion:
                return  # nothing came, went or was touched: no need to look
            self._auto_names = names
            self._auto_missed = True  # until this snapshot is done: else the next one looks at all
            api.snapshot(
                f"auto: after cell [{result.execution_count}]", self.shell.user_ns, auto=True, touched=touched
            )
            self._auto_missed = False
        except KeyboardInterrupt:
            print("nbversion auto: interrupted, no snapshot of this cell", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - auto mode must never break the user's cell
            print(f"nbversion auto: no snapshot of this cell: {type(exc).__name__}: {exc}", file=sys.stderr)
