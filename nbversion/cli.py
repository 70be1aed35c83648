"""``nbversion VERB``: the shell's way in, and the argument definitions the magics share.

Each verb's arguments are defined once, by an ``add_*_arguments`` function, and used both by
this command line and by the matching magic (``%snapshot``, ``%restore``, ``%snapshots``,
``%nbversion VERB``), so the two can never disagree.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__, api
from .errors import NbversionError, UsageProblem


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse`` parser that raises :class:`UsageProblem` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageProblem(f"{self.prog}: {message}")


# -- argument definitions shared with the magics -----------------------------------------------


def add_snapshot_arguments(parser: argparse.ArgumentParser) -> None:
    """``%snapshot "message" [--tag T] [--vars a b] [--exclude a b]``."""
    parser.add_argument("message", nargs="*", help="what this snapshot is (quote it or not)")
    parser.add_argument("--tag", "-t", help="a name for the snapshot, usable as a ref")
    parser.add_argument("--vars", nargs="+", metavar="NAME", help="only these variables")
    parser.add_argument("--exclude", nargs="+", metavar="NAME", default=[], help="leave these variables out")


def add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    """``%restore REF [--vars a b] [--exact]``."""
    parser.add_argument("ref", help="HEAD, HEAD~N, a tag, or an id prefix (4+ characters)")
    parser.add_argument("--vars", nargs="+", metavar="NAME", help="only these variables")
    parser.add_argument(
        "--exact", action="store_true",
        help="also remove variables the snapshot did not have (default: leave them alone)",
    )


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion log [-n N]``."""
    parser.add_argument("-n", type=int, default=20, metavar="N", help="how many snapshots (default 20)")
    parser.add_argument("--all", action="store_true", help="every snapshot")


# -- verbs ---------------------------------------------------------------------------------------


def _log(args: argparse.Namespace) -> Any:
    return api.log(None if args.all else args.n)


#: name -> (help, argument definitions, what it does). The magic ``%nbversion`` uses it too.
VERBS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Any]]] = {
    "log": ("list snapshots, newest first", add_log_arguments, _log),
}


def build_parser(prog: str = "nbversion") -> ArgumentParser:
    """Return the parser of the whole command line."""
    parser = ArgumentParser(
        prog=prog,
        description="Version code, data and models from inside a Jupyter notebook.",
    )
    parser.add_argument("--version", action="version", version=f"nbversion {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    for name, (help_text, add_arguments, _) in VERBS.items():
        sub = verbs.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        add_arguments(sub)
    return parser


def run(argv: Sequence[str], prog: str = "nbversion") -> Any:
    """Parse *argv* and run the verb; return its result (something printable).

    :raises UsageProblem: for bad arguments. ``--help`` raises ``SystemExit(0)``.
    :raises NbversionError: whatever the verb raises.
    """
    args = build_parser(prog).parse_args(list(argv))
    return VERBS[args.verb][2](args)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``nbversion`` console script: one line on error, exit code 1 (2 for usage)."""
    try:
        result = run(sys.argv[1:] if argv is None else argv)
    except UsageProblem as exc:
        print(f"nbversion: error: {exc}", file=sys.stderr)
        return 2
    except NbversionError as exc:
        print(f"nbversion: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.Error) as exc:
        print(f"nbversion: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nbversion: interrupted", file=sys.stderr)
        return 130
    if result is not None:
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
