"""Recognize credentials, so a snapshot does not keep them.

A variable is left out when its value has the shape of a credential (an ``sk-...`` API key,
an AWS access key, a GitHub or Slack token, a PEM private key), also inside a small dict,
list or tuple, or when it is a string whose name says it holds one (``api_key``,
``password``, ``hf_token``, ...). A name alone never drops a model, an array, a frame or a
container: it is only a hint for strings.
Executed cells keep their text with secret-shaped literals replaced, and untracked files
that are credential stores (``.env``, ``id_rsa``, ...) are not kept. Example::

    >>> why_secret("openai_api_key", "...")
    'name'
    >>> why_secret("key", "AKIAIOSFODNN7EXAMPLE")
    'value shaped like an AWS access key'
    >>> redact('client = OpenAI(api_key="sk-proj-abcdefghijklmnopqrstuvwx")')
    'client = OpenAI(api_key="[redacted by nbversion]")'
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from typing import Any

#: The start of the ``skipped`` reason of a variable left out as a credential.
REASON = "looks like a credential"

#: What replaces a secret-shaped literal in the stored cells.
REDACTED = "[redacted by nbversion]"

#: A top-level string is scanned up to this many characters (a 1 GB string costs no more).
SCAN_MAX_CHARS = 1_000_000
#: Inside a container, each string is scanned up to this many characters.
SCAN_MAX_CHARS_INSIDE = 4096
#: A dict, list or tuple is looked into only up to this many elements, this many levels deep,
#: and at most this many values in all.
CONTAINER_MAX_ELEMENTS = 256
CONTAINER_MAX_DEPTH = 2
CONTAINER_MAX_VALUES = 1000

# Squashed (lower case, no separators) substrings that make a name a credential's.
_NAME_WORDS = ("secret", "password", "passwd", "apikey", "privatekey", "accesskey", "credential")
# Words that contain one of those and are not about credentials.
_NAME_INNOCENT = ("secretar",)  # secretary, secretariat
# A name ending in "token" is a credential's (access_token, hf_token, GITHUB_TOKEN), unless
# the word before makes it a tokenizer's (pad_token, eos_token, max_token, ...).
_NOT_AUTH_TOKENS = frozenset({
    "bos", "eos", "pad", "unk", "sep", "cls", "mask", "special", "start", "end", "stop",
    "next", "prev", "first", "last", "new", "input", "output", "max", "min", "num", "n",
    "current", "cur", "each", "one", "word", "sub", "subword", "sentence", "char",
})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

# (what it is, literal text every match contains, the pattern). The literals make a text
# with none of them cost a few substring searches, and each pattern starts with its literal
# (the word boundary checked behind it) so re skips ahead fast. The whole match is redacted.
_SHAPES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("a private key", ("PRIVATE KEY-----",),
     r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*\Z)"),
    ("an OpenAI/Anthropic-style API key", ("sk-",), r"sk-(?<![A-Za-z0-9_-]sk-)[A-Za-z0-9_-]{20,}"),
    ("an AWS access key", ("AKIA", "ASIA"), r"(?:AKIA|ASIA)(?<![A-Z0-9]AKIA)(?<![A-Z0-9]ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
    ("a GitHub token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
     r"(?:gh[pousr]_(?<![A-Za-z0-9_]gh._)[A-Za-z0-9]{20,}|github_pat_(?<![A-Za-z0-9_]github_pat_)[A-Za-z0-9_]{20,})"),
    ("a Slack token", ("xox",), r"xox[abprs]-(?<![A-Za-z0-9_-]xox.-)[A-Za-z0-9-]{10,}"),
    ("a Hugging Face token", ("hf_",), r"hf_(?<![A-Za-z0-9_]hf_)[A-Za-z0-9]{30,}"),
)
_TEXT_SHAPES = [(what, markers, re.compile(pattern, re.DOTALL)) for what, markers, pattern in _SHAPES]
_BYTES_SHAPES = [
    (what, tuple(m.encode() for m in markers), re.compile(pattern.encode(), re.DOTALL))
    for what, markers, pattern in _SHAPES
]

# Base names (lower case) of files that store credentials.
_SECRET_FILES = (
    ".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
    ".netrc", "_netrc", "credentials", "credentials.json", ".git-credentials", ".pypirc",
)


def name_is_secret(name: str) -> bool:
    """Whether a variable or key *name* says it holds a credential.

    ``api_key``, ``aws_secret_access_key``, ``dbPassword``, ``hf_token``, ``GITHUB_TOKEN``
    are; ``tokenizer``, ``tokens``, ``n_tokens``, ``max_tokens``, ``token_ids`` and
    ``pad_token`` are not.
    """
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    for innocent in _NAME_INNOCENT:
        squashed = squashed.replace(innocent, "")
    if any(word in squashed for word in _NAME_WORDS):
        return True
    words = [w.lower() for w in _WORD.findall(name)]
    while words and words[-1].isdigit():  # GITHUB_TOKEN_2
        words.pop()
    return bool(words) and words[-1] == "token" and (len(words) == 1 or words[-2] not in _NOT_AUTH_TOKENS)


def shape_of(value: Any, limit: int = SCAN_MAX_CHARS) -> str | None:
    """Say what credential a ``str`` or ``bytes`` *value* has the shape of (``"an AWS access
    key"``), or ``None``. Only its first *limit* characters are looked at."""
    if isinstance(value, str):
        shapes, text = _TEXT_SHAPES, value[:limit]
    elif isinstance(value, (bytes, bytearray)):
        shapes, text = _BYTES_SHAPES, bytes(value[:limit])
    else:
        return None
    for what, markers, pattern in shapes:
        if any(m in text for m in markers) and pattern.search(text):
            return what
    return None


def why_secret(name: str, value: Any) -> str | None:
    """Say why variable *name* holding *value* looks like a credential, or ``None``.

    The answer completes "looks like a credential (...)": ``name``, ``value shaped like an
    AWS access key``, ``key 'password' inside``, ``value inside shaped like a GitHub token``.
    Large values (arrays, DataFrames, big containers) are not looked into.
    """
    if name_is_secret(name) and _holds_something(value):
        return "name"
    what = shape_of(value)
    if what is not None:
        return f"value shaped like {what}"
    if isinstance(value, (dict, list, tuple)):
        try:
            return _why_inside(value, CONTAINER_MAX_DEPTH, [CONTAINER_MAX_VALUES])
        except Exception:  # noqa: BLE001 - a subclass whose items() fails must not fail a snapshot
            return None
    return None


def _why_inside(container: dict[Any, Any] | list[Any] | tuple[Any, ...], depth: int, budget: list[int]) -> str | None:
    """Look into a small container, *depth* levels down, visiting at most ``budget[0]`` values."""
    if depth <= 0 or len(container) > CONTAINER_MAX_ELEMENTS:
        return None
    items = container.items() if isinstance(container, dict) else ((None, v) for v in container)
    for key, value in items:
        budget[0] -= 1
        if budget[0] < 0:
            return None
        if isinstance(key, str) and _holds_something(value) and name_is_secret(key):
            return f"key {key!r} inside"
        what = shape_of(value, SCAN_MAX_CHARS_INSIDE)
        if what is not None:
            return f"value inside shaped like {what}"
        if isinstance(value, (dict, list, tuple)):
            found = _why_inside(value, depth - 1, budget)
            if found is not None:
                return found
    return None


#: A text this long under a secret-sounding name is a document, not a credential.
NAME_HINT_MAX_CHARS = 10_000


def _holds_something(value: Any) -> bool:
    """Whether a value under a secret-sounding name or key could be a credential: only a
    non-empty string or bytes could. The name is a hint, never the verdict: a fitted model
    called ``password_strength_model``, an array ``passwords_train``, ``bpe_token = [1, 2]``
    or ``secret_santa_pairs`` are real work, and ``{"token": None}`` holds nothing."""
    return isinstance(value, (str, bytes, bytearray)) and 0 < len(value) <= NAME_HINT_MAX_CHARS


def redact(text: str) -> str:
    """Return *text* with every secret-shaped literal replaced by :data:`REDACTED`."""
    for _, markers, pattern in _TEXT_SHAPES:
        if any(m in text for m in markers):
            text = pattern.sub(REDACTED, text)
    return text


def is_secret_file(path: str) -> bool:
    """Whether the file at repository-relative *path* is, by its name, a credential store
    (``.env``, ``.env.local``, ``*.pem``, ``*.key``, ``id_rsa``, ``.netrc``, ``credentials``,
    ``.pypirc``, ...)."""
    base = posixpath.basename(path).lower()
    return any(fnmatch.fnmatchcase(base, pattern) for pattern in _SECRET_FILES)
