"""docs/support.md is what scripts/gen_support.py writes from FAMILIES, and every row of it is
true: snapshotting the family's example uses the codec the row names, loads without trust
exactly when the row says so, and gives the example back exactly."""

from __future__ import annotations

import importlib.util
import re
import types
from pathlib import Path

import pytest
from conftest import ROOT, git
from oracle.values import FAMILIES, Family, assert_exact

import nbversion
from nbversion import codecs

DOC = ROOT / "docs" / "support.md"
STALE = "docs/support.md is stale: run `python scripts/gen_support.py` and commit the result"


def load_generator() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("gen_support", ROOT / "scripts" / "gen_support.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documented() -> dict[str, tuple[str, str]]:
    """Family name -> (codec, loads without trust) as the doc's table says, read from the file."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[1].startswith("`"):
            rows[cells[0].replace("\\|", "|")] = (cells[1].strip("`"), cells[2])
    return rows


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("support")
    git(path, "init", "-q")
    return path


def test_support_doc_is_up_to_date() -> None:
    assert DOC.read_text() == load_generator().render(), STALE


def test_every_family_has_one_row() -> None:
    assert sorted(documented()) == sorted(family.name for family in FAMILIES), STALE


@pytest.mark.parametrize("family", FAMILIES, ids=[family.name.split(" (")[0] for family in FAMILIES])
def test_each_row_is_what_a_snapshot_does(shared_repo: Path, family: Family) -> None:
    codec, trust = documented()[family.name]
    value = family.example()
    result = nbversion.snapshot(f"support: {family.name}", namespace={"x": value}, repo=shared_repo)
    assert not result.skipped, f"{family.name}: skipped {result.skipped}"
    (artifact,) = [a for a in result.artifacts if a.name == "x"]
    assert artifact.codec == codec, f"{family.name}: the doc says {codec}, a snapshot used {artifact.codec}"
    assert (trust == "yes") == (artifact.codec not in codecs.RUNS_CODE), f"{family.name}: the doc says trust {trust!r}"
    assert_exact(value, nbversion.load("HEAD", "x", repo=shared_repo), where=family.name)
