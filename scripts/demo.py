"""Run notebooks/quickstart.ipynb in a real Jupyter kernel, in a scratch git repository,
and show what it printed and what the catalog now holds.

Used by ``make demo``. The scratch repository is ``build/demo/`` (made anew each run), so
the demo never writes a catalog into this project's own repository.
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
NOTEBOOK = HERE / "notebooks" / "quickstart.ipynb"
WORK = HERE / "build" / "demo"


def main() -> int:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(WORK)], check=True)
    shutil.copy(NOTEBOOK, WORK / NOTEBOOK.name)
    # Tell nbversion which notebook this is: a headless kernel has no Jupyter server to ask.
    (WORK / "pyproject.toml").write_text(f'[tool.nbversion]\nnotebook = "{NOTEBOOK.name}"\n')
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    print(f"Executing {NOTEBOOK.relative_to(HERE)} in a real kernel (in {WORK.relative_to(HERE)}/) ...\n")
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(WORK)}}).execute()
    executed = WORK / "quickstart.executed.ipynb"
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

    catalog = WORK / ".nbversion" / "catalog.db"
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
    print(f"\nExecuted notebook saved to {executed.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
