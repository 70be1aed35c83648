"""Untrusted pickles: a catalog and objects that came from someone else never run code silently.

The attack: whoever can write to the remote (and push to git) stores a malicious pickle under
its own, correct BLAKE3 id and points a committed catalog row at it. A teammate who pulls and
restores must get a one-line refusal, with nothing restored and no code run, unless they say
they trust it (``--trust``, or ``nbversion remote trust NAME``). Pickles this machine made,
and arrays and DataFrames (never pickled), load as before.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError

import nbversion
from conftest import git
from nbversion import codecs
from nbversion.catalog import StatCache
from nbversion.errors import DecodeError, UntrustedPickle
from nbversion.project import Project
from nbversion.remote import Remotes
from nbversion.store import ObjectStore

NBVERSION = str(Path(sys.executable).parent / "nbversion")


def cli(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NBVERSION, *args], cwd=repo, capture_output=True, text=True, check=False)


@dataclass
class Model:
    """A fitted model's stand-in: any picklable object goes through the joblib codec."""

    coef: list[float]


class Exploit:
    """What an attacker pickles: loading it runs code (here, it only writes a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).write_text('pwned')",))


@dataclass
class Setup:
    author: Path  # clone A: made the snapshot, pushed it
    marker: Path  # created if and only if the planted pickle ran
    short_id: str
    weights: np.ndarray
    frame: pd.DataFrame

    def clone(self, name: str) -> Path:
        return clone(self.author, name)


def clone(author: Path, name: str) -> Path:
    """Clone B: a teammate's ``git clone`` of clone A, beside it."""
    git(author.parent, "clone", "-q", str(author), name)
    return author.parent / name


def author_snapshot(repo: Path, url: str) -> tuple[str, np.ndarray, pd.DataFrame]:
    """Clone A snapshots a model, an array, a DataFrame and a file, pushes, and commits."""
    (repo / ".gitignore").write_text("notes.txt\n")
    (repo / "notes.txt").write_text("kept by the snapshot, not by git\n")
    weights, frame = np.arange(12.0).reshape(3, 4), pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5]})
    values = {"model": Model([0.1, 0.2]), "weights": weights, "frame": frame}
    result = nbversion.snapshot("trained", values, tag="good", files=["notes.txt"], repo=repo)
    assert {a.name: a.codec for a in result.artifacts if a.source == "variable"} == {
        "model": "joblib", "weights": "npy", "frame": "arrow",
    }
    nbversion.remote_add("team", url, repo=repo)
    nbversion.push(repo=repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "trained, with its catalog")
    return result.short_id, weights, frame


def plant(repo: Path, store: ObjectStore, data: bytes, variable: str) -> str:
    """The attacker: *data* goes into *store* under its own correct id, and the committed
    catalog's row for *variable* is pointed at it with plain SQLite (sizes kept plausible)."""
    object_id = store.put_bytes(data).object_id
    conn = sqlite3.connect(repo / ".nbversion" / "catalog.db")
    with conn:
        (snapshot_id,) = conn.execute("SELECT snapshot_id FROM artifacts WHERE name = ?", (variable,)).fetchone()
        conn.execute(
            "INSERT OR IGNORE INTO objects (id, size, created_at, first_snapshot_id) VALUES (?, ?, datetime('now'), ?)",
            (object_id, len(data), snapshot_id),
        )
        conn.execute(
            "UPDATE artifacts SET object_id = ?, size = ? WHERE name = ?", (object_id, len(data), variable)
        )
    conn.close()
    git(repo, "commit", "-qam", "an innocent-looking change")
    return object_id


def remote_store(repo: Path) -> ObjectStore:
    return Remotes.load(repo / ".nbversion").store(None, repo)


@pytest.fixture(params=["directory", "s3"])
def attacked(request, repo: Path, tmp_path: Path) -> Setup:
    """Clone A's snapshot on a remote, with its model replaced by a malicious pickle."""
    url = str(tmp_path / "shared") if request.param == "directory" else request.getfixturevalue("s3_bucket")
    short_id, weights, frame = author_snapshot(repo, url)
    marker = tmp_path / "pwned"
    plant(repo, remote_store(repo), pickle.dumps(Exploit(marker)), "model")
    return Setup(repo, marker, short_id, weights, frame)


def refusal(setup: Setup, variable: str = "model") -> str:
    return (
        f"variable {variable!r} of snapshot {setup.short_id} is a pickle from remote 'team'; loading it can run "
        "code: restore with --trust (trust=True in Python) if you trust who made it, or nbversion remote trust team"
    )


def test_planted_pickle_from_a_remote_is_refused_and_runs_only_with_trust(
    attacked: Setup, shell, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = attacked.clone("victim")
    pulled = cli(victim, "pull", "good")  # another process records where the objects came from
    assert pulled.returncode == 0 and pulled.stdout.startswith("pulled "), pulled.stderr
    monkeypatch.chdir(victim)
    shell.user_ns.update(model="mine", weights="mine too")
    with pytest.raises(UsageError) as refused:
        shell.run_cell("%restore good")
    assert str(refused.value) == refusal(attacked)
    assert not attacked.marker.exists()
    assert shell.user_ns["model"] == "mine" and shell.user_ns["weights"] == "mine too"
    assert "frame" not in shell.user_ns
    assert not (victim / "notes.txt").exists()  # restore is all or nothing: no file either

    shell.run_cell("%restore good --trust")  # the user said so: the test can tell it ran
    assert attacked.marker.read_text() == "pwned"
    assert shell.user_ns["model"] is None and (victim / "notes.txt").exists()
    attacked.marker.unlink()
    shell.run_cell("model = 'changed'")  # so the restore below has to load it again
    shell.run_cell("%restore good --vars model")  # trusted once, trusted from then on
    assert attacked.marker.exists()


def test_trusting_the_remote_loads_its_pickles_and_untrusting_stops_it(attacked: Setup) -> None:
    victim = attacked.clone("victim")
    with pytest.raises(UntrustedPickle) as refused:  # restore fetches what is missing by itself
        nbversion.load("good", "model", repo=victim)
    assert str(refused.value) == refusal(attacked)
    assert not attacked.marker.exists()
    assert "trusted" in cli(victim, "remote", "list").stdout.splitlines()[0]
    assert "yes" not in cli(victim, "remote", "list").stdout

    trusted = cli(victim, "remote", "trust", "team")
    assert trusted.returncode == 0 and "remote team" in trusted.stdout and "is trusted on this machine" in trusted.stdout
    listed = cli(victim, "remote", "list").stdout.splitlines()
    assert listed[-1].split()[0] == "team" and listed[-1].split()[-1] == "yes"
    assert nbversion.load("good", "model", repo=victim) is None
    assert attacked.marker.exists()
    attacked.marker.unlink()

    assert "no longer trusted" in cli(victim, "remote", "untrust", "team").stdout
    with pytest.raises(UntrustedPickle):
        nbversion.load("good", "model", repo=victim)
    assert not attacked.marker.exists()
    assert "was not trusted" in cli(victim, "remote", "untrust", "team").stdout
    assert "does not exist" in cli(victim, "remote", "trust", "nope").stderr


def test_arrays_frames_and_files_from_a_remote_restore_without_trust(attacked: Setup, shell, monkeypatch) -> None:
    victim = attacked.clone("victim")
    restored = cli(victim, "restore", "good")  # the shell's restore: files only, never unpickled
    assert restored.returncode == 0, restored.stderr
    assert (victim / "notes.txt").read_text() == "kept by the snapshot, not by git\n"
    monkeypatch.chdir(victim)
    shell.run_cell("%restore good --vars weights frame")
    np.testing.assert_array_equal(shell.user_ns["weights"], attacked.weights)
    pd.testing.assert_frame_equal(shell.user_ns["frame"], attacked.frame)
    assert "model" not in shell.user_ns and not attacked.marker.exists()


def test_pickles_made_on_this_machine_load_without_trust(repo: Path, tmp_path: Path, shell) -> None:
    author_snapshot(repo, str(tmp_path / "shared"))
    shell.run_cell("%restore good")
    assert shell.user_ns["model"] == Model([0.1, 0.2])
    # Made here, lost here, fetched back from the remote: still this machine's own bytes.
    shutil.rmtree(repo / ".nbversion" / "objects")
    assert nbversion.load("good", "model", repo=repo) == Model([0.1, 0.2])


def test_a_trusted_remote_name_pointed_elsewhere_is_not_trusted(repo: Path, tmp_path: Path) -> None:
    author_snapshot(repo, str(tmp_path / "shared"))
    victim = clone(repo, "victim")
    assert cli(victim, "remote", "trust", "team").returncode == 0
    # The attacker commits a remotes.json that sends "team" to a directory they control.
    evil = tmp_path / "evil"
    remotes_file = repo / ".nbversion" / "remotes.json"
    remotes_file.write_text(json.dumps({"default": "team", "remotes": {"team": str(evil)}}))
    store = ObjectStore.local(str(evil))
    nbversion.push(remote="team", repo=repo)  # the genuine objects, now in the attacker's directory
    git(repo, "commit", "-qam", "move the remote")
    plant(repo, store, pickle.dumps(Exploit(tmp_path / "pwned")), "model")
    git(victim, "pull", "-q", "--no-rebase")
    listed = cli(victim, "remote", "list").stdout
    assert "no: its URL changed since" in listed
    with pytest.raises(UntrustedPickle, match="is a pickle from remote 'team'"):
        nbversion.load("good", "model", repo=victim)
    assert not (tmp_path / "pwned").exists()


def test_a_pickle_planted_through_git_is_refused(repo: Path, tmp_path: Path) -> None:
    short_id, _, _ = author_snapshot(repo, str(tmp_path / "shared"))
    marker = tmp_path / "pwned"
    object_id = plant(repo, Project(repo).store, pickle.dumps(Exploit(marker)), "model")
    git(repo, "add", "-f", f".nbversion/objects/{object_id[:2]}/{object_id[2:]}")  # git carries the bytes
    git(repo, "commit", "-qm", "and its object")
    victim = clone(repo, "victim")
    with pytest.raises(UntrustedPickle) as refused:
        nbversion.restore("good", {}, repo=victim)
    assert str(refused.value) == (
        f"variable 'model' of snapshot {short_id} is a pickle that was neither made on this machine nor fetched "
        "from a remote; loading it can run code: restore with --trust (trust=True in Python) if you trust who made it"
    )
    assert not marker.exists()


def test_a_state_db_planted_through_git_is_not_believed(repo: Path, tmp_path: Path) -> None:
    author_snapshot(repo, str(tmp_path / "shared"))
    marker = tmp_path / "pwned"
    object_id = plant(repo, remote_store(repo), pickle.dumps(Exploit(marker)), "model")
    with StatCache(repo / ".nbversion" / "state.db") as state:  # "this machine made it", says the attacker
        state.trust_objects([object_id], "made")
        state.trust_remote("team", str(tmp_path / "shared"))
    git(repo, "add", "-f", ".nbversion/state.db")
    git(repo, "commit", "-qm", "speed up the stat cache for everyone")
    victim = clone(repo, "victim")
    with pytest.raises(UntrustedPickle, match=r"state.db, which records what this machine trusts, is tracked by git"):
        nbversion.restore("good", {}, repo=victim)
    assert not marker.exists()
    refused = cli(victim, "remote", "trust", "team")
    assert refused.returncode == 2 and "is tracked by git" in refused.stderr


def test_an_npy_object_holding_a_pickle_is_refused_even_with_trust(repo: Path, tmp_path: Path) -> None:
    author_snapshot(repo, str(tmp_path / "shared"))
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    np.save(buffer, np.array([Exploit(marker)], dtype=object), allow_pickle=True)  # a .npy of Python objects
    plant(repo, remote_store(repo), buffer.getvalue(), "weights")
    victim = clone(repo, "victim")
    for trust in (False, True):
        with pytest.raises(DecodeError, match="is an .npy file of Python objects") as refused:
            nbversion.restore("good", {}, vars=["weights"], trust=trust, repo=victim)
        assert not isinstance(refused.value, UntrustedPickle)
    assert not marker.exists()


def test_an_arrow_file_naming_a_python_extension_type_does_not_unpickle(repo: Path, tmp_path: Path) -> None:
    import pyarrow as pa

    author_snapshot(repo, str(tmp_path / "shared"))
    marker = tmp_path / "pwned"
    # What CVE-2023-47248 exploited: a field that claims to be a pickled Python extension type.
    field = pa.field("a", pa.int64(), metadata={
        b"ARROW:extension:name": b"arrow.py_extension_type",
        b"ARROW:extension:metadata": pickle.dumps(Exploit(marker)),
    })
    table = pa.table({"a": pa.array([1, 2, 3])}, schema=pa.schema([field]))
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    plant(repo, remote_store(repo), sink.getvalue(), "frame")
    victim = clone(repo, "victim")
    try:
        nbversion.restore("good", {}, vars=["frame"], repo=victim)
    except DecodeError:
        pass  # refusing is fine too; running the pickle is not
    assert not marker.exists()
    with pytest.raises(DecodeError, match="CVE-2023-47248"):
        codecs._check_safe_pyarrow("14.0.0")
    codecs._check_safe_pyarrow("14.0.1")

