"""The nbversion command line, as a user runs it, and the Python API from a plain script."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from nbversion import cli

NBVERSION = str(Path(sys.executable).parent / "nbversion")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NBVERSION, *args], cwd=cwd, capture_output=True, text=True)


def test_every_verb_has_help(repo: Path) -> None:
    top = run("--help", cwd=repo)
    assert top.returncode == 0
    for verb in cli.VERBS:
        assert verb in top.stdout
        result = run(verb, "--help", cwd=repo)
        assert result.returncode == 0 and f"usage: nbversion {verb}" in result.stdout


def test_version(repo: Path) -> None:
    from nbversion import __version__

    assert run("--version", cwd=repo).stdout.strip() == f"nbversion {__version__}"


def test_usage_errors_are_one_line(repo: Path) -> None:
    for args in (["nope"], ["log", "-n", "many"], []):
        result = run(*args, cwd=repo)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("nbversion: error:")
        assert "Traceback" not in result.stderr


def test_plain_script_snapshots_and_restores_its_globals(repo: Path) -> None:
    script = repo / "train.py"
    script.write_text(textwrap.dedent("""
        import sys
        import numpy as np
        import nbversion

        weights = np.arange(6.0).reshape(2, 3)
        score = 0.75
        if sys.argv[1] == "save":
            print(nbversion.snapshot("from a script", tag="script"))
        else:
            weights = None
            score = 0.0
            print(nbversion.restore("script"))
            assert weights.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] and score == 0.75
            print(nbversion.load("script", "score"))
    """))
    saved = subprocess.run([sys.executable, str(script), "save"], cwd=repo, capture_output=True, text=True)
    assert saved.returncode == 0, saved.stderr
    assert '(script) "from a script": 2 variables' in saved.stdout
    restored = subprocess.run([sys.executable, str(script), "restore"], cwd=repo, capture_output=True, text=True)
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.splitlines()[-1] == "0.75"

    log = run("log", cwd=repo)
    assert log.returncode == 0 and "from a script" in log.stdout and "script" in log.stdout
    assert run("log", "-n", "0", cwd=repo).returncode == 2


def test_log_outside_any_catalog(tmp_path: Path) -> None:
    result = run("log", cwd=tmp_path)
    assert result.returncode == 0 and "no snapshots yet" in result.stdout
