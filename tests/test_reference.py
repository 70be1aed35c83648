"""docs/reference.md is what scripts/gen_reference.py writes from the argument definitions, and
documents every magic, verb, sub-verb, argument and setting (walked here independently of the
generator, so a new one without docs fails)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import re
import types
from collections.abc import Iterator

import pytest

from conftest import ROOT
from nbversion import cli, config, magics

DOC = ROOT / "docs" / "reference.md"
STALE = "docs/reference.md is stale: run `python scripts/gen_reference.py` and commit the result"


def load_generator() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "scripts" / "gen_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sections() -> dict[str, str]:
    """Heading (without backticks) -> the text up to the next heading."""
    found: dict[str, str] = {}
    heading = None
    for line in DOC.read_text().splitlines():
        match = re.match(r"^#{2,4} (.+)$", line)
        if match:
            heading = match.group(1).replace("`", "")
            assert heading not in found, f"two sections named {heading}"
            found[heading] = ""
        elif heading:
            found[heading] += line + "\n"
    return found


def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every sub-verb's parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from walk(sub)


def magic_parsers() -> list[argparse.ArgumentParser]:
    return [v for v in vars(magics).values() if isinstance(v, argparse.ArgumentParser)]


def test_reference_is_up_to_date() -> None:
    assert DOC.read_text() == load_generator().render(), STALE


@pytest.mark.parametrize("columns", ["20", "400"])
def test_reference_does_not_depend_on_the_terminal(monkeypatch: pytest.MonkeyPatch, columns: str) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    monkeypatch.setenv("LINES", "10")
    assert load_generator().render() == DOC.read_text(), STALE


def test_every_magic_has_a_section() -> None:
    found = sections()
    table = magics.NbversionMagics.magics
    names = [f"%{n}" for n in table["line"]] + [f"%%{n}" for n in table["cell"]]
    assert {"%snapshot", "%restore", "%snapshots", "%nbsql", "%%nbsql", "%nbversion"} <= set(names)
    for name in names:
        assert name in found, f"{name} is not in docs/reference.md; {STALE}"
    assert "%nbversion auto" in found and "[on|off]" in found["%nbversion auto"]
    for prog in {p.prog for p in magic_parsers()}:
        assert prog in found, prog


def test_every_verb_sub_verb_and_argument_is_documented() -> None:
    found = sections()
    parsers = [*walk(cli.build_parser()), *magic_parsers()]
    progs = {p.prog for p in parsers}
    assert {"nbversion remote add", "nbversion remote untrust", "%restore"} <= progs
    assert {f"nbversion {verb}" for verb in cli.VERBS} <= progs
    for parser in parsers:
        assert parser.prog in found, f"{parser.prog} has no section; {STALE}"
        text = found[parser.prog]
        assert f"\n{parser.prog} " in text or f"\n{parser.prog}\n" in text, f"no usage line for {parser.prog}"
        # The words of the first column of the section's tables: flags, metavars, argument names.
        names = set(re.findall(r"^\| \[?`([^`]+)`", text, re.M))
        words = {w.strip("[],.") for n in names for w in n.split()}
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                for verb in action.choices:
                    assert verb in names, f"{parser.prog} {verb} missing from the verb table"
                continue
            for option in action.option_strings:
                assert option in words, f"{parser.prog} {option} is not documented; {STALE}"
            if not action.option_strings:
                assert (action.metavar or action.dest) in words, f"{parser.prog} {action.dest} is not documented"
            if action.help:
                assert " ".join(action.help.split()).replace("|", "\\|") in text, f"{parser.prog} {action.dest}: help"


def test_every_setting_is_documented() -> None:
    text = sections()["[tool.nbversion] in pyproject.toml"]
    for field in dataclasses.fields(config.Config):
        row = re.search(rf"^\| `{field.name}` \| (.*?) \|", text, re.M)
        assert row and row.group(1).strip(), f"[tool.nbversion] {field.name} has no meaning in the reference"
    assert "NbversionMagics.dataframe" in sections()["%config NbversionMagics"]
