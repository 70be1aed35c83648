"""Credentials never reach the catalog or the object store: variables that look like them are
left out and named, secret-shaped literals in the stored cells are redacted, and untracked
credential files are not kept. Checked on the raw bytes of everything nbversion wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import query

import nbversion
from nbversion import credentials
from nbversion.errors import UsageProblem
from nbversion.project import Project

# Values that would be a leak if any byte of them were stored. The name-only ones come
# through the environment, as real ones do (os.environ, getpass): cells are redacted by the
# shape of a value, so a literal "hunter2" typed in a cell would be kept, and that is not
# what these tests are about.
DB_PASSWORD = "hunter2-correct-horse-battery"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
OPENAI_KEY = "sk-proj-Zq8v3Xk2LmN9pR4tW7yB1cD5fG6hJ0aS"
HF_TOKEN = "hf_QwErTyUiOpAsDfGhJkLzXcVbNm"
WARNING = "warning: not kept, looks like a credential: {} (allow with [tool.nbversion] allow_secrets)"


def stored_bytes(repo: Path) -> bytes:
    """Every byte nbversion wrote: the catalog (and its WAL, if any) and every object."""
    root = repo / ".nbversion"
    objects = [f for f in sorted((root / "objects").rglob("*")) if f.is_file()]
    assert (root / "catalog.db").is_file() and objects  # something to look in
    files = [root / "catalog.db", root / "catalog.db-wal", *objects]
    return b"".join(f.read_bytes() for f in files if f.is_file())


def assert_stored_nowhere(repo: Path, *values: str) -> None:
    everything = stored_bytes(repo)
    for value in values:
        assert value.encode() not in everything, f"{value!r} was stored"


def variables(repo: Path) -> set[str]:
    return {name for (name,) in query(repo, "SELECT name FROM artifacts WHERE source = 'variable'")}


def skipped(repo: Path) -> dict[str, str]:
    return dict(query(repo, "SELECT name, reason FROM skipped"))


def test_credentials_by_name_and_by_value_are_left_out_and_named(
    shell, repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBV_DB_PASSWORD", DB_PASSWORD)
    monkeypatch.setenv("NBV_AWS_SECRET", AWS_SECRET)
    monkeypatch.setenv("NBV_AWS_KEY_ID", AWS_KEY_ID)
    monkeypatch.setenv("NBV_OPENAI", OPENAI_KEY)
    shell.run_cell(
        "import os\n"
        "password = os.environ['NBV_DB_PASSWORD']\n"
        "aws_secret_access_key = os.environ['NBV_AWS_SECRET']\n"
        "key_id = os.environ['NBV_AWS_KEY_ID']\n"
        "conn = {'host': 'db.internal', 'password': os.environ['NBV_DB_PASSWORD']}\n"
        "headers = {'Authorization': 'Bearer ' + os.environ['NBV_OPENAI']}\n"
        "accuracy = 0.9\n"
        "label = 'baseline'\n"
    )
    capsys.readouterr()
    shell.run_cell('%snapshot "with credentials around"')
    out = capsys.readouterr().out.splitlines()

    assert variables(repo) == {"accuracy", "label"}
    assert skipped(repo) == {
        "password": "looks like a credential (name)",
        "aws_secret_access_key": "looks like a credential (name)",
        "key_id": "looks like a credential (value shaped like an AWS access key)",
        "conn": "looks like a credential (key 'password' inside)",
        "headers": "looks like a credential (value inside shaped like an OpenAI/Anthropic-style API key)",
    }
    assert out[1] == WARNING.format("password, aws_secret_access_key, key_id, conn, headers")
    assert "skipped" not in out[0]  # named once, in the warning
    assert_stored_nowhere(repo, DB_PASSWORD, AWS_SECRET, AWS_KEY_ID, OPENAI_KEY)

    shown = str(nbversion.show("HEAD"))
    listed = shown.split("\nskipped:\n", 1)[1]
    for name in ("password", "aws_secret_access_key", "key_id", "conn", "headers"):
        assert f"  {name} (" in listed

    # A snapshot that did not keep them is not a snapshot without them: --exact keeps them.
    shell.run_cell("%restore HEAD --exact")
    assert shell.user_ns["password"] == DB_PASSWORD and shell.user_ns["key_id"] == AWS_KEY_ID


def test_allow_secrets_keeps_a_variable_and_naming_one_in_vars_does_not(
    shell, repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo / "pyproject.toml").write_text('[tool.nbversion]\nallow_secrets = ["hf_token"]\n')
    monkeypatch.setenv("NBV_HF", HF_TOKEN)
    monkeypatch.setenv("NBV_DB_PASSWORD", DB_PASSWORD)
    shell.run_cell("import os\nhf_token = os.environ['NBV_HF']\ndb_password = os.environ['NBV_DB_PASSWORD']")
    capsys.readouterr()
    shell.run_cell('%snapshot "allowed"')
    assert capsys.readouterr().out.splitlines()[1] == WARNING.format("db_password")
    assert variables(repo) == {"hf_token"}
    assert nbversion.load("HEAD", "hf_token") == HF_TOKEN

    # Naming it explicitly is not allowing it: it is still left out, and the warning says how.
    shell.run_cell('%snapshot "explicit" --vars db_password hf_token')
    assert capsys.readouterr().out.splitlines()[1] == WARNING.format("db_password")
    assert_stored_nowhere(repo, DB_PASSWORD)


def test_names_and_values_that_only_resemble_credentials_are_kept(
    shell, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.run_cell(
        "tokenizer = {'vocab_size': 32000, 'pad_token': '<pad>'}\n"
        "tokens = ['the', 'cat']\n"
        "n_tokens = 2\n"
        "max_tokens = 256\n"
        "token_ids = [101, 102]\n"
        "pad_token = '<pad>'\n"
        "secretary = 'Ada'\n"
        "settings = {'max_tokens': 256, 'token': None, 'model': 'gpt'}\n"
        "task = 'task-' + 'x' * 30\n"
        "label = 'a normal string, with skills-and-dashes in it'\n"
        "def get_token():\n    return 'computed elsewhere'\n"
    )
    capsys.readouterr()
    shell.run_cell('%snapshot "look-alikes"')
    out = capsys.readouterr().out
    assert "warning" not in out
    assert skipped(repo) == {}
    assert variables(repo) == {
        "tokenizer", "tokens", "n_tokens", "max_tokens", "token_ids", "pad_token", "secretary",
        "settings", "task", "label", "get_token",
    }


def test_secret_shaped_literals_in_cells_are_redacted(shell, repo: Path) -> None:
    private_key_body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    shell.run_cell(f'client_config = dict(api_base="https://api.example.com", key="{OPENAI_KEY}")')
    shell.run_cell(
        f'pem = """-----BEGIN RSA PRIVATE KEY-----\n{private_key_body}\n-----END RSA PRIVATE KEY-----"""\n'
        f"key_id = {AWS_KEY_ID!r}\n"
        "epochs = 12\n"
    )
    shell.run_cell('%snapshot "keys typed into cells"')

    assert_stored_nowhere(repo, OPENAI_KEY, private_key_body, AWS_KEY_ID)
    (object_id,) = query(repo, "SELECT object_id FROM artifacts WHERE source = 'notebook' AND name = 'cells'")[0]
    cells = json.loads(Project.find(repo).store.read_bytes(object_id))
    sources = [cell["source"] for cell in cells]
    assert 'client_config = dict(api_base="https://api.example.com", key="[redacted by nbversion]")' in sources
    assert 'pem = """[redacted by nbversion]"""\nkey_id = \'[redacted by nbversion]\'\nepochs = 12' in sources
    assert variables(repo) == {"epochs"}


def test_untracked_credential_files_are_not_kept(shell, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / ".env").write_text(f"DB_PASSWORD={DB_PASSWORD}\n")
    (repo / "config").mkdir()
    (repo / "config" / ".env.local").write_text(f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}\n")
    (repo / "id_rsa").write_text("not really a key, still not kept\n")
    (repo / "deploy.pem").write_text("also not kept\n")
    (repo / "prepare.py").write_text("print('kept')\n")
    capsys.readouterr()
    shell.run_cell('%snapshot "with a .env around"')
    out = capsys.readouterr().out
    kept = {name for (name,) in query(repo, "SELECT name FROM artifacts WHERE source = 'git'")}
    assert kept == {"untracked/prepare.py"}
    assert (
        "note: untracked files that look like credential stores, not kept: "
        ".env, config/.env.local, deploy.pem, id_rsa"
    ) in out
    assert_stored_nowhere(repo, DB_PASSWORD, AWS_SECRET, "not really a key", "also not kept")


@pytest.mark.parametrize(
    "name",
    ["api_key", "apiKey", "OPENAI_API_KEY", "password", "dbPassword", "passwd", "client_secret",
     "token", "hf_token", "GITHUB_TOKEN", "GITHUB_TOKEN_2", "githubToken", "auth_token",
     "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "private_key", "gcp_credentials"],
)
def test_credential_names(name: str) -> None:
    assert credentials.name_is_secret(name)


@pytest.mark.parametrize(
    "name",
    ["tokenizer", "tokens", "n_tokens", "max_tokens", "num_tokens", "token_ids", "token_pattern",
     "pad_token", "eos_token", "secretary", "pwd", "keyword", "monkey", "accuracy", "key", "passes"],
)
def test_names_that_are_not_credentials(name: str) -> None:
    assert not credentials.name_is_secret(name)


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz", "an OpenAI/Anthropic-style API key"),
        ("Bearer sk-abcdefghijklmnopqrstuvwxyz", "an OpenAI/Anthropic-style API key"),
        ("AKIAIOSFODNN7EXAMPLE", "an AWS access key"),
        (b"ASIAIOSFODNN7EXAMPLE", "an AWS access key"),
        ("ghp_" + "a1" * 18, "a GitHub token"),
        ("github_pat_" + "B2_" * 10, "a GitHub token"),
        ("xoxb-123456789012-abcdef", "a Slack token"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn", "a private key"),
        ("task-abcdefghijklmnopqrstuvwxyz", None),
        ("sk-short", None),
        ("XAKIAIOSFODNN7EXAMPLE", None),
        ("-----BEGIN PUBLIC KEY-----\nMIIB", None),
        ("a plain sentence", None),
    ],
)
def test_value_shapes(value: str | bytes, shape: str | None) -> None:
    assert credentials.shape_of(value) == shape


def test_large_values_are_looked_at_only_up_to_a_bound() -> None:
    late = "x" * credentials.SCAN_MAX_CHARS + AWS_KEY_ID
    assert credentials.why_secret("text", late) is None
    assert credentials.why_secret("text", late[-1000:]) == "value shaped like an AWS access key"
    big_list = ["x"] * credentials.CONTAINER_MAX_ELEMENTS + [AWS_KEY_ID]
    assert credentials.why_secret("rows", big_list) is None
    assert credentials.why_secret("rows", big_list[-10:]) == "value inside shaped like an AWS access key"
    too_deep = {"a": {"b": {"c": AWS_KEY_ID}}}
    assert credentials.why_secret("nested", too_deep) is None
    assert credentials.why_secret("nested", too_deep["a"]) == "value inside shaped like an AWS access key"


def test_allow_secrets_must_be_a_list_of_names(repo: Path) -> None:
    (repo / "pyproject.toml").write_text('[tool.nbversion]\nallow_secrets = "hf_token"\n')
    with pytest.raises(UsageProblem, match=r"allow_secrets in .* should be a list of strings, not 'hf_token'"):
        nbversion.snapshot("a misspelled setting", {"hf_token": HF_TOKEN})
