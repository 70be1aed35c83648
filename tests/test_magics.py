"""The magics, through a real IPython shell in a real git repository."""

from __future__ import annotations

import copy
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError

from conftest import git, query
from nbversion.catalog import short_id


def last_id(repo: Path, offset: int = 0) -> str:
    return query(repo, "SELECT id FROM snapshots ORDER BY id DESC LIMIT 1 OFFSET ?", offset)[0][0]


def usage_error(shell, line: str) -> str:
    """Run *line*, expect exactly IPython's UsageError (shown without traceback), return it."""
    with pytest.raises(UsageError) as info:
        shell.run_cell(line)
    assert type(info.value) is UsageError
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_round_trip_of_every_kind_of_value(shell, repo: Path, capsys) -> None:
    shell.run_cell(
        "import numpy as np, pandas as pd\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "rng = np.random.default_rng(0)\n"
        "X = rng.normal(size=(300, 4)); y = (X[:, 0] > 0).astype(int)\n"
        "df = pd.DataFrame({'a': np.arange(5), 'b': list('vwxyz')})\n"
        "model = LogisticRegression().fit(X, y)\n"
        "params = {'C': 1.0, 'layers': [64, 32]}\n"
        "history = [0.5, 0.7, 0.9]\n"
        "accuracy = 0.93\n"
        "epochs = 12\n"
        "converged = True\n"
        "name = 'baseline'\n"
    )
    capsys.readouterr()
    shell.run_cell('%snapshot "every kind of value" --tag base')
    line = capsys.readouterr().out.strip().splitlines()[0]
    assert line.startswith("snapshot ") and "(base)" in line and '"every kind of value"' in line
    assert "new" in line and "reused" in line

    expected = {name: copy.deepcopy(shell.user_ns[name]) for name in ["X", "y", "df", "params", "history", "accuracy", "epochs", "converged", "name"]}
    predictions = shell.user_ns["model"].predict_proba(shell.user_ns["X"])
    shell.run_cell("X[:] = 0; del df, model; params['C'] = 99.0; accuracy = 0.0; name = 'lost'")
    shell.run_cell("%restore base")
    ns = shell.user_ns
    np.testing.assert_array_equal(ns["X"], expected["X"])
    np.testing.assert_array_equal(ns["y"], expected["y"])
    pd.testing.assert_frame_equal(ns["df"], expected["df"])
    np.testing.assert_array_equal(ns["model"].predict_proba(expected["X"]), predictions)
    assert ns["params"] == {"C": 1.0, "layers": [64, 32]}
    assert (ns["history"], ns["accuracy"], ns["epochs"], ns["converged"], ns["name"]) == (
        [0.5, 0.7, 0.9], 0.93, 12, True, "baseline")
    assert "restored" in capsys.readouterr().out

    kinds = dict(query(repo, "SELECT name, kind FROM artifacts WHERE source = 'variable'"))
    assert kinds["model"] == "model" and kinds["X"] == "data" and kinds["df"] == "data"
    assert kinds["history"] == "data" and kinds["name"] == "other"
    metrics = dict(query(repo, "SELECT name, value FROM metrics"))
    assert metrics == {"accuracy": 0.93, "epochs": 12.0, "converged": 1.0}
    summary = query(repo, "SELECT json_extract(summary, '$.shape'), json_extract(summary, '$.dtype') FROM artifacts WHERE source = 'variable' AND name = 'X'")
    assert summary == [("[300,4]", "float64")]
    params = query(repo, "SELECT json_extract(summary, '$.params.C'), json_extract(summary, '$.fitted') FROM artifacts WHERE source = 'variable' AND name = 'model'")
    assert params == [(1.0, 1)]


def test_what_is_not_captured(shell, repo: Path) -> None:
    shell.run_cell(
        "import os\nfrom math import sqrt\n_private = 1\nkept = 2\n"
        "def helper(x):\n    return x + 1\n"
        "class Point:\n    def norm(self):\n        return 0\n"
        "class Bare:\n    pass\n"
    )
    shell.run_cell("1 + 1")  # fills Out and _
    shell.run_cell("%snapshot what counts")
    names = dict(query(repo, "SELECT name, codec FROM artifacts WHERE source = 'variable'"))
    assert names == {"kept": "json", "helper": "source", "Point": "source"}
    code = query(repo, "SELECT kind FROM artifacts WHERE source = 'variable' AND name = 'helper'")
    assert code == [("code",)]
    import nbversion

    assert nbversion.load("HEAD", "Point").startswith("class Point:\n    def norm")
    # A class with no method has no source IPython can point to: skipped, and said so.
    assert query(repo, "SELECT name, reason FROM skipped") == [("Bare", "source code not available")]


def test_functions_are_kept_as_code_not_restored(shell, repo: Path) -> None:
    shell.run_cell("def helper(x):\n    return x * 3\nvalue = 1")
    shell.run_cell("%snapshot with a function")
    shell.run_cell("del helper\nvalue = 2")
    shell.run_cell("%restore HEAD")
    assert shell.user_ns["value"] == 1 and "helper" not in shell.user_ns
    import nbversion

    assert "return x * 3" in nbversion.load("HEAD", "helper")


def test_unpicklable_variables_are_skipped_and_named(shell, repo: Path, capsys) -> None:
    shell.run_cell(
        "import threading, sqlite3\nlock = threading.Lock()\ngen = (i for i in range(3))\n"
        "conn = sqlite3.connect(':memory:')\nfh = open(%r)\ngood = [1, 2]" % __file__
    )
    capsys.readouterr()
    shell.run_cell("%snapshot with junk")
    out = capsys.readouterr().out
    for name in ["lock", "gen", "conn", "fh"]:
        assert f"{name} (" in out
    assert dict(query(repo, "SELECT name, codec FROM artifacts WHERE source = 'variable'")) == {"good": "json"}
    skipped = {name for (name,) in query(repo, "SELECT name FROM skipped")}
    assert skipped == {"lock", "gen", "conn", "fh"}
    shell.run_cell("fh.close(); conn.close()")


def test_restore_by_head_tag_and_prefix(shell, repo: Path) -> None:
    shell.run_cell("v = 1")
    shell.run_cell("%snapshot one --tag first")
    first = last_id(repo)
    shell.run_cell("v = 2")
    shell.run_cell("%snapshot two")
    second = last_id(repo)
    shell.run_cell("v = 3")
    shell.run_cell("%snapshot three")
    shell.run_cell("%restore HEAD~1")
    assert shell.user_ns["v"] == 2
    shell.run_cell("%restore first")
    assert shell.user_ns["v"] == 1
    shell.run_cell(f"%restore {short_id(second)}")
    assert shell.user_ns["v"] == 2
    shell.run_cell(f"%restore {first[:12]}")
    assert shell.user_ns["v"] == 1
    shell.run_cell("%restore HEAD")
    assert shell.user_ns["v"] == 3


def test_restore_subset_with_vars(shell, repo: Path, capsys) -> None:
    shell.run_cell("a = 1; b = 2; c = 3")
    capsys.readouterr()
    shell.run_cell("%snapshot abc")
    assert capsys.readouterr().err == ""  # small and quick: no progress bar
    shell.run_cell("a = b = c = 0")
    shell.run_cell("%restore HEAD --vars a c")
    assert (shell.user_ns["a"], shell.user_ns["b"], shell.user_ns["c"]) == (1, 0, 3)
    message = usage_error(shell, "%restore HEAD --vars a nothere")
    assert "'nothere'" in message
    assert shell.user_ns["a"] == 1


def test_snapshot_subset_with_vars_and_exclude(shell, repo: Path) -> None:
    shell.run_cell("a = 1; b = 2; c = 3")
    shell.run_cell("%snapshot only a --vars a")
    assert query(repo, "SELECT name FROM artifacts WHERE source = 'variable'") == [("a",)]
    shell.run_cell("%snapshot all but b --exclude b")
    names = query(repo, "SELECT name FROM artifacts WHERE source = 'variable' AND snapshot_id = ? ORDER BY name", last_id(repo))
    assert names == [("a",), ("c",)]
    assert "'zzz' is not defined" in usage_error(shell, "%snapshot bad --vars zzz")


def test_restore_overlays_unless_exact(shell, repo: Path) -> None:
    shell.run_cell("a = 1")
    shell.run_cell("%snapshot just a")
    shell.run_cell("a = 5; extra = 'keep me'\ndef f():\n    pass")
    shell.run_cell("%restore HEAD")
    assert shell.user_ns["a"] == 1 and shell.user_ns["extra"] == "keep me"
    shell.run_cell("%restore HEAD --exact")
    assert "extra" not in shell.user_ns and "f" in shell.user_ns


def test_bad_refs_give_one_line_errors_and_touch_nothing(shell, repo: Path) -> None:
    assert "no snapshots yet" in usage_error(shell, "%restore HEAD")
    shell.run_cell("v = 1")
    shell.run_cell("%snapshot a")
    shell.run_cell("%snapshot b")
    shell.run_cell("v = 42")
    assert "'v9' not found" in usage_error(shell, "%restore v9")
    prefix = last_id(repo)[:4]
    assert f"'{prefix}' is ambiguous" in usage_error(shell, f"%restore {prefix}")
    assert "'HEAD~9'" in usage_error(shell, "%restore HEAD~9")
    assert shell.user_ns["v"] == 42


def test_bad_input_gives_one_line_errors(shell, repo: Path) -> None:
    assert "needs a message" in usage_error(shell, "%snapshot")
    assert "needs a message" in usage_error(shell, '%snapshot ""')
    assert "unrecognized arguments: --bogus" in usage_error(shell, "%snapshot x --bogus")
    assert "No closing quotation" in usage_error(shell, '%snapshot "x')
    assert "not a valid tag" in usage_error(shell, "%snapshot x --tag HEAD")
    assert "the following arguments are required: ref" in usage_error(shell, "%restore")
    shell.run_cell("%snapshot x --tag t")
    assert "'t' already names" in usage_error(shell, "%snapshot y --tag t")
    assert query(repo, "SELECT count(*) FROM snapshots") == [(1,)]
    assert "positive" in usage_error(shell, "%snapshots -n 0")


def test_corrupt_object_is_refused_by_name_and_namespace_untouched(shell, repo: Path) -> None:
    shell.run_cell("import numpy as np\nbig = np.arange(100_000.0)\nsmall = 1")
    shell.run_cell("%snapshot good")
    (object_id,) = query(repo, "SELECT object_id FROM artifacts WHERE source = 'variable' AND name = 'big'")[0]
    path = repo / ".nbversion" / "objects" / object_id[:2] / object_id[2:]
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    shell.run_cell("big = 'changed'; small = 2")
    message = usage_error(shell, "%restore HEAD")
    assert object_id in message and "corrupt" in message
    assert shell.user_ns["big"] == "changed" and shell.user_ns["small"] == 2
    shell.run_cell("%restore HEAD --vars small")  # what is intact still restores
    assert shell.user_ns["small"] == 1


def test_missing_object_is_named(shell, repo: Path) -> None:
    shell.run_cell("payload = list(range(50_000))")
    shell.run_cell("%snapshot p")
    (object_id,) = query(repo, "SELECT object_id FROM artifacts WHERE source = 'variable' AND name = 'payload'")[0]
    (repo / ".nbversion" / "objects" / object_id[:2] / object_id[2:]).unlink()
    assert f"object {object_id} is missing" in usage_error(shell, "%restore HEAD")


def test_200mb_array_round_trip_and_unchanged_resnapshot_adds_nothing(shell, repo: Path, capsys) -> None:
    shell.run_cell("import numpy as np\nbig = np.random.default_rng(0).random(25_000_000)")  # 200 MB
    capsys.readouterr()
    shell.run_cell("%snapshot big one")
    assert "snapshot:" in capsys.readouterr().err  # over 100 MB: a progress bar at once
    shell.run_cell("%snapshot big again")
    rows = query(
        repo,
        "SELECT s.message, coalesce(sum(o.size), 0) FROM snapshots s"
        " LEFT JOIN objects o ON o.first_snapshot_id = s.id GROUP BY s.id ORDER BY s.id",
    )
    assert rows[0][0] == "big one" and rows[0][1] >= 200_000_000
    assert rows[1][0] == "big again" and rows[1][1] < 1024  # only the grown cell history is new
    # Stored once, as 4 MiB parts: 200 MB / 4 MiB = 48 parts, none of them twice.
    big_objects = [p for p in (repo / ".nbversion" / "objects").glob("??/*") if p.stat().st_size > 1_000_000]
    assert len(big_objects) == 48 and sum(p.stat().st_size for p in big_objects) == 200_000_000
    expected = shell.user_ns["big"].copy()
    shell.run_cell("del big")
    shell.run_cell("%restore HEAD~1")
    np.testing.assert_array_equal(shell.user_ns["big"], expected)


def test_snapshots_table_and_help(shell, repo: Path, capsys) -> None:
    table = shell.run_line_magic("snapshots", "")
    assert "no snapshots yet" in repr(table)
    shell.run_cell("v = 1")
    shell.run_cell('%snapshot "first one" --tag base')
    shell.run_cell('%snapshot "second one"')
    table = shell.run_line_magic("snapshots", "-n 1")
    assert len(table) == 1 and "second one" in repr(table) and "first one" not in repr(table)
    table = shell.run_line_magic("snapshots", "")
    html = table._repr_html_()
    assert "<table>" in html and "first one" in html and "base" in html
    assert "just now" in repr(table)
    for magic in ["snapshot", "restore", "snapshots", "nbversion"]:
        doc = shell.find_line_magic(magic).__doc__
        assert doc.startswith(f"usage: %{magic}")
    capsys.readouterr()
    shell.run_cell("%snapshot --help")
    assert "usage: %snapshot" in capsys.readouterr().out


def test_nbversion_magic_runs_cli_verbs(shell, repo: Path) -> None:
    shell.run_cell("v = 1")
    shell.run_cell('%snapshot "via cli"')
    table = shell.run_line_magic("nbversion", "log -n 5")
    assert "via cli" in repr(table)
    assert "invalid choice: 'nope'" in usage_error(shell, "%nbversion nope")


def test_catalog_is_committable_and_objects_are_ignored(shell, repo: Path) -> None:
    shell.run_cell("import numpy as np\na = np.ones(10)")
    shell.run_cell("%snapshot commit me")
    status = git(repo, "status", "--porcelain", "--untracked-files=all")
    assert sorted(line[3:] for line in status.splitlines()) == [".nbversion/.gitignore", ".nbversion/catalog.db"]
    conn = sqlite3.connect(repo / ".nbversion" / "catalog.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_parent_follows_what_the_session_restored(shell, repo: Path) -> None:
    shell.run_cell("v = 1")
    shell.run_cell("%snapshot one --tag one")
    shell.run_cell("%snapshot two")
    shell.run_cell("%restore one")
    shell.run_cell("%snapshot three")
    parent = query(repo, "SELECT p.message FROM snapshots s JOIN snapshots p ON p.id = s.parent WHERE s.message = 'three'")
    assert parent == [("one",)]


def test_value_whose_class_is_gone_names_variable_and_leaves_namespace(shell, repo: Path) -> None:
    shell.run_cell("class Point:\n    def __init__(self):\n        self.x = 1\np = Point()\nq = 5")
    shell.run_cell("%snapshot points")
    shell.run_cell("del Point\nimport sys\ndel sys.modules['__main__'].__dict__['p']\nq = 6")
    message = usage_error(shell, "%restore HEAD --vars p q")
    assert message.startswith("variable 'p' of snapshot ") and "Point" in message
    assert "corrupt" not in message and shell.user_ns["q"] == 6
    assert "cannot be combined" in usage_error(shell, "%restore HEAD --vars q --exact")


def test_exact_keeps_variables_the_snapshot_skipped(shell, repo: Path) -> None:
    shell.run_cell("import threading\nlock = threading.Lock()\nn = 1")
    shell.run_cell("%snapshot with a lock")
    shell.run_cell("other = 2")
    shell.run_cell("%restore HEAD --exact")
    assert "lock" in shell.user_ns and "other" not in shell.user_ns


def test_disk_full_fails_the_snapshot_in_one_line_and_leaves_nothing(shell, repo: Path, monkeypatch) -> None:
    import errno

    from fsspec.implementations.local import LocalFileOpener

    shell.run_cell("import numpy as np\na = np.arange(1000.0)\nb = [1, 2]")
    shell.run_cell("%snapshot before")

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalFileOpener, "write", full)
    shell.run_cell("a = a + 1")
    message = usage_error(shell, "%snapshot during")
    assert "No space left on device" in message and "object store" in message
    monkeypatch.undo()
    assert query(repo, "SELECT message FROM snapshots") == [("before",)]
    assert list((repo / ".nbversion" / "objects" / "tmp").iterdir()) == []
    conn = sqlite3.connect(repo / ".nbversion" / "catalog.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
