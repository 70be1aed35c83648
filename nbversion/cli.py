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
from .display import LINE_LIMIT, Text, printable
from .errors import NbversionError, UsageProblem


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse`` parser that raises :class:`UsageProblem` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageProblem(f"{self.prog}: {message}")


# -- argument definitions shared with the magics -----------------------------------------------


def add_snapshot_arguments(parser: argparse.ArgumentParser) -> None:
    """``%snapshot "message" [--tag T] [--vars a b] [--exclude a b] [--files P ...] [--notebook P]``."""
    parser.add_argument("message", nargs="*", help="what this snapshot is (quote it or not)")
    parser.add_argument("--tag", "-t", help="a name for the snapshot, usable as a ref")
    parser.add_argument("--vars", nargs="+", metavar="NAME", help="only these variables")
    parser.add_argument("--exclude", nargs="+", metavar="NAME", default=[], help="leave these variables out")
    parser.add_argument(
        "--files", nargs="+", metavar="PATH", default=[],
        help="files or directories to keep too (besides [tool.nbversion] track)",
    )
    parser.add_argument("--notebook", metavar="PATH", help="the notebook file, when it cannot be found by itself")


def add_restore_arguments(parser: argparse.ArgumentParser) -> None:
    """``%restore REF [--vars a b] [--exact] [--no-files | --files-only] [--force] [--trust]``."""
    parser.add_argument("ref", help="HEAD, HEAD~N, a tag, or an id prefix (4+ characters)")
    parser.add_argument("--vars", nargs="+", metavar="NAME", help="only these variables (no files)")
    parser.add_argument(
        "--exact", action="store_true",
        help="also remove variables the snapshot did not have, and files in its tracked directories it did not have "
        "(default: leave them alone; files are named)",
    )
    files = parser.add_mutually_exclusive_group()
    files.add_argument("--no-files", action="store_true", help="restore variables only, not tracked files")
    files.add_argument("--files-only", action="store_true", help="restore tracked files only, not variables")
    add_force_argument(parser)
    parser.add_argument(
        "--trust", action="store_true",
        help="load pickled values (models, ...) this machine did not make and whose remote it does not "
        "trust; loading a pickle can run its author's code",
    )


def add_force_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force", action="store_true",
        help="overwrite (or, with --exact, remove) files even when their current content is in no snapshot",
    )


def add_files_restore_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion restore REF [--files-only] [--exact] [--force]``: from the shell, files only."""
    parser.add_argument("ref", help="HEAD, HEAD~N, a tag, or an id prefix (4+ characters)")
    parser.add_argument(
        "--files-only", action="store_true",
        help="restore tracked files only (always so from the shell: variables live in a kernel)",
    )
    parser.add_argument(
        "--exact", action="store_true",
        help="also remove files in the snapshot's tracked directories it did not have (default: leave them, named)",
    )
    add_force_argument(parser)


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion log [-n N] [--all] [--auto]``."""
    parser.add_argument("-n", type=int, default=20, metavar="N", help="how many snapshots (default 20)")
    parser.add_argument("--all", action="store_true", help="every snapshot")
    parser.add_argument("--auto", action="store_true", help="include the snapshots auto mode took (marked 'auto')")


def add_show_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion show [REF] [--patch]``."""
    parser.add_argument("ref", nargs="?", default="HEAD", help="the snapshot (default HEAD)")
    parser.add_argument("--patch", "-p", action="store_true", help="also print the stored uncommitted diff")


def add_diff_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion diff A [B]``."""
    parser.add_argument("a", help="the older snapshot")
    parser.add_argument("b", nargs="?", default="HEAD", help="the newer snapshot (default HEAD)")


def add_checkout_code_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion checkout-code REF DIR``."""
    parser.add_argument("ref", help="the snapshot")
    parser.add_argument("directory", metavar="DIR", help="a new (or empty) directory to write the code into")


def add_sql_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion sql "SELECT ..." [--format table|csv|json] [-p NAME=VALUE ...]``."""
    parser.add_argument("query", help="one read-only SQL statement (SELECT, WITH, EXPLAIN)")
    parser.add_argument("--format", "-f", choices=["table", "csv", "json"], default="table", help="output format")
    parser.add_argument(
        "--param", "-p", action="append", default=[], metavar="NAME=VALUE",
        help="bind :NAME to VALUE (a number when it parses as one, else text)",
    )


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion check [REF ...] [--remote [NAME]]``."""
    parser.add_argument("refs", nargs="*", metavar="REF", help="only these snapshots (default: every object)")
    parser.add_argument(
        "--remote", nargs="?", const="", metavar="NAME", help="check the objects on a remote (default: the default one)"
    )


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion remote add NAME URL [--default] | list | remove NAME | trust NAME | untrust NAME``."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add", help="add a remote: any fsspec URL or a directory")
    add.add_argument("name", help="a short name for it (team, origin, ...)")
    add.add_argument("url", help="s3://bucket/prefix, gs://..., file:///path, or a directory")
    add.add_argument("--default", action="store_true", help="make it the default remote")
    actions.add_parser("list", help="list the remotes")
    remove = actions.add_parser("remove", help="forget a remote (its bytes stay)")
    remove.add_argument("name", help="the remote's name")
    trust = actions.add_parser(
        "trust", help="on this machine, load pickles fetched from this remote without --trust (they can run code)"
    )
    trust.add_argument("name", help="the remote's name")
    untrust = actions.add_parser("untrust", help="stop trusting a remote's pickles on this machine")
    untrust.add_argument("name", help="the remote's name")


def add_push_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion push [REF ...] [--remote NAME]``."""
    parser.add_argument("refs", nargs="*", metavar="REF", help="only these snapshots' objects (default: all)")
    parser.add_argument("--remote", "-r", metavar="NAME", help="which remote (default: the default one)")


def add_pull_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion pull [REF ...] [--all] [--remote NAME]``."""
    parser.add_argument("refs", nargs="*", metavar="REF", help="snapshots to be able to restore (default: HEAD)")
    parser.add_argument("--all", action="store_true", help="every snapshot's objects")
    parser.add_argument("--remote", "-r", metavar="NAME", help="which remote (default: the default one)")


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion status [--remote NAME]``."""
    parser.add_argument("--remote", "-r", metavar="NAME", help="which remote (default: the default one)")


def add_gc_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion gc [--grace HOURS] [--dry-run] [--remote [NAME] [--yes]] [--keep-auto N]``."""
    parser.add_argument(
        "--grace", type=float, default=1.0, metavar="HOURS",
        help="keep anything younger than this, for snapshots in progress elsewhere (default 1)",
    )
    parser.add_argument("--dry-run", "-n", action="store_true", help="only say what would be removed")
    parser.add_argument(
        "--remote", nargs="?", const="", metavar="NAME",
        help="collect on a remote instead (default: the default one); asks for confirmation",
    )
    parser.add_argument("--yes", "-y", action="store_true", help="confirm --remote without asking")
    parser.add_argument(
        "--keep-auto", type=int, metavar="N",
        help="first delete all but the newest N auto snapshots (tagged ones always stay)",
    )


def add_init_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion init``."""


def add_merge_arguments(parser: argparse.ArgumentParser) -> None:
    """``nbversion merge OURS THEIRS [BASE]`` (git's %A %B %O)."""
    parser.add_argument("ours", help="our catalog file; the union is written into it")
    parser.add_argument("theirs", help="their catalog file")
    parser.add_argument("base", nargs="?", help="the common ancestor (ignored: a union needs none)")


# -- verbs ---------------------------------------------------------------------------------------


def _gc(args: argparse.Namespace) -> Any:
    if args.grace < 0:
        raise UsageProblem(f"--grace must not be negative, not {args.grace}")
    if args.keep_auto is not None and (args.keep_auto < 0 or args.remote is not None):
        raise UsageProblem("--keep-auto takes a number >= 0 and works on this catalog, not with --remote")
    if args.remote is not None and not args.dry_run and not args.yes:
        preview = api.gc(grace_seconds=args.grace * 3600, dry_run=True, remote=args.remote)
        if not sys.stdin.isatty():
            raise UsageProblem(f"{preview}; removing objects from a remote needs --yes")
        answer = input(f"{preview}\nRemove them from the remote? Teammates' unmerged snapshots may need them. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return Text("nothing removed")
    return api.gc(grace_seconds=args.grace * 3600, dry_run=args.dry_run, remote=args.remote, keep_auto=args.keep_auto)


class Failed(Text):
    """A report that also means "exit non-zero" on the command line."""


def _remote(args: argparse.Namespace) -> Any:
    if args.action == "add":
        return api.remote_add(args.name, args.url, default=args.default)
    if args.action == "remove":
        return api.remote_remove(args.name)
    if args.action == "trust":
        return api.remote_trust(args.name)
    if args.action == "untrust":
        return api.remote_untrust(args.name)
    return api.remote_list()


def _check(args: argparse.Namespace) -> Any:
    result = api.check(args.refs, remote=args.remote)  # "" (a bare --remote): the default one
    return Text(str(result)) if result.ok else Failed(str(result))


def _sql(args: argparse.Namespace) -> Any:
    params: dict[str, Any] = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageProblem(f"parameter {item!r} should be NAME=VALUE")
        params[name] = _number_or_text(value)
    result = api.query(args.query, params)
    if args.format == "csv":
        return Text(result.to_csv().rstrip("\n"))
    if args.format == "json":
        return Text(result.to_json())
    return result


def _number_or_text(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _log(args: argparse.Namespace) -> Any:
    return api.log(None if args.all else args.n, auto=args.auto)


def _show(args: argparse.Namespace) -> Any:
    return api.show(args.ref, patch=args.patch)


def _diff(args: argparse.Namespace) -> Any:
    return api.diff(args.a, args.b)


def _restore(args: argparse.Namespace) -> Any:
    return api.restore(args.ref, files_only=True, exact=args.exact, force=args.force)


def _checkout_code(args: argparse.Namespace) -> Any:
    return api.checkout_code(args.ref, args.directory)


#: name -> (help, argument definitions, what it does). The magic ``%nbversion`` uses it too.
VERBS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], Any]]] = {
    "log": ("list snapshots, newest first", add_log_arguments, _log),
    "show": ("describe a snapshot: message, git state, code, variables, files, metrics", add_show_arguments, _show),
    "diff": ("what changed between two snapshots", add_diff_arguments, _diff),
    "restore": ("restore a snapshot's tracked files into the work tree", add_files_restore_arguments, _restore),
    "sql": ("run a read-only SQL query on the catalog", add_sql_arguments, _sql),
    "init": ("set up .nbversion/ and the git merge driver for the catalog", add_init_arguments, lambda a: api.init()),
    "merge": ("union two catalogs (git's merge driver; also by hand)", add_merge_arguments, lambda a: api.merge(a.ours, a.theirs)),
    "remote": ("add, list, remove or trust remotes (where objects are shared)", add_remote_arguments, _remote),
    "push": ("upload objects the remote lacks", add_push_arguments, lambda a: api.push(a.refs, remote=a.remote)),
    "pull": (
        "download what restoring needs from the remote", add_pull_arguments,
        lambda a: api.pull(a.refs, all_snapshots=a.all, remote=a.remote),
    ),
    "status": ("what is not pushed yet, and what is not here yet", add_status_arguments, lambda a: api.status(remote=a.remote)),
    "gc": ("remove objects no snapshot needs, here or on a remote (after a grace period)", add_gc_arguments, _gc),
    "check": (
        "re-hash stored objects; name each missing or corrupt one and the snapshots it breaks",
        add_check_arguments, _check,
    ),
    "checkout-code": (
        "write a snapshot's code (commit + uncommitted diff + untracked files) into a new directory",
        add_checkout_code_arguments, _checkout_code,
    ),
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


def error_line(exc: BaseException) -> str:
    """The one line that says what went wrong: nbversion's own message, or the machine's with
    its kind (``PermissionError: ...``); escaped and cut short, as it may quote catalog text."""
    text = str(exc) if isinstance(exc, NbversionError) else f"{type(exc).__name__}: {exc}"
    return printable(text, LINE_LIMIT)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``nbversion`` console script: one line on error, exit code 1 (2 for usage)."""
    try:
        result = run(sys.argv[1:] if argv is None else argv)
    except UsageProblem as exc:
        print(f"nbversion: error: {error_line(exc)}", file=sys.stderr)
        return 2
    except (NbversionError, OSError, sqlite3.Error) as exc:
        print(f"nbversion: error: {error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nbversion: interrupted", file=sys.stderr)
        return 130
    if result is not None:
        print(result)
    return 1 if isinstance(result, Failed) else 0


if __name__ == "__main__":
    sys.exit(main())
