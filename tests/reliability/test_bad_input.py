"""Bad input at every entry point: every CLI verb (taken from the CLI's own parser, so a new
verb is covered by itself) and the magics, given unknown flags, missing arguments, unknown and
ambiguous refs, a catalog from a newer nbversion, a file at the catalog's path that is not a
catalog, and a repository it may not write. Each answer is one clear line (stderr, exit code
not 0; or IPython's ``UsageError``), never a traceback, and the catalog file is left as it was.

Complements tests/test_cli.py and tests/test_magics.py (``%snapshot`` without a message, a bad
tag, ``%restore`` without a ref, and the like are there).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import query
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import nbversion
from nbversion import cli, migrations

NBVERSION = str(Path(sys.executable).parent / "nbversion")


def walk_verbs() -> dict[str, argparse.ArgumentParser]:
    """Every command of the CLI's parser: its verbs, and the actions of a verb that has them
    (``remote add``, ...), by their words."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups:
            found[" ".join(words)] = parser
        for group in groups:
            for name, sub in group.choices.items():
                walk(sub, (*words, name))

    walk(cli.build_parser(), ())
    return found


VERBS = walk_verbs()
#: Verbs that have actions, given none.
BARE = sorted({words.split()[0] for words in VERBS if " " in words})
#: Positionals naming snapshots.
REF_DESTS = {"ref", "refs", "a", "b"}
#: Commands that never open the catalog (remotes.json and this machine's state.db only).
NO_CATALOG = {words for words in VERBS if words.startswith("remote ")}


def positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


def required_args(words: str, ref: str = "HEAD") -> list[str]:
    """Placeholders for the required positionals of *words* (a ref for each)."""
    return [ref for a in positionals(VERBS[words]) if a.nargs in (None, "+")]


def sample_args(words: str, repo: Path) -> list[str]:
    """Arguments with which *words* would do its work on *repo*'s catalog."""
    catalog = str(repo / ".nbversion" / "catalog.db")
    known = {
        "diff": ["HEAD~1", "HEAD"],
        "sql": ["SELECT count(*) FROM snapshots"],
        "checkout-code": ["HEAD", str(repo.parent / "checkout")],
        "merge": [catalog, str(repo.parent / "theirs.db")],
        "remote add": ["other", str(repo.parent / "other-remote")],
        "remote remove": ["origin"],
        "remote trust": ["origin"],
        "remote untrust": ["origin"],
        "gc": ["--dry-run"],
    }
    return known.get(words, required_args(words))


def run(repo: Path, *args: str, preexec_fn=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NBVERSION, *args], cwd=repo, capture_output=True, text=True, preexec_fn=preexec_fn, check=False)


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str, code: int | None = None) -> str:
    """Assert *result* failed with exactly one clear line on stderr; return that line."""
    assert result.returncode != 0, result.stdout[-500:]
    if code is not None:
        assert result.returncode == code, result.stderr
    assert result.stderr.endswith("\n") and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert result.stderr.startswith("nbversion: error: ") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return result.stderr


def usage_error(shell, line: str, *needles: str) -> str:
    """Run the magic *line*; expect exactly IPython's plain UsageError, in one line."""
    with pytest.raises(UsageError) as info:
        shell.run_cell(line)
    assert type(info.value) is UsageError
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two snapshots (ids sharing a prefix) of a tracked file, made once for the module."""
    path = tmp_path_factory.mktemp("template")
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    (path / "data.csv").write_text("a\n")
    nbversion.snapshot("one", {"v": 1}, files=[str(path / "data.csv")], repo=path)
    nbversion.snapshot("two", {"v": 2}, files=[str(path / "data.csv")], repo=path)
    return path


@pytest.fixture
def two_snapshots(repo: Path, template: Path) -> Path:
    """*repo* with the template's snapshots and a default remote, so every verb gets as far
    as the catalog."""
    shutil.copytree(template / ".nbversion", repo / ".nbversion")
    shutil.copy(template / "data.csv", repo / "data.csv")
    nbversion.api.remote_add("origin", str(repo.parent / "remote"), default=True, repo=repo)
    shutil.copy(repo / ".nbversion" / "catalog.db", repo.parent / "theirs.db")
    return repo


def ambiguous_prefix(repo: Path) -> str:
    ids = [r[0] for r in query(repo, "SELECT id FROM snapshots")]
    prefix = os.path.commonprefix(ids)
    assert len(prefix) >= 4  # ids are time-sortable: two taken a moment apart share 5+ characters
    return prefix[:4]


def test_the_walk_finds_every_verb() -> None:
    assert set(cli.VERBS) <= {words.split()[0] for words in VERBS}
    assert {"remote add", "remote list", "remote remove", "log", "checkout-code"} <= set(VERBS)


# -- the command line -------------------------------------------------------------------------------


@pytest.mark.parametrize("words", sorted(VERBS))
def test_unknown_flag_and_missing_arguments_are_one_line(repo: Path, words: str) -> None:
    verb = words.split()
    result = run(repo, *verb, *required_args(words), "--no-such-flag")
    one_line_error(result, "unrecognized arguments: --no-such-flag", code=2)
    assert result.stdout == ""
    if required_args(words):
        one_line_error(run(repo, *verb), "the following arguments are required", code=2)
    assert not (repo / ".nbversion").exists()  # a usage error touches nothing


@pytest.mark.parametrize("verb", BARE)
def test_verb_without_its_action_is_one_line(repo: Path, verb: str) -> None:
    one_line_error(run(repo, verb), "the following arguments are required", code=2)


REF_VERBS = sorted(w for w, p in VERBS.items() if any(a.dest in REF_DESTS for a in positionals(p)))


@pytest.mark.parametrize("words", REF_VERBS)
def test_unknown_and_ambiguous_refs_are_named_in_one_line(two_snapshots: Path, words: str) -> None:
    repo = two_snapshots
    catalog = (repo / ".nbversion" / "catalog.db").read_bytes()
    prefix = ambiguous_prefix(repo)
    for ref, said in (("nope", "snapshot 'nope' not found"), (prefix, f"ref {prefix!r} is ambiguous"), ("HEAD~7", "'HEAD~7'")):
        args = [ref if a.dest in REF_DESTS else "HEAD" for a in positionals(VERBS[words]) if a.dest in REF_DESTS]
        if words == "checkout-code":
            args.append(str(repo.parent / "checkout"))
        one_line_error(run(repo, *words.split(), *args), said, code=1)
    assert (repo / ".nbversion" / "catalog.db").read_bytes() == catalog
    assert not (repo.parent / "checkout").exists()


def newer(path: Path) -> None:
    """Make *path* look like a catalog from a future nbversion, in rollback-journal mode
    (as a copy made by another tool may be)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    conn.commit()
    conn.close()


def user_version(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("words", sorted(VERBS))
def test_catalog_from_a_newer_nbversion_is_refused_never_downgraded(two_snapshots: Path, words: str) -> None:
    repo = two_snapshots
    catalog = repo / ".nbversion" / "catalog.db"
    newer(catalog)
    before = catalog.read_bytes()
    result = run(repo, *words.split(), *sample_args(words, repo))
    if words not in NO_CATALOG:
        one_line_error(result, str(catalog), "upgrade nbversion", code=1)
    assert catalog.read_bytes() == before and user_version(catalog) == migrations.LATEST + 1
    assert not (repo.parent / "checkout").exists()


def not_a_catalog(path: Path, kind: str) -> None:
    good = path.read_bytes()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes({"text": b"id,value\n1,2\n" * 50, "empty": b"", "truncated": good[:3000], "half": good[: len(good) // 2]}[kind])


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "half"])
def test_a_file_that_is_not_a_catalog_is_named_and_left_alone(two_snapshots: Path, kind: str, capsys) -> None:
    repo = two_snapshots
    catalog = repo / ".nbversion" / "catalog.db"
    not_a_catalog(catalog, kind)
    before = catalog.read_bytes()
    for words in sorted(set(VERBS) - NO_CATALOG):  # in this process: the same main(), quicker
        code = cli.main([*words.split(), *sample_args(words, repo)])
        err = capsys.readouterr().err
        assert code == 1 and err.count("\n") == 1 and err.startswith("nbversion: error: catalog "), (words, err)
        assert str(catalog) in err and "Traceback" not in err, (words, err)
        assert catalog.read_bytes() == before, words
    one_line_error(run(repo, "log"), str(catalog), code=1)  # and from the shell


# -- a repository nbversion may not write -----------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_PR_CAPBSET_DROP = 24
_DAC_CAPS = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def _without_root_privileges() -> None:
    """In the child before exec: drop the capabilities that let root ignore file modes, so
    root meets read-only directories as anyone else does (CI and containers run as root)."""
    for cap in _DAC_CAPS:
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def as_user(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run nbversion so that file modes apply, even when the tests run as root."""
    return run(repo, *args, preexec_fn=_without_root_privileges if os.geteuid() == 0 else None)


@pytest.fixture
def read_only():
    made = []

    def make(path: Path) -> Path:
        path.chmod(0o555)
        made.append(path)
        return path

    yield make
    for path in made:
        path.chmod(0o755)


def test_the_read_only_mechanism_is_real(repo: Path, read_only) -> None:
    read_only(repo)
    probe = subprocess.run(
        ["touch", str(repo / "probe")], capture_output=True, check=False,
        preexec_fn=_without_root_privileges if os.geteuid() == 0 else None,
    )
    assert probe.returncode != 0 and not (repo / "probe").exists()


@pytest.mark.parametrize("words", sorted(VERBS))
def test_read_only_nbversion_directory_is_a_clear_error(two_snapshots: Path, read_only, words: str) -> None:
    repo = two_snapshots
    catalog = repo / ".nbversion" / "catalog.db"
    before = catalog.read_bytes()
    listing = sorted(os.listdir(repo / ".nbversion"))
    read_only(repo / ".nbversion")
    result = as_user(repo, *words.split(), *sample_args(words, repo))
    if result.returncode != 0:  # reading remotes.json, say, needs no write
        line = one_line_error(result)
        assert "read-only" in line or "Permission denied" in line, line
        assert str(repo / ".nbversion") in line, line
    assert catalog.read_bytes() == before and sorted(os.listdir(repo / ".nbversion")) == listing


def test_read_only_repository_is_a_clear_error(repo: Path, read_only) -> None:
    read_only(repo)
    one_line_error(as_user(repo, "init"), "Permission denied", str(repo / ".nbversion"), code=1)
    assert not (repo / ".nbversion").exists()


def test_read_only_nbversion_directory_in_a_kernel_is_a_usage_error(two_snapshots: Path, read_only) -> None:
    repo = two_snapshots
    read_only(repo / ".nbversion")
    script = textwrap.dedent("""
        from IPython.core.error import UsageError
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_line_magic("load_ext", "nbversion")
        shell.user_ns["v"] = 3
        for magic, line in (("snapshot", "x"), ("restore", "HEAD"), ("snapshots", ""), ("nbsql", "SELECT 1")):
            try:
                shell.run_line_magic(magic, line)
                print("ok", magic)
            except UsageError as exc:
                print("UsageError", magic, str(exc).replace(chr(10), "<newline>"))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, check=False,
        preexec_fn=_without_root_privileges if os.geteuid() == 0 else None,
        env={**os.environ, "IPYTHONDIR": str(repo.parent / "ipython")},
    )
    assert result.returncode == 0 and "Traceback" not in result.stdout + result.stderr, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 4, lines
    for line in lines:
        assert line.startswith("UsageError ") and "<newline>" not in line, line
        assert "read-only" in line or "Permission denied" in line, line


# -- the magics -------------------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["%snapshot x --no-such-flag", "%restore HEAD --no-such-flag", "%snapshots --no-such-flag"])
def test_magic_unknown_flags(shell, line: str) -> None:
    usage_error(shell, line, "unrecognized arguments: --no-such-flag")


def test_every_verb_of_the_nbversion_magic_refuses_bad_input_in_one_line(shell, two_snapshots: Path) -> None:
    repo = two_snapshots
    usage_error(shell, "%nbversion", "required")
    usage_error(shell, "%nbversion nope", "invalid choice")
    prefix = ambiguous_prefix(repo)
    for words in VERBS:
        usage_error(shell, f"%nbversion {words} {' '.join(required_args(words))} --no-such-flag", "unrecognized arguments")
        if required_args(words):
            usage_error(shell, f"%nbversion {words}", "the following arguments are required")
        if words in REF_VERBS:
            refs = [a for a in positionals(VERBS[words]) if a.dest in REF_DESTS]
            extra = f" {repo.parent / 'checkout'}" if words == "checkout-code" else ""
            usage_error(shell, f"%nbversion {words} {' '.join(['nope'] * len(refs))}{extra}", "snapshot 'nope' not found")
            usage_error(shell, f"%nbversion {words} {' '.join([prefix] * len(refs))}{extra}", "is ambiguous")
    usage_error(shell, "%restore nope", "snapshot 'nope' not found")
    usage_error(shell, f"%restore {prefix}", "is ambiguous")
    usage_error(shell, "%nbsql", "the query is empty")
    usage_error(shell, "%%nbsql --no-such-flag\nSELECT 1", "unrecognized arguments")
    usage_error(shell, "%snapshot     ", "needs a message")
    assert query(repo, "SELECT count(*) FROM snapshots") == [(2,)]


MAGIC_LINES = ['%snapshot "x"', "%restore HEAD", "%snapshots", "%nbsql SELECT 1", "%nbversion log"]


def test_magics_refuse_a_newer_catalog_and_leave_it_alone(shell, two_snapshots: Path) -> None:
    catalog = two_snapshots / ".nbversion" / "catalog.db"
    newer(catalog)
    before = catalog.read_bytes()
    shell.run_cell("v = 7")
    for line in MAGIC_LINES:
        usage_error(shell, line, str(catalog), "upgrade nbversion")
    assert catalog.read_bytes() == before and shell.user_ns["v"] == 7


@pytest.mark.parametrize("kind", ["text", "empty", "truncated"])
def test_magics_refuse_a_file_that_is_not_a_catalog(shell, two_snapshots: Path, kind: str) -> None:
    catalog = two_snapshots / ".nbversion" / "catalog.db"
    not_a_catalog(catalog, kind)
    before = catalog.read_bytes()
    shell.run_cell("v = 7")
    for line in MAGIC_LINES:
        usage_error(shell, line, f"catalog {catalog}")
    assert catalog.read_bytes() == before and shell.user_ns["v"] == 7


def test_ipython_shows_the_error_as_one_line_without_traceback(shell, repo: Path, capsys) -> None:
    capsys.readouterr()
    InteractiveShell.run_cell(shell, "%restore nope --no-such-flag")  # IPython's own display
    InteractiveShell.run_cell(shell, "%nbversion show nope")
    captured = capsys.readouterr()
    shown = (captured.out + captured.err).strip().splitlines()
    assert shown == [
        "UsageError: %restore: unrecognized arguments: --no-such-flag",
        f"UsageError: snapshot 'nope' not found: there are no snapshots yet in {repo}",
    ]
