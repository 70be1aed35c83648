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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from . import api, cli
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
    "Bring back a snapshot's variables. Everything is loaded and verified before any "
    "variable is assigned; variables the snapshot did not have are left alone.",
)
_SNAPSHOTS = _parser("%snapshots", cli.add_log_arguments, "List snapshots, newest first.")


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn nbversion's errors into the one-line ``UsageError`` IPython shows plainly."""
    try:
        yield
    except NbversionError as exc:
        raise UsageError(str(exc)) from None
    except (OSError, sqlite3.Error) as exc:  # the machine's trouble, not a bug: say it in one line
        raise UsageError(f"{type(exc).__name__}: {exc}") from None


def _split(prog: str, line: str) -> list[str]:
    """Split *line* like a shell would."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{prog}: cannot split {line!r}: {exc}") from None


def _verb(parser: argparse.ArgumentParser) -> Callable[[F], F]:
    """Make a magic of *function(self, args)*: split and parse the line with *parser*, turn
    errors into one line, and use the parser's usage as docstring (``%snapshot?``)."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def magic(self: Magics, line: str) -> Any:
            argv = _split(parser.prog, line)
            with _one_line_errors():
                try:
                    args = parser.parse_args(argv)
                except SystemExit:  # -h / --help printed the usage
                    return None
                return function(self, args)

        magic.__doc__ = parser.format_help()
        return magic  # type: ignore[return-value]

    return decorate


@magics_class
class NbversionMagics(Magics):
    """The magics ``%load_ext nbversion`` registers."""

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
                files=not args.no_files, files_only=args.files_only, force=args.force,
            )
        )

    @line_magic
    @_verb(_SNAPSHOTS)
    def snapshots(self, args: argparse.Namespace) -> Any:
        return api.log(None if args.all else args.n)

    @line_magic
    def nbversion(self, line: str) -> Any:
        argv = _split("%nbversion", line)
        with _one_line_errors():
            try:
                return cli.run(argv, prog="%nbversion")
            except SystemExit:  # --help
                return None

    nbversion.__doc__ = cli.build_parser("%nbversion").format_help()
