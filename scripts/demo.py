"""Run notebooks/quickstart.ipynb, then notebooks/tutorial.ipynb, each in a real Jupyter kernel
in a scratch git repository, and show what they printed and what each catalog now holds.

Used by ``make demo``. The scratch repositories are ``build/demo/`` and ``build/tutorial/reviews/``
(the tutorial also makes ``team-share/`` and ``teammate/`` beside its repository); both are made
anew each run, so the demo never writes a catalog into this project's own repository.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent.parent
BUILD = HERE / "build"


def run(name: str, work: Path, repo: Path, pyproject: str | None = None) -> None:
    """Execute notebooks/*name* with *repo* (a fresh git repository inside *work*) as its
    working directory; print its cells and outputs, then a summary of the catalog."""
    notebook_path = HERE / "notebooks" / name
    shutil.rmtree(work, ignore_errors=True)
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    shutil.copy(notebook_path, repo / name)
    if pyproject is not None:
        (repo / "pyproject.toml").write_text(pyproject)
    notebook = nbformat.read(notebook_path, as_version=4)
    print(f"Executing {notebook_path.relative_to(HERE)} in a real kernel (in {repo.relative_to(HERE)}/) ...\n")
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(repo)}}).execute()
    executed = work / name.replace(".ipynb", ".executed.ipynb")
    nbformat.write(notebook, executed)

    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        print(f"In [{cell.execution_count}]: " + cell.source.replace("\n", "\n         "))
        for output in cell.outputs:
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            if text:
                print(text.rstrip())
        print()

    catalog = repo / ".nbversion" / "catalog.db"
    print(f"The catalog ({catalog.relative_to(HERE)}) now holds, read with plain sqlite3:\n")
    with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True) as conn:
        for table in ("snapshots", "artifacts", "metrics", "tags", "objects"):
            count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            print(f"  {table:<10} {count} rows")
        print("\n  accuracy by snapshot:")
        for message, value in conn.execute(
            "SELECT s.message, m.value FROM metrics m JOIN snapshots s ON s.id = m.snapshot_id"
            " WHERE m.name = 'accuracy' ORDER BY s.id"
        ):
            print(f"    {value:.3f}  {message}")
    conn.close()
    print(f"\nExecuted notebook saved to {executed.relative_to(HERE)}\n")


def main() -> int:
    # Tell nbversion which notebook this is: a headless kernel has no Jupyter server to ask.
    run("quickstart.ipynb", BUILD / "demo", BUILD / "demo", '[tool.nbversion]\nnotebook = "quickstart.ipynb"\n')
    # The tutorial writes its own pyproject.toml, and makes team-share/ and teammate/ beside its repository.
    run("tutorial.ipynb", BUILD / "tutorial", BUILD / "tutorial" / "reviews")
    return 0


if __name__ == "__main__":
    sys.exit(main())
