"""nbversion works wherever IPython runs, without a Jupyter server: in a plain ``ipython``
terminal session and in an ``.ipy`` script run by ``ipython``, each a real process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path


from conftest import git

IPYTHON = str(Path(sys.executable).parent / "ipython")


def ipython(repo: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``ipython`` in *repo* with its own profile directory and an in-memory history."""
    env = {**os.environ, "IPYTHONDIR": str(repo.parent / "ipythondir")}
    return subprocess.run(
        [IPYTHON, "--no-banner", "--colors=nocolor", "--HistoryManager.hist_file=:memory:", *args],
        cwd=repo, input=stdin, capture_output=True, text=True, env=env, timeout=60,
    )


def committed_repo(repo: Path) -> Path:
    (repo / "train.py").write_text("print('hi')\n")
    git(repo, "add", "train.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "start")
    return repo


def outputs(stdout: str) -> dict[int, str]:
    """What each ``In [n]:`` prompt of a ``--simple-prompt`` session printed, by n."""
    parts = re.split(r"^In \[(\d+)\]: ", stdout, flags=re.M)
    return {int(n): text.strip() for n, text in zip(parts[1::2], parts[2::2])}


def test_magics_in_a_terminal_session(repo: Path) -> None:
    committed_repo(repo)
    session = "\n".join([
        "%load_ext nbversion",                                       # 1
        "x = 1",                                                     # 2
        '%snapshot "from the terminal" --tag t',                     # 3
        "x = 2",                                                     # 4
        "%restore t",                                                # 5
        "print(x)",                                                  # 6
        "%snapshots",                                                # 7
        "%nbsql SELECT name, value FROM metrics",                    # 8
        "%nbversion show t",                                         # 9
        "%restore no-such-ref",                                      # 10
        "%nbversion auto on",                                        # 11
        "y = 5",                                                     # 12
        "%nbversion log --auto",                                     # 13
        "exit",
    ]) + "\n"
    result = ipython(repo, "--simple-prompt", stdin=session)
    assert result.returncode == 0, result.stderr
    out = outputs(result.stdout)
    assert re.match(r'snapshot \w{10} \(t\) "from the terminal": 1 variable', out[3]), out[3]
    assert "git " in out[3] and "clean" in out[3]
    assert re.match(r'restored 1 variable from \w{10} "from the terminal": x', out[5]), out[5]
    assert out[6] == "1"
    assert "from the terminal" in out[7] and " t " in out[7]
    assert re.search(r"^x\s+1(\.0)?$", out[8], re.M), out[8]
    assert "from the terminal" in out[9] and "x" in out[9]
    # A mistake is one line on stderr, no traceback, and the session goes on.
    assert "UsageError: snapshot 'no-such-ref' not found" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "auto snapshots are on" in out[11]
    assert "auto: after cell [12]" in out[13]
    assert "auto: after cell [13]" not in out[13]  # a cell of nbversion's own is not new work


SCRIPT = """\
%load_ext nbversion
import numpy as np
weights = np.arange(6.0).reshape(2, 3)
score = 0.75
%snapshot "from a script" --tag script
%nbsql SELECT name, value FROM metrics
"""

RESTORE_SCRIPT = """\
%load_ext nbversion
weights, score = None, 0.0
%restore script
print(weights.tolist(), score)
"""


def test_magics_in_an_ipy_script(repo: Path) -> None:
    committed_repo(repo)
    (repo / "save.ipy").write_text(SCRIPT)
    (repo / "load.ipy").write_text(RESTORE_SCRIPT)
    saved = ipython(repo, "save.ipy")
    assert saved.returncode == 0, saved.stderr
    assert re.search(r'^snapshot \w{10} \(script\) "from a script": 2 variables', saved.stdout, re.M), saved.stdout
    # %nbsql returns a value: a script prints nothing for it, like any expression.
    restored = ipython(repo, "load.ipy")
    assert restored.returncode == 0, restored.stderr
    assert re.search(r'^restored 2 variables from \w{10} "from a script"', restored.stdout, re.M), restored.stdout
    assert restored.stdout.splitlines()[-1] == "[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] 0.75"
    # The script's code is kept as the code that ran.
    shown = ipython(repo, "-c", "%load_ext nbversion\n%nbversion show script")
    assert shown.returncode == 0 and "from a script" in shown.stdout


def test_a_second_snapshot_in_one_ipy_script_sees_the_change(repo: Path) -> None:
    (repo / "twice.ipy").write_text(textwrap.dedent("""\
        %load_ext nbversion
        b = 1
        %snapshot "one"
        b = 2
        %snapshot "two"
    """))
    result = ipython(repo, "twice.ipy")
    assert result.returncode == 0, result.stderr
    values = subprocess.run(
        [str(Path(sys.executable).parent / "nbversion"), "sql", "-f", "csv",
         "SELECT s.message, m.value FROM metrics m JOIN snapshots s ON s.id = m.snapshot_id WHERE m.name = 'b' ORDER BY s.id"],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert values[1:] == ["one,1.0", "two,2.0"]


def test_a_restore_in_a_script_after_a_change_assigns(repo: Path) -> None:
    (repo / "back.ipy").write_text(textwrap.dedent("""\
        %load_ext nbversion
        b = 1
        %snapshot "one"
        b = 2
        %restore HEAD
        print("b is", b)
    """))
    result = ipython(repo, "back.ipy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "b is 1"
