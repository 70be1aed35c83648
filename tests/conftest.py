"""Fixtures: real git repositories in tmp_path, and a real IPython shell with nbversion loaded."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")

ROOT = Path(__file__).resolve().parent.parent


def git(cwd: Path, *args: str) -> str:
    """Run git in *cwd* and return its output."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
        env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
             "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"},
    ).stdout


def query(repo: Path, sql: str, *params: object) -> list[tuple]:
    """Run read-only SQL on *repo*'s catalog with plain sqlite3, as any tool could."""
    conn = sqlite3.connect(repo / ".nbversion" / "catalog.db")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh git repository, made the current directory."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    monkeypatch.chdir(path)
    return path


class TestingShell(InteractiveShell):
    """A real InteractiveShell whose ``run_cell`` re-raises what the cell raised and, like a
    kernel, records each cell in the history."""

    def run_cell(self, raw_cell, store_history=True, **kwargs):  # type: ignore[no-untyped-def]
        # Like a kernel: every cell goes into the history (In), as the user ran it.
        result = super().run_cell(raw_cell, store_history=store_history, **kwargs)
        result.raise_error()
        return result


@pytest.fixture
def shell(repo: Path) -> Iterator[TestingShell]:
    """A real IPython shell, in *repo*, with ``%load_ext nbversion`` done."""
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ip = TestingShell.instance(config=config)
    ip.run_line_magic("load_ext", "nbversion")
    yield ip
    ip.history_manager.end_session()
    TestingShell.clear_instance()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3-compatible server (moto's server mode) on localhost; s3fs is pointed at it
    through fsspec's environment configuration, the way a user's would be."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("FSSPEC_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(
        FSSPEC_S3_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    import fsspec.config

    # fsspec reads FSSPEC_* variables when it is imported: tell this process too.
    fsspec.config.conf.setdefault("s3", {})["endpoint_url"] = endpoint
    try:
        yield endpoint
    finally:
        fsspec.config.conf.get("s3", {}).pop("endpoint_url", None)
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_server: str) -> str:
    """A fresh, empty bucket on the localhost S3 server; returns its s3:// URL."""
    import uuid

    import s3fs

    name = f"nbv-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server}, skip_instance_cache=True)
    fs.mkdir(name)
    return f"s3://{name}/objects"
