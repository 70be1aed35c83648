"""Exactness regressions: each the smallest session that shows a bug the generated-state oracle
(tests/oracle/test_session.py) finds, in a real IPython shell in a real git repository.

DESIGN.md, invariant 8: a restore gives back the snapshot's values exactly, with the same
aliasing among the restored variables, no more, no less; invariant 9: a fast path falls back
to the exact one whenever it cannot be sure.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from IPython.core.error import UsageError

import nbversion
from conftest import query
from oracle.values import assert_exact


def snapshot_ids(repo: Path) -> list[str]:
    if not (repo / ".nbversion" / "catalog.db").exists():
        return []
    return [row[0] for row in query(repo, "SELECT id FROM snapshots ORDER BY id")]


def variables(repo: Path, snapshot_id: str) -> dict[str, str]:
    """Variable name -> codec, of one snapshot."""
    return dict(query(repo, "SELECT name, codec FROM artifacts WHERE snapshot_id = ? AND source = 'variable'", snapshot_id))


def skipped(repo: Path, snapshot_id: str) -> dict[str, str]:
    return dict(query(repo, "SELECT name, reason FROM skipped WHERE snapshot_id = ?", snapshot_id))


def usage_error(shell, line: str) -> str:
    """Run the magic *line* (no cell history), expect exactly IPython's one-line UsageError."""
    magic, _, rest = line.lstrip("%").partition(" ")
    with pytest.raises(UsageError) as info:
        shell.run_line_magic(magic, rest)
    assert type(info.value) is UsageError
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# -- 1. restore keeps no alias made after the snapshot ----------------------------------------


def test_restore_does_not_keep_aliases_made_after_the_snapshot(shell, repo: Path) -> None:
    shell.run_cell("data = [1, 2, 3]\na = [5, 6]")
    shell.run_cell('%snapshot "before the aliases"')
    shell.run_cell("train = data\nb = a[:]")
    shell.run_cell("%restore HEAD")
    ns = shell.user_ns
    assert ns["train"] is not ns["data"]
    shell.run_cell("train.append(4)")
    assert ns["data"] == [1, 2, 3]


def test_restore_does_not_keep_array_aliases_and_views_made_after_the_snapshot(shell, repo: Path) -> None:
    shell.run_cell("import numpy as np\ndata = np.arange(3)\na = np.arange(5.0)")
    shell.run_cell('%snapshot "before the aliases"')
    shell.run_cell("train = data\nb = a[:]")
    shell.run_cell("%restore HEAD")
    ns = shell.user_ns
    assert ns["train"] is not ns["data"] and not np.shares_memory(ns["a"], ns["b"])
    shell.run_cell("train[0] = 99\nb[0] = 77.0")
    assert ns["data"].tolist() == [0, 1, 2] and ns["a"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


# -- 2. another namespace's snapshot is not the kernel's parent --------------------------------


def test_snapshot_of_another_namespace_does_not_become_the_kernels_parent(shell, repo: Path) -> None:
    shell.run_cell("lr = 0.1")
    shell.run_cell('%snapshot "the kernel"')
    kernel = snapshot_ids(repo)[-1]
    shell.run_cell("%nbversion auto on")
    shell.run_cell("import nbversion\nnbversion.snapshot('another namespace', namespace={'lr': 5});")
    ((other,),) = query(repo, "SELECT id FROM snapshots WHERE message = 'another namespace'")
    shell.run_cell("epochs = 3")  # an auto snapshot
    assert nbversion.load("HEAD", "lr") == 0.1
    parents = [row[0] for row in query(repo, "SELECT parent FROM snapshots WHERE id > ? ORDER BY id", kernel)]
    assert other not in parents
    shell.run_cell("%restore HEAD")
    assert shell.user_ns["lr"] == 0.1


# -- 3. auto mode sees changes through decorated functions and property setters ----------------


def test_auto_mode_sees_a_change_through_a_functools_wraps_decorated_function(shell, repo: Path) -> None:
    shell.run_cell(
        "import functools\n"
        "history = [0.5]\n"
        "def logged(fn):\n"
        "    @functools.wraps(fn)\n"
        "    def wrapper(*args, **kwargs):\n"
        "        return fn(*args, **kwargs)\n"
        "    return wrapper\n"
        "@logged\n"
        "def record(x):\n"
        "    history.append(x)\n"
    )
    shell.run_cell("%nbversion auto on")
    shell.run_cell("warm_up = 1")  # an auto snapshot: the next one builds on it
    shell.run_cell("record(0.9)")
    assert nbversion.load("HEAD", "history") == [0.5, 0.9]


def test_auto_mode_sees_a_change_through_an_lru_cached_function(shell, repo: Path) -> None:
    shell.run_cell(
        "import functools\n"
        "seen = []\n"
        "@functools.lru_cache(maxsize=None)\n"
        "def feature(k):\n"
        "    seen.append(k)\n"
        "    return k * 2\n"
    )
    shell.run_cell("%nbversion auto on")
    shell.run_cell("warm_up = 1")  # an auto snapshot: the next one builds on it
    shell.run_cell("feature(3)")
    assert nbversion.load("HEAD", "seen") == [3]


def test_auto_mode_sees_a_change_through_a_property_setter(shell, repo: Path) -> None:
    shell.run_cell(
        "config = {'lr': 0.1}\n"
        "class Trainer:\n"
        "    def describe(self):\n"
        "        return 'trainer'\n"
        "    @property\n"
        "    def lr(self):\n"
        "        return self._lr\n"
        "    @lr.setter\n"
        "    def lr(self, value):\n"
        "        self._lr = value\n"
        "        config['lr'] = value\n"
        "trainer = Trainer()\n"
    )
    shell.run_cell("%nbversion auto on")
    shell.run_cell("warm_up = 1")  # an auto snapshot: the next one builds on it
    shell.run_cell("trainer.lr = 0.01")
    assert nbversion.load("HEAD", "config") == {"lr": 0.01}


def test_auto_on_takes_no_snapshot(shell, repo: Path) -> None:
    shell.run_cell("x = 1")
    shell.run_cell("%nbversion auto on")
    assert snapshot_ids(repo) == []
    shell.run_cell("%nbversion auto off")
    shell.run_cell('%snapshot "manual"')
    shell.run_cell("y = 2")
    before = snapshot_ids(repo)
    shell.run_cell("%nbversion auto on")
    assert snapshot_ids(repo) == before


def test_auto_on_again_takes_no_snapshot(shell, repo: Path) -> None:
    shell.run_cell("x = 1")
    shell.run_cell("%nbversion auto on")
    shell.run_cell("%nbversion auto on")  # already on: a no-op, like `%nbversion auto`
    assert snapshot_ids(repo) == []


def test_first_auto_snapshot_sees_changes_made_while_auto_mode_was_off(shell, repo: Path) -> None:
    shell.run_cell("a = []\nb = []")
    shell.run_cell("%nbversion auto on")
    shell.run_cell("%nbversion auto off")
    shell.run_cell("a.append(0)")  # not seen: auto mode is off
    shell.run_cell("%nbversion auto on")
    shell.run_cell("c = 1")  # the first auto snapshot since: it must look at a again
    assert nbversion.load("HEAD", "a") == [0]


def test_auto_snapshot_after_a_restore_holds_every_restored_variable(shell, repo: Path) -> None:
    shell.run_cell("%nbversion auto on")
    shell.run_cell("x = [1]\ny = [2]")
    shell.run_cell("del x")
    shell.run_cell("%restore HEAD~1")
    assert shell.user_ns["x"] == [1]
    assert nbversion.load("HEAD", "x") == [1]


def test_auto_snapshot_keeps_two_names_for_one_object_as_one(shell, repo: Path) -> None:
    shell.run_cell("%nbversion auto on")
    shell.run_cell("a = [1, 2]\nb = a")
    shell.run_cell('%snapshot "only b" --vars b')  # the auto snapshot after it keeps b's record
    shell.run_cell("%restore HEAD")
    assert shell.user_ns["a"] is shell.user_ns["b"]


# -- 4. --exact keeps what --exclude left out ------------------------------------------------


def test_exact_keeps_variables_left_out_with_exclude(shell, repo: Path) -> None:
    shell.run_cell("weights = [0.1, 0.2]\nscratch = list(range(5))")
    shell.run_cell('%snapshot "without scratch" --exclude scratch')
    scratch = shell.user_ns["scratch"]
    shell.run_cell("later = 3")
    shell.run_cell("%restore HEAD --exact")
    assert shell.user_ns["scratch"] is scratch
    assert "later" not in shell.user_ns
    assert shell.user_ns["weights"] == [0.1, 0.2]


# -- 5. a sub-object shared between two variables stays shared -------------------------------


def test_sub_object_shared_between_two_variables_is_restored_shared(shell, repo: Path) -> None:
    shell.run_cell("import numpy as np\na = np.arange(4.0)\nholder = {'arr': a}")
    shell.run_cell('%snapshot "shared"')
    shell.run_cell("del a, holder")
    shell.run_cell("%restore HEAD")
    ns = shell.user_ns
    assert ns["holder"]["arr"] is ns["a"]
    shell.run_cell("a[0] = 9.0")
    assert ns["holder"]["arr"][0] == 9.0


def test_one_list_in_two_places_of_a_value_stays_one_object(shell, repo: Path) -> None:
    shell.run_cell("row = [1, 2]\ngrid = [row, row]")
    shell.run_cell('%snapshot "grid"')
    shell.run_cell("del row, grid")
    shell.run_cell("%restore HEAD")
    ns = shell.user_ns
    assert ns["grid"][0] is ns["grid"][1] is ns["row"]


def test_views_come_back_as_views(shell, repo: Path) -> None:
    shell.run_cell("import numpy as np\na = np.arange(6.0).reshape(2, 3)\nv = a[:, 1:]\nt = a.T")
    shell.run_cell('%snapshot "views"')
    shell.run_cell("del a, v, t")
    shell.run_cell("%restore HEAD")
    ns = shell.user_ns
    assert np.shares_memory(ns["a"], ns["v"]) and np.shares_memory(ns["a"], ns["t"])
    shell.run_cell("a[0, 1] = 100.0")
    assert ns["v"][0, 0] == 100.0 and ns["t"][1, 0] == 100.0


def test_views_of_a_matrix_come_back_as_views(shell, repo: Path) -> None:
    shell.run_cell("import numpy as np\na = np.asmatrix(np.arange(8).reshape(2, 4))\nv = a[..., 1:3]")
    shell.run_cell('%snapshot "a view"')
    shell.run_cell("del a, v")
    shell.run_cell("%restore HEAD")
    a, v = shell.user_ns["a"], shell.user_ns["v"]
    assert type(a) is type(v) is np.matrix and np.shares_memory(a, v)
    a[0, 1] = 100
    assert v[0, 0] == 100


@pytest.mark.parametrize(
    "make",
    ["np.ma.MaskedArray([1.0, 2.0, 3.0, 4.0], mask=[0, 1, 0, 0])", "np.array([1, 'x', None, 2.5], dtype=object)"],
    ids=["masked", "object"],
)
def test_views_of_masked_and_object_arrays_come_back_as_the_documented_copies(shell, repo: Path, make: str) -> None:
    # docs/support.md lists this approximation: same values, no shared memory.
    shell.run_cell(f"import numpy as np\na = {make}\nv = a[..., 1:3]")
    before = {"a": shell.user_ns["a"].copy(), "v": shell.user_ns["v"].copy()}
    shell.run_cell('%snapshot "a view"')
    shell.run_cell("del a, v")
    shell.run_cell("%restore HEAD")
    for name, value in before.items():
        assert_exact(value, shell.user_ns[name], name)


def test_masked_array_inside_a_container_keeps_its_hard_mask(shell, repo: Path) -> None:
    shell.run_cell("import numpy as np\nruns = {'scores': np.ma.MaskedArray([1.0, 2.0], mask=[0, 1], hard_mask=True)}")
    shell.run_cell('%snapshot "hard mask"')
    assert nbversion.load("HEAD", "runs")["scores"].hardmask
    shell.run_cell("del runs")
    shell.run_cell("%restore HEAD")
    assert shell.user_ns["runs"]["scores"].hardmask


def test_variable_holding_a_pickled_variable_loads_on_its_own(shell, repo: Path) -> None:
    shell.run_cell("import numpy as np\nm = np.asmatrix([[1, 2]])\nbox = {'m': m, 'n': 1}")
    shell.run_cell('%snapshot "a matrix held by a dict"')
    loaded = nbversion.load("HEAD", "box")
    assert type(loaded["m"]) is np.matrix and loaded["m"].tolist() == [[1, 2]]
    shell.run_cell("del box")
    shell.run_cell("%restore HEAD --vars box")
    assert shell.user_ns["box"]["m"].tolist() == [[1, 2]]


# -- 6. a restored, unchanged model is not stored again ---------------------------------------


def test_restored_unchanged_model_is_not_stored_again(shell, repo: Path) -> None:
    shell.run_cell(
        "import numpy as np\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import StandardScaler\n"
        "X = np.array([[0.0, 1.0], [1.0, 0.5], [2.0, 3.0], [3.0, 2.5], [4.0, 0.0], [5.0, 1.5]])\n"
        "y = np.array([0, 0, 1, 1, 0, 1])\n"
        "model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5)).fit(X, y)\n"
    )
    shell.run_cell('%snapshot "fitted"')
    shell.run_cell("%restore HEAD")
    shell.run_cell('%snapshot "unchanged"')
    second = snapshot_ids(repo)[-1]
    rows = nbversion.query(
        "SELECT coalesce(sum(o.size), 0) FROM artifacts a JOIN objects o ON o.id = a.object_id "
        "AND o.first_snapshot_id = a.snapshot_id WHERE a.snapshot_id = :id AND a.name = 'model'",
        {"id": second},
    ).rows
    assert rows == [(0,)]


# -- 7. huge ints and hostile refs ------------------------------------------------------------


@pytest.fixture
def python_int_limit() -> Iterator[None]:
    """Python's default limit on int digits; IPython lifts it, scripts and kernels may not."""
    saved = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(4300)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(saved)


def test_snapshot_keeps_a_huge_int(shell, repo: Path, python_int_limit: None) -> None:
    shell.run_cell("big = 10**5000\nsmall = 1")
    shell.run_cell('%snapshot "big"')
    assert "big" in variables(repo, snapshot_ids(repo)[-1])
    shell.run_cell("del big")
    shell.run_cell("%restore HEAD")
    assert shell.user_ns["big"] == 10**5000


def test_huge_head_offset_is_a_one_line_usage_error(shell, repo: Path, python_int_limit: None) -> None:
    shell.run_cell("x = 1")
    shell.run_cell('%snapshot "one"')
    usage_error(shell, "%restore HEAD~" + "9" * 5000)
    assert shell.user_ns["x"] == 1


def test_lone_surrogate_in_a_ref_or_a_message_is_a_one_line_usage_error(shell, repo: Path) -> None:
    shell.run_cell("x = 1")
    shell.run_cell('%snapshot "one"')
    usage_error(shell, "%restore t\ud800")
    usage_error(shell, '%snapshot "step \udc80"')
    assert len(snapshot_ids(repo)) == 1


def test_a_cell_with_a_lone_surrogate_does_not_break_later_snapshots(shell, repo: Path) -> None:
    shell.run_cell("x = 1")
    with pytest.raises(UsageError):
        shell.run_cell("%restore t\udfff")  # typed in a cell: it stays in the kernel's history
    try:
        shell.run_cell('%snapshot "after"')
        assert len(snapshot_ids(repo)) == 1
    finally:
        # IPython's own sqlite history cannot store that cell either (not nbversion's to test).
        shell.history_manager.db_input_cache[:] = []


# -- 8. names that only look like credentials --------------------------------------------------


def test_names_that_only_look_like_credentials_are_stored(shell, repo: Path) -> None:
    shell.run_cell(
        "import numpy as np\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "X = np.array([[0.0], [1.0], [2.0], [3.0]])\n"
        "password_strength_model = LogisticRegression().fit(X, np.array([0, 0, 1, 1]))\n"
        "passwords_train = np.arange(6.0).reshape(3, 2)\n"
        "bpe_token = [1, 2]\n"
        "secret_santa_pairs = [('a', 'b')]\n"
    )
    shell.user_ns["api_key"] = "sk-live-" + "4f9Qx7Lm2Rt8Vb3Nc6Zp1Ks5"
    shell.run_cell('%snapshot "features"')
    snapshot_id = snapshot_ids(repo)[-1]
    stored = variables(repo, snapshot_id)
    for name in ["password_strength_model", "passwords_train", "bpe_token", "secret_santa_pairs"]:
        assert name in stored, f"{name} was dropped: {skipped(repo, snapshot_id).get(name)}"
    assert "api_key" not in stored and "api_key" in skipped(repo, snapshot_id)
    shell.run_cell("del bpe_token, secret_santa_pairs")
    shell.run_cell("%restore HEAD")
    assert shell.user_ns["bpe_token"] == [1, 2] and shell.user_ns["secret_santa_pairs"] == [("a", "b")]


# -- notebook code is code, whatever decorates it ---------------------------------------------


def test_lru_cached_notebook_function_is_kept_as_code(shell, repo: Path) -> None:
    shell.run_cell("x = 1")
    shell.run_cell('%snapshot "before the function"')
    shell.run_cell("import functools\n@functools.lru_cache(maxsize=None)\ndef feature(k):\n    return k * 2\n")
    shell.run_cell('%snapshot "with the function"')
    assert variables(repo, snapshot_ids(repo)[-1]).get("feature") == "source"
    shell.run_cell("%restore HEAD~1 --exact")  # removes variables, never the notebook's code
    assert shell.user_ns["feature"](2) == 4


def test_class_whose_methods_are_all_properties_is_kept_as_code(shell, repo: Path) -> None:
    shell.run_cell(
        "class Settings:\n"
        "    @property\n"
        "    def lr(self):\n"
        "        return 0.1\n"
        "    @lr.setter\n"
        "    def lr(self, value):\n"
        "        pass\n"
    )
    shell.run_cell('%snapshot "a class"')
    snapshot_id = snapshot_ids(repo)[-1]
    assert variables(repo, snapshot_id).get("Settings") == "source", skipped(repo, snapshot_id)


def test_another_name_for_an_array_that_others_view_stays_that_array(shell, repo: Path) -> None:
    # Found by the oracle: b = a with c = a.T made b a second view instead of a itself.
    shell.run_cell("import numpy as np\na = np.array(False)\nb = a\nc = a.T\nd = np.arange(4.0)\ne = d[1:]\nf = e")
    shell.run_cell('%snapshot "aliases of views"')
    shell.run_cell("%restore HEAD")
    ns = shell.user_ns
    assert ns["a"] is ns["b"] and np.shares_memory(ns["a"], ns["c"])
    assert ns["e"] is ns["f"] and np.shares_memory(ns["d"], ns["e"])


def test_array_held_by_another_variable_and_viewed_stays_one_object(shell, repo: Path) -> None:
    # Found by the oracle: the holder's reference was resolved before the views were rebuilt.
    shell.run_cell("import numpy as np\na = np.arange(6).reshape(3, 2)\nholder = {'m': a}\ne = a.T")
    shell.run_cell('%snapshot "held and viewed"')
    shell.run_cell("del a, holder, e")
    shell.run_cell("%restore HEAD")
    ns = shell.user_ns
    assert ns["holder"]["m"] is ns["a"] and np.shares_memory(ns["a"], ns["e"])
